"""sft.py: the assistant-only loss span, packing with exact boundaries, the global-count normalization,
1 vs 2 processes (torchrun, gloo), kill -9 and resume, and the HF export against transformers."""
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import model as M
import sft
import training as T

transformers = pytest.importorskip("transformers")
ROOT = Path(__file__).resolve().parents[1]
CHATML = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
WORDS = ("fever cough rash anemia sepsis insulin aspirin biopsy renal hepatic cardiac murmur edema "
         "platelet lesion tumor dose nausea").split()


def tiny_checkpoint(path, seed=0):
    """A random tiny Qwen2 (tied head) with a byte-level tokenizer (256 bytes + ChatML tokens), HF layout."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    path.mkdir(parents=True, exist_ok=True)
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    tk = Tokenizer(models.BPE(vocab={c: i for i, c in enumerate(alphabet)}, merges=[]))
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tk.decoder = decoders.ByteLevel()
    tk.add_special_tokens(["<|endoftext|>", "<|im_start|>", "<|im_end|>"])
    tk.save(str(path / "tokenizer.json"))
    (path / "tokenizer_config.json").write_text(json.dumps(
        {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>", "chat_template": CHATML}))
    cfg = transformers.Qwen2Config(vocab_size=tk.get_vocab_size(), hidden_size=32, intermediate_size=64,
                                   num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                   max_position_embeddings=512, tie_word_embeddings=True)
    torch.manual_seed(seed)
    transformers.Qwen2ForCausalLM(cfg).save_pretrained(path)
    return path


def records(n, seed=0):
    rng = random.Random(seed)
    out = []
    for i in range(n):
        q = " ".join(rng.choices(WORDS, k=rng.randint(2, 6)))
        think = " ".join(rng.choices(WORDS, k=rng.randint(1, 8)))
        letter = rng.choice("ABCD")
        msgs = [{"role": "user", "content": f"{q}?"},
                {"role": "assistant", "content": f"<think>{think}</think>\n<answer>{letter}</answer>"}]
        if i % 3 == 0:
            msgs.insert(0, {"role": "system", "content": "Be brief."})
        out.append({"id": f"r{i}", "messages": msgs})
    return out


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "model")


# ------------------------------------------------------------------------------------- loss span

def test_loss_span_is_the_assistant_turn_and_its_end_token(shared):
    """On the real Qwen tokenizer, Qwen2.5-style (default system) and Qwen3's thinking template."""
    qdir = shared / "data" / "qwen_tokenizer"
    msgs = [{"role": "user", "content": "Which vitamin prevents scurvy?\n\nA. C\nB. D"},
            {"role": "assistant", "content": "<think>\nCollagen needs ascorbate.\n</think>\n<answer>A</answer>"}]
    tok = M.Tokenizer.from_pretrained(str(qdir))
    ids, start = sft.tokenize_chat(tok, msgs)
    assert tok.decode(ids[:start]) == tok.render_chat(msgs[:1], add_generation_prompt=True)
    assert tok.decode(ids[start:]) == msgs[1]["content"] + "<|im_end|>"
    assert ids[-1] == tok.eos_id and ids.count(tok.eos_id) == 3  # system, user, assistant turns
    tok3 = M.Tokenizer.from_pretrained(str(qdir), chat_template=str(qdir / "Qwen-Qwen3-0.6B.jinja"))
    ids, start = sft.tokenize_chat(tok3, msgs)
    assert tok3.decode(ids[:start]).endswith("<|im_start|>assistant\n")
    assert tok3.decode(ids[start:]) == "<think>\nCollagen needs ascorbate.\n</think>\n\n<answer>A</answer><|im_end|>"
    with pytest.raises(ValueError, match="exactly one end-of-turn"):
        sft.tokenize_chat(tok, [msgs[0], {"role": "assistant", "content": "A<|im_end|>B"}])
    with pytest.raises(ValueError, match="last message must be the assistant"):
        sft.tokenize_chat(tok, msgs[:1])


def test_bad_records_name_file_and_line(ckpt, tmp_path):
    tok = M.Tokenizer.from_pretrained(str(ckpt))
    good = json.dumps(records(1)[0])
    f = tmp_path / "d.jsonl"
    for bad, msg in [('{"id": 1}', "no 'messages' list"), ('{"messages": [{"role": "user", "content": "x"}]}',
                     "last message must be the assistant"), ("{oops", "invalid JSON")]:
        f.write_text(f"{good}\n\n{bad}\n")
        with pytest.raises(sft.DataError, match=rf"d.jsonl:3: .*{msg}"):
            sft.load_examples(str(f), tok)
    with pytest.raises(sft.DataError, match="nope.jsonl: no such file"):
        sft.load_examples(str(tmp_path / "nope.jsonl"), tok)


