"""Paged KV-cache kernels for sample.py: write new K/V into the cache, and decode attention over it; and the CPU
decode store's cascade attention (cascade_decode_attention_torch).

Cache layout, per layer: k_cache and v_cache, each [num_blocks, block_size, n_kv_heads, head_dim], contiguous,
any float dtype. A token's slot is block_id * block_size + offset; a sequence's block table lists its blocks in order.

Each op has a Triton kernel and a torch reference. `store_kv` and `paged_decode_attention` pick Triton (optional)
on CUDA or under TRITON_INTERPRET=1 (set before import), else torch; on CUDA, flash-attn's paged decode when it is
installed and supports the block size (`_flash_decode`).
"""
import os

import torch
import torch.nn.functional as F

try:
    import triton
    import triton.language as tl
    HAVE_TRITON = True
except ImportError:  # the CPU install has no triton
    HAVE_TRITON = False

try:
    from flash_attn import flash_attn_with_kvcache
    HAVE_FLASH_ATTN = True
except ImportError:
    HAVE_FLASH_ATTN = False

# triton.jit reads TRITON_INTERPRET when the kernels below are decorated, so the choice is made once, at import.
INTERPRET = HAVE_TRITON and os.environ.get("TRITON_INTERPRET", "0") == "1"


def backend(t):
    """Which implementation the public ops use for tensors like `t`: "triton" or "torch"."""
    return "triton" if HAVE_TRITON and (t.is_cuda or INTERPRET) else "torch"


# ---------------------------------------------------------------------------------------------------------------
# store_kv: k, v [N, n_kv, head_dim] -> cache slots; slot -1 means "skip this token" (e.g. padding).

def store_kv(k, v, k_cache, v_cache, slot_mapping):
    (store_kv_triton if backend(k) == "triton" else store_kv_torch)(k, v, k_cache, v_cache, slot_mapping)


def store_kv_torch(k, v, k_cache, v_cache, slot_mapping):
    """Any cache layout, including a permuted view (decode_store.py's head-major staging cache)."""
    keep = slot_mapping >= 0  # -1: padding (prefill)
    slots = slot_mapping[keep].long()
    blocks, offsets = slots // k_cache.shape[1], slots % k_cache.shape[1]
    k_cache[blocks, offsets] = k[keep].to(k_cache.dtype)
    v_cache[blocks, offsets] = v[keep].to(v_cache.dtype)


if HAVE_TRITON:
    @triton.jit
    def _store_kv_kernel(k_ptr, v_ptr, k_cache_ptr, v_cache_ptr, slot_ptr, stride_k, stride_v,
                         ROW: tl.constexpr, ROW_PAD: tl.constexpr):
        # One program per token: copy its n_kv * head_dim values (one contiguous row) into its slot.
        i = tl.program_id(0)
        slot = tl.load(slot_ptr + i).to(tl.int64)  # int64: slot * ROW overflows int32 on a large cache
        if slot < 0:
            return
        cols = tl.arange(0, ROW_PAD)
        mask = cols < ROW
        k = tl.load(k_ptr + i * stride_k + cols, mask=mask)
        v = tl.load(v_ptr + i * stride_v + cols, mask=mask)
        tl.store(k_cache_ptr + slot * ROW + cols, k, mask=mask)
        tl.store(v_cache_ptr + slot * ROW + cols, v, mask=mask)


def _rows(x):
    """x [N, n_kv, d] with each token's n_kv * d values contiguous (true for views of a projection's output)."""
    return x if x.stride(2) == 1 and x.stride(1) == x.shape[2] else x.contiguous()


def store_kv_triton(k, v, k_cache, v_cache, slot_mapping):
    assert k_cache.is_contiguous() and v_cache.is_contiguous() and k_cache.shape == v_cache.shape
    n, n_kv, d = k.shape
    assert k_cache.shape[2:] == (n_kv, d) and v.shape == k.shape and slot_mapping.shape == (n,)
    if n == 0:  # a launch grid of 0 programs is an error
        return
    # Cast on the host: torch rounds to nearest even, as store_kv_torch does (the interpreter's store truncates).
    k, v = _rows(k.to(k_cache.dtype)), _rows(v.to(v_cache.dtype))
    row = n_kv * d
    _store_kv_kernel[(n,)](k, v, k_cache, v_cache, slot_mapping, k.stride(0), v.stride(0),
                           ROW=row, ROW_PAD=triton.next_power_of_2(row))


