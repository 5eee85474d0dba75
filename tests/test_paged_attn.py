"""paged_attn.py: the torch references against dense attention over the unpaged K/V, and the Triton kernels against
the torch references under TRITON_INTERPRET=1.

The interpreter comparisons run in one subprocess (this file run as a script): triton reads TRITON_INTERPRET when
paged_attn.py is imported, and setting it in the pytest process would send every later CPU test (the sampler's) through
the slow interpreter. Every case builds a paged cache whose unwritten slots hold NaN and whose block-table tails hold
garbage ids (-1, 0, 10**6), so any read past a sequence's tokens shows up as NaN or a crash.
"""
import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import paged_attn

ROOT = Path(__file__).resolve().parents[1]
GARBAGE = (-1, 0, 10**6)  # what block-table entries past a sequence's blocks hold, by row


def paged_case(lens, n_kv, g, d, block_size, share=0, seed=0, dtype=torch.float32, slot_dtype=torch.int64,
               store=None):
    """Random per-sequence K/V written into a shuffled paged cache with `store` (default store_kv_torch).

    Sequence 1 forks sequence 0 when share > 0: its first `share` blocks are sequence 0's (same ids, same tokens),
    and its slots there are -1 since the prefix is already stored. Two padding tokens with slot -1 are appended.
    """
    store = store or paged_attn.store_kv_torch
    gen = torch.Generator().manual_seed(seed)
    b = len(lens)
    ks = [torch.randn(n, n_kv, d, generator=gen) for n in lens]
    vs = [torch.randn(n, n_kv, d, generator=gen) for n in lens]
    if share:
        assert min(lens[0], lens[1]) >= share * block_size
        ks[1][:share * block_size] = ks[0][:share * block_size]
        vs[1][:share * block_size] = vs[0][:share * block_size]
    need = [math.ceil(n / block_size) for n in lens]
    n_blocks = sum(need) - share + 3  # 3 spare blocks nobody uses
    free = iter(torch.randperm(n_blocks, generator=gen).tolist())
    tables = torch.empty(b, max(need) + 2, dtype=torch.int32)
    for i in range(b):
        tables[i] = GARBAGE[i % 3]
        for j in range(need[i]):
            tables[i, j] = tables[0, j] if (i == 1 and j < share) else next(free)
    slots = []
    for i, n in enumerate(lens):
        for p in range(n):
            shared = i == 1 and p < share * block_size
            slots.append(-1 if shared else int(tables[i, p // block_size]) * block_size + p % block_size)
    pad_k, pad_v = torch.randn(2, n_kv, d, generator=gen), torch.randn(2, n_kv, d, generator=gen)
    k_all = torch.cat(ks + [pad_k]).to(dtype)
    v_all = torch.cat(vs + [pad_v]).to(dtype)
    slots = torch.tensor(slots + [-1, -1], dtype=slot_dtype)
    k_cache = torch.full((n_blocks, block_size, n_kv, d), float("nan"), dtype=dtype)
    v_cache = torch.full_like(k_cache, float("nan"))
    store(k_all, v_all, k_cache, v_cache, slots)
    q = torch.randn(b, n_kv * g, d, generator=gen).to(dtype)
    return SimpleNamespace(q=q, k_cache=k_cache, v_cache=v_cache, tables=tables,
                           lens=torch.tensor(lens, dtype=torch.int32), ks=ks, vs=vs, k_all=k_all, v_all=v_all,
                           slots=slots, scale=d ** -0.5)


def dense_attention(c):
    """softmax(q K^T * scale) V per sequence over its unpaged K/V, in float64; zeros for an empty sequence."""
    outs = []
    for i, (k, v) in enumerate(zip(c.ks, c.vs)):
        q = c.q[i].double()
        if len(k) == 0:
            outs.append(torch.zeros_like(q))
            continue
        g = q.shape[0] // k.shape[1]
        k, v = k.double().repeat_interleave(g, dim=1), v.double().repeat_interleave(g, dim=1)  # [L, H, d]
        p = torch.softmax(torch.einsum("hd,lhd->hl", q, k) * c.scale, dim=-1)
        outs.append(torch.einsum("hl,lhd->hd", p, v))
    return torch.stack(outs)


def decode_torch(c):
    return paged_attn.paged_decode_attention_torch(c.q, c.k_cache, c.v_cache, c.tables, c.lens, c.scale)


def bs_lens(bs):  # ragged: 1 token, exact multiples of the block size, one past a boundary, odd
    return [1, bs, 2 * bs, 3 * bs + 5, 37]


# --------------------------------------------------------------------------- torch reference (in process, fast)

def test_store_kv_torch_writes_each_slot_and_skips_minus_one():
    c = paged_case([5, 20, 33], n_kv=2, g=1, d=16, block_size=16, slot_dtype=torch.int32)
    keep = c.slots >= 0
    assert int((~keep).sum()) == 2  # the two padding tokens
    flat_k, flat_v = c.k_cache.view(-1, 2, 16), c.v_cache.view(-1, 2, 16)
    assert torch.equal(flat_k[c.slots[keep].long()], c.k_all[keep])
    assert torch.equal(flat_v[c.slots[keep].long()], c.v_all[keep])
    written = ~flat_k.isnan().all(dim=(1, 2))
    assert int(written.sum()) == int(keep.sum())  # nothing else was touched: padding tokens were skipped


@pytest.mark.parametrize("block_size", [16, 32])
@pytest.mark.parametrize("g", [1, 2, 4])
def test_paged_torch_matches_dense(g, block_size):
    c = paged_case(bs_lens(block_size), n_kv=2, g=g, d=64, block_size=block_size, seed=g)
    assert c.k_cache.isnan().any()  # unwritten slots really are poisoned
    out = decode_torch(c)
    assert out.shape == c.q.shape and out.dtype == c.q.dtype
    assert (out.double() - dense_attention(c)).abs().max() < 1e-5


@pytest.mark.parametrize("block_size", [16, 32])
def test_paged_torch_forked_sequences_share_prompt_blocks(block_size):
    c = paged_case([3 * block_size + 4, 2 * block_size + 1, 9], n_kv=2, g=2, d=32, block_size=block_size, share=2)
    assert torch.equal(c.tables[0, :2], c.tables[1, :2]) and c.tables[0, 2] != c.tables[1, 2]
    assert (decode_torch(c).double() - dense_attention(c)).abs().max() < 1e-5


@pytest.mark.parametrize("config", ["qwen3-0.6b", "qwen2.5-7b-instruct", "qwen3-32b"])
def test_paged_torch_real_head_layouts(shared, config):
    cfg = json.loads((shared / "configs" / f"{config}.json").read_text())
    h, n_kv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    d = cfg.get("head_dim") or cfg["hidden_size"] // h
    c = paged_case([40, 1, 16], n_kv=n_kv, g=h // n_kv, d=d, block_size=16)
    assert (decode_torch(c).double() - dense_attention(c)).abs().max() < 1e-5


def test_paged_torch_empty_context_gives_zeros():  # a padding row in a fixed-size (graph-captured) batch
    c = paged_case([0, 7], n_kv=1, g=2, d=16, block_size=16)
    out = decode_torch(c)
    assert torch.equal(out[0], torch.zeros_like(out[0]))
    assert (out.double() - dense_attention(c)).abs().max() < 1e-5


def test_cpu_without_interpreter_uses_torch():
    if paged_attn.INTERPRET:
        pytest.skip("TRITON_INTERPRET=1 is set for the whole test run")
    assert paged_attn.backend(torch.zeros(1)) == "torch"


def test_imports_and_runs_without_triton(monkeypatch):
    for name in [m for m in sys.modules if m == "triton" or m.startswith("triton.")] + ["triton"]:
        monkeypatch.setitem(sys.modules, name, None)  # None in sys.modules makes `import triton` fail
    spec = importlib.util.spec_from_file_location("paged_attn_without_triton", ROOT / "paged_attn.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert not mod.HAVE_TRITON and mod.backend(torch.zeros(1)) == "torch"
    c = paged_case([17, 3], n_kv=2, g=2, d=16, block_size=16, store=mod.store_kv)
    out = mod.paged_decode_attention(c.q, c.k_cache, c.v_cache, c.tables, c.lens, c.scale)
    assert (out.double() - dense_attention(c)).abs().max() < 1e-5


# --------------------------------------------------------------------------- Triton under the interpreter

# name -> case arguments, decode options and tolerance against the torch reference. use_dot None: the public
# dispatcher (which picks broadcast-and-sum, one split, off CUDA); True/False: paged_decode_attention_triton
# directly, with `splits` flash-decoding splits (some of them empty: short sequences, a zero-length one).
TRITON_CASES = {
    "g1_bs16_ragged_empty": dict(lens=[1, 16, 37, 0], n_kv=2, g=1, d=32, block_size=16),
    "g2_bs32_fork": dict(lens=[70, 75, 32, 1], n_kv=2, g=2, d=32, block_size=32, share=2, slot_dtype="int32"),
    "g4_bs16": dict(lens=[48, 5, 17], n_kv=1, g=4, d=64, block_size=16),
    "g2_bs16_dot": dict(lens=[33, 16, 1], n_kv=2, g=2, d=32, block_size=16, use_dot=True),
    "g4_bs32_fork_dot": dict(lens=[64, 70, 9], n_kv=1, g=4, d=32, block_size=32, share=2, use_dot=True),
    "g2_bs16_split3": dict(lens=[100, 7, 33, 0], n_kv=2, g=2, d=32, block_size=16, use_dot=False, splits=3),
    "g4_bs32_fork_dot_split4": dict(lens=[64, 70, 9], n_kv=1, g=4, d=32, block_size=32, share=2, use_dot=True,
                                    splits=4),
    "g2_bs16_fp16_dot": dict(lens=[40, 3], n_kv=2, g=2, d=32, block_size=16, dtype="float16", use_dot=True, tol=2e-3),
    "g2_bs16_bf16": dict(lens=[40, 3], n_kv=2, g=2, d=32, block_size=16, dtype="bfloat16", tol=1e-2),
}


def real_layout_cases(shared):
    """Qwen2.5-7B's head layout (28 query / 4 kv heads, head_dim 128): G = 7, padded to 8 (16 with tl.dot)."""
    cfg = json.loads((shared / "configs" / "qwen2.5-7b-instruct.json").read_text())
    n_kv, h = cfg["num_key_value_heads"], cfg["num_attention_heads"]
    return {f"qwen2.5-7b_dot{int(dot)}": dict(lens=[20, 1], n_kv=n_kv, g=h // n_kv, d=cfg["hidden_size"] // h,
                                               block_size=16, use_dot=dot) for dot in (False, True)}


def _run_triton_cases(cases):
    """Runs in the subprocess, with TRITON_INTERPRET=1 set before paged_attn (and triton) were imported."""
    ref_store, ref_decode = paged_attn.store_kv_torch, paged_attn.paged_decode_attention_torch

    def fallback(*a, **k):
        raise AssertionError("the torch fallback ran instead of the Triton kernel")

    paged_attn.store_kv_torch = paged_attn.paged_decode_attention_torch = fallback  # the dispatchers must not reach them
    try:
        return {name: _run_triton_case(spec, ref_store, ref_decode) for name, spec in cases.items()}
    finally:
        paged_attn.store_kv_torch, paged_attn.paged_decode_attention_torch = ref_store, ref_decode


def _run_triton_case(spec, ref_store, ref_decode):
    """One case: the Triton store and decode against the torch references (and decode against dense)."""
    spec = dict(spec)
    use_dot, splits, tol = spec.pop("use_dot", None), spec.pop("splits", None), spec.pop("tol", 1e-5)
    spec["dtype"] = getattr(torch, spec.get("dtype", "float32"))
    spec["slot_dtype"] = getattr(torch, spec.get("slot_dtype", "int64"))
    c = paged_case(**spec, store=paged_attn.store_kv)  # cache written by the Triton store kernel
    r = paged_case(**spec, store=ref_store)  # same case written by the torch reference
    args = (c.q, c.k_cache, c.v_cache, c.tables, c.lens, c.scale)
    if use_dot is None:
        out = paged_attn.paged_decode_attention(*args)
    else:
        out = paged_attn.paged_decode_attention_triton(*args, use_dot=use_dot, num_splits=splits)
    ref = ref_decode(r.q, r.k_cache, r.v_cache, r.tables, r.lens, r.scale)
    return dict(
        backend=paged_attn.backend(c.q),
        interpreted=type(paged_attn._paged_decode_kernel).__name__ == "InterpretedFunction",
        store_equal=torch.equal(c.k_cache.nan_to_num(7.0), r.k_cache.nan_to_num(7.0))
        and torch.equal(c.v_cache.nan_to_num(7.0), r.v_cache.nan_to_num(7.0)),
        dtype_ok=out.dtype == c.q.dtype and out.shape == c.q.shape,
        err_vs_torch=(out.float() - ref.float()).abs().max().item(),
        err_vs_dense=(out.double() - dense_attention(c)).abs().max().item(),
        tol=tol)


@pytest.fixture(scope="module")
def triton_results(shared):
    if importlib.util.find_spec("triton") is None:
        pytest.skip("triton is not installed (it is in requirements-dev.txt): the Triton kernels were not tested")
    cases = {**TRITON_CASES, **real_layout_cases(shared)}
    env = dict(os.environ, TRITON_INTERPRET="1", PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, __file__, json.dumps(cases)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        pytest.fail(f"interpreter subprocess failed:\n{proc.stderr[-4000:]}")
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    assert set(results) == set(cases)
    return results


def test_triton_runs_interpreted_not_the_fallback(triton_results):
    for name, r in triton_results.items():
        assert r["backend"] == "triton" and r["interpreted"], name
    assert len(triton_results) == len(TRITON_CASES) + 2


def test_triton_store_kv_matches_torch(triton_results):
    for name, r in triton_results.items():
        assert r["store_equal"], name  # bit-exact, NaN (unwritten) slots included


@pytest.mark.parametrize("name", list(TRITON_CASES) + ["qwen2.5-7b_dot0", "qwen2.5-7b_dot1"])
def test_triton_decode_matches_torch_and_dense(triton_results, name):
    r = triton_results[name]
    assert r["dtype_ok"]
    assert r["err_vs_torch"] < r["tol"], r
    if r["tol"] <= 1e-5:  # fp32 cases: also exact against dense attention
        assert r["err_vs_dense"] < 1e-5, r


if __name__ == "__main__":  # the interpreter subprocess: argv[1] is the JSON case table
    assert os.environ.get("TRITON_INTERPRET") == "1" and paged_attn.INTERPRET, "run with TRITON_INTERPRET=1"
    print(json.dumps(_run_triton_cases(json.loads(sys.argv[1]))))


@pytest.mark.parametrize("head_major", [True, False])
def test_cascade_equals_paged_attention(head_major):
    """Shared prompt blocks read once per group + private blocks per row == per-row paged attention."""
    torch.manual_seed(0)
    # (shared, private) tokens per group; the last group shares nothing (a prompt shorter than a block)
    n_kv, g, d, bs, groups, per = 2, 3, 16, 4, [3, 1, 2, 2], [(8, 5), (12, 1), (4, 9), (0, 3)]
    nb = 64
    if head_major:  # sample.py's CPU layout: [kv, blocks, bs, d] storage seen as [blocks, bs, kv, d]
        kc, vc = (torch.randn(n_kv, nb, bs, d).permute(1, 2, 0, 3) for _ in range(2))
    else:
        kc, vc = torch.randn(nb, bs, n_kv, d), torch.randn(nb, bs, n_kv, d)
    free = iter(torch.randperm(nb).tolist())
    shared = [[next(free) for _ in range(s // bs)] for s, _ in per]
    rows, private, full, lens, group_rows = [], [], [], [], []
    for gi, (n, (s_len, p_len)) in enumerate(zip(groups, per)):
        group_rows.append([len(rows) + min(j, n - 1) for j in range(max(groups))])
        for _ in range(n):
            mine = [next(free) for _ in range(-(-p_len // bs))]
            rows.append(gi)
            private.append(mine)
            full.append(shared[gi] + mine)
            lens.append(s_len + p_len)
    table = lambda rs: torch.tensor([r + [0] * (max(map(len, rs)) - len(r)) for r in rs], dtype=torch.int32)
    q = torch.randn(len(rows), n_kv * g, d)
    row_slot = torch.tensor([gi * max(groups) + j for gi, n in enumerate(groups) for j in range(n)])
    shared_kv = paged_attn.gather_head_major(kc, vc, table(shared))
    private_kv = paged_attn.gather_head_major(kc, vc, table(private))
    shared_mask = paged_attn.length_mask(torch.tensor([s for s, _ in per]), shared_kv[0].shape[2], q.dtype)
    private_mask = paged_attn.length_mask(torch.tensor([per[gi][1] for gi in rows]), private_kv[0].shape[2], q.dtype)
    out = paged_attn.cascade_decode_attention_torch(q, 0.25, shared_kv, shared_mask, torch.tensor(group_rows), row_slot,
                                                 private_kv, private_mask)
    kt, vt = (x.contiguous() for x in (kc, vc))  # the reference wants the token-major layout
    ref = paged_attn.paged_decode_attention_torch(q, kt, vt, table(full), torch.tensor(lens, dtype=torch.int32), 0.25)
    assert (out - ref).abs().max().item() < 1e-5
    # private K/V kept in other rows, among rows nobody reads (sample.py's finished rows): private_rows maps them
    b, extra = len(rows), 3
    perm = torch.randperm(b + extra)
    spread = [torch.randn(n_kv, b + extra, x.shape[2], d) for x in private_kv]
    for x, y in zip(spread, private_kv):
        x[:, perm[:b]] = y
    spread_mask = torch.zeros(b + extra, private_mask.shape[1]).index_copy_(0, perm[:b], private_mask)
    out2 = paged_attn.cascade_decode_attention_torch(q, 0.25, shared_kv, shared_mask, torch.tensor(group_rows), row_slot,
                                                  tuple(spread), spread_mask, perm[:b])
    assert (out2 - ref).abs().max().item() < 1e-5


# --------------------------------------------------------------------------- GPU only (skipped in CI; run on a device)

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")


@needs_cuda
@pytest.mark.parametrize("name", ["triton", "flash"])
def test_gpu_decode_matches_dense(name):
    """Qwen2.5-7B's head layout (28 query heads on 4 KV heads, head_dim 128) on the GPU paged_attn."""
    if name == "flash" and not paged_attn.HAVE_FLASH_ATTN:
        pytest.skip("flash-attn is not installed")
    bs, dtype = (256, torch.bfloat16) if name == "flash" else (16, torch.float32)
    c = paged_case([1, bs, 2 * bs, 3 * bs + 5, 37], n_kv=4, g=7, d=128, block_size=bs, dtype=dtype)
    c.tables[c.tables < 0] = 0  # the sampler pads tables with block 0 and zero-fills its cache
    c.tables[c.tables >= c.k_cache.shape[0]] = 0
    kc, vc = (x.nan_to_num(0.0).cuda() for x in (c.k_cache, c.v_cache))
    args = c.q.cuda(), kc, vc, c.tables.cuda(), c.lens.cuda(), c.scale
    out = paged_attn._flash_decode(*args) if name == "flash" else paged_attn.paged_decode_attention_triton(*args)
    tol = 2e-2 if dtype == torch.bfloat16 else 1e-5
    assert (out.double().cpu() - dense_attention(c)).abs().max().item() < tol
