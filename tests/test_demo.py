"""demo.py: the whole pipeline on the micro preset (KG -> world -> knowledge phase -> CoT SFT -> GRPO stage 1 ->
stage 2 -> held-out eval after each, pass@k), every stage's output, the split rule, the ablation table and picture;
a rerun redoes nothing. Plus the pieces: summary, pass@k, paired gains, base model and its entity tokens."""
import json
import os
import re
import sys
import time
from pathlib import Path

import pytest

import demo
import model as M
from eval.records import iter_jsonl, read_jsonl, write_jsonl
from kg.world import check_split

ROOT = Path(__file__).resolve().parents[1]


def test_summarize_counts_hops_format_failures_and_letters():
    rows = [{"correct": True, "format_ok": True, "extracted": "A", "gold": "A", "hops": 2},
            {"correct": False, "format_ok": False, "extracted": None, "gold": "B", "hops": 3,
             "output": "<think>x points to gout.</think>\n<answer>gout</answer>"},  # tags fine, no option named
            {"correct": True, "format_ok": False, "extracted": "B", "gold": "B", "hops": 3,
             "output": "<think>x points to gout.\n<answer>gout</answer>"},  # no </think>
            {"correct": False, "format_ok": True, "extracted": "C", "gold": "A", "hops": 2}]
    s = demo.summarize(rows)
    assert (s["accuracy"], s["hop2_accuracy"], s["hard_accuracy"], s["n_hard"]) == (0.5, 0.5, 0.5, 2)
    assert (s["format_rate"], s["tags_ok"], s["extraction_failures"]) == (0.5, 0.75, 0.25)
    assert s["letters"] == {"A": 1, "B": 1, "C": 1, "none": 1} and s["gold_letters"] == {"A": 2, "B": 2}


def test_pass_at_k_and_guessing():
    rows = [{"correct": [True, False, False, False], "n_options": 5},
            {"correct": [False] * 4, "n_options": 5}]
    q = demo.pass_at(rows)
    assert (q["k"], q["pass1"], q["passk"]) == (4, 0.125, 0.5)
    assert abs(q["guess1"] - 0.2) < 1e-12 and abs(q["guessk"] - (1 - 0.8 ** 4)) < 1e-12


def test_paired_gain_matches_ids_and_its_standard_error():
    a = [{"id": str(i), "correct": i % 2 == 0} for i in range(10)]
    b = [{"id": str(i), "correct": True} for i in reversed(range(10))]
    m, se = demo.paired_gain(a, b)
    assert m == 0.5 and abs(se - (0.25 * 10 / 9 / 10) ** 0.5) < 1e-12
    assert demo.paired_gain(a, a) == (0.0, 0.0)


def test_option_logprobs_in_one_packed_row_equal_one_forward_per_option():
    """The base row's scoring packs the prompt once with every option's tail; each score must equal the plain
    forward over prompt + that tail (the earlier code: five full forwards, 4x the tokens)."""
    import torch
    torch.manual_seed(0)
    cfg = M.ModelConfig(model_type="qwen3", vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                        num_attention_heads=4, num_key_value_heads=2, head_dim=8, qk_norm=True,
                        tie_word_embeddings=True)
    net = M.Transformer.from_config(cfg).eval()
    head, tails = [5, 9, 2, 7, 11, 3], [[4], [8, 1, 30], [12, 12], [40, 2, 6, 7]]
    with torch.no_grad():
        got = demo.option_logprobs(net, head, tails)
        for t, g in zip(tails, got):
            logp = net(torch.tensor([head + t]))[0].log_softmax(-1)
            want = sum(logp[len(head) - 1 + j, x].item() for j, x in enumerate(t))
            assert abs(g - want) < 1e-4, (t, g, want)
    assert len(set(round(g, 3) for g in got)) == len(tails)  # the tails really differ


