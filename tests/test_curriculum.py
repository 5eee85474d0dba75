"""curriculum.py: stage 1's plateau, the Easy/Moderate blend and its position-only draws, stage 2's miner and the
labels it weights by (stage 1's pass rates handed on), state keyed by (source, id); and a toy third stage that is one
new object, run by grpo.py's unchanged loop after stages 1 and 2."""
import json
import os
from dataclasses import replace

import pytest

import curriculum
import grpo
from test_grpo import REC, read_metrics, toy_args, toy_reward, write_toy


def test_plateau_on_flat_reward_or_zero_signal():
    p = curriculum.Plateau(window=3, delta=0.05, zero_frac=0.8)
    # moving means over 3 steps, compared with the 3 before: the 9th step still gains 0.5 -> 0.6 (>= 0.05),
    # the 10th only 0.567 -> 0.6
    assert [p.update(r, 0.1) for r in (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.6, 0.6, 0.6)] == [None] * 9
    assert "reward plateau: moving mean 0.567 -> 0.600" in p.update(0.6, 0.1)
    q = curriculum.Plateau(window=3, delta=0.05, zero_frac=0.8)
    q.load_state_dict(p.state_dict())
    assert q.rewards == p.rewards and q.zero == p.zero
    z = curriculum.Plateau(window=2, delta=-1.0, zero_frac=0.75)  # reward rule off (any change passes)
    assert z.update(0.0, 1.0) is None
    assert "zero-signal" in z.update(0.0, 0.5)  # mean 0.75


def test_miner_keeps_failures_weights_difficult():
    recs = [{"source": "s", "id": str(i), "difficulty": d}
            for i, d in enumerate(["easy", "difficult", "moderate", "difficult"])]
    rates = {("s", "0"): 0.1, ("s", "1"): 0.25, ("s", "2"): 0.5, ("s", "3"): 0.9}  # "2" is not below 0.5; "3" passes
    assert curriculum.mine(recs, rates, 0.5, 3.0) == [(0, 1.0), (1, 3.0)]
    assert curriculum.mine(recs, {}, 0.5, 3.0) == []  # unscored items are not mined


def test_stage2_weights_difficult_by_stage1_labels_when_the_data_has_none(tmp_path):
    recs = [{"source": "s", "id": str(i), "difficulty": None} for i in range(4)] + \
        [{"source": "s", "id": "4", "difficulty": "difficult"}]
    cfg = grpo.Config(out_dir=str(tmp_path))
    labels, where = curriculum.stage2_labels(cfg, recs)
    assert "stage 1 wrote none" in where and labels["s", "0"] is None and labels["s", "4"] == "difficult"
    (tmp_path / "stage1").mkdir()
    (tmp_path / "stage1" / "labels.jsonl").write_text("".join(
        f'{{"source": "s", "id": "{i}", "pass_rate": {p}}}\n' for i, p in (("0", 0.0), ("1", 0.5), ("2", 1.0))))
    labels, where = curriculum.stage2_labels(cfg, recs)
    assert labels == {("s", "0"): "difficult", ("s", "1"): "moderate", ("s", "2"): "easy", ("s", "3"): None,
                      ("s", "4"): "difficult"}
    assert "stage 1's pass rates" in where and "for 3, none for 1" in where
    rates = {("s", str(i)): 0.0 for i in range(5)}  # all failing
    assert curriculum.mine(recs, rates, 0.5, 2.0) == [(0, 1.0), (1, 1.0), (2, 1.0), (3, 1.0), (4, 2.0)]  # before: x2 on one
    assert curriculum.mine(recs, rates, 0.5, 2.0, labels) == [(0, 2.0), (1, 1.0), (2, 1.0), (3, 1.0), (4, 2.0)]


def test_state_is_keyed_by_source_and_id(tmp_path):
    """Two sources that both number their records 1, 2, ...: each keeps its own pass rate and label (keyed by id
    alone, the second source's rate overwrote the first's), and a pool with one (source, id) twice is refused."""
    recs = [{"source": src, "id": "1", "difficulty": None} for src in ("medqa", "kg")]
    (tmp_path / "stage1").mkdir()
    (tmp_path / "stage1" / "labels.jsonl").write_text('{"source": "medqa", "id": "1", "pass_rate": 0.0}\n'
                                                      '{"source": "kg", "id": "1", "pass_rate": 1.0}\n')
    labels, _ = curriculum.stage2_labels(grpo.Config(out_dir=str(tmp_path)), recs)
    assert labels == {("medqa", "1"): "difficult", ("kg", "1"): "easy"}
    rates = curriculum.read_rates(tmp_path / "stage1" / "labels.jsonl")
    assert curriculum.mine(recs, rates, 0.5, 2.0, labels) == [(0, 2.0)]  # only medqa's item 1 fails
    pool = tmp_path / "rl.jsonl"
    rec = dict(REC, difficulty=None)
    pool.write_text("".join(json.dumps(dict(rec, source=s)) + "\n" for s in ("medqa", "kg", "medqa")))
    with pytest.raises(grpo.RecordError, match=r"rl.jsonl:3: source 'medqa' id '1' is already record 1"):
        grpo.read_pool(pool)
    pool.write_text("".join(pool.read_text().splitlines(keepends=True)[:2]))
    assert [r["source"] for r in grpo.read_pool(pool)] == ["medqa", "kg"]  # the same id in two sources is fine


