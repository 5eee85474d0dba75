"""Run every GPU-only path of the project once, each against its CPU/plain reference, in minutes.

    .venv/bin/python bench/gpu_check.py                 # on the GPU machine (under 8 minutes on one H100)
    .venv/bin/python bench/gpu_check.py --device=cpu    # the CPU half: what can be checked without a GPU
    .venv/bin/python bench/gpu_check.py --only=triton,cuda_graphs --quick

Needs torch, triton and tokenizers; transformers for bench_sample's baseline (else its reference is model.greedy
and it prints no ratio); flash-attn (requirements-gpu.txt) for the flash_attn path, trl for bench_grpo's ratio.

Prints exactly one line per path on stdout (everything else goes to stderr or is swallowed):

    <path>: ran|skipped|FAILED, matched reference: yes|no (<max abs diff or why not>), <figure or reason>

A path is FAILED when it raised or did not match its reference; the exit code is 1 if any path FAILED.
Paths (tiny random models, nothing downloaded):
  triton         paged_attn.py's Triton store_kv and paged decode vs their torch references (on CPU: in a
                 subprocess under TRITON_INTERPRET=1); figure: decode time of both at a Qwen2.5-7B layout
  flash_attn     flash-attn in attention.py (packed varlen forward, the GRPO prefix tree, causal) vs SDPA, and
                 flash paged decode vs the torch reference; GPU only
  sampler_paged  Sampler's paged decode (Triton on GPU, the torch reference on CPU), greedy, vs model.greedy
  cuda_graphs    Sampler with CUDA graphs vs without: identical greedy tokens; decode tok/s of each; GPU only
  fsdp_bf16      sft.train_step under training.fsdp_wrap (bf16 on GPU, fp32 + gloo on CPU), world of one, vs
                 the same steps on the plain model: loss finite and decreasing; peak memory
  bench_sample   bench/sample.py at a small shape: ours vs transformers tok/s (and greedy vs transformers')
  bench_grpo     bench/grpo.py's run_ours on a toy checkpoint: step times, sampler-vs-trainer logprobs
                 (and TRL's ratio when trl is installed)
"""
import argparse
import contextlib
import copy
import importlib.util
import io
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import namedtuple
from types import SimpleNamespace as NS

import torch
import torch.distributed as dist

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # before bench/: `import sample` must be the sampler, not bench/sample.py
import attention as A  # noqa: E402
import model as M  # noqa: E402
import paged_attn  # noqa: E402
import sft  # noqa: E402
import training as T  # noqa: E402
from sample import Sampler, SamplingParams  # noqa: E402

Result = namedtuple("Result", "ok diff figure")  # diff: "max abs diff ..." as printed


class Skip(Exception):
    pass


# ----------------------------------------------------------------------------------------------- helpers

def tiny_config(vocab=300, layers=2):
    """tests/test_sample.py's tiny Qwen2 (GQA, qkv bias, untied head)."""
    return M.ModelConfig(model_type="qwen2", vocab_size=vocab, hidden_size=64, intermediate_size=96,
                         num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                         qkv_bias=True, tie_word_embeddings=False, max_position_embeddings=1024, rope_theta=1e4)


def small_config(vocab=32000):
    """bench/sample.py's ~40M Qwen3 shape."""
    return M.ModelConfig(model_type="qwen3", vocab_size=vocab, hidden_size=512, intermediate_size=1536,
                         num_hidden_layers=8, num_attention_heads=8, num_key_value_heads=4, head_dim=64,
                         qk_norm=True, tie_word_embeddings=True, max_position_embeddings=4096, rope_theta=1e6)


