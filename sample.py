"""KV-cached batched sampler: paged KV cache, prefix sharing, continuous batching.

    sampler = Sampler(model, vocab_size=len(tok))
    outs = sampler.generate(prompt_ids, SamplingParams(n=8, max_new_tokens=512, temperature=1.0,
                                                       stop_token_ids=(tok.eos_id,)))
    outs[i][j].token_ids, outs[i][j].logprobs, outs[i][j].finish_reason   # "eos" | "stop" | "length"

This file runs the model (generate loop, prefill, decode step, draws); scheduler.py decides who runs and which
KV blocks each holds; the K/V and decode attention are paged_cache.py on GPU, decode_store.py on CPU.

Sampling: one uniform per (seed, prompt, sample, step) from a counter-based hash, inverse-CDF over the tempered
softmax. The uniforms do not depend on batch, schedule or memory budget; the logits do, at rounding level (~1e-4
in fp32), so under another batch or budget a sample is the same token by token except where a draw lands that
close to a CDF boundary (~2e-3 of draws for SmolLM2 in fp32; greedy: near-ties). Logprobs are log_softmax(logits
/ T) of the full distribution, before top-k / top-p: what the GRPO trainer recomputes. Temperature 0 is greedy,
with untempered logprobs (logprob_temperature).
"""
import argparse
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial

import torch
from tqdm import tqdm

import paged_attn
from attention import dense_attention
from decode_store import DecodeStore
from model import CheckpointError, Tokenizer, Transformer
from paged_cache import PagedCache
from scheduler import BlockPool, Scheduler, pool_blocks, prefill_chunks


@dataclass
class SamplingParams:
    n: int = 1                    # samples per prompt (GRPO's group size)
    max_new_tokens: int = 256
    temperature: float = 1.0      # 0 = greedy
    top_p: float = 1.0
    top_k: int = 0                # 0 = off
    stop_token_ids: tuple = ()    # finish_reason "eos"; the stop token is kept in token_ids
    stop_strings: tuple = ()      # finish_reason "stop"; needs the sampler's tokenizer
    seed: int = 0                 # any integer in [0, 2^64)

    def check(self):
        for name, ok, want in (("n", self.n >= 1, ">= 1"), ("max_new_tokens", self.max_new_tokens >= 1, ">= 1"),
                               ("seed", 0 <= self.seed < 2**64, "in [0, 2^64)")):
            if not ok:
                raise ValueError(f"SamplingParams.{name} must be {want}, got {getattr(self, name)!r}")

    def finish_reason(self, tokens, tokenizer):
        """"eos", "stop" or "length" once a sample's tokens end it, else None."""
        if tokens[-1] in self.stop_token_ids:
            return "eos"
        if self.stop_strings:
            longest = max(len(x) for x in self.stop_strings)
            tail = tokenizer.decode(tokens[-(longest + 8):])  # a token is at least one char
            if any(x in tail for x in self.stop_strings):
                return "stop"
        return "length" if len(tokens) >= self.max_new_tokens else None


@dataclass
class Completion:
    token_ids: list
    logprobs: list
    finish_reason: str            # "eos" | "stop" | "length"


