"""bench/memory.py: the analytic per-phase memory model against what 2 gloo ranks measure on CPU, and the 8 x 80 GB
verdicts it gives at the presets."""
import sys
from dataclasses import replace
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import memory as bm  # noqa: E402


def test_presets_fit_80gb_with_sleep_for_32b():
    """7B SFT and GRPO fit 8 x 80 GB as they are; 32B GRPO does not without --sleep, and does with it."""
    peaks = {(m, r): max(sum(t.values()) for t in bm.predict(bm.real_config(f), run).values())
             for m, f, r, run in bm.PRESETS}
    assert peaks["Qwen2.5-7B", "SFT"] < 80e9 and peaks["Qwen2.5-7B", "GRPO stage 1"] < 80e9
    assert peaks["Qwen3-32B", "GRPO stage 1"] > 80e9
    assert peaks["Qwen3-32B", "GRPO stage 1 --sleep"] < 80e9


@pytest.mark.slow
def test_prediction_within_15_percent_of_two_gloo_ranks(tmp_path):
    """Each phase's predicted peak is within 15% of the larger of the 2 ranks' measured peaks, for both small shapes
    (one default, one --sleep); loading keeps at most one fp32 model on the host, summed over the ranks."""
    for i, (name, run) in enumerate(bm.SMALL):
        meas = bm.measure(name, run, str(tmp_path), port=29661 + i)
        cfg = bm.small_config(name)
        for kind, r in (("grpo", run), ("sft", replace(run, kind="sft", **bm.SMALL_SFT))):
            for phase, terms in bm.predict(cfg, r).items():
                ratio = sum(terms.values()) / max(meas[f"{kind} {phase}"])
                assert 0.85 <= ratio <= 1.15, (name, kind, phase, ratio)
        full = 4 * sum(p.numel() for p in bm.meta_model(cfg).parameters())
        assert sum(meas["host load after"]) <= 1.1 * full < sum(meas["host load before"])
