"""Sampler throughput against transformers' generate: same weights, dtype and workload, same run.

    .venv/bin/python bench/sample.py                       # CPU: both workloads on the ~40M model
    .venv/bin/python bench/sample.py --workload grpo --config ../shared/configs/qwen2.5-7b-instruct.json \
        --prompts 256 --device cuda --dtype bfloat16       # GPU: a 7B-shaped random model

Workloads (temperature 1, no early stop):
  grpo   8 prompts x 384 tokens, n = 8 samples each, 128 new tokens (transformers: num_return_sequences=8)
  plain  16 prompts x 64 tokens, 128 new tokens
  --memory: peak RSS of generate on the real SmolLM2-135M-Instruct (fp32 CPU), 64 MedQA prompts in the chat
  template, 256 new tokens each, greedy, no early stop; ours and transformers each in its own subprocess.
Also prints the decode step time beside the time of that step's matrix products alone (the roofline), run
as the sampler runs them (on CPU: oneDNN on packed weights; F.linear's MKL time is printed beside it), and
beside the memory bound: weights plus the step's K/V read at the bandwidth of a large copy (HBM on a GPU).
"""
import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the repo
sys.path.insert(0, ROOT)
import model as M  # noqa: E402
from sample import Sampler, SamplingParams, pack_linear_weight, packed_linear  # noqa: E402

MAX_BATCH = 512  # rows decoded together (the sampler's default)
WORKLOADS = {"grpo": dict(prompts=8, prompt_len=384, n=8, new=128), "plain": dict(prompts=16, prompt_len=64, n=1, new=128)}


def bench_config():
    """Qwen3-shaped, about 40M parameters: hidden 512, 8 layers, 8 heads, 4 KV heads, head_dim 64, vocab 32k."""
    return M.ModelConfig(model_type="qwen3", vocab_size=32000, hidden_size=512, intermediate_size=1536,
                         num_hidden_layers=8, num_attention_heads=8, num_key_value_heads=4, head_dim=64,
                         qk_norm=True, tie_word_embeddings=True, max_position_embeddings=4096)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def run_ours(net, prompts, w, device):
    sampler = Sampler(net, max_batch=MAX_BATCH)
    params = SamplingParams(n=w["n"], max_new_tokens=w["new"], temperature=1.0, seed=0)
    sampler.generate([p[:8] for p in prompts[:2]], SamplingParams(max_new_tokens=4))  # warm-up
    sampler.stats = {k: 0 for k in sampler.stats}
    sync(device)
    t0 = time.perf_counter()
    outs = sampler.generate(prompts, params)
    sync(device)
    dt = time.perf_counter() - t0
    n_tokens = sum(len(c.token_ids) for g in outs for c in g)
    assert n_tokens == len(prompts) * w["n"] * w["new"], "early stop in a no-stop workload"
    return n_tokens / dt, sampler.stats


def run_transformers(path, prompts, w, device, dtype):
    from transformers import AutoModelForCausalLM
    hf = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(device).eval()
    ids = torch.tensor(prompts, device=device)
    kw = dict(do_sample=True, temperature=1.0, top_k=0, top_p=1.0, num_return_sequences=w["n"], max_new_tokens=w["new"],
              min_new_tokens=w["new"], pad_token_id=0, attention_mask=torch.ones_like(ids))
    with torch.no_grad():
        hf.generate(ids[:2, :8], **{**kw, "max_new_tokens": 4, "min_new_tokens": 4, "num_return_sequences": 1,
                                    "attention_mask": torch.ones_like(ids[:2, :8])})  # warm-up
        sync(device)
        t0 = time.perf_counter()
        out = hf.generate(ids, **kw)
        sync(device)
    dt = time.perf_counter() - t0
    return (out.shape[1] - ids.shape[1]) * out.shape[0] / dt


@torch.no_grad()
def matmul_roofline(net, batch, device, packed, iters=10):
    """Seconds for one decode step's matrix products alone (every linear layer and the head, batch rows):
    with the oneDNN-packed weights the sampler uses on CPU (packed=True), or with plain F.linear."""
    weights = [mod.weight for mod in net.modules() if isinstance(mod, torch.nn.Linear)]
    xs = [torch.randn(batch, w.shape[1], device=device, dtype=w.dtype) for w in weights]
    if packed:
        weights = [pack_linear_weight(w) for w in weights]
    linear = packed_linear if packed else torch.nn.functional.linear
    for _ in range(2):
        for x, w in zip(xs, weights):
            linear(x, w)
    sync(device)
    t0 = time.perf_counter()
    for _ in range(iters):
        for x, w in zip(xs, weights):
            linear(x, w)
    sync(device)
    return (time.perf_counter() - t0) / iters