def test_knowledge_phase_without_questions_keeps_every_fact(tmp_path):
    """knowledge_qa: every fact copy, plus the one-hop questions as a chat or as one short sentence (the SmolLM2
    preset), or not at all; the cold start is unchanged."""
    w = tmp_path / "w"
    w.mkdir()
    q = lambda i, hops: {"id": f"q{i}", "source": "w", "split": "train", "difficulty": None, "question": f"Q{i}?",
                         "options": {"A": "x", "B": "y"}, "answer": "A",
                         "meta": {"hops": hops, "composition": f"c{i}", "cot": "x is x.", "answer_text": "x"}}
    write_jsonl(str(w / "facts.jsonl"), [{"id": f"f{i}", "text": f"fact {i}."} for i in range(3)])
    write_jsonl(str(w / "train.jsonl"), [q(0, 1), q(1, 2)])
    for qa, n_docs, n_text in (("chat", 2 * 3 + 1, 6), ("short", 2 * 3 + 1, 7), ("none", 2 * 3, 6)):
        demo.make_corpora(str(w), str(w), fact_copies=2, knowledge_qa=qa)
        docs = [d for _, d in iter_jsonl(str(w / "knowledge.jsonl"))]
        assert len(docs) == n_docs and sum("text" in d for d in docs) == n_text
        if qa == "short":
            assert docs[-1] == {"id": "q0", "text": "Q0? x."}  # the stem and the gold option's text
        assert [r["id"] for _, r in iter_jsonl(str(w / "cot.jsonl"))] == ["q0", "q1"]


def test_medqa_table_scores_each_row_with_its_letters(tmp_path):
    run = demo.Run(demo.Config(out_dir=str(tmp_path)))
    assert demo.medqa_table(run) == []  # no --medqa: no table
    for k, picks in (("sft", ["A", "B", None, "D"]), ("grpo1", ["A", "B", "C", "D"])):
        os.makedirs(run.p("medqa", k))
        write_jsonl(run.p("medqa", k, "medqa.part0.jsonl"),
                    [{"id": str(i), "gold": "ABCA"[i], "extracted": e, "correct": e == "ABCA"[i]}
                     for i, e in enumerate(picks)])
    lines = demo.medqa_table(run)
    sft, rl1 = (next(l for l in lines if l.startswith(f"| {n} |")) for n in ("+CoT SFT", "+RL stage 1"))
    assert "| 4 | 50.0% |" in sft and "| 25.0% | A:1 B:1 D:1 none:1 |" in sft
    assert "| 4 | 75.0% | +25.0 +- 25.0 | 0.0% | A:1 B:1 C:1 D:1 |" in rl1
    assert not any(l.startswith("| +RL stage 2 |") for l in lines)


def test_the_launcher_is_found_beside_this_python_without_an_activated_venv(tmp_path, monkeypatch):
    """`.venv/bin/python demo.py config/demo_8gpu.py` names torchrun, which sits in .venv/bin, off the PATH of a
    shell that did not activate the venv (check_config refused it: "no program 'torchrun' on the PATH")."""
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "mylaunch").write_text("#!/bin/sh\n")
    (fake / "mylaunch").chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(fake / "python"))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert demo.launcher_cmd("mylaunch --nproc_per_node=8") == [str(fake / "mylaunch"), "--nproc_per_node=8"]
    assert demo.launcher_cmd("nosuch -x") == ["nosuch", "-x"]  # left as given: check_config names it
    with pytest.raises(Exception, match="nosuch"):
        demo.check_config(demo.Config(launcher="nosuch -x", out_dir=str(tmp_path / "o")))


@pytest.mark.parametrize("preset", sorted(p.name for p in (ROOT / "config").glob("demo_*.py")))
def test_every_demo_preset_parses(preset):
    import training as T
    cfg = T.parse_config(demo.Config, [str(ROOT / "config" / preset)], prog="demo.py")
    assert cfg.knowledge and cfg.sft and cfg.grpo1 and cfg.grpo2  # every stage configured


def test_base_model_loads_and_its_tokenizer_keeps_the_tags(tmp_path):
    cfg = demo.Config(vocab_size=300, hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1, intermediate_size=64)
    text = "<think>\nThe key findings are fever and rash.\n</think>\n<answer>B</answer>"
    n = demo.build_base(cfg, str(tmp_path / "base"), [text, "Which of the following is the most likely diagnosis?"] * 20,
                        entities=["fever", "rash", "Lyme disease"])
    tok = M.Tokenizer.from_pretrained(str(tmp_path / "base"))
    net = M.Transformer.from_pretrained(str(tmp_path / "base"))
    assert n == net.num_parameters() and net.config.model_type == "qwen3"
    assert tok.decode(tok.encode(text)) == text
    for tag in demo.TAGS + ["Lyme disease"]:  # tags and entity names are one token each
        assert len(tok.encode(tag)) == 1
    assert tok.decode(tok.encode("Lyme diseases point to fever.")) == "Lyme diseases point to fever."
    ids = tok.apply_chat_template([{"role": "user", "content": "hi"}])
    assert tok.decode(ids) == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"  # no default system prompt
    assert net.config.eos_token_id == tok.eos_id