def build(cfg, seed=0, peaked=True, dtype=torch.float32, device="cpu"):
    """peaked: large weights, so greedy near-ties are impossible in practice (tests/test_sample.py); else a
    near-uniform start (std 0.02 matrices, as trained models' init) for training."""
    torch.manual_seed(seed)
    net = M.Transformer.from_config(cfg)
    for p in net.parameters():
        if peaked:
            torch.nn.init.normal_(p, std=0.3 if p.dim() > 1 else 0.1)
        elif p.dim() > 1:
            torch.nn.init.normal_(p, std=0.02)
    return net.to(device=device, dtype=dtype).eval()


def random_prompts(n, vocab, lengths, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, vocab, (lengths[i % len(lengths)],), generator=g).tolist() for i in range(n)]


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device, iters=3):
    """Seconds per call of fn, after one warm-up call."""
    fn()
    sync(device)
    t0 = time.perf_counter()
    for _ in range(iters):
        fn()
    sync(device)
    return (time.perf_counter() - t0) / iters


def decode_rate(sampler):
    s = sampler.stats
    return s["decode_tokens"] / max(s["decode_s"], 1e-9)


def full_logprobs(net, prompt, completion):
    """log_softmax of the plain forward at each completion token (the untempered distribution)."""
    with torch.no_grad():
        logits = net(torch.tensor([prompt + completion]))[0, len(prompt) - 1:-1].float()
    return torch.log_softmax(logits, -1).gather(1, torch.tensor(completion)[:, None])[:, 0]


def load_bench(name):
    """bench/<name>.py as a module of its own (bench/ is no package, and bench/sample.py shadows sample.py)."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", os.path.join(ROOT, "bench", f"{name}.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def init_world(device):
    """A process group of one on the requested device (training.setup_dist picks CUDA whenever it is there)."""
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", store=dist.HashStore(), rank=0,
                            world_size=1)
    return T.DistEnv(0, 1, 0, device)


@contextlib.contextmanager
def process_group(device):
    if dist.is_initialized():  # already inside one (e.g. a test's): use it, leave it
        yield T.DistEnv(dist.get_rank(), dist.get_world_size(), 0, device)
        return
    env = init_world(device)
    try:
        yield env
    finally:
        T.teardown_dist()


@contextlib.contextmanager
def no_flash():
    """attention.py's dense attention without flash-attn: SDPA (a mask, or _varlen_sdpa for the prefix tree)."""
    use = A._use_flash
    A._use_flash = lambda q: False
    try:
        yield
    finally:
        A._use_flash = use


# ------------------------------------------------------------------------------------------- 1. triton