@torch.no_grad()
def memory_bound(net, w, device):
    """Seconds a decode step needs just to read what it must from memory at the bandwidth of a large copy:
    the weights once, and the average step's K/V (per row on GPU's paged kernel; on CPU the cascade reads a
    prompt's shared K/V once for its n samples). Returns (seconds, weight GB, K/V GB, GB/s)."""
    x = torch.empty(256 * 2**20, dtype=torch.uint8, device=device)
    y = torch.empty_like(x)
    y.copy_(x)
    sync(device)
    t0 = time.perf_counter()
    for _ in range(5):
        y.copy_(x)
    sync(device)
    bandwidth = 2 * x.numel() * 5 / (time.perf_counter() - t0)
    cfg, elem = net.config, next(net.parameters()).element_size()
    weights = sum(p.numel() for p in net.parameters()) * elem
    rows, mean_new = min(w["prompts"] * w["n"], MAX_BATCH), w["new"] / 2
    tokens = (rows // w["n"] * w["prompt_len"] + rows * mean_new if device.type == "cpu"
              else rows * (w["prompt_len"] + mean_new))
    kv = tokens * 2 * cfg.num_hidden_layers * cfg.num_key_value_heads * cfg.head_dim * elem
    return (weights + kv) / bandwidth, weights / 1e9, kv / 1e9, bandwidth / 1e9


def rss_mb(field):
    """VmRSS (now) or VmHWM (peak since the last reset) of this process, in MB."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":")) / 1024


def memory_child(which, path, n_prompts, new):
    """Run one generate and print JSON: the process's RSS before it and its peak during it (MB)."""
    from eval.answer import build_prompt
    from eval.loaders import load_medqa
    tok = M.Tokenizer.from_pretrained(path)
    shared = os.environ.get("FLEMING_SHARED", os.path.join(ROOT, "..", "shared"))
    records = load_medqa(os.path.join(shared, "data", "medqa", "phrases_no_exclude_test.jsonl"))
    prompts = [tok.apply_chat_template(build_prompt(r)) for r, _ in zip(records, range(n_prompts))]
    if which == "ours":
        sampler = Sampler(M.Transformer.from_pretrained(path).eval())
        run = lambda: sampler.generate(prompts, SamplingParams(max_new_tokens=new, temperature=0))
    else:
        from transformers import AutoModelForCausalLM
        hf = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
        longest = max(len(p) for p in prompts)  # left-padded, as generate wants
        ids = torch.tensor([[tok.eos_id] * (longest - len(p)) + p for p in prompts])
        mask = torch.tensor([[0] * (longest - len(p)) + [1] * len(p) for p in prompts])
        run = lambda: hf.generate(ids, attention_mask=mask, do_sample=False, max_new_tokens=new,
                                  min_new_tokens=new, pad_token_id=tok.eos_id)
    gc.collect()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM to the current RSS: the peak below is generate's, not loading's
    before, t0 = rss_mb("VmRSS"), time.perf_counter()
    with torch.no_grad():
        run()
    print(json.dumps({"before_mb": before, "peak_mb": rss_mb("VmHWM"), "seconds": time.perf_counter() - t0,
                      "prompt_tokens": sum(map(len, prompts))}))


