"""KV-cached batched sampler: paged KV cache, prefix sharing, continuous batching.

One entry point for eval, CoT distillation and GRPO rollouts:

    sampler = Sampler(model, vocab_size=len(tok))
    outs = sampler.generate(prompt_ids, SamplingParams(n=8, max_new_tokens=512, temperature=1.0,
                                                       stop_token_ids=(tok.eos_id,)))
    outs[i][j].token_ids, outs[i][j].logprobs, outs[i][j].finish_reason   # "eos" | "stop" | "length"

How it works. The KV cache is a pool of fixed-size blocks ([layers, 2, blocks, block_size, kv_heads,
head_dim]); each sequence owns a block table. A prompt is prefilled once; its full blocks are then shared
by its n samples (reference counts) and only the partly filled last block is copied to each sample.
Samples take blocks as they grow. A prompt is admitted when the pool holds it, a block per sample and one
spare block per running sequence; when growth finds the pool empty, the newest sequences are preempted
(blocks freed, tokens kept) and later refilled by one prefill over their prompt and tokens. Finished samples
free their blocks at once and waiting prompts are admitted between decode steps. Prefill attends densely.
Decode on GPU attends through the block tables (paged_attn.py: Triton or flash-attn) and is replayed from CUDA
graphs, one per batch bucket (DecodeGraphs). On CPU a gather of every block at every step would cost as much as
the matmuls, so there the blocks are only the budget's unit and the K/V live, between steps, in a decode store of
dense rectangles (_plan): each prompt's shared K/V once for its samples, each row's own K/V, rows of similar
length together (paged_attn.cascade_decode_attention_torch). The paged cache is then only a staging area: prefill
writes it, the next decode step copies it into the store and drops it. Each stored token holds a block of the
budget; on top come padding (at most 1/8 per rectangle), 2 blocks of headroom per row, finished rows until the
next re-layout, and a new prompt's staged copy for one step. No K/V outlive generate() but the GPU cache, which
free_cache() releases (GRPO: during the trainer's update; the next generate allocates it again).

Sampling: one uniform per (seed, prompt, sample, step) from a counter-based hash, inverse-CDF over the tempered
softmax. The uniforms do not depend on the batch, the schedule or the memory budget; the logits do, at the level
of float rounding (~1e-4 in fp32: other batch shapes sum in another order). So a sample drawn under another
batch or budget is the same token by token except where a draw lands that close to a boundary of the CDF
(about 2e-3 of draws for SmolLM2 in fp32), and greedy is the same except at near-ties; after a flip the sample
continues from a different prefix. Logprobs are those of the full tempered distribution (log_softmax(logits / T)),
before any top-k / top-p truncation: the quantity the GRPO trainer recomputes. Temperature 0 is greedy, with
logprobs of the untempered distribution.
"""
import argparse
import math
import os
import time
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial

import torch
from tqdm import tqdm

import paged_attn
from model import Tokenizer, Transformer, dense_attention


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


@dataclass
class Completion:
    token_ids: list
    logprobs: list
    finish_reason: str            # "eos" | "stop" | "length"


@dataclass(eq=False)
class _Part:
    """One slice of the CPU decode store: some groups (a prompt's running samples and the prompt blocks they
    share), kept per layer as shared K/V [n_kv, groups, max shared_len, d] and private K/V [n_kv, rows, cap, d]."""
    groups: list                  # group keys (prompt, shared block ids)
    shared_len: list              # tokens each group shares
    rows: list                    # row keys (prompt, sample), in private slot order
    row_group: list               # each row's index in groups
    cap: int                      # private tokens a row may reach before the store is laid out again
    batch: list = None            # for the current running rows (_index_rows): the batch rows stored here,
    slots: list = None            # their slots,
    index: tuple = None           # and the tensors cascade_decode_attention_torch takes for them


@dataclass(eq=False)
class _Seq:
    prompt: int                   # index of the prompt in the generate() call
    sample: int                   # 0..n-1
    prompt_len: int
    blocks: list                  # block table: shared prompt blocks, then private blocks
    shared: int = 0               # how many leading blocks are shared with the prompt's other samples
    tokens: list = field(default_factory=list)
    logprobs: list = field(default_factory=list)


class BlockPool:
    """Free list + reference counts over KV-cache blocks."""

    def __init__(self, num_blocks):
        self.refs = [0] * num_blocks
        self.free = list(range(num_blocks - 1, -1, -1))

    def alloc(self, n):
        assert n <= len(self.free), "admission control should have prevented this"
        out = [self.free.pop() for _ in range(n)]
        for b in out:
            self.refs[b] = 1
        return out

    def share(self, blocks):
        for b in blocks:
            self.refs[b] += 1

    def release(self, blocks):
        for b in blocks:
            self.refs[b] -= 1
            if self.refs[b] == 0:
                self.free.append(b)


