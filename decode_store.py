"""The sampler's CPU path (paged_cache.py's interface): decode attention over a store of dense K/V rectangles.

On CPU a gather of every block at every step would cost as much as the matmuls, so the blocks are only the budget's
unit and the K/V live in rectangles (plan): each prompt's shared K/V once for its samples, each row's own K/V, rows
of similar length together (paged_attn.cascade_decode_attention_torch). The paged cache is only a staging area that
prefill writes and the next decode step copies into the store and drops. Beyond the budget's blocks: padding (<= 1/8
per rectangle), 2 blocks of headroom per row, finished rows until the next re-layout, and a new prompt's staged
copy for one step. Nothing is kept after end().
"""
import math
from dataclasses import dataclass

import torch

import paged_attn
from scheduler import block_table


@dataclass(eq=False)
class Part:
    """One slice of the store: some groups (a prompt's running samples and the prompt blocks they share), kept per
    layer as shared K/V [n_kv, groups, max shared_len, d] and private K/V [n_kv, rows, cap, d]."""
    groups: list                  # group keys (prompt, shared block ids)
    shared_len: list              # tokens each group shares
    rows: list                    # Seqs, in private slot order
    row_group: list               # each row's index in groups
    cap: int                      # private tokens a row may reach before the store is laid out again
    batch: list = None            # for the current running rows (index_rows): the batch rows stored here,
    slots: list = None            # their slots,
    index: tuple = None           # and the tensors cascade_decode_attention_torch takes for them


