"""Memory per GPU (per rank) of each phase of sft.py and grpo.py: an analytic model, checked against the peak
that 2 gloo ranks measure on CPU for two small shapes.

    .venv/bin/python bench/memory.py             # Qwen2.5-7B SFT + GRPO, Qwen3-32B GRPO on 8 x 80 GB, the presets
    .venv/bin/python bench/memory.py --measure   # + the small shapes: predicted vs measured (2 gloo ranks, CPU)

Phases: load (the sharded policy, and the sampler's copy unless --sleep), rollout (the sampler's weights, KV cache,
decode and prefill buffers, beside whatever of the trainer stays on the device) and update (fp32 shards, gradients,
AdamW's moments, the unsharded FSDP units, activations, the chunked fp32 head). The measurement is the peak RSS
of each phase of each rank (/proc/self/status VmHWM, reset per phase through /proc/self/clear_refs) less the RSS
before the model, with glibc's mmap threshold fixed so a freed tensor leaves RSS at once.
"""
import argparse
import json
import math
import os
import sys
from dataclasses import dataclass, replace

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

GB = 1e9
CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "shared", "configs")


@dataclass
class Run:
    """What sets the memory of a run: the layout and the preset's sizes (per step, over all ranks)."""
    kind: str = "grpo"          # "grpo" | "sft"
    world: int = 8
    device: str = "cuda"        # cuda: bf16 compute, fp32 master weights, fused AdamW; cpu: fp32 everywhere
    sleep: bool = False         # grpo --sleep
    prompts: int = 32           # grpo: prompts per step; k rollouts each of at most new tokens
    k: int = 8
    prompt_len: int = 300       # tokens of a prompt (a MedQA question in the chat template: 200-400)
    new: int = 2048
    micro: int = 4              # grpo: completions per micro-batch; sft: rows of max_len per micro-batch
    max_len: int = 4096         # sft: tokens per packed row
    chunk: int = 1024           # fp32 head chunk (grpo logprob_chunk; sft's is 4096)
    kv_fraction: float = 0.8
    gpu_bytes: float = 80e9
    max_prefill: int = 8192     # the sampler's max_prefill_tokens
    block: int = 256            # the sampler's KV block size (16 on CPU)


def shapes(cfg):
    """Parameter shapes from the model itself (built on the meta device): the root unit's (embedding, final norm,
    head) and one block's. A tied head is one parameter."""
    from model import Transformer
    net = Transformer.from_config(cfg, device="meta")
    root = [p.shape for n, p in net.named_parameters() if not n.startswith("model.layers.")]
    block = [p.shape for p in net.model.layers[0].parameters()]
    linears = sum(m.weight.numel() for m in net.modules() if isinstance(m, torch.nn.Linear))
    return root, block, linears


def meta_model(cfg):
    from model import Transformer
    return Transformer.from_config(cfg, device="meta")


def numel(shape):
    return math.prod(shape)


