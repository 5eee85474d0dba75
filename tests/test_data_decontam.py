"""data/decontam.py on real benchmark files: planted copies (verbatim, edited with options reordered,
embedded, a copied vignette asked anew; long and short questions) are all found, clean training items
are kept, and naming benchmarks cannot silently leave one out."""
import json
import random
from collections import Counter

import pytest

from data.decontam import (BenchIndex, DEFAULT_BENCH, KINDS, bench_specs, check_json_file, contamination,
                           decontaminate, load_benches, plant, planted_set)
from data.dedup import tokens
from data.prepare import convert_source
from eval.loaders import load_benchmark
from eval.records import RecordError

NAMES = ("medqa", "medmcqa", "pubmedqa", "mmlu_pro_health", "cmexam")


@pytest.fixture(scope="module")
def bench(shared):
    return {n: load_benchmark(n, data_dir=str(shared / "data"), skip_bad=True) for n in NAMES}


@pytest.fixture(scope="module")
def index(bench):
    return BenchIndex(bench)


@pytest.fixture(scope="module")
def train(shared):
    d = str(shared / "data")
    return (convert_source("medqa:train=medqa/medqa_train_small.jsonl", d)
            + convert_source("huatuo:train=huatuogpt_o1_demo/demo_data.json", d))


def test_planted_copies_of_every_kind_are_found(bench, index):
    planted = planted_set(bench, NAMES, per=6, seed=3)
    sizes = Counter((p["meta"]["kind"], p["meta"]["size"]) for p in planted)
    assert set(sizes) >= {(k, s) for k in KINDS[:-1] for s in ("short", "long")} and sizes["vignette", "long"] >= 10
    found = contamination(planted, index)
    missed = [(p["meta"]["bench"], p["meta"]["kind"], p["question"][:80]) for p, m in zip(planted, found) if not m]
    assert not missed, missed
    pos = {it: i for i, it in enumerate(index.items)}
    for p, m in zip(planted, found):  # matched to the item it copies, or to that item's twin in the benchmark
        a, b = set(index.q[m[0]]), set(index.q[pos[(p["meta"]["bench"], p["meta"]["copy_of"])]])
        assert len(a & b) >= 0.8 * min(len(a), len(b)), (p["question"][:80], m)


def test_short_question_lightly_edited_with_options_reordered(bench, index):
    """The case 13-grams of the question alone could never see: a MedMCQA stem of ~10 tokens."""
    rng = random.Random(5)
    short = [r for r in bench["medmcqa"] if 6 <= len(tokens(r["question"])) < 12][:40]
    copies = [plant(r, "edited", rng, i) for i, r in enumerate(short)]
    assert all(c["question"] != r["question"] for c, r in zip(copies, short))
    assert all(m for m in contamination(copies, index))


def test_clean_training_items_are_kept(index, train):
    st, dropped = Counter(), []
    kept = decontaminate(train, index, stats=st, dropped=dropped)
    # the HuatuoGPT-o1 demo really contains 3 MedMCQA dev questions verbatim, and one reworded ("Which of
    # the following drug cannot be used to treat [MRSA]" for "The following drug is not useful for MRSA?",
    # the same four options and answer); nothing else overlaps
    assert [d["source"] for d in dropped] == ["huatuo"] * 4, [d["question"][:80] for d in dropped]
    assert all(d["meta"]["contaminated_by"][0] == "medmcqa" for d in dropped)
    assert sum("MRSA" in d["question"] or "methicillin" in d["question"] for d in dropped) == 1
    assert st["decontam:huatuo:medmcqa"] == 4 and len(kept) == len(train) - 4


def test_kg_style_and_boilerplate_lookalikes_kept(bench, index, train):
    stem = "Which of the following is the most appropriate next step in management?"
    assert sum(stem in r["question"] for r in bench["medqa"]) > 10  # boilerplate: in many benchmark items
    looks = [{**r, "id": f"look-{i}", "question": "A 45-year-old man presents to the emergency department with "
              + r["question"].split(". ", 1)[-1] + " " + stem} for i, r in enumerate(train[:40])]
    assert not any(contamination(looks, index))