class DecodeStore:
    def __init__(self, config, block_size, dtype, device, forward):
        self.config, self.block_size, self.dtype, self.device = config, block_size, dtype, device
        self.forward, self.scale = forward, config.head_dim ** -0.5
        self.end()

    def begin(self, blocks, params, longest, stats):
        """Get ready for a generate call: the staging cache will hold `blocks` (allocated by the first prefill)."""
        self.blocks, self.max_new_tokens, self.stats = blocks, params.max_new_tokens, stats
        return blocks

    def end(self):
        """Forget the staging cache and the store (their tensors are freed with them)."""
        self.cache, self.parts, self.where, self.gwhere, self.kv = None, None, {}, {}, {}  # Seq/group -> (part, slot)
        self.old, self.staged, self.rows_key = None, set(), None

    free = end

    def prefill_cache(self):
        """The staging cache, per layer (freed once the store holds it): head-major [2, kv_heads, blocks, block_size,
        head_dim] seen through a permuted view, so a gather lands in GEMM layout. Uninitialized: blocks never written
        are never backed by memory; gather_staged zeroes the rest."""
        if self.cache is None:
            cfg = self.config
            self.cache = [torch.empty(2, cfg.num_key_value_heads, self.blocks, self.block_size, cfg.head_dim,
                                      dtype=self.dtype, device=self.device).permute(0, 2, 3, 1, 4)
                          for _ in range(cfg.num_hidden_layers)]
        return self.cache

    def prefilled(self, seqs):
        """These sequences' K/V are staged: the next decode step moves them into the store."""
        self.staged.update(seqs)

    def decode(self, seqs, tokens, pos):
        """One decode step's logits over the store, this step's K/V appended. The store is laid out again (plan, then
        build per layer) when a staged row arrives, a row outgrows its part, or half the stored rows are gone (finished
        rows are attended and ignored until then: rows finishing one by one cost log-many re-layouts)."""
        dev, where = self.device, self.where
        lens = [s.pos + 1 - s.shared * self.block_size for s in seqs]  # private tokens, this step's included
        if (self.parts is None or any(s in self.staged or s not in where for s in seqs)
                or 2 * len(seqs) < len(where) or any(n > self.parts[where[s][0]].cap for s, n in zip(seqs, lens))):
            self.plan(seqs, lens)
        if tuple(seqs) != self.rows_key:
            self.rows_key = tuple(seqs)
            self.index_rows(seqs)
        steps = []  # per part with running rows: (part index, its index tensors, private mask, positions)
        for pi, part in enumerate(self.parts):
            if part.batch:
                row_lens = [1] * len(part.rows)  # rows nobody reads: any length, their outputs are dropped
                for b, r in zip(part.batch, part.slots):
                    row_lens[r] = lens[b]
                mask = paged_attn.length_mask(torch.tensor(row_lens, device=dev), max(row_lens), self.dtype)
                steps.append((pi, part.index, mask, torch.tensor([lens[b] - 1 for b in part.batch], device=dev)))

        def attention(q, k, v, layer):
            if layer not in self.kv:
                self.build(layer)
            out = torch.empty_like(q)
            for pi, (rows, at, private_rows, group_rows, row_slot, shared_mask), mask, last in steps:
                sk, sv, pk, pv = self.kv[layer][pi]
                pk[:, at, last] = k[rows].transpose(0, 1).to(pk.dtype)
                pv[:, at, last] = v[rows].transpose(0, 1).to(pv.dtype)
                t = mask.shape[1]
                out[rows] = paged_attn.cascade_decode_attention_torch(
                    q[rows], self.scale, (sk, sv), shared_mask, group_rows, row_slot, (pk[:, :, :t], pv[:, :, :t]),
                    mask, private_rows)
            return out

        logits = self.forward(tokens, pos, attention)
        self.old = None
        if self.staged:
            self.staged.clear()
            self.cache = None
        return logits

    def plan(self, seqs, lens):
        """Lay the store out anew: groups (a prompt's samples and the blocks they share; rows sharing nothing are
        their own group) longest first, a new part whenever a group falls below 7/8 of its part's longest (padding
        <= 1/8). Each row gets 2 blocks of headroom, capped at max_new_tokens. build fills the rectangles."""
        bs, groups = self.block_size, {}
        for s, n in zip(seqs, lens):
            groups.setdefault((s.prompt, tuple(s.blocks[:s.shared])), []).append((s, n))
        size = lambda g: len(g[0][1]) * bs + max(n for _, n in g[1])
        parts, top = [], 0
        for g in sorted(groups.items(), key=size, reverse=True):
            if not parts or 8 * size(g) < 7 * top:
                parts.append(Part([], [], [], [], 0))
                top = size(g)
            part = parts[-1]
            part.row_group += [len(part.groups)] * len(g[1])
            part.groups.append(g[0])
            part.shared_len.append(len(g[0][1]) * bs)
            part.rows += [s for s, _ in g[1]]
            part.cap = max(part.cap, max(min(n + 2 * bs, s.prompt_len + self.max_new_tokens - s.shared * bs)
                                         for s, n in g[1]))
        self.old = (self.where, self.gwhere, self.kv)
        self.parts, self.kv, self.rows_key = parts, {}, None
        self.where = {k: (i, r) for i, p in enumerate(parts) for r, k in enumerate(p.rows)}
        self.gwhere = {g: (i, j) for i, p in enumerate(parts) for j, g in enumerate(p.groups)}
        self.stats["store_layouts"] += 1
        self.stats["store_tokens"] = max(self.stats["store_tokens"], sum(
            len(p.groups) * max(p.shared_len) + len(p.rows) * p.cap for p in parts))

    def build(self, layer):
        """This layer's rectangles: stored rows and groups copied from the old ones (then dropped), staged ones
        gathered from the staging cache."""
        cfg = self.config
        old_where, old_gwhere, old_kv = self.old
        old = old_kv.pop(layer, None)
        shapes = [(cfg.num_key_value_heads, n, t, cfg.head_dim) for p in self.parts
                  for n, t in [(len(p.groups), max(p.shared_len))] * 2 + [(len(p.rows), p.cap)] * 2]
        # one buffer per layer: large enough to be mmapped by malloc, so a re-layout gives the old one back to the
        # OS instead of leaving a fragmented heap behind (many small rectangles grew RSS run by run)
        flat = torch.zeros(sum(math.prod(s) for s in shapes), dtype=self.dtype, device=self.device)
        views = [x.view(s) for x, s in zip(flat.split([math.prod(s) for s in shapes]), shapes)]
        self.kv[layer] = []
        for i, part in enumerate(self.parts):
            kv = tuple(views[4 * i:4 * i + 4])
            for at, keys, was in ((0, part.groups, old_gwhere), (2, part.rows, old_where)):
                moves, fresh = {}, []  # old part -> [(new slot, old slot)]; new slots to gather
                for j, key in enumerate(keys):
                    if old is not None and key in was and key not in self.staged:
                        moves.setdefault(was[key][0], []).append((j, was[key][1]))
                    else:
                        fresh.append(j)
                for pi, pairs in moves.items():
                    dst, src = (torch.tensor(x, device=self.device) for x in zip(*pairs))
                    for d, s in zip(kv[at:at + 2], old[pi][at:at + 2]):
                        t = min(d.shape[2], s.shape[2])
                        d[:, dst, :t] = s[:, src, :t]
                if fresh and kv[at].shape[2]:
                    self.gather_staged(layer, kv[at:at + 2], [keys[j] for j in fresh], fresh, rows=at == 2)
            self.kv[layer].append(kv)
        if self.staged:  # every running staged row is in the store now: this layer's staging is done with
            self.cache[layer] = None

    def gather_staged(self, layer, dst, keys, slots, rows):
        """Copy staged K/V into rectangles dst (K, V) at slots: groups' shared blocks, or (rows) rows' private blocks
        before this step's token. Past their length it zeroes: staging is uninitialized, and a masked 0 * NaN is NaN."""
        bs, dev = self.block_size, self.device
        if rows:
            lens = [s.pos - s.shared * bs for s in keys]  # written before this step
            tables = [s.blocks[s.shared:][:-(-n // bs)] for s, n in zip(keys, lens)]
        else:
            tables = [list(g[1]) for g in keys]
            lens = [len(t) * bs for t in tables]
        width = max(len(t) for t in tables)
        if width == 0:
            return
        got = paged_attn.gather_head_major(self.cache[layer][0], self.cache[layer][1], block_table(tables, width, dev))
        past = torch.arange(width * bs, device=dev)[None, :] >= torch.tensor(lens, device=dev)[:, None]
        at = torch.tensor(slots, device=dev)
        for d, g in zip(dst, got):
            t = min(width * bs, d.shape[2])  # a row's rectangle may end inside its last block
            d[:, at, :t] = g.masked_fill_(past[None, :, :, None], 0)[:, :, :t].to(d.dtype)

    def index_rows(self, seqs):
        """Set each part's batch, slots and index for these running rows. A group with no running row points at any
        running row (cascade_decode_attention_torch needs a valid one)."""
        t = lambda x: torch.tensor(x, device=self.device)
        for pi, part in enumerate(self.parts):
            mine = [(b, self.where[s][1]) for b, s in enumerate(seqs) if self.where[s][0] == pi]
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