@pytest.mark.slow
def test_micro_pipeline_end_to_end_then_rerun_redoes_nothing(tmp_path, capsys):
    out = tmp_path / "demo"
    t0 = time.time()
    demo.main([str(ROOT / "config" / "demo_micro.py"), f"--out_dir={out}"])
    first = time.time() - t0
    for f in ("kg/meta.json", "world/world.json", "world/facts.jsonl", "world/train.jsonl", "world/held.jsonl",
              "world/knowledge.jsonl", "world/cot.jsonl", "init/config.json", "knowledge/hf/model.safetensors",
              "sft/hf/model.safetensors", "grpo/stage1/hf/model.safetensors", "grpo/stage2/hf/model.safetensors",
              "grpo/stage1/metrics.jsonl", "grpo/stage2/metrics.jsonl", "eval/base.jsonl", "eval/base_facts.jsonl",
              "eval/sft.jsonl", "eval/grpo1.jsonl", "eval/grpo2.jsonl", "eval/sft_pass_held.jsonl",
              "eval/grpo2_pass_train.jsonl", "ablation.md", "curves.png"):
        assert (out / f).exists(), f
    # the split rule: held-out = multi-hop compositions never asked in training, every hop a stated fact
    train, held = list(read_jsonl(out / "world/train.jsonl")), list(read_jsonl(out / "world/held.jsonl"))
    facts = [json.loads(line)["text"] for line in (out / "world/facts.jsonl").read_text().splitlines()]
    assert held and check_split(train, held, facts) == []
    # the knowledge phase holds the facts and the one-hop questions; CoT SFT every training question
    know = [json.loads(line) for line in (out / "world/knowledge.jsonl").read_text().splitlines()]
    assert sum("text" in r for r in know) == 3 * len(facts)
    assert sum("messages" in r for r in know) == sum(r["meta"]["hops"] == 1 for r in train)
    res = json.loads((out / "ablation.json").read_text())["results"]
    assert all(res[k]["n"] == len(held) for k in ("base", "sft", "grpo1", "grpo2"))
    assert res["base"]["extraction_failures"] == 0  # the base row always names an option
    for k in ("sft", "grpo1", "grpo2"):
        assert {"train", "held"} <= set(res[k]["pass"]) and res[k]["pass"]["held"]["k"] == 4
    # SFT teaches the shape of a chain of thought (a 0.2M model does not learn the facts: its answers are often
    # no option, so the format rate, which needs a valid choice, stays low)
    outs = [json.loads(line)["output"] for line in (out / "eval/sft.jsonl").read_text().splitlines()]
    shape = sum(bool(re.match(r"<think>.+</think>\s*<answer>[^<]+</answer>\s*$", o, re.S)) for o in outs) / len(outs)
    print(f"micro pipeline {first:.0f} s; CoT shape after SFT {shape:.2f}, format rate {res['sft']['format_rate']:.2f}")
    assert shape > 0.8
    table = (out / "ablation.md").read_text()
    for name in ("base", "+CoT SFT", "+RL stage 1", "+RL stage 2"):
        assert f"| {name} |" in table
    assert "pass@1" in table and ("HELPED" in table or "DID NOT HELP" in table)
    times = (out / "times.json").read_text()
    capsys.readouterr()
    demo.main([str(ROOT / "config" / "demo_micro.py"), f"--out_dir={out}"])
    log = capsys.readouterr().out
    assert (out / "times.json").read_text() == times  # nothing ran again
    for stage in ("kg", "world", "init", "base", "sft", "grpo1", "grpo2", "eval grpo2"):
        assert f"== {stage}: done" in log


def test_bad_arguments_and_a_failed_stage_are_one_line(tmp_path, capsys, monkeypatch):
    for argv, msg in ((["--seeds=0,x"], "--seeds=0,x: comma-separated integers"),
                      (["--n_disease=3"], "--n_disease=3: unknown option 'n_disease'")):
        with pytest.raises(SystemExit) as e:
            demo.main(argv + [f"--out_dir={tmp_path / 'o'}"])
        assert e.value.code == 2 and f"demo.py: error: {msg}" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()  # nothing started
    with pytest.raises(SystemExit) as e:  # a stage that fails (here kg.build, asked for a reader it has not)
        demo.main([f"--out_dir={tmp_path / 'o'}", "--kg_sources=nosuch"])
    err = capsys.readouterr().err
    assert e.value.code not in (0, None) and "-m kg.build ...` failed" in err and "Traceback" not in err
