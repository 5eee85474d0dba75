"""data/mix.py: deterministic pools from real records, weights, synthetic ratio, stratified splits."""
import random
from collections import Counter

import pytest

from data.mix import mix, parse_weights, report
from data.prepare import convert_source
from eval.records import validate_record


@pytest.fixture(scope="module")
def recs(shared):
    d = str(shared / "data")
    out = (convert_source("medqa:test=medqa/phrases_no_exclude_test.jsonl", d)
           + convert_source("medmcqa:dev=medmcqa/medmcqa.jsonl", d)[:2000])
    for i, r in enumerate(out):
        r["difficulty"] = ("easy", "moderate", "difficult")[i % 3]
    return out


def synthetic(recs, n):
    return [{**r, "id": f"kg-{i}", "source": "kg_paths", "meta": {"synthetic": True}} for i, r in enumerate(recs[:n])]


def ids(pool):
    return [(r["source"], r["id"]) for r in pool]


def test_deterministic_and_order_free(recs):
    a = mix(recs, seed=3)
    shuffled = list(recs)
    random.Random(9).shuffle(shuffled)
    b = mix(shuffled, seed=3)
    assert all(ids(a[k]) == ids(b[k]) for k in a)
    c = mix(recs, seed=4)
    assert ids(a["rl"]) != ids(c["rl"])


def test_pools_disjoint_complete_and_valid(recs):
    pools = mix(recs, rl_frac=0.4, val_frac=0.02, val_max=500, seed=0)
    sets = {k: set(ids(v)) for k, v in pools.items()}
    assert not (sets["sft"] & sets["rl"] or sets["sft"] & sets["val"] or sets["rl"] & sets["val"])
    assert len(sets["sft"] | sets["rl"] | sets["val"]) == len(recs) == 3273
    assert len(pools["val"]) == round(3273 * 0.02)
    # val stratified by source: MedQA is 1273/3273 of the data
    v = Counter(r["source"] for r in pools["val"])
    assert abs(v["medqa"] - 65 * 1273 / 3273) <= 1
    # RL share is 40% within every difficulty
    for d in ("easy", "moderate", "difficult"):
        n_rl = sum(r["difficulty"] == d for r in pools["rl"])
        n_all = sum(r["difficulty"] == d for r in pools["rl"] + pools["sft"])
        assert abs(n_rl / n_all - 0.4) < 0.01
    for k, pool in pools.items():
        assert all(r["meta"]["pool"] == k for r in pool)
        for r in pool[:50]:
            validate_record(r)


def test_weights_and_synthetic_ratio(recs):
    pools = mix(recs, weights=parse_weights("medmcqa=0.5"), val_frac=0, seed=0)
    got = Counter(r["source"] for p in pools.values() for r in p)
    assert got == {"medqa": 1273, "medmcqa": 1000}
    # plenty of synthetic items: take as many as the ratio asks for
    syn = synthetic(recs, 2000)
    st = Counter()
    pools = mix(recs + syn, synthetic_ratio=0.25, val_frac=0, seed=0, stats=st)
    got = Counter(r["source"] for p in pools.values() for r in p)
    assert got["kg_paths"] == round(3273 * 0.25 / 0.75) and got["medqa"] + got["medmcqa"] == 3273
    # too few synthetic items: the public side shrinks, the ratio holds, nothing repeats
    pools = mix(recs + synthetic(recs, 300), synthetic_ratio=0.5, val_frac=0, seed=0)
    got = Counter(r["source"] for p in pools.values() for r in p)
    assert got["kg_paths"] == 300 and got["medqa"] + got["medmcqa"] == 300
    assert abs(got["medqa"] / 300 - 1273 / 3273) < 0.01  # shrunk proportionally
    with pytest.raises(ValueError):
        parse_weights("medqa=2")
    with pytest.raises(ValueError):
        mix(recs, weights={"nosuch": 0.5})


def test_report_tables(recs):
    st = Counter({"count:convert:medqa": 1273, "count:filter:medqa": 1162, "drop:medqa:missing_figure": 108,
                  "decontam:medqa:medqa": 5, "dedup:exact:medqa": 2})
    mix(recs, seed=0, stats=st)
    md = report(st, ["convert", "filter"])
    assert "| medqa | 1273 | 1162 |" in md
    assert "| medqa | 108 | 108 |" in md  # the drop-reason row with its total
    assert "## Decontamination" in md and "## Output pools by difficulty" in md
    assert f"| easy | {st['pool_difficulty:sft:easy']} | {st['pool_difficulty:rl:easy']} |" in md