class Sampler:
    """Generation over a model.py Transformer. kv_tokens caps the K/V held (tokens); by default it is kv_fraction
    of the device memory free at the first generate call (and at the first after free_cache)."""

    def __init__(self, model: Transformer, tokenizer: Tokenizer = None, vocab_size=None, block_size=None,
                 kv_tokens=None, kv_fraction=0.8, max_batch=512, max_prefill_tokens=8192, prefix_attention=None,
                 cuda_graphs=None):
        self.model, self.tokenizer = model.eval(), tokenizer
        cfg = model.config
        # rows past the tokenizer are never sampled
        self.vocab_size = min(vocab_size or (len(tokenizer) if tokenizer else cfg.vocab_size), cfg.vocab_size)
        p = next(model.parameters())
        self.device, self.dtype = p.device, p.dtype
        self.block_size = block_size or (256 if self.device.type == "cuda" else 16)
        self.max_batch, self.max_prefill_tokens = max_batch, max_prefill_tokens
        # CPU: read each prompt's shared blocks once per group of samples; GPU: per-sequence paged paged_attn.
        self.prefix_attention = self.device.type == "cpu" if prefix_attention is None else prefix_attention
        if self.prefix_attention and self.device.type != "cpu":
            raise ValueError("prefix_attention is the CPU decode path (torch's CPU flash kernel); leave it off on "
                             f"{self.device.type}")
        # GPU: replay the decode step from CUDA graphs. Dynamic NTK rope reads the largest position on the host,
        # which a graph cannot. On CPU, cuda_graphs=True runs the same padded static-buffer path uncaptured.
        dynamic_rope = bool(cfg.rope_scaling) and cfg.rope_scaling["rope_type"] == "dynamic"
        self.cuda_graphs = self.device.type == "cuda" and not dynamic_rope if cuda_graphs is None else cuda_graphs
        if self.cuda_graphs and (self.prefix_attention or (dynamic_rope and self.device.type == "cuda")):
            raise ValueError("cuda_graphs need the paged decode path and a rope without dynamic scaling")
        kv = (cfg, self.block_size, self.dtype, self.device, self._forward)  # the K/V and decode attention
        self.kv_cache = DecodeStore(*kv) if self.prefix_attention else PagedCache(*kv, max_batch, self.cuda_graphs)
        self.kv_tokens, self.kv_fraction = kv_tokens, kv_fraction
        self.pool, self.max_blocks = None, None  # max_blocks: the budget in blocks, set by the next generate
        self._packed = {}  # CPU: nn.Linear -> ((weight ptr, version), oneDNN-packed weight); see packed_linears
        self.stats = {"prefill_s": 0.0, "prefill_tokens": 0, "decode_s": 0.0, "decode_steps": 0, "decode_tokens": 0,
                      "preempted": 0, "store_layouts": 0, "store_tokens": 0}

    @torch.no_grad()
    def generate(self, prompts, params: SamplingParams = SamplingParams(), progress=False):
        """prompts: list of token-id lists. Returns, per prompt, a list of n Completions."""
        if params.stop_strings and self.tokenizer is None:
            raise ValueError("stop_strings need a tokenizer: Sampler(model, tokenizer=...)")
        if not prompts or any(len(p) == 0 for p in prompts):
            raise ValueError("every prompt needs at least one token")
        params.check()
        if self.max_blocks is None:
            cfg = self.model.config
            token_bytes = 2 * cfg.num_hidden_layers * cfg.num_key_value_heads * cfg.head_dim * self.dtype.itemsize
            tokens = self.kv_tokens or int(self.kv_fraction * free_memory(self.device) / token_bytes)
            self.max_blocks = max(1, tokens // self.block_size)
        blocks = pool_blocks(prompts, params, self.block_size, self.max_blocks)
        self.pool = BlockPool(self.kv_cache.begin(blocks, params, max(map(len, prompts)), self.stats))
        sched = Scheduler([len(p) for p in prompts], params.n, self.pool, self.block_size, self.max_batch)
        out = [[None] * params.n for _ in prompts]
        bar = tqdm(total=len(prompts) * params.n, desc="sampling", disable=not progress)
        try:
            with packed_linears(self.model, self._packed):
                while sched.waiting or sched.running:
                    new, back = sched.admit()
                    t0 = time.perf_counter()
                    if new or back:
                        sched.running += self._refill(back, prompts) + self._prefill(new, prompts, sched, params)
                        self._count("prefill", t0, sum(len(prompts[i]) for i in new) + sum(s.pos for s in back))
                    elif sched.running:
                        self.stats["preempted"] += sched.grow()
                        self._decode(sched.running, params)
                        self._count("decode", t0, len(sched.running))
                    else:
                        raise RuntimeError("no sequence running and none admissible")  # cannot happen: pool_blocks
                    done = {s: r for s in sched.running if (r := params.finish_reason(s.tokens, self.tokenizer))}
                    for s, reason in done.items():
                        out[s.prompt][s.sample] = Completion(s.tokens, s.logprobs, reason)
                    sched.finish(done)
                    bar.update(len(done))
        finally:
            bar.close()
            self.kv_cache.end()
        assert len(self.pool.free) == len(self.pool.refs), "KV blocks leaked"
        return out

    def free_cache(self, kv_tokens=None):
        """Release the KV cache, its CUDA graphs and the CPU's packed weights (GRPO: during the update). The next
        generate() sizes it again: to kv_tokens (given here, else the sampler's) or kv_fraction of free memory."""
        self.kv_cache.free()
        self.pool, self.max_blocks, self._packed = None, None, {}
        self.kv_tokens = kv_tokens or self.kv_tokens

    @torch.no_grad()
    def load_weights(self, source):
        """Overwrite the weights in place (same tensors, KV cache kept) from a training model or a full state dict."""
        sd = source.state_dict() if isinstance(source, torch.nn.Module) else source
        params = dict(self.model.named_parameters())  # tied weights appear once
        missing = set(params) - set(sd)
        if missing:
            raise KeyError(f"load_weights: source lacks {sorted(missing)[:3]}")
        self._packed = {}  # repack on the next generate, even if a weight's version counter was bypassed
        for name, p in params.items():
            t = sd[name]
            p.copy_(t.full_tensor() if hasattr(t, "full_tensor") else t)  # an FSDP2 DTensor is gathered here

    def _count(self, phase, t0, tokens):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.stats[f"{phase}_s"] += time.perf_counter() - t0
        self.stats[f"{phase}_tokens"] += tokens
        self.stats["decode_steps"] += phase == "decode"

    def _prefill(self, new, prompts, sched, params):
        """Prefill new prompts (indices), fork each into n samples, draw their first tokens. Returns the new Seqs."""
        seqs = []
        for chunk in prefill_chunks([prompts[i] for i in new], self.max_prefill_tokens):
            indices = [new[j] for j in chunk]
            tables = [sched.alloc(len(prompts[i])) for i in indices]
            logits = self.model.lm_head(self._fill([prompts[i] for i in indices], tables))  # [rows, vocab]
            forked, copies = sched.fork(indices, tables)
            if copies:
                dst, src = (torch.tensor(x, device=self.device) for x in zip(*copies))
                for kv in self.kv_cache.prefill_cache():  # per layer [2, blocks, ...]
                    kv[:, dst] = kv[:, src]
            self._sample_into(forked, logits.repeat_interleave(params.n, 0), params)
            self.kv_cache.prefilled(forked)
            seqs += forked
        return seqs

    def _refill(self, seqs, prompts):
        """Recompute the K/V of preempted sequences into their new blocks: the prompt and all tokens but the last,
        which the next decode step writes (as it would have). Returns seqs."""
        rows = [prompts[s.prompt] + s.tokens[:-1] for s in seqs]
        for chunk in prefill_chunks(rows, self.max_prefill_tokens):
            self._fill([rows[i] for i in chunk], [seqs[i].blocks for i in chunk])
        self.kv_cache.prefilled(seqs)
        return seqs

    def _fill(self, rows, tables):
        """One forward over token rows (right-padded), writing each row's K/V into the blocks of its table.
        Returns the final hidden state at each row's last token [rows, hidden]."""
        bs, L = self.block_size, max(len(r) for r in rows)
        ids = torch.zeros(len(rows), L, dtype=torch.long)
        slots = torch.full((len(rows), L), -1, dtype=torch.long)
        for r, (row, blocks) in enumerate(zip(rows, tables)):
            ids[r, :len(row)] = torch.tensor(row)
            pos = torch.arange(len(row))
            slots[r, :len(row)] = torch.tensor(blocks)[pos // bs] * bs + pos % bs
        lens = torch.tensor([len(r) for r in rows])
        ragged = (lens != L).any()
        dense = dense_attention((torch.arange(L)[None] < lens[:, None]).long().to(self.device) if ragged else None)
        slots = slots.flatten().to(self.device)
        cache = self.kv_cache.prefill_cache()

        def attend(q, k, v, layer):
            paged_attn.store_kv(k.flatten(0, 1), v.flatten(0, 1), cache[layer][0], cache[layer][1], slots)
            return dense(q, k, v, layer)

        hidden = self.model(ids.to(self.device), attend=attend, return_hidden=True)
        return hidden[torch.arange(len(rows)), (lens - 1).to(self.device)]

    def _decode(self, seqs, params):
        tokens = torch.tensor([s.tokens[-1] for s in seqs], device=self.device)
        pos = torch.tensor([s.pos for s in seqs], device=self.device)
        self._sample_into(seqs, self.kv_cache.decode(seqs, tokens, pos), params)

    def _forward(self, tokens, pos, attention):
        """One decode step: tokens [B] at positions pos, attention(q, k, v, layer) -> [B, H, d] (it stores this step's
        K/V). Returns logits [B, vocab]."""
        def attend(q, k, v, layer):  # q [B, 1, H, D], k/v [B, 1, KV, D]
            return attention(q[:, 0], k[:, 0], v[:, 0], layer)[:, None]

        hidden = self.model(tokens[:, None], position_ids=pos[:, None], attend=attend, return_hidden=True)
        return self.model.lm_head(hidden[:, 0])

    def _sample_into(self, seqs, logits, params):
        u = _uniform(params.seed, [s.prompt for s in seqs], [s.sample for s in seqs], [len(s.tokens) for s in seqs],
                     logits.device)
        tok, lp = sample_tokens(logits[:, :self.vocab_size], params.temperature, params.top_k, params.top_p, u)
        for s, t, l in zip(seqs, tok.tolist(), lp.tolist()):
            s.tokens.append(t)
            s.logprobs.append(l)


@contextmanager
def packed_linears(model, packed):
    """CPU: run the model's linear layers through oneDNN on weights packed once (cached in `packed`): torch's
    F.linear goes to MKL's sgemm, 2-2.5x slower on a decode step's few rows on the AMD CPUs we measured. A weight is
    packed again when its version bumps (optimizer step, copy_); writes through `.data` do not, so sync weights with
    load_weights. The model is left untouched outside generate()."""
    p = next(model.parameters())
    ok = p.device.type == "cpu" and p.dtype in (torch.float32, torch.bfloat16) \
        and torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)] if ok else []
    for m in linears:
        key = (m.weight.data_ptr(), m.weight._version)
        if packed.get(m, (None,))[0] != key:
            packed[m] = key, pack_linear_weight(m.weight)
        m.forward = partial(packed_linear, weight=packed[m][1], bias=m.bias)
    try:
        yield
    finally:
        for m in linears:
            del m.forward