class Sampler:
    """Generation over a model.py Transformer. kv_tokens caps the K/V held (tokens); by default it is kv_fraction
    of the device memory free at the first generate call (and at the first after free_cache)."""

    def __init__(self, model: Transformer, tokenizer: Tokenizer = None, vocab_size=None, block_size=None,
                 kv_tokens=None, kv_fraction=0.8, max_batch=512, max_prefill_tokens=8192, prefix_attention=None,
                 cuda_graphs=None):
        self.model = model.eval()
        self.tokenizer = tokenizer
        cfg = model.config
        self.vocab_size = vocab_size or (len(tokenizer) if tokenizer else cfg.vocab_size)
        self.vocab_size = min(self.vocab_size, cfg.vocab_size)  # rows past the tokenizer are never sampled
        p = next(model.parameters())
        self.device, self.dtype = p.device, p.dtype
        self.block_size = block_size or (256 if self.device.type == "cuda" else 16)
        self.max_batch, self.max_prefill_tokens = max_batch, max_prefill_tokens
        # CPU: read each prompt's shared blocks once per group of samples; GPU: per-sequence paged paged_attn.
        self.prefix_attention = self.device.type == "cpu" if prefix_attention is None else prefix_attention
        if self.prefix_attention and self.device.type != "cpu":
            raise ValueError("prefix_attention is the CPU decode path (torch's CPU flash kernel); leave it off on "
                             f"{self.device.type}")
        self.scale = cfg.head_dim ** -0.5
        # GPU: replay the decode step from CUDA graphs. Dynamic NTK rope reads the largest position on the host,
        # which a graph cannot. On CPU, cuda_graphs=True runs the same padded static-buffer path uncaptured.
        dynamic_rope = bool(cfg.rope_scaling) and cfg.rope_scaling["rope_type"] == "dynamic"
        self.cuda_graphs = self.device.type == "cuda" and not dynamic_rope if cuda_graphs is None else cuda_graphs
        if self.cuda_graphs and (self.prefix_attention or (dynamic_rope and self.device.type == "cuda")):
            raise ValueError("cuda_graphs need the paged decode path and a rope without dynamic scaling")
        self._graphs = None
        self.kv_tokens, self.kv_fraction = kv_tokens, kv_fraction
        self.max_blocks = None  # the budget in blocks, set by the next generate (_budget)
        self.cache = None  # per layer [2, blocks, block_size, kv_heads, head_dim] (a tensor of them on GPU)
        self.pool = None
        self._packed = {}  # CPU: nn.Linear -> ((weight ptr, version), oneDNN-packed weight); see _cpu_linears
        self._reset_store()
        self.stats = {"prefill_s": 0.0, "prefill_tokens": 0, "decode_s": 0.0, "decode_steps": 0, "decode_tokens": 0,
                      "preempted": 0, "store_layouts": 0, "store_tokens": 0}

    # ------------------------------------------------------------------------------- public API

    @torch.no_grad()
    def generate(self, prompts, params: SamplingParams = SamplingParams(), progress=False):
        """prompts: list of token-id lists. Returns, per prompt, a list of n Completions."""
        if params.stop_strings and self.tokenizer is None:
            raise ValueError("stop_strings need a tokenizer: Sampler(model, tokenizer=...)")
        if not prompts or any(len(p) == 0 for p in prompts):
            raise ValueError("every prompt needs at least one token")
        for name, ok, want in (("n", params.n >= 1, ">= 1"), ("max_new_tokens", params.max_new_tokens >= 1, ">= 1"),
                               ("seed", 0 <= params.seed < 2**64, "in [0, 2^64)")):
            if not ok:
                raise ValueError(f"SamplingParams.{name} must be {want}, got {getattr(params, name)!r}")
        bs, n = self.block_size, params.n
        self._budget()
        # Blocks are taken as sequences grow (_grow). The budget must let a prompt in when nothing else runs, and
        # let a sequence finish alone: then the oldest sequence always advances and nothing can livelock.
        need = [max(-(-len(p) // bs) + 2 * n, -(-(len(p) + params.max_new_tokens) // bs) + 1) for p in prompts]
        if max(need) > self.max_blocks:
            i = need.index(max(need))
            raise ValueError(f"prompt {i} ({len(prompts[i])} tokens, n={n}, max_new_tokens="
                             f"{params.max_new_tokens}) needs {max(need) * bs} KV tokens; "
                             f"the budget is {self.max_blocks * bs} (raise kv_tokens)")
        full = [max(k, self._blocks_needed(len(p), params)) for k, p in zip(need, prompts)]  # all at full length
        blocks = min(sum(full), self.max_blocks)
        if self.prefix_attention:  # the staging cache is allocated by the first prefill (_fill)
            self.cache = None
        else:
            self._ensure_cache(blocks)
            blocks = self.cache.shape[2]
        self.pool = BlockPool(blocks)
        self._params = params
        if self.cuda_graphs:  # graphs per cache, rows and table width (a power of two, so calls share them)
            width = 1 << (max(-(-(len(p) + params.max_new_tokens) // bs) for p in prompts) - 1).bit_length()
            key = (self.cache.data_ptr(), max(self.max_batch, n), width)
            if self._graphs is None or self._graphs.key != key:
                self._graphs = DecodeGraphs(self._paged_forward, key[1], width, self.device,
                                            capture=self.device.type == "cuda", key=key)
        out = [[None] * n for _ in prompts]
        waiting, running = deque(range(len(prompts))), []  # prompt indices; preempted _Seqs wait at the front
        bar = tqdm(total=len(prompts) * n, desc="sampling", disable=not progress)
        try:
            self._loop(prompts, waiting, running, out, bar)
        finally:
            bar.close()
            self._reset_store()
            if self.prefix_attention:
                self.cache = None
        assert len(self.pool.free) == len(self.pool.refs), "KV blocks leaked"
        return out

    def free_cache(self, kv_tokens=None):
        """Release the KV cache, the CUDA graphs captured on it and the CPU's packed weights, e.g. while the GRPO
        trainer updates. The next generate() allocates them again, the cache within kv_tokens if given, else the
        sampler's kv_tokens, else kv_fraction of the memory free at that time."""
        self.cache, self.pool, self._graphs, self.max_blocks, self._packed = None, None, None, None, {}
        self.kv_tokens = kv_tokens or self.kv_tokens
        self._reset_store()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def _budget(self):
        if self.max_blocks is None:
            cfg = self.model.config
            token_bytes = 2 * cfg.num_hidden_layers * cfg.num_key_value_heads * cfg.head_dim * self.dtype.itemsize
            tokens = self.kv_tokens or int(self.kv_fraction * _free_memory(self.device) / token_bytes)
            self.max_blocks = max(1, tokens // self.block_size)

    def _loop(self, prompts, waiting, running, out, bar):
        with self._cpu_linears():
            while waiting or running:
                admit = self._admit(waiting, running, prompts)
                t0 = time.perf_counter()
                if admit:
                    preempted = [x for x in admit if isinstance(x, _Seq)]
                    new = [x for x in admit if not isinstance(x, _Seq)]
                    running += self._refill(preempted, prompts) + self._prefill([prompts[i] for i in new], new)
                    self._count("prefill", t0, sum(len(prompts[i]) for i in new) +
                                sum(s.prompt_len + len(s.tokens) - 1 for s in preempted))
                elif running:
                    waiting.extendleft(self._grow(running))  # newest first, so the oldest ends up in front
                    self._decode(running)
                    self._count("decode", t0, len(running))
                else:
                    raise RuntimeError("no sequence running and none admissible")  # cannot happen: see need check
                still = []
                for s in running:
                    reason = self._finish_reason(s)
                    if reason:
                        out[s.prompt][s.sample] = Completion(s.tokens, s.logprobs, reason)
                        self.pool.release(s.blocks)
                        bar.update(1)
                    else:
                        still.append(s)
                running[:] = still

    @torch.no_grad()
    def load_weights(self, source):
        """Refresh the sampler's weights in place from a training model or a (full) state dict: the
        same tensors are overwritten, nothing is reallocated, the KV cache is kept."""
        sd = source.state_dict() if isinstance(source, torch.nn.Module) else source
        params = dict(self.model.named_parameters())  # tied weights appear once
        missing = set(params) - set(sd)
        if missing:
            raise KeyError(f"load_weights: source lacks {sorted(missing)[:3]}")
        self._packed = {}  # repack on the next generate, even if a weight's version counter was bypassed
        for name, p in params.items():
            t = sd[name]
            t = t.full_tensor() if hasattr(t, "full_tensor") else t  # FSDP2 DTensor
            p.copy_(t)

    # --------------------------------------------------------------------------------- internals

    @contextmanager
    def _cpu_linears(self):
        """CPU: run the model's linear layers through oneDNN on weights packed once into its blocked layout.
        torch's CPU F.linear goes to MKL's sgemm, which for the few rows of a decode step runs at 2-2.5x the
        time on the AMD CPUs we measured (bench/sample.py prints both). Same fp32 arithmetic, another summation
        order. A weight is packed again after load_weights or any in-place change that bumps its version (an
        optimizer step, copy_); writes through `.data` bypass the version, so sync weights with load_weights.
        The model is left untouched outside generate()."""
        if self.device.type != "cpu" or self.dtype not in (torch.float32, torch.bfloat16) \
                or not torch.backends.mkldnn.is_available() or not hasattr(torch.ops.mkldnn, "_linear_pointwise"):
            yield
            return
        linears = [m for m in self.model.modules() if isinstance(m, torch.nn.Linear)]
        for m in linears:
            key = (m.weight.data_ptr(), m.weight._version)
            if self._packed.get(m, (None,))[0] != key:
                self._packed[m] = key, pack_linear_weight(m.weight)
            m.forward = partial(packed_linear, weight=self._packed[m][1], bias=m.bias)
        try:
            yield
        finally:
            for m in linears:
                del m.forward

    def _admit(self, waiting, running, prompts):
        """Take waiting prompts and preempted sequences, in order, while the pool keeps one free block per running
        sequence (its next growth, so the newly admitted are not preempted at once) and max_batch allows."""
        bs, n = self.block_size, self._params.n
        free, rows, admit = len(self.pool.free), len(running), []
        while waiting:
            x = waiting[0]
            if isinstance(x, _Seq):  # preempted: refilled into blocks for its prompt and tokens
                blocks, k = -(-(x.prompt_len + len(x.tokens)) // bs), 1
            else:                    # a new prompt: its blocks, and one private block per sample
                blocks, k = -(-len(prompts[x]) // bs) + n, n
            if blocks + rows + k > free or rows + k > max(self.max_batch, n):
                break
            free, rows = free - blocks, rows + k
            admit.append(waiting.popleft())
        return admit

    def _grow(self, running):
        """Give every running sequence the block its next token is written to. When the pool runs dry the newest
        sequences are preempted: their blocks go back to the pool and they are returned (newest first), to be
        refilled later. Their tokens are kept; the counter-based draws make the rest of the sample the same."""
        bs = self.block_size
        grow = [s for s in running if (s.prompt_len + len(s.tokens) - 1) // bs == len(s.blocks)]
        preempted = []
        while len(self.pool.free) < len(grow):
            assert len(running) > 1, "the budget check lets the oldest sequence finish alone"
            victim = running.pop()
            self.pool.release(victim.blocks)
            victim.blocks, victim.shared = [], 0
            preempted.append(victim)
            if victim in grow:
                grow.remove(victim)
        for s in grow:
            s.blocks += self.pool.alloc(1)
        self.stats["preempted"] += len(preempted)
        return preempted

    def _refill(self, seqs, prompts):
        """Recompute the K/V of preempted sequences into fresh blocks: the prompt and all tokens but the last,
        which the next decode step writes (as it would have). Returns seqs."""
        rows = [prompts[s.prompt] + s.tokens[:-1] for s in seqs]
        for s, row in zip(seqs, rows):
            s.blocks = self.pool.alloc(-(-(len(row) + 1) // self.block_size))
        for chunk in self._chunks(rows):
            self._fill([rows[i] for i in chunk], [seqs[i].blocks for i in chunk])
        self._staged.update((s.prompt, s.sample) for s in seqs)
        return seqs

    def _count(self, phase, t0, tokens):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.stats[f"{phase}_s"] += time.perf_counter() - t0
        self.stats[f"{phase}_tokens"] += tokens
        if phase == "decode":
            self.stats["decode_steps"] += 1

    def _blocks_needed(self, prompt_len, params):
        """Blocks a prompt's n samples hold at full length (sizes the cache): shared full prompt blocks + per
        sample the rest of prompt + generation (the last prompt block is copied per sample)."""
        bs = self.block_size
        shared = prompt_len // bs
        total = -(-(prompt_len + params.max_new_tokens) // bs)
        return shared + params.n * (total - shared) + (1 if prompt_len % bs else 0)  # + prefill's last block

    def _ensure_cache(self, num_blocks):
        if self.cache is not None and (self.prefix_attention or self.cache.shape[2] >= num_blocks):
            return
        cfg = self.model.config
        self.cache = None  # free the old one first
        kv, d = cfg.num_key_value_heads, cfg.head_dim
        if self.prefix_attention:
            # The CPU staging cache, one tensor per layer (each is freed once the decode store holds it). Stored
            # head-major ([2, kv_heads, blocks, block_size, head_dim]) and seen through a permuted view: a gather of
            # blocks lands as [kv_heads, seqs, tokens, head_dim], ready for batched GEMMs. Uninitialized: blocks
            # never written (all but the prompts') are never backed by memory; _gather_staged zeroes the rest.
            self.cache = [torch.empty(2, kv, num_blocks, self.block_size, d, dtype=self.dtype, device=self.device)
                          .permute(0, 2, 3, 1, 4) for _ in range(cfg.num_hidden_layers)]
        else:  # zeros: paged attention multiplies masked (p = 0) stale slots by their values, and 0 * NaN = NaN
            self.cache = torch.zeros(cfg.num_hidden_layers, 2, num_blocks, self.block_size, kv, d, dtype=self.dtype,
                                     device=self.device)

    def _chunks(self, rows):
        """Index lists of token rows to run in one forward: similar lengths together, at most max_prefill_tokens
        padded tokens (or a single row)."""
        chunk = []
        for i in sorted(range(len(rows)), key=lambda i: len(rows[i])):
            if chunk and (len(chunk) + 1) * len(rows[i]) > self.max_prefill_tokens:
                yield chunk
                chunk = []
            chunk.append(i)
        if chunk:
            yield chunk

    def _prefill(self, prompts, indices):
        """Prefill prompts, fork each into n samples and sample their first tokens. Returns the new sequences."""
        seqs = []
        for chunk in self._chunks(prompts):
            seqs += self._prefill_rows([prompts[j] for j in chunk], [indices[j] for j in chunk])
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
        ragged = bool((lens != L).any())
        segment_ids = (torch.arange(L)[None] < lens[:, None]).long().to(self.device) if ragged else None
        dense = dense_attention(segment_ids)
        slots = slots.flatten().to(self.device)
        self._ensure_cache(len(self.pool.refs))  # the CPU staging cache may have been dropped
        cache = self.cache

        def attend(q, k, v, layer):
            paged_attn.store_kv(k.flatten(0, 1), v.flatten(0, 1), cache[layer][0], cache[layer][1], slots)
            return dense(q, k, v, layer)

        hidden = self.model(ids.to(self.device), attend=attend, return_hidden=True)
        return hidden[torch.arange(len(rows)), (lens - 1).to(self.device)]

    def _prefill_rows(self, prompts, indices):
        bs, n = self.block_size, self._params.n
        tables = [self.pool.alloc(-(-len(p) // bs)) for p in prompts]
        logits = self.model.lm_head(self._fill(prompts, tables))            # [rows, vocab]
        seqs, copies = [], []  # copies: (a sample's block, its prompt's partial last block)
        for r, p in enumerate(prompts):  # fork: share full blocks, copy the partial last block per sample
            full, partial = tables[r][:len(p) // bs], tables[r][len(p) // bs:]
            self.pool.share(full * (n - 1))
            for j in range(n):
                mine = self.pool.alloc(len(partial))  # later blocks are taken as the sample grows (_grow)
                copies += [(mine[0], partial[0])] if partial else []
                seqs.append(_Seq(indices[r], j, len(p), full + mine, shared=len(full) if n > 1 else 0))
            self.pool.release(partial)  # may be taken again below: the copy reads every source before writing
        if copies:
            dst, src = (torch.tensor(x, device=self.device) for x in zip(*copies))
            for kv in self.cache if self.prefix_attention else [self.cache.flatten(0, 1)]:  # [2 (x layers), blocks, ..]
                kv[:, dst] = kv[:, src]
        rows = torch.arange(len(prompts), device=self.device).repeat_interleave(n)
        self._sample_into(seqs, logits[rows])
        self._staged.update((s.prompt, s.sample) for s in seqs)
        return seqs

    def _decode(self, seqs):
        bs, dev = self.block_size, self.device
        pos_list = [s.prompt_len + len(s.tokens) - 1 for s in seqs]
        tokens = torch.tensor([s.tokens[-1] for s in seqs], device=dev)
        pos = torch.tensor(pos_list, device=dev)
        if self.prefix_attention:  # K/V go to the decode store only; once it holds the staged rows, drop staging
            logits = self._forward(tokens, pos, self._prefix_attention(seqs, pos_list))
            self._old = None
            if self._staged:
                self._staged.clear()
                self.cache = None
        else:
            slots = torch.tensor([s.blocks[p // bs] * bs + p % bs for s, p in zip(seqs, pos_list)], device=dev)
            tables = _table([s.blocks for s in seqs], max(len(s.blocks) for s in seqs), dev)
            lens = torch.tensor([p + 1 for p in pos_list], dtype=torch.int32, device=dev)
            logits = (self._graphs or self._paged_forward)(tokens, pos, slots, tables, lens)
        self._sample_into(seqs, logits)

    def _forward(self, tokens, pos, attention):
        """One decode step: tokens [B] at positions pos, attention(q, k, v, layer) -> [B, H, d] (it stores this step's
        K/V). Returns logits [B, vocab]."""
        def attend(q, k, v, layer):  # q [B, 1, H, D], k/v [B, 1, KV, D]
            return attention(q[:, 0], k[:, 0], v[:, 0], layer)[:, None]

        hidden = self.model(tokens[:, None], position_ids=pos[:, None], attend=attend, return_hidden=True)
        return self.model.lm_head(hidden[:, 0])

    def _paged_forward(self, tokens, pos, slots, tables, lens):
        """The decode step through block tables [B, width] with lens [B] tokens each (GPU; what DecodeGraphs
        captures): Triton or flash-attn paged attention."""
        def attention(q, k, v, layer):
            kc, vc = self.cache[layer]
            paged_attn.store_kv(k, v, kc, vc, slots)
            return paged_attn.paged_decode_attention(q, kc, vc, tables, lens, self.scale)
        return self._forward(tokens, pos, attention)

    def _reset_store(self):
        """Forget the CPU decode store (its rectangles are freed with it)."""
        self._parts, self._where, self._gwhere, self._kv = None, {}, {}, {}  # layout, row/group -> (part, slot)
        self._old, self._staged, self._rows_key = None, set(), None

    def _prefix_attention(self, seqs, pos_list):
        """CPU decode attention over the decode store (see _plan), with this step's K/V appended to it. The store is
        laid out again (_plan, then _build layer by layer on first use) when a staged row arrives, a row outgrows
        its part, or half the stored rows are gone (finished rows are attended and ignored until then, so rows
        finishing one by one cost a logarithmic number of re-layouts)."""
        bs, dev = self.block_size, self.device
        keys = [(s.prompt, s.sample) for s in seqs]  # unique within a generate call (id() is reused)
        lens = [p + 1 - s.shared * bs for s, p in zip(seqs, pos_list)]  # private tokens, this step's included
        where = self._where
        if (self._parts is None or any(k in self._staged or k not in where for k in keys)
                or 2 * len(keys) < len(where) or any(n > self._parts[where[k][0]].cap for k, n in zip(keys, lens))):
            self._plan(seqs, lens)
        if tuple(keys) != self._rows_key:
            self._rows_key = tuple(keys)
            self._index_rows(keys)
        steps = []  # per part with running rows: (part index, its index tensors, private mask, positions)
        for pi, part in enumerate(self._parts):
            if part.batch:
                row_lens = [1] * len(part.rows)  # rows nobody reads: any length, their outputs are dropped
                for b, r in zip(part.batch, part.slots):
                    row_lens[r] = lens[b]
                mask = paged_attn.length_mask(torch.tensor(row_lens, device=dev), max(row_lens), self.dtype)
                steps.append((pi, part.index, mask, torch.tensor([lens[b] - 1 for b in part.batch], device=dev)))

        def attention(q, k, v, layer):
            if layer not in self._kv:
                self._build(layer)
            out = torch.empty_like(q)
            for pi, (rows, at, private_rows, group_rows, row_slot, shared_mask), mask, last in steps:
                sk, sv, pk, pv = self._kv[layer][pi]
                pk[:, at, last] = k[rows].transpose(0, 1).to(pk.dtype)
                pv[:, at, last] = v[rows].transpose(0, 1).to(pv.dtype)
                t = mask.shape[1]
                out[rows] = paged_attn.cascade_decode_attention_torch(
                    q[rows], self.scale, (sk, sv), shared_mask, group_rows, row_slot, (pk[:, :, :t], pv[:, :, :t]),
                    mask, private_rows)
            return out
        return attention

    def _plan(self, seqs, lens):
        """Lay the decode store out anew for the running rows: groups (a prompt's samples with the blocks they
        share; rows sharing nothing are groups of their own) from the longest down, a new part whenever a group's
        length falls below 7/8 of its part's longest, so padding costs at most 1/8. Each row gets 2 blocks of
        headroom (no more than its length at max_new_tokens). The rectangles are filled layer by layer by _build."""
        bs, groups = self.block_size, {}
        self._final = {(s.prompt, s.sample): s.prompt_len + self._params.max_new_tokens - s.shared * bs for s in seqs}
        for s, n in zip(seqs, lens):
            groups.setdefault((s.prompt, tuple(s.blocks[:s.shared])), []).append(((s.prompt, s.sample), n))
        size = lambda g: len(g[0][1]) * bs + max(n for _, n in g[1])
        parts, top = [], 0
        for g in sorted(groups.items(), key=size, reverse=True):
            if not parts or 8 * size(g) < 7 * top:
                parts.append(_Part([], [], [], [], 0))
                top = size(g)
            part = parts[-1]
            part.row_group += [len(part.groups)] * len(g[1])
            part.groups.append(g[0])
            part.shared_len.append(len(g[0][1]) * bs)
            part.rows += [k for k, _ in g[1]]
            part.cap = max(part.cap, max(min(n + 2 * bs, self._final[k]) for k, n in g[1]))
        self._old = (self._where, self._gwhere, self._kv)
        self._parts, self._kv, self._rows_key = parts, {}, None
        self._where = {k: (i, r) for i, p in enumerate(parts) for r, k in enumerate(p.rows)}
        self._gwhere = {g: (i, j) for i, p in enumerate(parts) for j, g in enumerate(p.groups)}
        self._seqs = {(s.prompt, s.sample): s for s in seqs}
        self.stats["store_layouts"] += 1
        self.stats["store_tokens"] = max(self.stats["store_tokens"], sum(
            len(p.groups) * max(p.shared_len) + len(p.rows) * p.cap for p in parts))

    def _build(self, layer):
        """This layer's rectangles for the new layout: rows and groups already stored are copied from the old
        rectangles (which are then dropped), staged ones gathered from the staging cache."""
        cfg = self.model.config
        old_where, old_gwhere, old_kv = self._old
        old = old_kv.pop(layer, None)
        shapes = [(cfg.num_key_value_heads, n, t, cfg.head_dim) for p in self._parts
                  for n, t in [(len(p.groups), max(p.shared_len))] * 2 + [(len(p.rows), p.cap)] * 2]
        # one buffer per layer: large enough to be mmapped by malloc, so a re-layout gives the old one back to the
        # OS instead of leaving a fragmented heap behind (many small rectangles grew RSS run by run)
        flat = torch.zeros(sum(math.prod(s) for s in shapes), dtype=self.dtype, device=self.device)
        views = [x.view(s) for x, s in zip(flat.split([math.prod(s) for s in shapes]), shapes)]
        self._kv[layer] = []
        for i, part in enumerate(self._parts):
            kv = tuple(views[4 * i:4 * i + 4])
            for at, keys, was in ((0, part.groups, old_gwhere), (2, part.rows, old_where)):
                moves, fresh = {}, []  # old part -> [(new slot, old slot)]; new slots to gather
                for j, key in enumerate(keys):
                    if old is not None and key in was and key not in self._staged:
                        moves.setdefault(was[key][0], []).append((j, was[key][1]))
                    else:
                        fresh.append(j)
                for pi, pairs in moves.items():
                    dst, src = (torch.tensor(x, device=self.device) for x in zip(*pairs))
                    for d, s in zip(kv[at:at + 2], old[pi][at:at + 2]):
                        t = min(d.shape[2], s.shape[2])
                        d[:, dst, :t] = s[:, src, :t]
                if fresh and kv[at].shape[2]:
                    self._gather_staged(layer, kv[at:at + 2], [keys[j] for j in fresh], fresh, rows=at == 2)
            self._kv[layer].append(kv)
        if self._staged:  # every running staged row is in the store now: this layer's staging is done with
            self.cache[layer] = None

    def _gather_staged(self, layer, dst, keys, slots, rows):
        """Copy staged K/V into the K and V rectangles dst at slots: groups' shared blocks, or (rows=True) rows'
        private blocks up to this step's token. Anything past their length is zeroed: the staging cache is
        uninitialized, and a masked 0 * NaN is still NaN."""
        bs, dev = self.block_size, self.device
        if rows:
            seqs = [self._seqs[k] for k in keys]
            lens = [s.prompt_len + len(s.tokens) - 1 - s.shared * bs for s in seqs]  # written before this step
            tables = [s.blocks[s.shared:][:-(-n // bs)] for s, n in zip(seqs, lens)]
        else:
            tables = [list(g[1]) for g in keys]
            lens = [len(t) * bs for t in tables]
        width = max(len(t) for t in tables)
        if width == 0:
            return
        got = paged_attn.gather_head_major(self.cache[layer][0], self.cache[layer][1], _table(tables, width, dev))
        past = torch.arange(width * bs, device=dev)[None, :] >= torch.tensor(lens, device=dev)[:, None]
        at = torch.tensor(slots, device=dev)
        for d, g in zip(dst, got):
            t = min(width * bs, d.shape[2])  # a row's rectangle may end inside its last block
            d[:, at, :t] = g.masked_fill_(past[None, :, :, None], 0)[:, :, :t].to(d.dtype)

    def _index_rows(self, keys):
        """Set each part's batch, slots and index for this set of running rows. Groups with no running row point at
        any running row (cascade_decode_attention_torch needs a valid one)."""
        t = lambda x: torch.tensor(x, device=self.device)
        for pi, part in enumerate(self._parts):
            mine = [(b, self._where[k][1]) for b, k in enumerate(keys) if self._where[k][0] == pi]
            part.batch, part.slots = [b for b, _ in mine], [r for _, r in mine]
            if not mine:
                continue
            members = [[] for _ in part.groups]
            for j, r in enumerate(part.slots):
                members[part.row_group[r]].append(j)
            width = max(len(m) for m in members)
            row_slot = [0] * len(mine)
            for g, m in enumerate(members):
                for i, j in enumerate(m):
                    row_slot[j] = g * width + i
            part.index = (t(part.batch), t(part.slots),
                          None if part.slots == list(range(len(part.rows))) else t(part.slots),
                          t([[m[min(i, len(m) - 1)] if m else 0 for i in range(width)] for m in members]), t(row_slot),
                          paged_attn.length_mask(t(part.shared_len), max(part.shared_len), self.dtype))

    def _sample_into(self, seqs, logits):
        p = self._params
        u = _uniform(p.seed, [s.prompt for s in seqs], [s.sample for s in seqs], [len(s.tokens) for s in seqs],
                     logits.device)
        tok, lp = sample_tokens(logits[:, :self.vocab_size], p.temperature, p.top_k, p.top_p, u)
        for s, t, l in zip(seqs, tok.tolist(), lp.tolist()):
            s.tokens.append(t)
            s.logprobs.append(l)

    def _finish_reason(self, s):
        p = self._params
        if s.tokens[-1] in p.stop_token_ids:
            return "eos"
        if p.stop_strings:
            longest = max(len(x) for x in p.stop_strings)
            tail = self.tokenizer.decode(s.tokens[-(longest + 8):])  # a token is at least one char
            if any(x in tail for x in p.stop_strings):
                return "stop"
        if len(s.tokens) >= p.max_new_tokens:
            return "length"
        return None


class DecodeGraphs:
    """CUDA graphs of Sampler._paged_forward, one per batch bucket, captured on first use. Inputs are copied into
    static buffers padded to the bucket: padding rows write no K/V (slot -1) and attend to nothing (length 0);
    table columns past a row's length are never read. The graphs share one memory pool, which is safe because
    each replay's logits are consumed before the next replay. capture=False runs the same padded path eagerly
    (the CPU tests check it that way). Not yet run on a GPU: verify against capture=False there first."""

    def __init__(self, forward, max_batch, width, device, capture, key=None):
        self.forward, self.capture, self.key = forward, capture, key
        self.buckets = [b for b in (1, 2, 4, 8) if b < max_batch] + list(range(16, max_batch + 16, 16))
        n = self.buckets[-1]
        self.tokens = torch.zeros(n, dtype=torch.long, device=device)
        self.pos = torch.zeros(n, dtype=torch.long, device=device)
        self.slots = torch.full((n,), -1, dtype=torch.long, device=device)
        self.tables = torch.zeros(n, width, dtype=torch.int32, device=device)
        self.lens = torch.zeros(n, dtype=torch.int32, device=device)
        self.graphs, self.pool = {}, None

    def __call__(self, tokens, pos, slots, tables, lens):
        b = len(tokens)
        n = next(x for x in self.buckets if x >= b)
        self.tokens[:b], self.pos[:b], self.slots[:b], self.lens[:b] = tokens, pos, slots, lens
        self.tables[:b, :tables.shape[1]] = tables
        self.slots[b:n], self.lens[b:n] = -1, 0  # rows of an earlier, larger batch must not write again
        args = self.tokens[:n], self.pos[:n], self.slots[:n], self.tables[:n], self.lens[:n]
        if not self.capture:
            return self.forward(*args)[:b]
        if n not in self.graphs:
            self.graphs[n] = self._capture(args)
        graph, logits = self.graphs[n]
        graph.replay()
        return logits[:b]

    def _capture(self, args):
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # warm-up outside the capture: Triton compiles here (same K/V writes)
            self.forward(*args)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self.pool):
            logits = self.forward(*args)
        self.pool = graph.pool()
        return graph, logits


def pack_linear_weight(weight):
    """A [out, in] weight reordered into oneDNN's blocked layout for packed_linear (CPU)."""
    return torch.ops.mkldnn._reorder_linear_weight(weight.detach(), 16)  # 16: the row count it is tuned for


def packed_linear(x, weight, bias=None):
    """F.linear(x, W, bias) with W packed by pack_linear_weight."""
    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")


def _table(rows, width, device):
    """Block-id lists -> int32 [len(rows), width], padded with block 0 (never read past a row's length)."""
    return torch.tensor([r + [0] * (width - len(r)) for r in rows], dtype=torch.int32, device=device)


def sample_tokens(logits, temperature, top_k, top_p, u):
    """Draw one token per row by inverse CDF with uniforms u [B] in (0, 1).
    Returns (tokens [B], logprobs [B]) with logprobs under the full tempered distribution."""
    if temperature == 0:
        tok = logits.argmax(-1)
        return tok, logits.gather(1, tok[:, None])[:, 0].float() - logits.float().logsumexp(-1)
    # Few passes, few [B, vocab] temporaries: on CPU each fresh one costs page faults, not just arithmetic.
    z = logits.float() / temperature
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


def _free_memory(device):
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
    from model import CheckpointError
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