def test_text_documents_train_on_every_token_and_mix_with_chats(ckpt, tmp_path):
    """{"text"} records (demo.py's knowledge phase): no chat template, the loss on every token after the first
    and on the end token; chat records in the same file keep their assistant-only span."""
    tok = M.Tokenizer.from_pretrained(str(ckpt))
    f = tmp_path / "k.jsonl"
    doc = "Scurvy is treated with ascorbic acid."
    write_jsonl(f, [{"id": "fact0", "text": doc}, records(1)[0]])
    (d, c) = sft.load_examples(str(f), tok)
    assert d["ids"] == tok.encode(doc) + [tok.eos_id] and d["start"] == 1
    assert sft.n_loss_tokens(d) == len(tok.encode(doc))  # every token but the first, plus the end token
    assert c["start"] > 1 and tok.decode(c["ids"][:c["start"]]).endswith("assistant\n")
    b = sft.pack([d], max_len=64)
    assert b["targets"][b["loss_mask"]].tolist() == d["ids"][1:]
    f.write_text('{"id": "x", "text": ""}\n')
    with pytest.raises(sft.DataError, match="k.jsonl:1: empty 'text'"):
        sft.load_examples(str(f), tok)


# ---------------------------------------------------------------------------------------- packing

HAND = [{"id": "a", "ids": [11, 12, 13, 14, 15], "start": 3},  # loss on 14, 15
        {"id": "b", "ids": [21, 22, 23], "start": 1},  # loss on 22, 23
        {"id": "c", "ids": [31, 32, 33, 34], "start": 2}]  # loss on 33, 34


def test_pack_hand_made_batch():
    b = sft.pack(HAND, max_len=8)  # longest first, first fit: row 0 = a (4 inputs) + c (3), row 1 = b (2)
    assert b["input_ids"].tolist() == [[11, 12, 13, 14, 31, 32, 33], [21, 22, 0, 0, 0, 0, 0]]
    assert b["targets"].tolist() == [[12, 13, 14, 15, 32, 33, 34], [22, 23, 0, 0, 0, 0, 0]]
    assert b["position_ids"].tolist() == [[0, 1, 2, 3, 0, 1, 2], [0, 1, 0, 0, 0, 0, 0]]
    assert b["segment_ids"].tolist() == [[1, 1, 1, 1, 2, 2, 2], [1, 1, 0, 0, 0, 0, 0]]
    loss_targets = b["targets"][b["loss_mask"]].tolist()
    assert loss_targets == [14, 15, 33, 34, 22, 23] and sum(map(sft.n_loss_tokens, HAND)) == 6
    with pytest.raises(ValueError, match="'a' has 5 tokens, over max_len"):
        sft.pack(HAND, max_len=3)


def test_packed_attention_never_crosses_documents(ckpt):
    net = M.Transformer.from_pretrained(str(ckpt)).eval()
    docs = [torch.randint(0, 256, (n,)).tolist() for n in (9, 6, 12)]
    b = sft.pack([{"id": i, "ids": d, "start": 1} for i, d in enumerate(docs)], max_len=40)
    assert b["input_ids"].shape == (1, 24)  # one row: 11 + 8 + 5 input tokens
    with torch.no_grad():
        packed = net(b["input_ids"], position_ids=b["position_ids"], segment_ids=b["segment_ids"])
        at = 0
        for d in sorted(docs, key=len, reverse=True):
            alone = net(torch.tensor([d[:-1]]))
            assert (packed[0, at:at + len(d) - 1] - alone[0]).abs().max() < 1e-5
            at += len(d) - 1
        # change the first document: the others' logits do not move, its own later positions do
        ids2 = b["input_ids"].clone()
        ids2[0, 0] = (ids2[0, 0] + 1) % 256
        moved = net(ids2, position_ids=b["position_ids"], segment_ids=b["segment_ids"])
    assert (moved[0, 11:] - packed[0, 11:]).abs().max() == 0
    assert (moved[0, 1:11] - packed[0, 1:11]).abs().max() > 1e-4