def local(shape, world):
    """Elements of one rank's FSDP2 shard: dim 0 in ceil(n / world) rows (the last ranks' padded)."""
    return -(-shape[0] // world) * numel(shape[1:])


def predict(cfg, run):
    """{phase: {term: bytes}} for one rank: each term is a buffer alive at the phase's peak."""
    root, block, linears = shapes(cfg)
    L, h, V, I = cfg.num_hidden_layers, cfg.hidden_size, cfg.vocab_size, cfg.intermediate_size
    H, KV, D = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
    w, cuda = run.world, run.device == "cuda"
    cb = 2 if cuda else 4                                      # compute / sampler / all-gather dtype bytes
    R, B = sum(map(numel, root)), sum(map(numel, block))       # unsharded root unit, one block
    P = R + L * B
    shard = 4 * (sum(local(s, w) for s in root) + L * sum(local(s, w) for s in block))  # fp32 master shards
    fixed = {"CUDA context, NCCL, allocator slack": 3e9} if cuda else {}
    if run.kind == "sft":
        tokens, chunk = run.micro * run.max_len, 4096          # SFTModel's head chunk
    else:  # the packed row: each prompt once, its completions after it
        tokens, chunk = -(-run.micro // run.k) * run.prompt_len + run.micro * run.new, run.chunk
    chunk = min(chunk, tokens)
    # backward of one micro-batch under activation checkpointing: every block's input saved; one block recomputed
    # (q, k, v, attention out, residual and norm outputs; gate, up and their product); the root unit (embedding,
    # final norm, head) unsharded from forward to the end of backward, with its unsharded gradient at the end; the
    # block being recomputed and the next one prefetched, with one block's gradient before its reduce-scatter;
    # then the larger of: the fp32 head chunk's [chunk, vocab] buffers with the head's weight gradient (grpo: logits,
    # softmax and their product for the entropy; sft: cross_entropy's log-softmax, then its gradient), or the root's
    # unsharded gradient at the end of backward
    bufs = 1 if run.kind == "sft" else 3
    backward = {"gradients (fp32 shards)": shard, "unsharded root": R * cb, "unsharded blocks (2) + gradient": 3 * B * cb,
                "activations (checkpointed)": L * tokens * h * cb + tokens * (5 * h + 2 * H * D + 2 * KV * D + 3 * I) * cb}
    head = bufs * chunk * V * 4 + V * h * cb
    backward.update({"fp32 head chunk + head gradient": head} if head > R * cb else {"root gradient": R * cb})
    # the optimizer step: gradients and both moments (fused on GPU: no temporaries; CPU's single-tensor AdamW: two
    # temporaries of the largest shard)
    step = {"gradients (fp32 shards)": shard, "AdamW moments": 2 * shard}
    if not cuda:
        step["AdamW temporaries"] = 2 * 4 * max(local(s, w) for s in root + block)
    sleeping = run.kind == "grpo" and run.sleep and cuda       # moments on the host except during the step
    resident = {"fp32 shards": shard, **fixed}
    if not sleeping:
        resident["AdamW moments"] = 2 * shard
        step.pop("AdamW moments")
    load = {"fp32 shards": shard, **fixed}
    if run.kind == "sft":
        return {"load": load, "update": _peak(resident, backward, step)}
    per_rank = run.prompts // w
    sampler = P * cb                                           # the full copy the sampler runs on
    kv_token = 2 * L * KV * D * cb
    if cuda:  # the paged cache: shared full prompt blocks, the rest per sample, at full length; within the budget
        bs = run.block
        need = per_rank * (run.prompt_len // bs + run.k * (-(-(run.prompt_len + run.new) // bs) - run.prompt_len // bs)
                           + 1) * bs * kv_token
    else:  # the CPU decode store: each prompt once, each row its own tokens, padded up to 1/8, 2 spare blocks a row
        need = (per_rank * run.prompt_len + per_rank * run.k * (run.new + 2 * run.block)) * 9 / 8 * kv_token
    prefill = min(run.max_prefill, per_rank * run.prompt_len)
    rollout = {"sampler weights": sampler, "KV cache": need,
               "prefill activations": prefill * (4 * h + 2 * I) * cb + prefill * H * run.prompt_len * 4,
               "decode logits": per_rank * run.k * V * 4 * 3, **fixed}
    if not cuda:
        rollout["oneDNN-packed linears (CPU)"] = 4 * linears
    if not (run.sleep and cuda):  # on a GPU, --sleep puts the trainer's state in host memory during rollouts
        rollout.update({"fp32 shards": shard, "AdamW moments": 2 * shard})
    if cuda:  # the budget: kv_fraction of what is free once the rest is in place (grpo.kv_budget)
        budget = run.kv_fraction * (run.gpu_bytes - sum(v for k, v in rollout.items() if k != "KV cache"))
        rollout["KV cache"] = min(need, max(budget, 0))
    if not run.sleep:
        resident["sampler weights"] = sampler
        load["sampler weights"] = sampler if cuda else 0  # on CPU: the fp32 file's own pages, mapped (not anon)
    return {"load": load, "rollout": rollout, "update": _peak(resident, backward, step)}


def _peak(resident, *alternatives):
    """resident + the larger of the alternatives (the phase's moments that do not overlap)."""
    top = max(alternatives, key=lambda d: sum(d.values()))
    return {**resident, **top}


# ------------------------------------------------------------------------------------------ presets

def real_config(name):
    from model import ModelConfig
    return ModelConfig.from_file(os.path.join(CONFIGS, name))


# The paper's runs on 8 x 80 GB: sft.py as the README's 8-GPU command, grpo.py's STAGE_DEFAULTS (256 completions a
# step, 2048 new tokens, micro-batches of 4), stage 2's 16 prompts x k = 16 is the same KV and the same update.
PRESETS = [
    ("Qwen2.5-7B", "qwen2.5-7b-instruct.json", "SFT", Run(kind="sft", micro=4, max_len=4096)),
    ("Qwen2.5-7B", "qwen2.5-7b-instruct.json", "GRPO stage 1", Run(prompts=32, k=8)),
    ("Qwen3-32B", "qwen3-32b.json", "GRPO stage 1", Run(prompts=32, k=8)),
    ("Qwen3-32B", "qwen3-32b.json", "GRPO stage 1 --sleep", Run(prompts=32, k=8, sleep=True)),
]


def small_config(name):
    from model import ModelConfig
    if name == "qwen2-34M":  # Qwen2.5's family: q/k/v biases, untied head
        return ModelConfig(model_type="qwen2", vocab_size=32000, hidden_size=384, intermediate_size=1024,
                           num_hidden_layers=6, num_attention_heads=6, num_key_value_heads=2, head_dim=64,
                           tie_word_embeddings=False, qkv_bias=True, eos_token_id=0)
    return ModelConfig(model_type="qwen3", vocab_size=32000, hidden_size=384, intermediate_size=1024,  # tied, q/k norm
                       num_hidden_layers=8, num_attention_heads=6, num_key_value_heads=2, head_dim=64,
                       tie_word_embeddings=True, qk_norm=True, eos_token_id=0)


SMALL = [("qwen2-34M", Run(world=2, device="cpu", prompts=4, k=8, prompt_len=64, new=48, micro=8, chunk=256,
                           block=16)),
         ("qwen3-25M", Run(world=2, device="cpu", prompts=4, k=4, prompt_len=96, new=64, micro=4, chunk=256,
                           block=16, sleep=True))]
SMALL_SFT = dict(micro=2, max_len=256)


# ------------------------------------------------------------------------------------------ measurement

def rss():
    """(current RSS, peak RSS since the last reset) of this process, bytes."""
    with open("/proc/self/status") as f:
        s = dict(line.split(":", 1) for line in f)
    return int(s["VmRSS"].split()[0]) * 1024, int(s["VmHWM"].split()[0]) * 1024


def reset_peak():
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # VmHWM := VmRSS (Linux >= 4.0)


class AnonPeak:
    """Peak anonymous RSS (RssAnon, polled every millisecond) while the context runs: the load phase's tensors
    without the checkpoint's file pages, which the page cache holds once per node whatever the ranks map."""

    def __enter__(self):
        import threading
        self.peak, self.stop = anon(), threading.Event()
        self.thread = threading.Thread(target=self._poll, daemon=True)
        self.thread.start()
        return self

    def _poll(self):
        while not self.stop.wait(0.001):
            self.peak = max(self.peak, anon())

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()
        self.peak = max(self.peak, anon())


def anon():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("RssAnon:"))


def trim():
    """Collect garbage and give glibc's free heap back to the OS, so a baseline is not inflated by what a phase
    before it freed (and that a later phase's allocations would reuse without raising RSS)."""
    import ctypes
    import gc
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass


def _flow(ckpt, run, env, peaks):
    """One rank's GRPO (load, two steps of rollout and update) and SFT (load, two steps) on the checkpoint, with
    grpo.py's and sft.py's own functions; the second step of each phase is recorded in peaks (AdamW's moments are
    there from the first). Random prompts, no stop token: every completion has run.new tokens."""
    import gc
    import random

    import torch.distributed as dist

    import grpo
    import sft
    import training as T
    from model import ModelConfig, Transformer
    from sample import Sampler, SamplingParams

    cpu, world = env.device, env.world
    mcfg = ModelConfig.from_file(ckpt)
    rng = random.Random(env.rank)

    def phase(tag, fn, base):
        dist.barrier()
        reset_peak()
        with AnonPeak() as a:
            a.base = anon()
            result = fn()
        dist.barrier()
        peaks[tag] = (a.peak if tag.endswith("load") else rss()[1]) - base
        return result

    trim()
    base, abase = rss()[0], anon()
    cfg = grpo.Config(sleep=run.sleep, micro_batch_size=run.micro, logprob_chunk=run.chunk, k=run.k,
                      max_new_tokens=run.new, batch_size=run.prompts)

    def load():
        policy = grpo.load_sharded(ckpt, cpu)
        policy.grad_checkpointing = True
        net = grpo.empty_weights(mcfg, torch.float32, cpu) if run.sleep else Transformer.from_pretrained(ckpt)
        return policy.train(), net

    policy, net = phase("grpo load", load, abase)
    opt = torch.optim.AdamW(policy.parameters(), lr=1e-5, betas=(0.9, 0.99))
    sampler = Sampler(net, vocab_size=mcfg.vocab_size, kv_tokens=10**6, block_size=run.block)
    prompts = [[rng.randrange(1, mcfg.vocab_size) for _ in range(run.prompt_len)] for _ in range(run.prompts // world)]
    for step in range(2):
        def roll():
            grpo.wake(cfg, sampler, policy, opt)
            outs = sampler.generate(prompts, SamplingParams(n=run.k, max_new_tokens=run.new, seed=step))
            sampler.free_cache()
            return outs
        outs = phase("grpo rollout", roll, base)
        grpo.sleep(cfg, sampler, policy, opt, cpu)
        groups = [grpo.Group(None, p, c, None, [rng.random() for _ in c], None, None) for p, c in zip(prompts, outs)]

        def upd():
            grpo.update(cfg, policy, opt, groups, env, None, mcfg.vocab_size)
            if not run.sleep:
                sampler.load_weights(policy)
        phase("grpo update", upd, base)
    del policy, net, sampler, opt, groups, outs, upd, roll, load
    trim()
    base, abase = rss()[0], anon()
    scfg = sft.Config(micro_batch_size=SMALL_SFT["micro"], max_len=SMALL_SFT["max_len"])

    def sload():
        lm = T.load_sharded(ckpt, cpu, wrap=sft.SFTModel)
        lm.net.grad_checkpointing = True
        return lm.train()

    lm = phase("sft load", sload, abase)
    optimizer = torch.optim.AdamW(lm.parameters(), lr=1e-5)
    examples = [{"id": str(i), "ids": [rng.randrange(1, mcfg.vocab_size) for _ in range(SMALL_SFT["max_len"] + 1)],
                 "start": 8} for i in range(SMALL_SFT["micro"] * world)]
    for step in range(2):
        phase("sft update", lambda: sft.train_step(lm, optimizer, examples, scfg, env), base)
    del lm, optimizer
    gc.collect()


def host_load(ckpt, env):
    """Host memory of loading the policy, before (each rank read the full fp32 model, then fully_shard cut it) and
    after (training.load_sharded: each rank reads its rows): {"host load before|after": peak anon bytes,
    "... rss": peak RSS bytes (with the checkpoint's mapped pages)}."""
    import gc

    import torch.distributed as dist

    import training as T
    from model import Transformer

    def before():
        net = Transformer.from_pretrained(ckpt)
        return T.fsdp_wrap(net, net.model.layers, env.device)

    def after():
        return T.load_sharded(ckpt, env.device)

    out = {}
    for tag, fn in (("before", before), ("after", after)):
        trim()
        dist.barrier()
        base, rbase = anon(), rss()[0]
        reset_peak()
        with AnonPeak() as a:
            net = fn()
        out[f"host load {tag}"], out[f"host load {tag} rss"] = a.peak - base, rss()[1] - rbase
        del net
    return out


def _measure_rank(rank, world, port, name, run, ckpt, out):
    import torch.distributed as dist

    import training as T

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    env = T.DistEnv(rank, world, 0, torch.device("cpu"))
    _flow(ckpt + "-warmup", run, env, {})  # first-use costs (kernels, oneDNN, autograd, gloo) go into the baseline
    out[rank] = {}
    _flow(ckpt, run, env, out[rank])
    out[rank].update(host_load(ckpt + "-bf16", env))  # published checkpoints are bf16: fp32 weights are a copy
    dist.barrier()
    dist.destroy_process_group()


def _spawn_target(rank, world, port, name, run, ckpt, path):
    out = {}
    _measure_rank(rank, world, port, name, run, ckpt, out)
    with open(f"{path}.{rank}", "w") as f:
        json.dump(out[rank], f)


def measure(name, run, tmp, port=29641):
    """{"grpo load": [rank 0 bytes, rank 1 bytes], ...}: the phases' peaks on 2 gloo ranks (spawned)."""
    import torch.multiprocessing as mp

    from model import Transformer
    cfg = small_config(name)
    ckpt = os.path.join(tmp, name)
    torch.manual_seed(0)
    for path, c in ((ckpt, cfg), (ckpt + "-warmup", replace(cfg, num_hidden_layers=1, vocab_size=512))):
        if not os.path.exists(os.path.join(path, "config.json")):
            Transformer.from_config(c).save_pretrained(path)
    if not os.path.exists(os.path.join(ckpt + "-bf16", "config.json")):
        Transformer.from_pretrained(ckpt, dtype=torch.bfloat16).save_pretrained(ckpt + "-bf16")
    # a fixed mmap threshold (glibc's grows after frees): every tensor over 128 kB is its own mapping and leaves RSS
    # when freed, so the peak is of live buffers, not of the allocator's high-water mark
    os.environ.setdefault("MALLOC_MMAP_THRESHOLD_", str(128 * 1024))
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    path = os.path.join(tmp, f"{name}.peaks")
    mp.spawn(_spawn_target, args=(run.world, port, name, run, ckpt, path), nprocs=run.world)
    ranks = [json.load(open(f"{path}.{r}")) for r in range(run.world)]
    return {k: [r[k] for r in ranks] for k in ranks[0]}


# ------------------------------------------------------------------------------------------ table

def table(rows, measured=False):
    head = "| model | run | phase | predicted GB / GPU |" + (" measured GB (max of 2 ranks) | pred / meas |"
                                                             if measured else " largest terms |")
    lines = [head, "|" + " --- |" * (head.count("|") - 1)]
    for model, run_name, phase, pred, meas in rows:
        total = sum(pred.values())
        if measured:
            m = max(meas)
            lines.append(f"| {model} | {run_name} | {phase} | {total / GB:.3f} | {m / GB:.3f} | {total / m:.2f} |")
        else:
            big = sorted(pred.items(), key=lambda kv: -kv[1])[:3]
            terms = ", ".join(f"{k} {v / GB:.1f}" for k, v in big)
            lines.append(f"| {model} | {run_name} | {phase} | **{total / GB:.1f}** | {terms} |")
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--measure", action="store_true", help="also run the small shapes on CPU with 2 gloo ranks")
    p.add_argument("--tmp", default="/tmp/fleming-memory")
    args = p.parse_args()
    rows = []
    for model, file, run_name, run in PRESETS:
        for phase, pred in predict(real_config(file), run).items():
            rows.append((model, run_name, phase, pred, None))
    print("Per GPU, 8 x 80 GB, bf16 compute with fp32 master weights and AdamW state:\n")
    print(table(rows))
    if args.measure:
        os.makedirs(args.tmp, exist_ok=True)
        rows, loads = [], {}
        for i, (name, run) in enumerate(SMALL):
            meas = loads[name] = measure(name, run, args.tmp, port=29641 + i)
            cfg = small_config(name)
            for kind, r in (("grpo", run), ("sft", replace(run, kind="sft", **SMALL_SFT))):
                label = "GRPO" + (" --sleep" if run.sleep else "") if kind == "grpo" else "SFT"
                for phase, pred in predict(cfg, r).items():
                    rows.append((name, label, phase, pred, meas[f"{kind} {phase}"]))
        print("\nSmall shapes, CPU fp32, 2 gloo ranks (peak RSS of the phase less the RSS before the model; "
              "load: peak anonymous RSS, the checkpoint's mapped pages left out):\n")
        print(table(rows, measured=True))
        print("\nHost memory at load, 2 gloo ranks on one host, summed over the ranks (one fp32 model = 4 bytes x params):\n")
        for name, _ in SMALL:
            m, full = loads[name], 4 * sum(numel(s) for s in shapes(small_config(name))[0]) + \
                4 * small_config(name).num_hidden_layers * sum(numel(s) for s in shapes(small_config(name))[1])
            print(f"- {name} ({full / GB:.3f} GB fp32): before {sum(m['host load before']) / GB:.3f} GB anonymous "
                  f"({sum(m['host load before rss']) / GB:.3f} GB RSS with the file's pages), after "
                  f"{sum(m['host load after']) / GB:.3f} GB ({sum(m['host load after rss']) / GB:.3f} GB RSS)")


if __name__ == "__main__":
    main()
