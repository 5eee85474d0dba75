"""demo.py: the whole pipeline on the micro preset (KG -> questions -> split -> CoT -> tiny model -> SFT -> GRPO
stage 1 -> stage 2 -> held-out eval after each), every stage's output, the format rate rising after SFT, the
ablation table and picture; a rerun redoes nothing. Plus the pieces: difficulty labels, summary, base model."""
import json
import time
from pathlib import Path

import pytest

import demo
import model as M
from eval.records import read_jsonl
from kg.split import check_leak

ROOT = Path(__file__).resolve().parents[1]


def test_difficulty_from_hops():
    assert [demo.difficulty({"meta": {"hops": h}}) for h in (1, 2, 3, 4)] == ["easy", "moderate", "difficult",
                                                                               "difficult"]


def test_summarize_counts_hard_format_and_failures():
    rows = [{"correct": True, "format_ok": True, "extracted": "A", "difficulty": "easy"},
            {"correct": False, "format_ok": False, "extracted": None, "difficulty": "moderate"},
            {"correct": True, "format_ok": False, "extracted": "B", "difficulty": "difficult"},
            {"correct": False, "format_ok": True, "extracted": "C", "difficulty": "moderate"}]
    s = demo.summarize(rows)
    assert (s["accuracy"], s["hard_accuracy"], s["n_hard"]) == (0.5, 1 / 3, 3)
    assert (s["format_rate"], s["extraction_failures"]) == (0.5, 0.25)


def test_base_model_loads_and_its_tokenizer_keeps_the_tags(tmp_path):
    cfg = demo.Config(vocab_size=300, hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1, intermediate_size=64)
    text = "<think>\nThe key findings are fever and rash.\n</think>\n<answer>B</answer>"
    n = demo.build_base(cfg, str(tmp_path / "base"), [text, "Which of the following is the most likely diagnosis?"] * 20)
    tok = M.Tokenizer.from_pretrained(str(tmp_path / "base"))
    net = M.Transformer.from_pretrained(str(tmp_path / "base"))
    assert n == net.num_parameters() and net.config.model_type == "qwen3"
    assert tok.decode(tok.encode(text)) == text
    for tag in demo.TAGS:
        assert len(tok.encode(tag)) == 1
    ids = tok.apply_chat_template([{"role": "user", "content": "hi"}])
    assert tok.decode(ids) == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"  # no default system prompt
    assert net.config.eos_token_id == tok.eos_id


@pytest.mark.slow
def test_micro_pipeline_end_to_end_then_rerun_redoes_nothing(tmp_path, capsys):
    out = tmp_path / "demo"
    t0 = time.time()
    demo.main([str(ROOT / "config" / "demo_micro.py"), f"--out_dir={out}"])
    first = time.time() - t0
    for f in ("kg/meta.json", "questions.jsonl", "split/train.jsonl", "split/held.jsonl", "cot/sft.jsonl",
              "base/config.json", "sft/hf/model.safetensors", "grpo/stage1/hf/model.safetensors",
              "grpo/stage2/hf/model.safetensors", "grpo/stage1/metrics.jsonl", "grpo/stage2/metrics.jsonl",
              "eval/base.jsonl", "eval/sft.jsonl", "eval/grpo1.jsonl", "eval/grpo2.jsonl", "ablation.md",
              "curves.png"):
        assert (out / f).exists(), f
    train, held = list(read_jsonl(out / "split/train.jsonl")), list(read_jsonl(out / "split/held.jsonl"))
    assert held and check_leak(train, held) == []
    res = json.loads((out / "ablation.json").read_text())["results"]
    n_held = len(list(read_jsonl(out / "eval/base.jsonl", validate=False)))
    assert all(res[k]["n"] == n_held for k in ("base", "sft", "grpo1", "grpo2"))
    print(f"micro pipeline {first:.0f} s; format rate base {res['base']['format_rate']:.2f} -> "
          f"sft {res['sft']['format_rate']:.2f}")
    assert res["sft"]["format_rate"] > res["base"]["format_rate"] + 0.2
    table = (out / "ablation.md").read_text()
    for name in ("base", "+CoT SFT", "+RL stage 1", "+RL stage 2"):
        assert f"| {name} |" in table
    times = (out / "times.json").read_text()
    capsys.readouterr()
    demo.main([str(ROOT / "config" / "demo_micro.py"), f"--out_dir={out}"])
    log = capsys.readouterr().out
    assert (out / "times.json").read_text() == times  # nothing ran again
    for stage in ("kg", "questions", "split", "cot", "base", "sft", "grpo1", "grpo2", "eval grpo2"):
        assert f"== {stage}: done" in log