def test_packed_unpacked_and_chunked_losses_agree(ckpt):
    torch.manual_seed(0)
    examples = [{"id": i, "ids": torch.randint(0, 256, (n,)).tolist(), "start": s}
                for i, (n, s) in enumerate([(30, 10), (17, 3), (25, 20), (9, 4)])]
    lm = sft.SFTModel(M.Transformer.from_pretrained(str(ckpt)))
    packed = lm(**sft.pack(examples, max_len=128))
    alone = sum(lm(**sft.pack([e], max_len=128)) for e in examples)
    lm.net.zero_grad()
    packed.backward()
    grad = lm.net.lm_head.weight.grad.clone()
    chunked = sft.SFTModel(lm.net, chunk=7)  # 45 loss tokens in 7 chunks, recomputed in backward
    lm.net.zero_grad()
    c = chunked(**sft.pack(examples, max_len=128))
    c.backward()
    assert abs(packed.item() - alone.item()) < 1e-4 * alone.item()
    assert abs(c.item() - packed.item()) < 1e-4 * packed.item()
    assert torch.allclose(lm.net.lm_head.weight.grad, grad, atol=1e-6)
    # by hand: the summed cross-entropy of the assistant tokens of one example
    e = examples[1]
    ids = torch.tensor([e["ids"]])
    logp = torch.log_softmax(lm.net(ids[:, :-1])[0], -1)
    want = -sum(logp[t - 1, e["ids"][t]] for t in range(e["start"], len(e["ids"])))
    assert abs(lm(**sft.pack([e], max_len=128)).item() - want.item()) < 1e-4


def test_accumulation_split_gives_the_same_step(ckpt, dist_env):
    """Normalizing by the step's global loss-token count: 1 micro-batch of 4 == 4 micro-batches of 1."""
    torch.manual_seed(0)
    examples = [{"id": i, "ids": torch.randint(0, 256, (n,)).tolist(), "start": s}
                for i, (n, s) in enumerate([(30, 10), (17, 3), (25, 20), (9, 4)])]
    out = []
    for mbs in (4, 1):
        lm = sft.SFTModel(M.Transformer.from_pretrained(str(ckpt)))
        T.fsdp_wrap(lm, lm.net.model.layers, dist_env.device)
        opt = torch.optim.SGD(lm.parameters(), lr=1.0)
        cfg = sft.Config(micro_batch_size=mbs, max_len=64, grad_clip=0.0)
        loss, norm, tokens = sft.train_step(lm, opt, examples, cfg, dist_env)
        out.append((loss, norm, tokens, T.full_state_dict(lm.net)))
    (l4, n4, t4, sd4), (l1, n1, t1, sd1) = out
    assert abs(l4 - l1) < 1e-5 and abs(n4 - n1) < 1e-5 * n4 and t4 == t1 == 77
    assert all(torch.allclose(sd4[k], sd1[k], atol=1e-6) for k in sd4)


def test_bf16_recipe_keeps_fp32_master_weights(ckpt, dist_env):
    """The GPU recipe's policy, run on CPU: bf16 compute (the loss moves a little), fp32 params and AdamW state."""
    torch.manual_seed(0)
    examples = [{"id": i, "ids": torch.randint(0, 256, (40,)).tolist(), "start": 10} for i in range(4)]
    losses = []
    for bf16 in (False, True):
        lm = sft.SFTModel(M.Transformer.from_pretrained(str(ckpt)))
        T.fsdp_wrap(lm, lm.net.model.layers, dist_env.device, bf16=bf16)
        opt = torch.optim.AdamW(lm.parameters(), lr=1e-3)
        losses.append(sft.train_step(lm, opt, examples, sft.Config(micro_batch_size=2, max_len=128), dist_env)[0])
        assert {p.dtype for p in lm.parameters()} == {torch.float32}
        assert {v.dtype for p in lm.parameters() for v in opt.state[p].values() if v.dim()} == {torch.float32}
    assert 0 < abs(losses[1] - losses[0]) < 1e-2 * losses[0]


def test_step_examples_cover_each_epoch_once():
    got = [i for s in range(5) for i in sft.step_examples(10, s, 4, seed=3)]  # 2 epochs of 10
    assert sorted(got[:10]) == list(range(10)) and sorted(got[10:20]) == list(range(10))
    assert got[:10] != got[10:20] and got == [i for s in range(5) for i in sft.step_examples(10, s, 4, 3)]


# --------------------------------------------------------------------------------- end to end

