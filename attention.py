"""Dense causal attention over the tokens of one forward call (training, and the sampler's prefill): plain causal,
packed documents (segment ids), or a prompt shared by its completions (prefix ids: GRPO's tree mask). flash-attn on
CUDA in bf16/fp16, torch's SDPA otherwise. Decode over a paged KV cache is paged_attn.py's.
"""
import torch
import torch.nn.functional as F

try:  # optional: used on CUDA for bf16/fp16, SDPA otherwise
    from flash_attn import flash_attn_func, flash_attn_varlen_func
except ImportError:
    flash_attn_func = flash_attn_varlen_func = None


def dense_attention(segment_ids=None, prefix_ids=None):
    """attend(q, k, v, layer_idx) -> [B, T, H, D] for q [B, T, H, D], k/v [B, T, KV, D]: causal, and
    segment_ids [B, T]: a token sees only earlier tokens with its id (padding is a segment; packed docs 1, 2, ...);
    prefix_ids [B, T] (with segment_ids): it also sees segment prefix_ids (its own id where it has no prefix).
    GRPO's tree mask: the k completions of a prompt each name the prompt's segment as their prefix."""
    mask = runs = None
    if segment_ids is not None and prefix_ids is None:
        T = segment_ids.shape[1]
        causal = torch.ones(T, T, dtype=torch.bool, device=segment_ids.device).tril()
        mask = ((segment_ids[:, :, None] == segment_ids[:, None, :]) & causal)[:, None]  # [B, 1, T, T]

    def attend(q, k, v, layer_idx):
        nonlocal runs
        flash = _use_flash(q)
        if segment_ids is None and flash:
            return flash_attn_func(q, k, v, causal=True)
        if prefix_ids is None and not flash:
            o = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                               attn_mask=mask, is_causal=mask is None, enable_gqa=True)
            return o.transpose(1, 2)
        if runs is None:  # once per forward: the layers share the layout
            runs = _varlen_layout(segment_ids, prefix_ids)
        cu_q, cu_k, max_q, max_k, key_index = runs
        B, T = q.shape[:2]
        k, v = k.flatten(0, 1), v.flatten(0, 1)
        if key_index is not None:  # each completion's keys: its prompt's, then its own
            k, v = k[key_index], v[key_index]
        # causal with fewer queries than keys aligns bottom-right: query i of a completion sees the
        # whole prompt and the completion's first i + 1 tokens
        out = (flash_attn_varlen_func if flash else _varlen_sdpa)(q.flatten(0, 1), k, v, cu_q, cu_k, max_q, max_k,
                                                                  causal=True)
        return out.view(B, T, *out.shape[1:])

    return attend


def _use_flash(q):
    return flash_attn_func is not None and q.is_cuda and q.dtype in (torch.float16, torch.bfloat16)


def _varlen_layout(segment_ids, prefix_ids=None):
    """flash_attn_varlen's cu_seqlens of the queries and of the keys, their maxima, and the flattened key index
    (None without prefixes: the keys are the queries' own runs)."""
    B, T = segment_ids.shape
    new = torch.ones_like(segment_ids, dtype=torch.bool)  # a run of equal ids starts here (rows never merge)
    new[:, 1:] = segment_ids[:, 1:] != segment_ids[:, :-1]
    starts = new.flatten().nonzero().flatten()
    cu = torch.cat([starts, starts.new_tensor([B * T])])  # the runs' offsets in the row-major flattened [B, T]
    lens = cu[1:] - cu[:-1]
    if prefix_ids is None:
        cu = cu.to(torch.int32)
        return cu, cu, int(lens.max()), int(lens.max()), None
    seg, pre = segment_ids.flatten().tolist(), prefix_ids.flatten().tolist()
    bounds = cu.tolist()
    where = {}  # (row, segment id) -> its run (a segment is one run: packing writes it contiguously)
    pieces, k_lens = [], []
    for a, b in zip(bounds[:-1], bounds[1:]):
        where[a // T, seg[a]] = (a, b)
        own = torch.arange(a, b)
        if pre[a] != seg[a]:
            if (a // T, pre[a]) not in where:
                raise ValueError(f"prefix_ids: segment {pre[a]} must come before the tokens that attend to it")
            pa, pb = where[a // T, pre[a]]
            own = torch.cat([torch.arange(pa, pb), own])
        pieces.append(own)
        k_lens.append(len(own))
    k_lens = torch.tensor(k_lens)
    cu_k = torch.cat([k_lens.new_zeros(1), k_lens.cumsum(0)]).to(torch.int32)
    dev = segment_ids.device
    return cu.to(torch.int32).to(dev), cu_k.to(dev), int(lens.max()), int(k_lens.max()), torch.cat(pieces).to(dev)


def _varlen_sdpa(q, k, v, cu_q, cu_k, max_q, max_k, causal=True):
    """flash_attn_varlen_func's contract (q [Nq, H, D], k/v [Nk, KV, D], sequence i = rows cu[i]:cu[i+1], causal
    aligned bottom-right) with SDPA. Prompts and completions pad apart: a short completion never pads to a prompt."""
    lq, lk = cu_q[1:] - cu_q[:-1], cu_k[1:] - cu_k[:-1]
    out = q.new_empty(q.shape)
    for seqs in ((lk == lq).nonzero().flatten(), (lk != lq).nonzero().flatten()):
        if not len(seqs):
            continue
        nq, nk = lq[seqs], lk[seqs]
        iq = cu_q[seqs, None] + torch.arange(int(nq.max()), device=q.device)  # [S, Lq] rows of q
        ik = cu_k[seqs, None] + torch.arange(int(nk.max()), device=q.device)
        q_ok = iq < cu_q[seqs + 1, None]
        k_ok = ik < cu_k[seqs + 1, None]
        allowed = k_ok[:, None, :]
        if causal:  # key j is visible to query i when j <= i + (keys - queries)
            i = torch.arange(iq.shape[1], device=q.device)[None, :, None]
            j = torch.arange(ik.shape[1], device=q.device)[None, None, :]
            allowed = allowed & (j <= i + (nk - nq)[:, None, None])
        Q = q[iq.clamp(max=len(q) - 1)].transpose(1, 2)  # [S, H, Lq, D]
        K, V = (x[ik.clamp(max=len(k) - 1)].transpose(1, 2) for x in (k, v))
        o = F.scaled_dot_product_attention(Q, K, V, attn_mask=allowed[:, None], enable_gqa=True)
        out[iq[q_ok]] = o.transpose(1, 2)[q_ok]
    return out
