"""SFT training throughput: tokens/s and the step's achieved FLOP/s against this machine's matmul rate,
both measured in the same run (on a GPU, also against the chip's bf16 peak: MFU).

    .venv/bin/python bench/train.py                                  # CPU: the ~40M and SmolLM2-135M shapes, fp32
    python bench/train.py --models qwen2.5-1.5b --max_len 4096 --batch 16 --micro 8   # GPU: bf16, MFU

Each step is sft.train_step (FSDP2 over a world of one, AdamW, clipping) on random tokens packed as the SFT
data is: documents of 470-1024 tokens (the HuatuoGPT-o1 chains under SmolLM2's tokenizer: median 669),
loss on their last 75%. Model FLOPs = 3 x the forward's (backward = 2 x forward): 2 x MACs of every linear
layer per token, of the head on loss tokens only (sft.py computes no other logits), and of causal
attention within each document. Recomputation by activation checkpointing is not counted (the MFU
convention), so --grad_ckpt lowers the figure by the recompute it costs.
"""
import argparse
import os
import random
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repo root
import model as M  # noqa: E402
import sft  # noqa: E402
import training as T  # noqa: E402

SHAPES = {
    # the ~40M Qwen3 shape of bench/sample.py
    "40m": dict(model_type="qwen3", vocab_size=32000, hidden_size=512, intermediate_size=1536, num_hidden_layers=8,
                num_attention_heads=8, num_key_value_heads=4, head_dim=64, qk_norm=True),
    "smollm2-135m": dict(model_type="llama", vocab_size=49152, hidden_size=576, intermediate_size=1536,
                         num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3, head_dim=64),
    "qwen2.5-1.5b": dict(model_type="qwen2", vocab_size=151936, hidden_size=1536, intermediate_size=8960,
                         num_hidden_layers=28, num_attention_heads=12, num_key_value_heads=2, head_dim=128,
                         qkv_bias=True),
}
PEAK_BF16 = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "A10G": 70e12, "4090": 165e12}


def make_config(name):
    return M.ModelConfig(**SHAPES[name], tie_word_embeddings=True, max_position_embeddings=4096,
                         rope_theta=1e6, raw={"torch_dtype": "float32"})


def documents(n, vocab, max_len, seed):
    rng = random.Random(seed)
    out = []
    for i in range(n):
        length = rng.randint(min(470, max_len), min(1024, max_len + 1))
        out.append({"id": i, "ids": [rng.randrange(vocab) for _ in range(length)], "start": length // 4})
    return out


def step_flops(cfg, examples):
    """Model FLOPs of one training step on these examples (see the module docstring)."""
    d, q, kv = cfg.hidden_size, cfg.num_attention_heads * cfg.head_dim, cfg.num_key_value_heads * cfg.head_dim
    linear = cfg.num_hidden_layers * (d * q + 2 * d * kv + q * d + 3 * d * cfg.intermediate_size)
    tokens = sum(len(e["ids"]) - 1 for e in examples)
    loss_tokens = sum(sft.n_loss_tokens(e) for e in examples)
    # QK^T and AV over the causal triangle of each document
    attn = cfg.num_hidden_layers * sum(2 * q * (len(e["ids"]) - 1) * len(e["ids"]) / 2 for e in examples)
    forward_macs = linear * tokens + cfg.vocab_size * d * loss_tokens + attn
    return 3 * 2 * forward_macs


def matmul_rate(device, dtype, n, repeats=5, inner=10):
    """Best FLOP/s of an n x n x n matmul (the machine's own roofline for dense math)."""
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    best = float("inf")
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        for _ in range(inner):
            a @ b
        sync(device)
        best = min(best, (time.perf_counter() - t0) / inner)
    return 2 * n ** 3 / best


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def bench_model(name, args, env, bf16):
    cfg = make_config(name)
    torch.manual_seed(0)
    net = M.Transformer.from_config(cfg)
    net.grad_checkpointing = args.grad_ckpt
    lm = sft.SFTModel(net)
    T.fsdp_wrap(lm, net.model.layers, env.device, bf16=bf16)
    optimizer = torch.optim.AdamW(lm.parameters(), lr=1e-5)
    conf = sft.Config(micro_batch_size=args.micro, max_len=args.max_len, grad_clip=1.0)
    docs = documents(args.batch * (args.steps + args.warmup), cfg.vocab_size, args.max_len, seed=0)
    times, flops, tokens = [], [], []
    for s in range(args.steps + args.warmup):
        batch = docs[s * args.batch:(s + 1) * args.batch]
        sync(env.device)
        t0 = time.perf_counter()
        sft.train_step(lm, optimizer, batch, conf, env)
        sync(env.device)
        if s >= args.warmup:
            times.append(time.perf_counter() - t0)
            flops.append(step_flops(cfg, batch))
            tokens.append(sum(len(e["ids"]) - 1 for e in batch))
    total = sum(times)
    return net.num_parameters(), sum(tokens) / total, sum(flops) / total


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default=None, help=f"comma-separated, from {', '.join(SHAPES)} "
                    "(default: 40m,smollm2-135m on CPU, qwen2.5-1.5b on a GPU)")
    ap.add_argument("--batch", type=int, default=4, help="documents per optimizer step")
    ap.add_argument("--micro", type=int, default=2, help="documents per forward/backward")
    ap.add_argument("--max_len", type=int, default=1024, help="tokens per packed row")
    ap.add_argument("--steps", type=int, default=3, help="timed steps")
    ap.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    ap.add_argument("--grad_ckpt", action="store_true", help="activation checkpointing (recompute not counted)")
    args = ap.parse_args()
    env = T.setup_dist()
    cuda = env.device.type == "cuda"
    models = (args.models or ("qwen2.5-1.5b" if cuda else "40m,smollm2-135m")).split(",")
    dtype = torch.bfloat16 if cuda else torch.float32
    rate = matmul_rate(env.device, dtype, 8192 if cuda else 2048)
    peak = next((v for k, v in PEAK_BF16.items() if cuda and k in torch.cuda.get_device_name()), None)
    where = torch.cuda.get_device_name() if cuda else f"CPU, {torch.get_num_threads()} threads"
    print(f"{where}: {str(dtype).removeprefix('torch.')} matmul {rate / 1e12:.3f} TFLOP/s (measured, same run)"
          + (f", peak {peak / 1e12:.0f} TFLOP/s" if peak else ""))
    print(f"batch {args.batch} documents of 470-1024 tokens, micro-batch {args.micro}, max_len {args.max_len}, "
          f"grad_ckpt {args.grad_ckpt}, {args.steps} timed steps")
    for name in models:
        n_params, tok_s, flop_s = bench_model(name, args, env, bf16=cuda)
        after = matmul_rate(env.device, dtype, 8192 if cuda else 2048)  # the load may change during a model
        base = (rate + after) / 2
        line = (f"{name:>14} ({n_params / 1e6:.0f}M): {tok_s:8.1f} tokens/s, {flop_s / 1e12:.3f} TFLOP/s = "
                f"{flop_s / base:.2f} x matmul rate (mean of {rate / 1e12:.3f} before, {after / 1e12:.3f} after)")
        print(line + (f", MFU {flop_s / peak:.1%}" if peak else ""), flush=True)
        rate = after
    T.teardown_dist()


if __name__ == "__main__":
    main()