# ---------------------------------------------------------------------------------------------------------------
# paged_decode_attention: one query token per sequence against its cached tokens, grouped-query attention.
# q [B, H, d] with H = n_kv * G (query head h reads kv head h // G); block_tables [B, max_blocks] int32;
# context_lens [B] int32 = cached tokens to attend (including the current one). Returns [B, H, d] in q's dtype.
# A sequence with context_len 0 (a padding row) gets zeros.

def paged_decode_attention(q, k_cache, v_cache, block_tables, context_lens, scale):
    if (q.is_cuda and HAVE_FLASH_ATTN and k_cache.shape[1] % 256 == 0 and q.dtype in (torch.float16, torch.bfloat16)
            and q.dtype == k_cache.dtype):
        return _flash_decode(q, k_cache, v_cache, block_tables, context_lens, scale)
    if backend(q) == "triton":
        return paged_decode_attention_triton(q, k_cache, v_cache, block_tables, context_lens, scale)
    return paged_decode_attention_torch(q, k_cache, v_cache, block_tables, context_lens, scale)


def paged_decode_attention_torch(q, k_cache, v_cache, block_tables, context_lens, scale):
    b, h, d = q.shape
    block_size, n_kv = k_cache.shape[1:3]
    g = h // n_kv
    lens = context_lens.long()
    n_blocks = max(1, -(-int(lens.max()) // block_size))
    t = n_blocks * block_size
    # Table entries past a sequence's last used block may be garbage (-1, stale ids): never index with them.
    used = torch.arange(n_blocks, device=q.device)[None, :] * block_size < lens[:, None]
    ids = torch.where(used, block_tables[:, :n_blocks].long(), 0).flatten()
    valid = torch.arange(t, device=q.device)[None, :] < lens[:, None]  # [B, T]
    k, v = k_cache[ids], v_cache[ids]
    # Slots past a sequence's length hold stale or never-written memory (NaN, inf): zero those rows, since a
    # masked score times a NaN value is still NaN.
    stale = (~valid).flatten().nonzero().squeeze(1)  # index_fill_ touches only these (a bool mask reads all)
    k.view(b * t, -1).index_fill_(0, stale, 0)
    v.view(b * t, -1).index_fill_(0, stale, 0)
    k, v = k.view(b, t, n_kv, d).transpose(1, 2), v.view(b, t, n_kv, d).transpose(1, 2)  # [B, n_kv, T, d]
    # The G query heads of a kv head are G "query positions" of one attention over that head's keys.
    qg = q.view(b, n_kv, g, d).float()
    out = F.scaled_dot_product_attention(qg, k.float(), v.float(), attn_mask=valid[:, None, None, :], scale=scale)
    out = torch.where(lens[:, None, None, None] > 0, out, 0.0)  # an all-masked row is NaN from the softmax
    return out.reshape(b, h, d).to(q.dtype)


if HAVE_TRITON:
    @triton.jit
    def _paged_decode_kernel(out_ptr, q_ptr, k_cache_ptr, v_cache_ptr, block_tables_ptr, context_lens_ptr, scale,
                             stride_qb, stride_qh, stride_ob, stride_oh, stride_cb, stride_ct, stride_ch, stride_bt,
                             m_ptr, l_ptr, acc_ptr, blocks_per_split,
                             G: tl.constexpr, G_PAD: tl.constexpr, BLOCK: tl.constexpr, D: tl.constexpr,
                             USE_DOT: tl.constexpr, PRECISION: tl.constexpr, SPLIT: tl.constexpr):
        # One program per (sequence, kv head, split): its G query heads share each K/V block load. Online softmax
        # over the split's blocks, all arithmetic in fp32. Without SPLIT there is one split holding every block
        # and the program writes the normalized output; with SPLIT (flash-decoding, for few long sequences) it
        # writes its running max, sum and unnormalized accumulator, and _combine_splits merges them.
        seq = tl.program_id(0)
        kvh = tl.program_id(1)
        split = tl.program_id(2)
        g = tl.arange(0, G_PAD)
        dd = tl.arange(0, D)
        tt = tl.arange(0, BLOCK)
        g_ok = g < G  # G_PAD rounds G up to a power of two (and to 16 for tl.dot); extra rows are zeros
        heads = kvh * G + g
        q = tl.load(q_ptr + seq * stride_qb + heads[:, None] * stride_qh + dd[None, :], mask=g_ok[:, None], other=0.0)
        ctx = tl.load(context_lens_ptr + seq)

        m = tl.full([G_PAD], float("-inf"), tl.float32)  # running max of the scores, per query head
        l = tl.zeros([G_PAD], tl.float32)  # running sum of exp(score - m)
        acc = tl.zeros([G_PAD, D], tl.float32)  # running sum of exp(score - m) * v
        first = split * blocks_per_split
        for i in range(first, tl.minimum(first + blocks_per_split, tl.cdiv(ctx, BLOCK))):
            blk = tl.load(block_tables_ptr + seq * stride_bt + i).to(tl.int64)
            t_ok = i * BLOCK + tt < ctx  # the last block may be partly filled
            offs = blk * stride_cb + kvh * stride_ch + tt[:, None] * stride_ct + dd[None, :]
            k = tl.load(k_cache_ptr + offs, mask=t_ok[:, None], other=0.0)  # [BLOCK, D]
            v = tl.load(v_cache_ptr + offs, mask=t_ok[:, None], other=0.0)
            if USE_DOT:  # tensor cores on GPU
                s = tl.dot(q.to(k.dtype), tl.trans(k), input_precision=PRECISION)
            else:  # broadcast-and-sum: any G_PAD, exact fp32 (the interpreter and small blocks)
                s = tl.sum(q.to(tl.float32)[:, None, :] * k.to(tl.float32)[None, :, :], axis=2)
            s = tl.where(t_ok[None, :], s * scale, float("-inf"))  # [G_PAD, BLOCK]
            m_new = tl.maximum(m, tl.max(s, axis=1))  # finite: every visited block holds >= 1 valid token
            alpha = tl.exp(m - m_new)
            p = tl.exp(s - m_new[:, None])
            l = l * alpha + tl.sum(p, axis=1)
            if USE_DOT:
                pv = tl.dot(p.to(v.dtype), v, input_precision=PRECISION)
            else:
                pv = tl.sum(p[:, :, None] * v.to(tl.float32)[None, :, :], axis=1)
            acc = acc * alpha[:, None] + pv
            m = m_new
        if SPLIT:  # partials are [B, H, splits] (+ [D] for acc), contiguous fp32
            part = (seq * tl.num_programs(1) * G + heads) * tl.num_programs(2) + split
            tl.store(m_ptr + part, m, mask=g_ok)
            tl.store(l_ptr + part, l, mask=g_ok)
            tl.store(acc_ptr + part[:, None] * D + dd[None, :], acc, mask=g_ok[:, None])
        else:
            out = acc / tl.where(l > 0, l, 1.0)[:, None]  # context_len 0 -> zeros
            tl.store(out_ptr + seq * stride_ob + heads[:, None] * stride_oh + dd[None, :], out, mask=g_ok[:, None])


def _default_splits(q, n_kv, max_blocks):
    """Split the blocks only when (sequence, kv head) programs alone leave most of the GPU idle. Decided from
    shapes, never from context_lens' values, so it needs no device sync (CUDA-graph safe). UNTESTED ON GPU."""
    if not q.is_cuda:
        return 1
    sms = torch.cuda.get_device_properties(q.device).multi_processor_count
    programs = q.shape[0] * n_kv
    if programs >= sms:
        return 1
    return max(1, min(-(-2 * sms // programs), max_blocks // 8, 32))  # keep >= 8 blocks per split


def _combine_splits(m, l, acc):
    """Merge per-split softmax partials: m, l [B, H, S], acc [B, H, S, D] -> [B, H, D]."""
    m_max = m.amax(dim=-1, keepdim=True)
    w = torch.exp(m - torch.where(torch.isfinite(m_max), m_max, 0.0))  # an empty split has m = -inf: weight 0
    den = (w * l).sum(dim=-1)
    return (w.unsqueeze(-1) * acc).sum(dim=2) / torch.where(den > 0, den, 1.0).unsqueeze(-1)


def paged_decode_attention_triton(q, k_cache, v_cache, block_tables, context_lens, scale, use_dot=None,
                                  num_splits=None):
    """use_dot: tl.dot for QK^T and PV (default: on CUDA, when the tile sizes allow it); else broadcast-and-sum.
    num_splits: split each sequence's blocks over this many programs (default: _default_splits)."""
    b, h, d = q.shape
    _, block_size, n_kv, d_c = k_cache.shape
    assert d_c == d and h % n_kv == 0, f"q {tuple(q.shape)} does not fit cache {tuple(k_cache.shape)}"
    assert k_cache.is_contiguous() and v_cache.is_contiguous() and k_cache.shape == v_cache.shape
    assert block_size & (block_size - 1) == 0 and d & (d - 1) == 0, "block_size and head_dim must be powers of 2"
    assert q.stride(2) == 1 and block_tables.stride(1) == 1
    g = h // n_kv
    if use_dot is None:
        use_dot = q.is_cuda and block_size >= 16 and d >= 16
    g_pad = max(triton.next_power_of_2(g), 16 if use_dot else 1)  # tl.dot needs M >= 16
    out = torch.empty_like(q)
    if b == 0:  # a launch grid of 0 programs is an error
        return out
    max_blocks = block_tables.shape[1]
    splits = num_splits or _default_splits(q, n_kv, max_blocks)
    per_split = -(-max_blocks // splits)
    if splits > 1:
        m = q.new_empty(b, h, splits, dtype=torch.float32)
        l, acc = torch.empty_like(m), q.new_empty(b, h, splits, d, dtype=torch.float32)
    else:
        m = l = acc = out  # unused
    _paged_decode_kernel[(b, n_kv, splits)](
        out, q, k_cache, v_cache, block_tables, context_lens, float(scale),
        q.stride(0), q.stride(1), out.stride(0), out.stride(1),
        k_cache.stride(0), k_cache.stride(1), k_cache.stride(2), block_tables.stride(0),
        m, l, acc, per_split,
        G=g, G_PAD=g_pad, BLOCK=block_size, D=d, USE_DOT=use_dot, SPLIT=splits > 1,
        PRECISION="ieee" if k_cache.dtype == torch.float32 else "tf32")  # ieee: an fp32 cache stays exact (no tf32)
    return _combine_splits(m, l, acc).to(q.dtype) if splits > 1 else out


# ---------------------------------------------------------------------------------------------------------------
# flash-attn's paged KV-cache decode. UNTESTED ON GPU: written against flash-attn 2's documented
# flash_attn_with_kvcache(q [B, 1, H, d], k_cache/v_cache [num_blocks, page_size, n_kv, d] (our layout),
# cache_seqlens [B] int32, block_table [B, max_blocks] int32), which requires page_size % 256 == 0.
# Check it against paged_decode_attention_torch on a GPU before relying on it.

def _flash_decode(q, k_cache, v_cache, block_tables, context_lens, scale):
    out = flash_attn_with_kvcache(q.unsqueeze(1), k_cache, v_cache, cache_seqlens=context_lens.int(),
                                  block_table=block_tables.int(), softmax_scale=scale, causal=False)
    return out.squeeze(1)


# ---------------------------------------------------------------------------------------------------------------
# cascade_decode_attention: decode attention that reads a shared prefix once per group (CPU path of sample.py).
# After a fork, the n samples of a prompt point at the same prompt blocks. Per-sequence paged attention reads
# (and on CPU, copies) those blocks n times and does n matrix-vector products; here the prefix K/V of a group
# are gathered once and all its queries go through one matrix product. Each sequence's private blocks (the
# partial prompt block, then its own tokens) are attended separately, and the two parts are merged by their
# softmax statistics. The result equals paged_decode_attention over shared + private tables.

def cascade_decode_attention_torch(q, scale, shared_kv, shared_mask, group_rows, row_slot, private_kv, private_mask,
                                   private_rows=None):
    """CPU decode attention in two parts merged by log-sum-exp. q [B, H, d]. Per group: shared_kv, K and V
    [n_kv, S, Ts, d] (gather_head_major of the shared tables); group_rows [S, R] its batch rows (padded with any
    valid row); row_slot [B] row b's position in group_rows.flatten(). Per row: private_kv, K and V [n_kv, B, Tp, d].
    shared_mask [S, Ts], private_mask [B, Tp]: length_mask of the token counts (a row may have no shared tokens,
    never no private ones). private_rows [B] (optional): row b's K/V and mask are row private_rows[b] of
    private_kv and private_mask, which may hold rows nobody reads. Returns [B, H, d] in q's dtype."""
    b, h, d = q.shape
    n_kv = private_kv[0].shape[0]
    g = h // n_kv
    q = q.view(b, n_kv, g, d).transpose(0, 1)                       # [n_kv, B, g, d]
    qp = q if private_rows is None else q.new_zeros(n_kv, private_kv[0].shape[1], g, d).index_copy_(1, private_rows, q)
    o2, lse2 = _attend(qp, *private_kv, private_mask, scale)  # queries scattered to their K/V rows (others: zeros)
    if private_rows is not None:
        o2, lse2 = o2[:, private_rows], lse2[:, private_rows]
    if shared_kv[0].shape[2] == 0:  # nothing shared (n = 1): plain attention over the private part
        return o2.transpose(0, 1).reshape(b, h, d)
    s, r = group_rows.shape
    qs = q[:, group_rows.flatten()].reshape(n_kv, s, r * g, d)      # a group's query rows side by side: one GEMM
    o1, lse1 = _attend(qs, *shared_kv, shared_mask, scale)
    o1, lse1 = o1.reshape(n_kv, s * r, g, d)[:, row_slot], lse1.reshape(n_kv, s * r, g)[:, row_slot]
    lse = torch.logaddexp(lse1, lse2)
    out = o1.float() * (lse1 - lse).exp()[..., None] + o2.float() * (lse2 - lse).exp()[..., None]
    return out.transpose(0, 1).reshape(b, h, d).to(q.dtype)


def length_mask(lens, t, dtype):
    """Additive attention mask [N, t]: 0 on the first lens[n] tokens, -1e30 after. Finite, so a row with no
    tokens gets a log-sum-exp near -1e30 (weight 0 when merged) instead of NaN."""
    mask = torch.zeros(len(lens), t, dtype=dtype, device=lens.device)
    return mask.masked_fill_(torch.arange(t, device=lens.device)[None, :] >= lens[:, None], -1e30)


def gather_head_major(k_cache, v_cache, tables):
    """K and V of the blocks in tables [N, nb], each as [n_kv, N, nb * block_size, d] (GEMM layout), fresh tensors."""
    n, nb = tables.shape
    num_blocks, block_size, n_kv, d = k_cache.shape
    ids = tables.flatten().long()
    out = []
    for cache in (k_cache, v_cache):
        head_major = cache.permute(2, 0, 1, 3)  # [n_kv, blocks, block_size, d]
        if head_major.is_contiguous():  # the CPU decode store's staging cache: one gather, already in GEMM layout
            # along dim 0 of [n_kv * blocks, block_size * d]: far faster than along dim 1 on CPU
            rows = (torch.arange(n_kv, device=ids.device)[:, None] * num_blocks + ids[None]).flatten()
            x = head_major.reshape(-1, block_size * d).index_select(0, rows)
            out.append(x.view(n_kv, n, nb * block_size, d))
        else:  # token-major cache: gather, then a transposed copy
            x = cache.index_select(0, ids).view(n, nb * block_size, n_kv, d)
            out.append(x.permute(2, 0, 1, 3).contiguous())
    return tuple(out)


def _attend(q, k, v, mask, scale):
    """Attention of q [n_kv, N, M, d] over k, v [n_kv, N, T, d] with an additive mask [N, T] (length_mask), by
    torch's CPU flash-attention kernel: (out [n_kv, N, M, d], log-sum-exp of the scores [n_kv, N, M] in fp32)."""
    return torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q, k, v, attn_mask=mask[None, :, None],
                                                                      scale=scale)[:2]