def memory_main(args):
    got = {}
    for which in ("ours", "transformers"):
        cmd = [sys.executable, os.path.abspath(__file__), "--memory-child", which, "--model", args.model,
               "--prompts", str(args.prompts or 64), "--new", str(args.new)]
        out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout  # stderr: shown
        got[which] = r = json.loads(out.strip().splitlines()[-1])
        print(f"{which}: peak RSS {r['peak_mb']:.0f} MB during generate (RSS before it {r['before_mb']:.0f} MB), "
              f"{r['seconds']:.1f} s", flush=True)
    ours, theirs = got["ours"], got["transformers"]
    print(f"memory: {args.prompts or 64} MedQA prompts ({ours['prompt_tokens']} tokens) x {args.new} new, greedy, "
          f"fp32 CPU, {torch.get_num_threads()} threads | peak RSS ours {ours['peak_mb']:.0f} MB, transformers "
          f"{theirs['peak_mb']:.0f} MB = {ours['peak_mb'] / theirs['peak_mb']:.2f}x | growth over the loaded "
          f"model: ours {ours['peak_mb'] - ours['before_mb']:.0f} MB, transformers "
          f"{theirs['peak_mb'] - theirs['before_mb']:.0f} MB")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workload", choices=["grpo", "plain", "both"], default="both")
    p.add_argument("--config", help="config.json for the model shape (default: the ~40M Qwen3-shaped model)")
    p.add_argument("--layers", type=int, help="override the number of layers (e.g. a few layers of a 7B on CPU)")
    p.add_argument("--prompts", type=int, help="override the number of prompts")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    p.add_argument("--skip-transformers", action="store_true")
    p.add_argument("--repeats", type=int, default=3, help="alternating rounds of ours / transformers (median)")
    p.add_argument("--memory", action="store_true", help="peak RSS of ours vs transformers (see above)")
    p.add_argument("--model", default=os.path.join(ROOT, ".cache", "smollm2-135m-instruct"), help="--memory: checkpoint")
    p.add_argument("--new", type=int, default=256, help="--memory: new tokens per prompt")
    p.add_argument("--memory-child", choices=["ours", "transformers"], help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.memory_child:
        return memory_child(args.memory_child, args.model, args.prompts, args.new)
    if args.memory:
        return memory_main(args)
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    cfg = M.ModelConfig.from_file(args.config) if args.config else bench_config()
    if args.layers:
        cfg.num_hidden_layers = args.layers
    cfg.raw.pop("eos_token_id", None)
    torch.manual_seed(0)
    net = M.Transformer.from_config(cfg, dtype=dtype, device=device).eval()
    for prm in net.parameters():
        torch.nn.init.normal_(prm, std=0.02) if prm.dim() > 1 else torch.nn.init.ones_(prm)
    print(f"model: {cfg.model_type} {net.num_parameters() / 1e6:.1f}M params, {args.device} {args.dtype}, "
          f"{torch.get_num_threads()} threads")
    tmp = tempfile.mkdtemp()
    if not args.skip_transformers:
        net.save_pretrained(os.path.join(tmp, "m"))
    for name in (["grpo", "plain"] if args.workload == "both" else [args.workload]):
        w = dict(WORKLOADS[name])
        if args.prompts:
            w["prompts"] = args.prompts
        g = torch.Generator().manual_seed(1)
        prompts = torch.randint(0, cfg.vocab_size, (w["prompts"], w["prompt_len"]), generator=g).tolist()
        # This machine's speed drifts: alternate the two, several rounds, and compare medians.
        runs, theirs = [], []
        for _ in range(args.repeats):
            runs.append(run_ours(net, prompts, w, device))
            if not args.skip_transformers:
                theirs.append(run_transformers(os.path.join(tmp, "m"), prompts, w, device, dtype))
        ours, stats = sorted(runs, key=lambda r: r[0])[len(runs) // 2]
        step = stats["decode_s"] / max(stats["decode_steps"], 1)
        cpu = device.type == "cpu"
        rows = min(w["prompts"] * w["n"], MAX_BATCH)
        roof = matmul_roofline(net, rows, device, packed=cpu)
        line = (f"{name}: {w['prompts']} prompts x {w['prompt_len']} tokens, n={w['n']}, {w['new']} new | ours "
                f"{ours:.0f} tok/s (prefill {stats['prefill_s']:.2f}s, decode step {step * 1e3:.1f} ms; "
                f"matmuls alone {roof * 1e3:.1f} ms = {step / roof:.2f}x roofline")
        if cpu:  # transformers runs its matmuls through F.linear (MKL)
            line += f"; with F.linear {matmul_roofline(net, rows, device, packed=False) * 1e3:.1f} ms"
        bound, wgb, kvgb, gbs = memory_bound(net, w, device)
        line += (f"; memory bound {bound * 1e3:.1f} ms = {wgb:.2f} GB weights + {kvgb:.2f} GB K/V at {gbs:.0f} GB/s, "
                 f"step = {step / bound:.2f}x it)")
        if theirs:
            theirs = sorted(theirs)[len(theirs) // 2]
            line += f" | transformers {theirs:.0f} tok/s | {ours / theirs:.2f}x"
        print(line + f"  [median of {args.repeats}]", flush=True)


if __name__ == "__main__":
    main()
