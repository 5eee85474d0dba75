"""data/dedup.py: exact and near-duplicate removal, and 13-gram decontamination against real eval
benchmarks with planted verbatim / lightly edited copies and unrelated look-alikes."""
import random
import re
from collections import Counter

import pytest

from data.dedup import BenchIndex, contamination, decontaminate, dedup, jaccard, ngram_hashes, tokens
from data.prepare import convert_source
from eval.loaders import load_benchmark


@pytest.fixture(scope="module")
def bench(shared):
    d = str(shared / "data")
    return {"medqa": load_benchmark("medqa", data_dir=d), "medmcqa": load_benchmark("medmcqa", data_dir=d)}


@pytest.fixture(scope="module")
def index(bench):
    return BenchIndex(bench)


@pytest.fixture(scope="module")
def train(shared):
    d = str(shared / "data")
    return (convert_source("medqa:train=medqa/medqa_train_small.jsonl", d)
            + convert_source("huatuo:train=huatuogpt_o1_demo/demo_data.json", d))


def light_edit(q, rng):
    """What a careless copy does: another age, a couple of synonyms, case and punctuation."""
    q = re.sub(r"\b(\d+)-year-old", lambda m: f"{int(m.group(1)) + 2}-year-old", q, count=1)
    for a, b in (("presents", "comes"), ("physician", "doctor"), ("following", "following options"),
                 ("emergency department", "ER")):
        q = q.replace(a, b, 1)
    words = q.split(" ")
    for i in rng.sample(range(len(words)), k=max(1, len(words) // 40)):
        words[i] = words[i].upper()
    return " ".join(words).replace(", ", " , ")


def as_train(rec, i, question):
    return {**rec, "id": f"planted-{i}", "source": "web", "split": "train", "question": question,
            "meta": {}}


def test_planted_copies_removed_and_lookalikes_kept(bench, index, train):
    rng = random.Random(0)
    long_items = [r for r in bench["medqa"] if len(tokens(r["question"])) > 60]
    picks = rng.sample(long_items, 10)
    short_mcq = rng.sample([r for r in bench["medmcqa"] if 13 <= len(tokens(r["question"])) < 30], 3)
    tiny_mcq = rng.sample([r for r in bench["medmcqa"] if len(tokens(r["question"])) < 13], 2)
    planted = ([as_train(r, i, r["question"]) for i, r in enumerate(picks[:5] + short_mcq + tiny_mcq)]
               + [as_train(r, 100 + i, light_edit(r["question"], rng)) for i, r in enumerate(picks[5:])]
               # an eval question pasted inside a longer training text
               + [as_train(picks[0], 200, "Case discussion from a review course. " + picks[0]["question"]
                           + " Discuss the pathophysiology and the differential diagnosis in detail.")])
    # unrelated questions wearing the same exam boilerplate as hundreds of eval items
    lookalikes = []
    for i, r in enumerate(train[:40]):
        body = r["question"].split(". ", 1)[-1]
        lookalikes.append({**r, "id": f"look-{i}", "question":
                           "A 45-year-old man presents to the emergency department with " + body
                           + " Which of the following is the most likely diagnosis?"})
    pool = train + lookalikes + planted
    st, dropped = Counter(), []
    kept = decontaminate(pool, index, stats=st, dropped=dropped)
    gone = {d["id"] for d in dropped}
    assert {p["id"] for p in planted} <= gone, sorted({p["id"] for p in planted} - gone)
    assert not gone & {r["id"] for r in lookalikes}
    assert not gone & {r["id"] for r in train if r["source"] == "medqa"}  # MedQA train vs test: no leak
    # the HuatuoGPT-o1 demo really contains 3 MedMCQA dev questions verbatim
    huatuo_leaks = {d["id"] for d in dropped if d["source"] == "huatuo"}
    assert len(huatuo_leaks) == 3
    assert all(d["meta"]["contaminated_by"][0] == "medmcqa" for d in dropped if d["source"] == "huatuo")
    assert st["decontam:web:medqa"] == 11 and st["decontam:web:medmcqa"] == 5
    assert len(kept) == len(pool) - len(dropped)


def test_lookalike_coverage_is_low_and_edits_high(bench, index, train):
    rng = random.Random(1)
    recs = rng.sample(bench["medqa"], 30)
    edited = [as_train(r, i, light_edit(r["question"], rng)) for i, r in enumerate(recs)]
    covs = [m[1] if m else 0 for m in contamination(edited, index)]
    assert sum(c >= 0.7 for c in covs) >= 27, sorted(covs)  # 5 edits in a 60-word item can fall below
    real = contamination(train, index)
    unrelated = [m[1] for m, r in zip(real, train) if m and r["source"] == "medqa"]
    assert max(unrelated, default=0) < 0.6  # shared phrases exist, but cover little


def test_boilerplate_df_filter(bench):
    # the closing question shared by many MedQA items is boilerplate: in more than 10 eval items
    stem = "Which of the following is the most appropriate next step in management"
    n = sum(stem in r["question"] for r in bench["medqa"])
    assert n > 10
    fake = [{"id": "x", "source": "web", "question": "Completely unrelated vignette about a dog bite. " + stem + "?",
             "options": {"A": "a", "B": "b"}, "answer": "A", "meta": {}}]
    assert contamination(fake, BenchIndex(bench))[0] is None


def test_dedup_exact_near_and_minimal_pairs(bench):
    rng = random.Random(2)
    base = [dict(r, source="medmcqa") for r in bench["medmcqa"][:1500]] + bench["medqa"][:300]
    real_st = Counter()
    real_kept = dedup(base, stats=real_st)
    n_real = len(base) - len(real_kept)
    picks = rng.sample(real_kept, 60)
    pool = list(base)
    # exact: same text modulo case / spacing / punctuation, options reordered
    for i, r in enumerate(picks[:20]):
        opts = list(r["options"].values())[::-1]
        ans = opts.index(r["options"][r["answer"]])
        pool.append({**r, "id": f"ex{i}", "source": "other", "question": "  " + r["question"].upper() + " ",
                     "options": {chr(65 + k): o for k, o in enumerate(opts)}, "answer": chr(65 + ans)})
    # near: a typo in a vignette-length question
    near = rng.sample(bench["medqa"][:300], 20)
    for i, r in enumerate(near):
        w = r["question"].split(" ")
        w[len(w) // 2] = w[len(w) // 2] + "x"
        pool.append({**r, "id": f"nr{i}", "question": " ".join(w)})
    # minimal pairs: same text, different gold answer text -> a different question, kept
    for i, r in enumerate(picks[40:50]):
        letters = list(r["options"])
        other = letters[(letters.index(r["answer"]) + 1) % len(letters)]
        pool.append({**r, "id": f"mp{i}", "question": r["question"].replace(" ", "  ") + " (second form)",
                     "answer": other})
    st, dropped = Counter(), []
    kept = dedup(pool, stats=st, dropped=dropped)
    gone = {d["id"] for d in dropped}
    assert {f"ex{i}" for i in range(20)} <= gone
    assert {f"nr{i}" for i in range(len(near))} <= gone
    assert not gone & {f"mp{i}" for i in range(10)}
    assert len(dropped) == n_real + 20 + len(near)
    assert sum(v for k, v in st.items() if k.startswith("dedup:cross:other<-")) == 20
    assert all(d["meta"]["dup_of"][0] in ("medmcqa", "medqa", "other") for d in dropped)
    assert n_real >= 1  # MedMCQA dev itself repeats questions (16 exact repeats in all 4183)


def test_ngram_hashes_are_stable_and_cjk_aware():
    a = ngram_hashes(tokens("女，38岁。粘液脓血便伴里急后重3年"), 3)
    b = ngram_hashes(tokens("女，38岁。粘液脓血便伴里急后重3年"), 3)
    assert (a == b).all() and len(a) > 5  # one token per CJK character
    assert jaccard(ngram_hashes(tokens("The Quick, brown fox."), 2), ngram_hashes(tokens("the quick brown fox"), 2)) == 1