def test_training_items_sharing_one_vignette_do_not_hide_each_other(bench, index):
    """Twelve training items built on one MedQA case: the shared grams are frequent in the training
    pool but rare in the benchmarks, so every one of them is caught."""
    case = next(r for r in bench["medqa"] if len(tokens(r["question"])) > 100)
    vignette = case["question"].rsplit(". ", 1)[0] + "."
    pool = [{**case, "id": f"v{i}", "source": "web", "question": vignette + f" Question {i}: what is step {i}?",
             "options": {"A": f"Choice {i}a", "B": f"Choice {i}b", "C": f"Choice {i}c"}, "answer": "A", "meta": {}}
            for i in range(12)]
    assert all(contamination(pool, index))


def test_minimal_pair_over_the_same_options_is_kept(bench, index):
    """Same short stem and options, another answer and another word: a different question."""
    rec = next(r for r in bench["medmcqa"] if "drug of choice" in r["question"].lower() and len(r["answer"]) == 1
               and len(tokens(r["question"])) < 12)
    other = next(l for l in rec["options"] if l != rec["answer"])
    twin = {**rec, "id": "pair", "source": "web", "answer": other, "meta": {}}
    assert contamination([twin], index)[0] is None
    assert contamination([{**twin, "answer": rec["answer"]}], index)[0] is not None


def test_named_benchmarks_add_to_the_defaults(shared, tmp_path):
    d = str(shared / "data")
    own = tmp_path / "own.jsonl"
    own.write_text(json.dumps({"id": "1", "source": "own", "split": "test", "question": "What is a unique test?",
                               "options": {"A": "x", "B": "y"}, "answer": "A", "difficulty": None, "meta": {}}) + "\n")
    specs = dict(bench_specs(["medqa", f"own={own}"], False, d))
    assert set(specs) == set(DEFAULT_BENCH) | {"own"}
    assert dict(bench_specs(["medqa", f"own={own}"], True, d)).keys() == {"medqa", "own"}
    mq = tmp_path / "medqa_copy.jsonl"
    mq.write_text((shared / "data/medqa/phrases_no_exclude_test.jsonl").read_text())
    assert dict(bench_specs([f"medqa={mq}"], False, d))["medqa"] == str(mq)  # another file of a known one
    with pytest.raises(RecordError, match="unknown benchmark"):
        bench_specs(["medqaa"], False, d)


def test_missing_or_empty_benchmark_is_an_error_unless_allowed(shared, tmp_path):
    d = str(shared / "data")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    odd = tmp_path / "odd_columns.jsonl"  # a variant whose columns the loader does not know
    odd.write_text("".join(json.dumps({"stem": f"q{i}", "choices": ["a", "b"], "key": "a"}) + "\n" for i in range(3)))
    for spec, why in ((f"medqa={tmp_path / 'nope.jsonl'}", "file not found"), (f"own={empty}", "no item"),
                      (f"medqa={odd}", "no item could be read.*missing field")):
        with pytest.raises(RecordError, match=why):
            load_benches(bench_specs([spec], True, d), d)
    st = Counter()
    got = load_benches(bench_specs([f"medqa={odd}", "pubmedqa"], True, d), d, allow_missing=True, stats=st)
    assert list(got) == ["pubmedqa"] and st["bench:missing:medqa"] == 1
    # the defaults include the held-out benchmarks, which shared/data does not hold
    with pytest.raises(RecordError, match="medxpertqa"):
        load_benches(bench_specs([], False, d), d)


def test_json_with_trailing_data_is_an_error(tmp_path):
    p = tmp_path / "x.json"
    p.write_text('[{"a": 1},\n {"a": 2}]\n[{"a": 3}]\n')
    with pytest.raises(RecordError, match=r"x.json:3: .*JSON Lines\?"):
        check_json_file(str(p))
    p.write_text('{"a": 1}\n{"a": 2}\n')  # JSON Lines named .json: read as such
    check_json_file(str(p))