def pack_linear_weight(weight):
    """A [out, in] weight reordered into oneDNN's blocked layout for packed_linear (CPU)."""
    return torch.ops.mkldnn._reorder_linear_weight(weight.detach(), 16)  # 16: the row count it is tuned for


def packed_linear(x, weight, bias=None):
    """F.linear(x, W, bias) with W packed by pack_linear_weight."""
    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")


def logprob_temperature(temperature):
    """The temperature a sample's logprobs are taken at, here and in the GRPO trainer: the sampling temperature,
    or 1 for greedy (0): greedy samples are scored under the untempered distribution."""
    return temperature or 1.0


def sample_tokens(logits, temperature, top_k, top_p, u):
    """Draw one token per row by inverse CDF with uniforms u [B] in (0, 1) (greedy: argmax).
    Returns (tokens [B], logprobs [B]) with logprobs under the full distribution at logprob_temperature."""
    # Few passes, few [B, vocab] temporaries: on CPU each fresh one costs page faults, not just arithmetic.
    z = logits.float() / logprob_temperature(temperature)
    if temperature == 0:
        tok = z.argmax(-1)
        return tok, z.gather(1, tok[:, None])[:, 0] - z.logsumexp(-1)
    z -= z.amax(-1, keepdim=True)          # z = tempered logits - max
    cdf = z.exp()
    norm = None
    if top_k or top_p < 1.0:
        norm = cdf.sum(-1)                 # the full distribution's normalizer, before truncation
        cdf *= nucleus_mask(cdf, top_k, top_p)
    cdf = cdf.cumsum_(-1)
    tok = torch.searchsorted(cdf, u[:, None].to(cdf.dtype) * cdf[:, -1:]).clamp_(max=cdf.shape[-1] - 1)[:, 0]
    norm = cdf[:, -1] if norm is None else norm
    return tok, z.gather(1, tok[:, None])[:, 0] - norm.log()


