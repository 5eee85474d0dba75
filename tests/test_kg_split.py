"""kg/split.py: on real KG questions, no held-out question's answer entity is a training answer in the same
template; the held-out share is close to the one asked; the split is a function of the records (not of their
order); the CLI writes both files; a file that is not kg.sample output is one clear error."""
import json
import random
from collections import Counter

import pytest

from eval.records import read_jsonl
from kg.build import build
from kg.sample import DEFAULT_MIX, QuestionSampler, generate_one, parse_mix, to_record
from kg.split import check_leak, main, split_records

DISEASES = {"OMIM:275000", "ORPHA:803", "OMIM:137580", "OMIM:154700", "ORPHA:558", "OMIM:219700", "ORPHA:586",
            "OMIM:143100", "ORPHA:399", "OMIM:300376", "ORPHA:98896", "OMIM:310200", "OMIM:607208", "OMIM:300624",
            "ORPHA:908", "OMIM:105400", "OMIM:176000", "OMIM:222100", "OMIM:601665", "OMIM:612359"}


@pytest.fixture(scope="module")
def questions(shared):
    g = build(str(shared / "kg-sources"), ["hpo", "do", "drugcentral", "hsdn", "wikidata"], hpo_diseases=DISEASES)
    s = QuestionSampler(g)
    mix = parse_mix(DEFAULT_MIX.replace(",side_effect=1", ""), QuestionSampler.TEMPLATES)
    recs = [to_record(g, *got, i, 0) for i in range(300) if (got := generate_one(s, i, 0, mix, 5))]
    assert len(recs) > 200
    return recs


def test_held_out_answers_are_never_training_answers_of_their_template(questions):
    train, held = split_records(questions, held=0.25, seed=0)
    assert len(train) + len(held) == len(questions)
    assert {r["id"] for r in train}.isdisjoint(r["id"] for r in held)
    train_answers = {(r["meta"]["template"], r["meta"]["option_ids"][r["answer"]]) for r in train}
    for r in held:  # independent of split_key: the answer entity read from the option ids
        assert (r["meta"]["template"], r["meta"]["option_ids"][r["answer"]]) not in train_answers, r["id"]
    assert check_leak(train, held) == []
    assert {r["split"] for r in train} == {"train"} and {r["split"] for r in held} == {"test"}
    assert 0.15 * len(questions) <= len(held) <= 0.35 * len(questions)
    # the diagnosis questions are split by disease: each disease's are all on one side
    side = {}
    for part, rows in (("train", train), ("held", held)):
        for r in rows:
            if r["meta"]["template"] == "diagnosis":
                assert side.setdefault(r["meta"]["answer_id"], part) == part


def test_check_leak_finds_a_planted_leak(questions):
    train, held = split_records(questions, held=0.25, seed=0)
    planted = dict(held[0], id="planted")
    assert check_leak(train + [planted], held) == [held[0]["id"]] + \
        [r["id"] for r in held[1:] if (r["meta"]["template"], r["meta"]["answer_id"]) ==
         (held[0]["meta"]["template"], held[0]["meta"]["answer_id"])]


def test_split_is_a_function_of_the_records_and_seed(questions):
    a = split_records(questions, 0.2, seed=1)
    shuffled = random.Random(0).sample(questions, len(questions))
    b = split_records(shuffled, 0.2, seed=1)
    assert sorted(r["id"] for r in a[1]) == sorted(r["id"] for r in b[1])
    c = split_records(questions, 0.2, seed=2)
    assert sorted(r["id"] for r in a[1]) != sorted(r["id"] for r in c[1])


def test_a_large_answer_group_stays_in_training(questions):
    counts = Counter((r["meta"]["template"], r["meta"]["answer_id"]) for r in questions)
    big = [k for k, n in counts.items() if n > 0.02 * len(questions)]
    for seed in range(5):
        _, held = split_records(questions, 0.3, seed=seed)
        assert not {(r["meta"]["template"], r["meta"]["answer_id"]) for r in held} & set(big)


def test_cli_writes_both_files_and_names_a_bad_input(questions, tmp_path, capsys):
    src = tmp_path / "q.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in questions))
    main(["--records", str(src), "--out", str(tmp_path / "split"), "--held", "0.2"])
    train = list(read_jsonl(tmp_path / "split" / "train.jsonl"))
    held = list(read_jsonl(tmp_path / "split" / "held.jsonl"))
    assert len(train) + len(held) == len(questions) and check_leak(train, held) == []
    bad = tmp_path / "bad.jsonl"
    rec = dict(questions[0], meta={})
    bad.write_text(json.dumps(rec) + "\n")
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:  # a usage error: exit 2 (it was 1) and one line naming the file
        main(["--records", str(bad), "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1 and err.startswith("kg.split: error: ")
    assert "bad.jsonl" in err and "answer_id" in err
