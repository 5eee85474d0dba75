"""The sampler's GPU path: one paged KV cache (kept between generate calls until free()), decode attention through
the block tables (paged_attn.py), the decode step replayed from CUDA graphs per batch bucket (DecodeGraphs). The
tests run it on CPU, eagerly or through DecodeGraphs uncaptured. The interface, shared with decode_store.py (CPU):
    begin(blocks, params, longest, stats) -> blocks   ready for a generate call, with at least `blocks`
    prefill_cache()                                   per layer (k, v) [blocks, block_size, kv_heads, head_dim]
    prefilled(seqs)                                   prefill wrote these sequences' K/V
    decode(seqs, tokens, pos) -> logits               one decode step, through the model's forward(tokens, pos,
                                                      attention(q, k, v, layer)) given to the constructor
    end(), free()                                     after a generate call; release everything
"""
import torch

import paged_attn
from scheduler import block_table


class PagedCache:
    def __init__(self, config, block_size, dtype, device, forward, max_batch, cuda_graphs):
        self.config, self.block_size, self.dtype, self.device = config, block_size, dtype, device
        self.forward, self.scale = forward, config.head_dim ** -0.5
        self.max_batch, self.cuda_graphs = max_batch, cuda_graphs
        self.cache, self.graphs = None, None  # cache: [layers, 2, blocks, block_size, kv_heads, head_dim]

    def begin(self, blocks, params, longest, stats):
        """A cache of at least `blocks` (the current one if large enough) and graphs for this call's rows and table
        width (a power of two, so calls share them). Returns the blocks the cache holds."""
        if self.cache is None or self.cache.shape[2] < blocks:
            cfg = self.config
            self.cache = None  # free the old one first
            # zeros: paged attention multiplies masked (p = 0) stale slots by their values, and 0 * NaN = NaN
            self.cache = torch.zeros(cfg.num_hidden_layers, 2, blocks, self.block_size, cfg.num_key_value_heads,
                                     cfg.head_dim, dtype=self.dtype, device=self.device)
        if self.cuda_graphs:
            width = 1 << (-(-(longest + params.max_new_tokens) // self.block_size) - 1).bit_length()
            key = (self.cache.data_ptr(), max(self.max_batch, params.n), width)
            if self.graphs is None or self.graphs.key != key:
                self.graphs = DecodeGraphs(self.paged_forward, key[1], width, self.device,
                                           capture=self.device.type == "cuda", key=key)
        return self.cache.shape[2]

    def prefill_cache(self):
        return self.cache

    def prefilled(self, seqs):
        pass  # their K/V are in the cache already

    def decode(self, seqs, tokens, pos):
        bs, dev = self.block_size, self.device
        slots = torch.tensor([s.blocks[s.pos // bs] * bs + s.pos % bs for s in seqs], device=dev)
        tables = block_table([s.blocks for s in seqs], max(len(s.blocks) for s in seqs), dev)
        return (self.graphs or self.paged_forward)(tokens, pos, slots, tables, (pos + 1).int())

    def end(self):
        pass  # the cache stays for the next call

    def free(self):
        self.cache, self.graphs = None, None
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def paged_forward(self, tokens, pos, slots, tables, lens):
        """The decode step through block tables [B, width] with lens [B] tokens each (what DecodeGraphs captures)."""
        def attention(q, k, v, layer):
            kc, vc = self.cache[layer]
            paged_attn.store_kv(k, v, kc, vc, slots)
            return paged_attn.paged_decode_attention(q, kc, vc, tables, lens, self.scale)
        return self.forward(tokens, pos, attention)


class DecodeGraphs:
    """CUDA graphs of PagedCache.paged_forward, one per batch bucket, captured on first use, on inputs copied into
    static buffers padded to the bucket: padding rows write no K/V (slot -1) and attend to nothing (length 0). The
    graphs share one memory pool: each replay's logits are consumed before the next. capture=False runs the same
    padded path eagerly (the CPU tests). Not yet run on a GPU: verify against capture=False there first."""

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