def nucleus_mask(probs, top_k, top_p):
    """1 for the tokens kept by top-k, then top-p (the smallest set of most likely tokens whose mass
    reaches top_p, the token that crosses it included), 0 elsewhere. probs may be unnormalized."""
    sorted_p, idx = probs.sort(-1, descending=True)
    keep = torch.ones_like(sorted_p, dtype=torch.bool)
    if top_k:
        keep[:, top_k:] = False
    if top_p < 1.0:
        kept = sorted_p * keep
        mass_before = (kept.cumsum(-1) - kept) / kept.sum(-1, keepdim=True)
        keep &= mass_before < top_p
    return torch.zeros_like(probs).scatter(1, idx, keep.to(probs.dtype))


def _uniform(seed, prompt, sample, step, device):
    """Counter-based uniforms in (0, 1): a hash of (seed, prompt, sample, step), so each sample's draws
    are independent of batch composition, scheduling and the memory budget."""
    words = [[seed & 0xFFFFFFFF, a, b, c] + ([seed >> 32] if seed >> 32 else []) for a, b, c in zip(prompt, sample, step)]
    x = torch.tensor(words, dtype=torch.int64)  # a seed's high word is mixed in last: seeds < 2^32 keep their draws
    h = torch.zeros(len(x), dtype=torch.int64)
    for j, mult in zip(range(x.shape[1]), (0x2545F491, 0x1B873593, 0x5851F42D, 0x14057B7F, 0x2C1B3C6D)):  # odd, < 2^31
        h = _mix32(h ^ (((x[:, j] & 0xFFFFFFFF) * mult) & 0xFFFFFFFF))
    hi, lo = _mix32(h ^ 0x68E31DA4) >> 8, _mix32(h ^ 0x1B56C4E9) >> 8  # two 24-bit halves -> 48 bits
    u = ((hi * (1 << 24) + lo).double() + 0.5) / float(1 << 48)
    return u.to(device)