def sft_args(data, ckpt, out, **kw):
    args = dict(train_file=data, model=ckpt, out_dir=out, max_steps=10, batch_size=4, micro_batch_size=2,
                max_len=160, lr=3e-3, warmup_steps=2, eval_every=5, ckpt_every=3, val_size=6)
    args.update(kw)
    return [f"--{k}={v}" for k, v in args.items()]


def run_sft(args, nproc=1, background=False):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, str(ROOT / "sft.py")] if nproc == 1 else \
        [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
         str(ROOT / "sft.py")]
    if background:
        return subprocess.Popen(cmd + args, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return subprocess.run(cmd + args, env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)


def losses(out_dir, key="loss"):
    rows = T.Metrics(str(Path(out_dir) / "metrics.jsonl")).rows()
    return {r["step"]: r[key] for r in rows if key in r}


@pytest.fixture(scope="module")
def reference_run(ckpt, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ref")
    data = write_jsonl(tmp / "train.jsonl", records(30))
    r = run_sft(sft_args(data, ckpt, tmp / "out"))
    assert r.returncode == 0, r.stderr[-3000:]
    return data, tmp / "out"


@pytest.mark.slow
def test_loss_decreases_and_outputs_written(reference_run):
    _, out = reference_run
    loss, val = losses(out), losses(out, "val_loss")
    assert sorted(loss) == list(range(1, 11)) and sorted(val) == [5, 10]
    assert loss[10] < loss[1] - 0.5 and val[10] < val[5]
    assert sorted(os.listdir(out / "ckpt")) == ["step_00000009", "step_00000010"]
    assert (out / "metrics.png").exists() and (out / "hf" / "tokenizer.json").exists()


@pytest.mark.slow
def test_two_processes_match_one(reference_run, ckpt, tmp_path):
    data, ref = reference_run
    r = run_sft(sft_args(data, ckpt, tmp_path / "out2"), nproc=2)
    assert r.returncode == 0, r.stderr[-3000:]
    one, two = losses(ref), losses(tmp_path / "out2")
    assert sorted(two) == list(range(1, 11))
    assert all(abs(one[s] - two[s]) < 1e-4 * one[s] for s in one), (one, two)
    v1, v2 = losses(ref, "val_loss"), losses(tmp_path / "out2", "val_loss")
    assert v1.keys() == v2.keys() and all(abs(v1[s] - v2[s]) < 1e-4 * v1[s] for s in v1)


@pytest.mark.slow
def test_kill_and_resume_continue_the_same_run(reference_run, ckpt, tmp_path):
    data, ref = reference_run
    args = sft_args(data, ckpt, tmp_path / "out")
    metrics = tmp_path / "out" / "metrics.jsonl"
    p = run_sft(args, background=True)
    deadline = time.time() + 120
    while time.time() < deadline and p.poll() is None:
        if metrics.exists() and any(json.loads(l)["step"] >= 5 for l in metrics.read_text().splitlines()
                                    if l.endswith("}")):
            p.send_signal(signal.SIGKILL)
            break
        time.sleep(0.001)
    assert p.wait() == -signal.SIGKILL
    killed_at = max(losses(tmp_path / "out"))
    assert 5 <= killed_at < 10, "the run finished before the kill: nothing to resume"
    r = run_sft(args + ["--resume=True"])
    assert r.returncode == 0, r.stderr[-3000:]
    assert "resumed from" in r.stdout
    want, got = losses(ref), losses(tmp_path / "out")
    assert sorted(got) == list(range(1, 11))
    assert all(abs(want[s] - got[s]) <= 1e-6 * want[s] for s in want), (want, got)
    r = run_sft(args)  # without --resume an existing run is never overwritten
    assert r.returncode == 2 and "already holds a run: pass --resume" in r.stderr
    r = run_sft(sft_args(data, ckpt, tmp_path / "out", lr=1e-3, batch_size=2) + ["--resume=True"])
    assert r.returncode == 2 and "--batch_size: 4 in the checkpoint, 2 now; --lr: 0.003 in the checkpoint" in r.stderr
    r = run_sft(sft_args(data, ckpt, tmp_path / "out", lr=1e-3) + ["--resume=True", "--resume_force=True"])
    assert r.returncode == 0 and "--resume_force: --lr: 0.003 in the checkpoint, 0.001 now" in r.stdout


def test_export_loads_in_transformers_with_the_trained_weights(ckpt, dist_env, tmp_path):
    """Export of an FSDP-wrapped model after a step: transformers and model.py read the same trained weights."""
    torch.manual_seed(0)
    examples = [{"id": i, "ids": torch.randint(0, 256, (20,)).tolist(), "start": 5} for i in range(2)]
    lm = sft.SFTModel(M.Transformer.from_pretrained(str(ckpt)))
    T.fsdp_wrap(lm, lm.net.model.layers, dist_env.device)
    opt = torch.optim.AdamW(lm.parameters(), lr=1e-2)
    cfg = sft.Config(model=str(ckpt), out_dir=str(tmp_path), micro_batch_size=2, max_len=64)
    sft.train_step(lm, opt, examples, cfg, dist_env)
    hf_dir = sft.export(lm, cfg, dist_env)
    from safetensors import safe_open
    with safe_open(os.path.join(hf_dir, "model.safetensors"), "pt") as f:
        assert "lm_head.weight" not in f.keys()  # tied: written once
    assert os.path.exists(os.path.join(hf_dir, "tokenizer.json"))
    ref = transformers.AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32).eval()
    ours = M.Transformer.from_pretrained(hf_dir).eval()
    b = sft.pack(examples, 64)
    with torch.no_grad():
        assert (ours(b["input_ids"]) - ref(b["input_ids"]).logits).abs().max() < 1e-4
        assert abs(sft.SFTModel(ours)(**b).item() - lm(**b).item()) < 1e-5 * lm(**b).item()
    init = M.Transformer.from_pretrained(str(ckpt))
    assert not torch.equal(init.model.embed_tokens.weight, ours.model.embed_tokens.weight)


def test_base_checkpoint_learns_and_exports_the_chat_turn(tmp_path, dist_env):
    """A base checkpoint (Qwen2.5-7B's layout): EOS <|endoftext|>, no chat template. SFT must end the assistant's
    loss span at ChatML's <|im_end|> (it refused every record, looking for the EOS), the sampler must stop there
    too, and the export's generation_config must list it, so transformers' generate() stops at the end of turn."""
    base = tiny_checkpoint(tmp_path / "base")
    (base / "tokenizer_config.json").write_text(json.dumps({"eos_token": "<|endoftext|>"}))
    conf = json.loads((base / "config.json").read_text())
    (base / "config.json").write_text(json.dumps({**conf, "eos_token_id": 256, "bos_token_id": 256}))
    tok = M.Tokenizer.from_pretrained(str(base))
    assert tok.eos_id == 256 and tok.eot_id == 258 and tok.chat_template is None
    examples = [{"id": r["id"], **dict(zip(("ids", "start"), sft.tokenize_chat(tok, r["messages"])))}
                for r in records(2)]
    for e in examples:
        assert e["ids"][-1] == tok.eot_id and tok.eos_id not in e["ids"]
        assert tok.decode(e["ids"][e["start"]:]).endswith("</answer><|im_end|>")
    net = M.Transformer.from_pretrained(str(base))
    assert tok.stop_ids(net.config.eos_token_id) == (256, 258)  # what grpo.py, eval and sample.py stop at
    lm = sft.SFTModel(net)
    T.fsdp_wrap(lm, lm.net.model.layers, dist_env.device)
    cfg = sft.Config(model=str(base), out_dir=str(tmp_path / "out"), micro_batch_size=2, max_len=512)
    sft.train_step(lm, torch.optim.AdamW(lm.parameters(), lr=1e-2), examples, cfg, dist_env)
    hf_dir = sft.export(lm, cfg, dist_env)
    gen = transformers.GenerationConfig.from_pretrained(hf_dir)
    assert sorted(gen.eos_token_id) == [256, 258]


@pytest.mark.parametrize("args, msg", [
    (dict(batch_size=6, micro_batch_size=4), "--batch_size=6 must be a multiple of --micro_batch_size=4"),
    (dict(max_stepz=3), "unknown option 'max_stepz'"),
    (dict(lr="fast"), "'fast' is not a valid float"),
    (dict(model=""), "--train_file and --model are required"),
    (dict(micro_batch_size=0), "--micro_batch_size=0: must be >= 1"),  # ZeroDivisionError before
    (dict(batch_size=0), "--batch_size=0: must be >= 1"),
    (dict(lr=-1e-3), "--lr=-0.001: must be >= 0"),
])
def test_bad_arguments_one_clear_error(ckpt, tmp_path, capsys, args, msg):
    with pytest.raises(SystemExit) as e:
        sft.main(sft_args(tmp_path / "train.jsonl", ckpt, tmp_path / "o", **args))
    assert e.value.code == 2 and msg in capsys.readouterr().err