def test_draw_is_a_function_of_position():
    pool = [10, 11, 12, 13, 14]
    whole = curriculum.draw(pool, 0, 12, seed=1)
    assert sorted(whole[:5]) == pool and sorted(whole[5:10]) == pool  # each epoch is a permutation
    assert curriculum.draw(pool, 4, 5, seed=1) == whole[4:9]  # resuming from a position needs nothing else
    assert whole[:5] != whole[5:10] or whole[5:10] != whole[10:] + curriculum.draw(pool, 12, 3, 1)


def test_stage1_blend_is_balanced_and_falls_back_to_one_pool():
    pools = {"easy": list(range(100)), "moderate": list(range(100, 110))}
    assert curriculum.blend(pools, 0.5, 16) == (8, 8)  # 1:1 however unequal the pools
    assert curriculum.blend(pools, 0.25, 16) == (4, 12)
    assert curriculum.blend({"easy": [1], "moderate": []}, 0.5, 16) == (16, 0)
    assert curriculum.blend({"easy": [], "moderate": [1]}, 0.5, 16) == (0, 16)
    assert curriculum.draw([1, 2], 5, 0, seed=0) == []
    with pytest.raises(grpo.ConfigError, match="easy_share"):
        grpo.check_config(grpo.Config(easy_share=1.5))


def test_difficulty_from_pass_rate():
    assert [curriculum.difficulty_from_pass_rate(p) for p in (1.0, 0.75, 0.5, 0.25, 0.125, 0.0)] == \
        ["easy", "easy", "moderate", "moderate", "difficult", "difficult"]


# --------------------------------------------------------------------------- a third stage is one new object

class LongerBudget(curriculum.HardMining):
    """A toy stage 3: stage 2's miner on stage 2's final policy, with twice the generation budget."""
    n = 3

    @staticmethod
    def start_from(cfg):
        return os.path.join(cfg.out_dir, "stage2", "hf"), "stage 3 starts from stage 2's final checkpoint"

    @classmethod
    def configure(cls, cfg):
        cfg = super().configure(cfg)
        return replace(cfg, max_new_tokens=2 * cfg.max_new_tokens)


def test_a_third_stage_is_a_new_object_not_new_branches(tmp_path, monkeypatch, capsys):
    d, data = write_toy(tmp_path)
    out = tmp_path / "out"
    usage = lambda: pytest.raises(grpo.ConfigError, match="--stage=3: one of 1, 2")
    with usage():
        grpo.check_config(grpo.Config(stage=3))
    monkeypatch.setitem(curriculum.CURRICULUM, 3, LongerBudget)
    run = lambda stage, **kw: grpo.main(toy_args(d, data, out, stage=stage, max_steps=2, **kw), reward_fn=toy_reward)
    run(1)
    run(2, model="", k=4, remine_every=1)  # from stage 1's hf/
    run(3, model="", k=4, remine_every=1)  # from stage 2's hf/, the same loop
    rows = {s: read_metrics(out / f"stage{s}" / "metrics.jsonl") for s in (1, 2, 3)}
    assert [r["stage"] for s in (1, 2, 3) for r in rows[s]] == [1, 1, 2, 2, 3, 3]
    assert max(r["response_len"] for r in rows[2]) <= 6 < max(r["response_len"] for r in rows[3])  # its budget: 12
    assert (out / "stage3" / "mine_0001.jsonl").exists() and (out / "stage3" / "hf" / "model.safetensors").exists()
    assert "mining round 1 at step 1" in capsys.readouterr().out
    cfg, stage_dir = grpo.resolve(grpo.Config(stage=3, out_dir=str(out), data=str(data), max_new_tokens=6), world=1)
    assert (cfg.max_new_tokens, cfg.model, stage_dir) == (12, str(out / "stage2" / "hf"), str(out / "stage3"))