def _mix32(h):
    """murmur3's 32-bit finalizer on int64 holding 32-bit values (multipliers < 2^31: no overflow)."""
    h = h & 0xFFFFFFFF
    h = ((h ^ (h >> 16)) * 0x45D9F3B) & 0xFFFFFFFF
    h = ((h ^ (h >> 16)) * 0x45D9F3B) & 0xFFFFFFFF
    return h ^ (h >> 16)


def free_memory(device):
    """Bytes free on the device (host memory available for CPU)."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return 4 * 2**30


def main():
    p = argparse.ArgumentParser(description="Sample completions of a chat prompt with the KV-cached sampler.")
    p.add_argument("--model", required=True, help="Hugging Face checkpoint dir")
    p.add_argument("--prompt", required=True, help="user message (rendered with the model's chat template)")
    p.add_argument("--system", default=None, help="system message")
    p.add_argument("--n", type=int, default=1)
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--temperature", type=float, default=0.7)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--top-k", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-thinking", action="store_true", help="Qwen3: disable thinking")
    p.add_argument("--dtype", default=None, choices=["float32", "bfloat16", "float16"],
                   help="default: bfloat16 on CUDA, float32 on CPU")
    args = p.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = getattr(torch, args.dtype or ("bfloat16" if device == "cuda" else "float32"))
    try:
        model = Transformer.from_pretrained(args.model, dtype=dtype, device=device)
        tok = Tokenizer.from_pretrained(args.model)
    except CheckpointError as e:
        raise SystemExit(f"error: {e}")
    msgs = ([{"role": "system", "content": args.system}] if args.system else []) + \
        [{"role": "user", "content": args.prompt}]
    ids = tok.apply_chat_template(msgs, enable_thinking=not args.no_thinking)
    stop = tok.stop_ids(model.config.eos_token_id)
    params = SamplingParams(n=args.n, max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                            top_p=args.top_p, top_k=args.top_k, stop_token_ids=stop, seed=args.seed)
    outs = Sampler(model, tok).generate([ids], params, progress=True)[0]
    for j, c in enumerate(outs):
        print(f"--- sample {j} ({c.finish_reason}, {len(c.token_ids)} tokens, "
              f"mean logprob {sum(c.logprobs) / len(c.logprobs):.3f})")
        print(tok.decode(c.token_ids, skip_special_tokens=True))


if __name__ == "__main__":
    main()
