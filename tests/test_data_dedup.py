"""data/dedup.py: exact and near-duplicate removal on real benchmark items, meaning symbols in exact keys,
exact duplicates with conflicting answers sent to review (decontamination: test_data_decontam.py)."""
import random
from collections import Counter

import pytest

from data.dedup import dedup, exact_key, jaccard, ngram_hashes, tokens
from eval.loaders import load_benchmark


@pytest.fixture(scope="module")
def bench(shared):
    d = str(shared / "data")
    return {"medqa": load_benchmark("medqa", data_dir=d), "medmcqa": load_benchmark("medmcqa", data_dir=d)}


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


def item(q, opts, ans="A", id="x", source="web"):
    return {"id": id, "source": source, "split": "train", "question": q,
            "options": {chr(65 + i): o for i, o in enumerate(opts)}, "answer": ans, "difficulty": None, "meta": {}}


@pytest.mark.parametrize("a,b", [
    ("Drug of choice: beta-blocker", "Drug of choice: alpha-blocker"),
    ("Serum Na+ > 145 mEq/L means", "Serum Na+ < 145 mEq/L means"),
    ("Which ion is K+ here", "Which ion is K- here"),
    ("A → B is the pathway", "A ← B is the pathway"),
    ("β-lactamase inhibitor of choice", "α-lactamase inhibitor of choice"),
])
def test_exact_key_keeps_symbols_that_change_meaning(a, b):
    assert exact_key(item(a, ["x", "y"])) != exact_key(item(b, ["x", "y"]))
    assert exact_key(item(a, ["x", "y"])) == exact_key(item("  " + a.upper() + " .", ["y", "x"]))
    assert len(dedup([item(a, ["x", "y"], id="1"), item(b, ["x", "y"], id="2")])) == 2


def test_exact_duplicates_with_conflicting_answers_go_to_review(bench):
    r = bench["medqa"][5]
    wrong = next(l for l in r["options"] if l != r["answer"])
    pool = [r, {**r, "id": "copy-same", "source": "web"}, {**r, "id": "copy-wrong", "source": "web", "answer": wrong},
            bench["medqa"][6]]
    st, dropped = Counter(), []
    kept = dedup(pool, stats=st, dropped=dropped)
    assert [k["id"] for k in kept] == [bench["medqa"][6]["id"]]  # no copy wins by coming first
    assert {d["id"] for d in dropped} == {r["id"], "copy-same", "copy-wrong"}
    assert all(d["meta"]["drop_reason"] == "conflicting_answers" for d in dropped)
    assert {tuple(x) for x in dropped[0]["meta"]["conflicts_with"]} == {("web", "copy-same"), ("web", "copy-wrong")}
    assert st["dedup:conflicting_answers:medqa"] == 1 and st["dedup:conflicting_answers:web"] == 2
    # the same answer under reordered options is no conflict: one is kept
    opts = list(r["options"].values())[::-1]
    moved = {**r, "id": "reordered", "options": {chr(65 + i): o for i, o in enumerate(opts)},
             "answer": chr(65 + opts.index(r["options"][r["answer"]]))}
    assert [k["id"] for k in dedup([r, moved])] == [r["id"]]