def paged_case(lens, n_kv, g, d, bs, dtype, device, seed=0):
    """Random K/V of sequences `lens` for a zeroed cache with shuffled blocks (tables padded with block 0, as
    the sampler's), and one query per sequence."""
    gen = torch.Generator().manual_seed(seed)
    need = [-(-n // bs) for n in lens]
    free = iter(torch.randperm(sum(need) + 2, generator=gen).tolist())
    tables = torch.zeros(len(lens), max(need) + 1, dtype=torch.int32)
    slots = []
    for i, n in enumerate(lens):
        blocks = [next(free) for _ in range(need[i])]
        tables[i, :len(blocks)] = torch.tensor(blocks, dtype=torch.int32)
        slots += [blocks[p // bs] * bs + p % bs for p in range(n)]
    k, v = (torch.randn(len(slots), n_kv, d, generator=gen).to(dtype) for _ in range(2))
    q = torch.randn(len(lens), n_kv * g, d, generator=gen).to(dtype)
    cache = torch.zeros(sum(need) + 2, bs, n_kv, d, dtype=dtype)
    on = lambda x: x.to(device)
    return NS(q=on(q), k=on(k), v=on(v), slots=on(torch.tensor(slots)), tables=on(tables), cache=on(cache),
              lens=on(torch.tensor(lens, dtype=torch.int32)), scale=d ** -0.5)


# (lens, n_kv, g, d, block_size, dtype, use_dot, num_splits, tol); None: the kernel's own default
TRITON_CPU = [([1, 16, 37, 0], 2, 2, 32, 16, torch.float32, None, None, 5e-5),
              ([1, 16, 53, 300], 4, 7, 128, 16, torch.float32, None, None, 5e-5),  # Qwen2.5-7B heads: G 7 -> 8
              ([64, 9], 1, 4, 32, 32, torch.float32, True, 3, 5e-5)]
TRITON_GPU = [([1, 16, 32, 53, 37, 300], 4, 7, 128, 16, torch.float32, None, None, 5e-5),  # Qwen2.5-7B heads
              ([2000, 700], 2, 4, 64, 16, torch.float32, None, None, 5e-5),  # few long: default splits > 1
              ([1, 16, 53, 300], 2, 2, 32, 16, torch.float32, False, None, 5e-5),
              ([1, 16, 32, 53, 37, 300], 4, 7, 128, 32, torch.bfloat16, None, None, 2e-2),
              ([1000, 33, 0], 4, 7, 128, 16, torch.bfloat16, None, 4, 2e-2)]


def check_triton(a):
    if not paged_attn.HAVE_TRITON:
        raise Skip("triton not installed")
    if a.device.type == "cpu" and not paged_attn.INTERPRET:
        return interpreted_triton(a)
    worst, ok = 0.0, True
    for lens, n_kv, g, d, bs, dtype, use_dot, splits, tol in (TRITON_GPU if a.device.type == "cuda" else TRITON_CPU):
        c = paged_case(lens, n_kv, g, d, bs, dtype, a.device)
        kt, vt, kr, vr = (c.cache.clone() for _ in range(4))
        paged_attn.store_kv_triton(c.k, c.v, kt, vt, c.slots)
        paged_attn.store_kv_torch(c.k, c.v, kr, vr, c.slots)
        out = paged_attn.paged_decode_attention_triton(c.q, kt, vt, c.tables, c.lens, c.scale, use_dot=use_dot,
                                                       num_splits=splits)
        ref = paged_attn.paged_decode_attention_torch(c.q, kr, vr, c.tables, c.lens, c.scale)
        diff = (out.float() - ref.float()).abs().max().item()
        ok = ok and torch.equal(kt, kr) and torch.equal(vt, vr) and diff <= tol  # the store is bit-exact
        worst = max(worst, diff)
    figure = f"{len(TRITON_CPU)} cases under TRITON_INTERPRET=1"
    if a.device.type == "cuda":
        b, n = (8, 512) if a.quick else (64, 2048)
        c = paged_case([n] * b, 4, 7, 128, 16, torch.bfloat16, a.device)
        vc = c.cache.clone()
        paged_attn.store_kv_torch(c.k, c.v, c.cache, vc, c.slots)
        args = (c.q, c.cache, vc, c.tables, c.lens, c.scale)
        tt = timed(lambda: paged_attn.paged_decode_attention_triton(*args), a.device, 10)
        tr = timed(lambda: paged_attn.paged_decode_attention_torch(*args), a.device, 10)
        figure = (f"{len(TRITON_GPU)} cases; decode {b} seqs x {n} tokens bf16 (28/4 heads, d 128): triton "
                  f"{tt * 1e3:.3f} ms, torch reference {tr * 1e3:.3f} ms")
    return Result(ok, f"max abs diff {worst:.1e}", figure)


def interpreted_triton(a):
    """The kernels on CPU: this script again, in a subprocess that sets TRITON_INTERPRET=1 before triton is
    imported (set here, it would send the sampler's CPU path through the slow interpreter too)."""
    env = dict(os.environ, TRITON_INTERPRET="1")
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--device=cpu", "--interpreted-child"],
                          env=env, capture_output=True, text=True, timeout=max(a.left(), 1))
    if proc.returncode != 0:
        raise RuntimeError(f"interpreter subprocess: {(proc.stderr.strip().splitlines() or ['exit 1'])[-1]}")
    return Result(*json.loads(proc.stdout.strip().splitlines()[-1]))


# --------------------------------------------------------------------------------------- 2. flash_attn

def check_flash_attn(a):
    if a.device.type != "cuda":
        raise Skip("needs a GPU")
    if A.flash_attn_varlen_func is None:
        raise Skip("flash_attn not installed")
    dev, worst, ok = a.device, 0.0, True

    def compare(fn, tol):  # fn() with flash (attention.py's default in bf16 on CUDA) vs with SDPA
        nonlocal worst, ok
        with torch.no_grad():
            out = fn().float()
            with no_flash():
                ref = fn().float()
        diff = (out - ref).abs().max().item()
        worst, ok = max(worst, diff), ok and diff <= tol * max(1.0, ref.abs().max().item())

    # the attention alone, unit-normal q/k/v: a wrong mask or boundary moves outputs by O(1)
    seg = torch.tensor([[1] * 20 + [2] * 50 + [3] * 26, [1] * 60 + [2] * 30 + [0] * 6], device=dev)  # packed + pad
    tree = torch.tensor([[1] * 40 + [2] * 30 + [3] * 26], device=dev)  # GRPO: a prompt, then 2 completions
    prefix = torch.ones_like(tree)
    q, k, v = (torch.randn(2, 96, h, 64, device=dev, dtype=torch.bfloat16) for h in (8, 2, 2))
    compare(lambda: A.dense_attention(seg)(q, k, v, 0), 2e-2)  # SFT packing: flash_attn_varlen_func
    compare(lambda: A.dense_attention(tree, prefix)(q[:1], k[:1], v[:1], 0), 2e-2)  # the prefix tree
    compare(lambda: A.dense_attention()(q, k, v, 0), 2e-2)  # unpacked, causal: flash_attn_func
    # the model's packed forward end to end (positions restart per document)
    net = build(tiny_config(vocab=1000) if a.quick else small_config(vocab=1000), peaked=False,
                dtype=torch.bfloat16, device=dev)
    ids = torch.randint(0, 1000, (2, 96), device=dev)
    pos = torch.cat([torch.arange(n) for n in (20, 50, 26, 60, 30, 6)]).view(2, 96).to(dev)
    compare(lambda: net(ids, position_ids=pos, segment_ids=seg), 2e-2)
    if paged_attn.HAVE_FLASH_ATTN:  # flash paged decode (block_size % 256 == 0) vs the torch reference
        c = paged_case([1, 256, 700, 37], 4, 7, 128, 256, torch.bfloat16, dev)
        vc = c.cache.clone()
        paged_attn.store_kv_torch(c.k, c.v, c.cache, vc, c.slots)
        args = (c.q, c.cache, vc, c.tables, c.lens, c.scale)

        def decode():  # inside no_flash() the torch reference
            flash = A._use_flash(c.q)
            return (paged_attn._flash_decode if flash else paged_attn.paged_decode_attention_torch)(*args)
        compare(decode, 2e-2)
    b, t = (2, 512) if a.quick else (4, 2048)
    ids = torch.randint(0, 1000, (b, t), device=dev)
    docs = (torch.arange(t, device=dev) // (t // 8) + 1).expand(b, t)  # 8 documents per row
    fwd = lambda: net(ids, segment_ids=docs)
    with torch.no_grad():
        tf = timed(fwd, dev)
        with no_flash():
            ts = timed(fwd, dev)
    return Result(ok, f"max abs diff {worst:.1e} in bf16 outputs",
                  f"packed forward {b}x{t} tokens, 8 docs/row: flash {tf * 1e3:.1f} ms, SDPA {ts * 1e3:.1f} ms")


# ------------------------------------------------------------------------------------ 3. sampler_paged

def check_sampler_paged(a):
    ref = build(tiny_config())  # CPU fp32: the plain forward
    net = copy.deepcopy(ref).to(a.device)
    prompts = random_prompts(6, 300, [3, 11, 17, 40, 16, 5])
    new = 16
    sampler = Sampler(net, block_size=16, prefix_attention=False, cuda_graphs=False)
    outs = sampler.generate(prompts, SamplingParams(max_new_tokens=new, temperature=0))
    ok, worst = True, 0.0
    for p, (c,) in zip(prompts, outs):
        ok = ok and p + c.token_ids == M.greedy(ref, p, new)
        worst = max(worst, (torch.tensor(c.logprobs) - full_logprobs(ref, p, c.token_ids)).abs().max().item())
    backend = paged_attn.backend(torch.zeros(1, device=a.device))
    return Result(ok and worst < 1e-4, f"max abs diff {worst:.1e} in logprobs, tokens {'equal' if ok else 'DIFFER'}",
                  f"decode {decode_rate(sampler):.0f} tok/s ({len(prompts)} rows, fp32, {backend} paged attention)")


# -------------------------------------------------------------------------------------- 4. cuda_graphs

def check_cuda_graphs(a):
    if a.device.type != "cuda":
        raise Skip("needs a GPU")
    net = build(tiny_config(layers=4), device=a.device)
    rows, new = (8, 16) if a.quick else (32, 64)
    prompts = random_prompts(rows, 300, [3, 11, 17, 40, 16, 5, 90, 33])
    params = SamplingParams(max_new_tokens=new, temperature=0)
    graphs, eager = Sampler(net, block_size=16), Sampler(net, block_size=16, cuda_graphs=False)
    for _ in range(2):  # the first call compiles and captures; the second is timed
        for s in (graphs, eager):
            s.stats = {k: 0 for k in s.stats}
        go, eo = graphs.generate(prompts, params), eager.generate(prompts, params)
        same = [c.token_ids for g in go for c in g] == [c.token_ids for g in eo for c in g]
        worst = max(max(abs(x - y) for x, y in zip(cg.logprobs, ce.logprobs))
                    for g, e in zip(go, eo) for cg, ce in zip(g, e))
        if not same:
            break
    captured = bool(graphs.cuda_graphs and graphs.kv_cache.graphs and graphs.kv_cache.graphs.graphs)
    return Result(same and captured and worst < 1e-4,
                  f"max abs diff {worst:.1e} in logprobs, tokens {'identical' if same else 'DIFFER'}"
                  + ("" if captured else ", NO graph captured"),
                  f"decode with graphs {decode_rate(graphs):.0f} tok/s, without {decode_rate(eager):.0f} tok/s "
                  f"({rows} rows x {new} tokens, fp32)")


# ---------------------------------------------------------------------------------------- 5. fsdp_bf16

def sft_examples(n, vocab, length, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        m = length // 2 + i * length // (2 * n)
        out.append({"id": i, "ids": torch.randint(0, vocab, (m,), generator=g).tolist(), "start": m // 3})
    return out


def train_losses(lm, examples, cfg, env, steps):
    opt = torch.optim.AdamW(lm.parameters(), lr=cfg.lr)
    losses = [sft.train_step(lm, opt, examples, cfg, env)[0] for _ in range(steps)]
    return losses


def check_fsdp_bf16(a):
    cuda = a.device.type == "cuda"
    big = cuda and not a.quick
    mcfg = small_config() if big else tiny_config()
    examples = sft_examples(16 if big else 8, mcfg.vocab_size, 512 if big else 48)
    cfg = NS(micro_batch_size=4, max_len=512 if big else 48, grad_clip=1.0, lr=1e-3)
    steps = 5 if big else 4
    net = build(mcfg, peaked=False, device=a.device).train()
    plain = sft.SFTModel(copy.deepcopy(net))
    with process_group(a.device) as env:
        ref = train_losses(plain, examples, cfg, env, steps)  # fp32, no FSDP
        del plain
        if cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(a.device)
        lm = sft.SFTModel(net)
        T.fsdp_wrap(lm, net.model.layers, a.device, bf16=cuda)
        t0 = time.perf_counter()
        got = train_losses(lm, examples, cfg, env, steps)
        sync(a.device)
        step_s = (time.perf_counter() - t0) / steps
    diff = max(abs(x - y) for x, y in zip(got, ref))
    tol = 0.01 * abs(ref[0]) if cuda else 1e-4  # bf16 compute vs fp32; fp32 FSDP vs plain: rounding
    finite = all(x == x and abs(x) != float("inf") for x in got)
    ok = finite and got[-1] < got[0] and diff <= tol
    if cuda:
        memory = f"peak {torch.cuda.max_memory_allocated(a.device) / 2**20:.0f} MiB"
    else:
        import resource
        memory = f"process peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB"
    return Result(ok, f"max abs diff {diff:.1e} in loss vs plain fp32",
                  f"loss {got[0]:.4f} -> {got[-1]:.4f} over {steps} steps ({'bf16' if cuda else 'fp32'}, "
                  f"{net.num_parameters() / 1e6:.2f}M params), {step_s * 1e3:.0f} ms/step, {memory}")


# ------------------------------------------------------------------------------------- 6. bench_sample

def check_bench_sample(a):
    bs = load_bench("sample")
    try:
        import transformers  # noqa: F401
        have_hf = True
    except ImportError:
        have_hf = False
    # the reference: transformers' greedy on the same checkpoint (model.greedy when transformers is missing)
    tmp = tempfile.mkdtemp(prefix="gpu-check-")
    ref = build(tiny_config(vocab=512))  # CPU fp32
    ref.save_pretrained(os.path.join(tmp, "ref"))
    prompts = random_prompts(2, 512, [12, 7])
    outs = Sampler(copy.deepcopy(ref).to(a.device)).generate(prompts, SamplingParams(max_new_tokens=8, temperature=0))
    ok, worst = True, 0.0
    for p, (c,) in zip(prompts, outs):
        ref_ids, ref_lp = hf_greedy(os.path.join(tmp, "ref"), p, 8, a.device) if have_hf else \
            (M.greedy(ref, p, 8)[len(p):], full_logprobs(ref, p, c.token_ids))
        ok = ok and c.token_ids == ref_ids
        worst = max(worst, (torch.tensor(c.logprobs) - ref_lp).abs().max().item())
    # the bench: its model and workload shape, scaled down (bf16 on GPU, as its GPU example)
    big = a.device.type == "cuda" and not a.quick
    dtype = torch.bfloat16 if a.device.type == "cuda" else torch.float32
    net = build(bs.bench_config() if big else tiny_config(vocab=512), peaked=False, dtype=dtype, device=a.device)
    net.save_pretrained(os.path.join(tmp, "bench"))
    w = dict(prompts=16, prompt_len=128, n=4, new=64) if big else dict(prompts=2, prompt_len=16, n=2, new=8)
    bench_prompts = random_prompts(w["prompts"], net.config.vocab_size, [w["prompt_len"]], seed=2)
    ours, _ = bs.run_ours(net, bench_prompts, w, a.device)
    shape = f"{w['prompts']} prompts x {w['prompt_len']} tokens, n={w['n']}, {w['new']} new, {str(dtype)[6:]}"
    if have_hf:
        theirs = bs.run_transformers(os.path.join(tmp, "bench"), bench_prompts, w, a.device, dtype)
        figure = f"ours {ours:.0f} tok/s | transformers {theirs:.0f} tok/s | {ours / theirs:.2f}x ({shape})"
    else:
        figure = f"ours {ours:.0f} tok/s | transformers not installed: no ratio ({shape})"
    return Result(ok and worst < 1e-4, f"max abs diff {worst:.1e} in greedy logprobs vs "
                  f"{'transformers' if have_hf else 'model.greedy'}, tokens {'equal' if ok else 'DIFFER'}", figure)


def hf_greedy(path, prompt, new, device):
    from transformers import AutoModelForCausalLM
    hf = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).to(device).eval()
    ids = torch.tensor([prompt], device=device)
    with torch.no_grad():
        out = hf.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=new,
                          min_new_tokens=new, pad_token_id=0, output_logits=True, return_dict_in_generate=True)
    tokens = out.sequences[0, len(prompt):].cpu()
    logits = torch.stack(out.logits)[:, 0].float().cpu()
    return tokens.tolist(), torch.log_softmax(logits, -1).gather(1, tokens[:, None])[:, 0]


# --------------------------------------------------------------------------------------- 7. bench_grpo

TOY_WORDS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "[UNK]"] + [f"w{i}" for i in range(28)]
CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def toy_checkpoint(out, cfg):
    """A random model with a word-level tokenizer in HF layout (tests/test_grpo.py's toy), and MCQ records."""
    from tokenizers import Tokenizer as HFTok, models, pre_tokenizers
    tk = HFTok(models.WordLevel({w: i for i, w in enumerate(TOY_WORDS)}, unk_token="[UNK]"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tk.add_special_tokens(TOY_WORDS[:4])
    os.makedirs(out)
    tk.save(os.path.join(out, "tokenizer.json"))
    with open(os.path.join(out, "tokenizer_config.json"), "w") as f:
        json.dump({"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>", "chat_template": CHATML}, f)
    net = build(cfg, peaked=False)
    net.config.eos_token_id = 2
    net.save_pretrained(out, tokenizer_dir=out)
    return [{"id": str(i), "source": "toy", "split": "train", "question": f"w{i} w{i + 1}",
             "options": {"A": "w1", "B": "w2"}, "answer": "A", "difficulty": "easy", "meta": {}} for i in range(64)]


def check_bench_grpo(a):
    bg = load_bench("grpo")
    big = a.device.type == "cuda" and not a.quick
    cfg = small_config(vocab=len(TOY_WORDS)) if big else tiny_config(vocab=len(TOY_WORDS))
    args = NS(model=os.path.join(tempfile.mkdtemp(prefix="gpu-check-"), "toy"), prompts=8 if big else 2,
              k=8 if big else 4, max_new_tokens=64 if big else 8, steps=3 if big else 2)
    recs = toy_checkpoint(args.model, cfg)[:args.prompts * args.steps]
    mismatch, update = [], bg.grpo.update

    def spy(*x, **kw):  # the mean |sampler - trainer| logprob per completion token, which update() sums
        sums, norm = update(*x, **kw)
        mismatch.append(sums["mismatch"] / max(sums["tokens"], 1))
        return sums, norm

    bg.grpo.update, bg.setup_dist = spy, lambda: init_world(a.device)  # run_ours tears it down
    try:
        rows = bg.run_ours(args, recs)
    finally:
        bg.grpo.update = update
        if dist.is_initialized():  # run_ours failed before its teardown_dist
            T.teardown_dist()
    warm = rows[1:] or rows
    med = {k: sorted(r[k] for r in warm)[len(warm) // 2] for k in ("rollout", "sync", "update", "tokens")}
    ours = med["rollout"] + med["sync"] + med["update"]
    figure = (f"ours step {ours:.2f} s (rollout {med['rollout']:.2f}, sync {med['sync']:.3f}, update "
              f"{med['update']:.2f}), {med['tokens']:.0f} tokens; {args.prompts} prompts x k={args.k}, "
              f"<= {args.max_new_tokens} new")
    try:
        import trl  # noqa: F401  (requirements-bench.txt)
        trl_rows = bg.run_trl(args, recs)[1:] or None
        theirs = sorted(r["rollout"] + r["update"] for r in trl_rows)[len(trl_rows) // 2]
        figure += f" | TRL step {theirs:.2f} s | TRL/ours {theirs / ours:.2f}x"
    except ImportError:
        figure += " | TRL not installed: no ratio"
    except Exception as e:  # the baseline's failure is not ours: the path still counts as run
        figure += f" | TRL failed: {type(e).__name__}: {str(e).splitlines()[0][:100] if str(e) else ''}"
    tol = 5e-2 if a.device.type == "cuda" else 1e-4  # bf16 sampler and trainer on GPU, fp32 on CPU
    return Result(bool(mismatch) and max(mismatch) <= tol,
                  f"mean abs diff {max(mismatch):.1e} in logprobs, sampler vs trainer", figure)


# ------------------------------------------------------------------------------------------------- main

CHECKS = {"triton": check_triton, "flash_attn": check_flash_attn, "sampler_paged": check_sampler_paged,
          "cuda_graphs": check_cuda_graphs, "fsdp_bf16": check_fsdp_bf16, "bench_sample": check_bench_sample,
          "bench_grpo": check_bench_grpo}


@contextlib.contextmanager
def deadline(seconds):
    def alarm(*_):
        raise TimeoutError(f"over its {seconds} s")
    old = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(max(1, int(seconds)))
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def run_one(name, a):
    """One path -> its line. Its own stdout (the benches print) is swallowed: stdout holds only the lines."""
    try:
        if a.left() < 1:
            raise TimeoutError("the time budget was spent before it started")
        with deadline(min(a.timeout, a.left())), contextlib.redirect_stdout(io.StringIO()):
            r = CHECKS[name](a)
        status, matched, diff, figure = "ran" if r.ok else "FAILED", "yes" if r.ok else "no", r.diff, r.figure
    except Skip as e:
        status, matched, diff, figure = "skipped", "no", "not run", f"skipped: {e}"
    except Exception as e:
        msg = (str(e).strip().splitlines() or [""])[0][:200]
        status, matched, diff, figure = "FAILED", "no", "not run", f"error: {type(e).__name__}: {msg}"
    finally:
        if a.device.type == "cuda":
            torch.cuda.empty_cache()
    return f"{name}: {status}, matched reference: {matched} ({diff}), {figure}"


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                   help="cuda (default when there is a GPU) or cpu (the CPU half: GPU-only paths say skipped)")
    p.add_argument("--only", default=",".join(CHECKS), help=f"comma list of paths (default: all): {','.join(CHECKS)}")
    p.add_argument("--quick", action="store_true", help="the CPU shapes on the GPU too (seconds, not minutes)")
    p.add_argument("--timeout", type=int, default=150, help="seconds per path before it is FAILED (default 150)")
    p.add_argument("--budget", type=int, default=420, help="seconds for all paths; later ones FAIL (default 420)")
    p.add_argument("--interpreted-child", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    a.only = [x.strip() for x in a.only.split(",") if x.strip()]
    unknown = [x for x in a.only if x not in CHECKS]
    if unknown:
        p.error(f"--only: unknown path(s) {', '.join(unknown)} (paths: {', '.join(CHECKS)})")
    if a.device not in ("cuda", "cpu") or (a.device == "cuda" and not torch.cuda.is_available()):
        p.error(f"--device={a.device}: expected cpu, or cuda on a machine with a GPU")
    a.device = torch.device(a.device)
    return a


def main(argv=None):
    a = parse(argv)
    if a.interpreted_child:  # see interpreted_triton
        assert paged_attn.INTERPRET, "run with TRITON_INTERPRET=1"
        print(json.dumps(check_triton(a)))
        return 0
    end = time.monotonic() + a.budget
    a.left = lambda: end - time.monotonic()
    where = torch.cuda.get_device_name(a.device) if a.device.type == "cuda" else "CPU"
    print(f"gpu_check: {where}, torch {torch.__version__}, triton {paged_attn.HAVE_TRITON}, flash_attn "
          f"{A.flash_attn_varlen_func is not None}", file=sys.stderr)
    failed = False
    for name in [n for n in CHECKS if n in a.only]:
        line = run_one(name, a)
        failed |= line.startswith(f"{name}: FAILED")
        print(line, flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
