"""sample.py against model.py's plain full forward (no cache), on tiny models and the real SmolLM2."""
import os
from pathlib import Path

import pytest
import torch

import model as M
from sample import Sampler, SamplingParams, _uniform, nucleus_mask, pack_linear_weight, packed_linear, sample_tokens
from scheduler import BlockPool

CACHE = Path(os.environ.get("FLEMING_CACHE", Path(__file__).resolve().parents[1] / ".cache"))
VOCAB = 300


def tiny(family, seed=0, layers=2):
    cfg = M.ModelConfig(model_type=family, vocab_size=VOCAB, hidden_size=64, intermediate_size=96,
                        num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                        head_dim=16 if family == "qwen2" else 24, qkv_bias=family == "qwen2",
                        qk_norm=family == "qwen3", tie_word_embeddings=family == "qwen3",
                        max_position_embeddings=512, rope_theta=10000.0)
    torch.manual_seed(seed)
    m = M.Transformer.from_config(cfg)
    for p in m.parameters():  # peaked logits, so greedy ties are impossible in practice
        torch.nn.init.normal_(p, std=0.3 if p.dim() > 1 else 0.1)
    return m.eval()


def prompts_of(lengths, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, VOCAB, (n,), generator=g).tolist() for n in lengths]


LENGTHS = [3, 11, 4, 8, 17]  # with block_size 4: exact multiples, partial blocks, a single-block prompt


@pytest.mark.parametrize("family", ["qwen2", "qwen3"])
@pytest.mark.parametrize("prefix_attention", [True, False])  # CPU path (shared prefix once), GPU-style paged path
def test_greedy_equals_full_forward_argmax(family, prefix_attention):
    m = tiny(family)
    prompts = prompts_of(LENGTHS)
    outs = Sampler(m, block_size=4, prefix_attention=prefix_attention).generate(prompts, SamplingParams(max_new_tokens=12, temperature=0))
    for p, (c,) in zip(prompts, outs):
        assert p + c.token_ids == M.greedy(m, p, 12)
        assert c.finish_reason == "length"


def full_forward_logprobs(m, prompt, completion, temperature):
    ids = torch.tensor([prompt + completion])
    with torch.no_grad():
        logits = m(ids)[0, len(prompt) - 1:-1].float()
    lp = torch.log_softmax(logits / (temperature or 1.0), -1)
    return lp.gather(1, torch.tensor(completion)[:, None])[:, 0]


@pytest.mark.parametrize("kv_tokens, max_batch", [(None, 512), (64, 512), (None, 6)])
@pytest.mark.parametrize("prefix_attention", [True, False])
def test_logprobs_equal_full_forward_with_forks_and_admissions(kv_tokens, max_batch, prefix_attention):
    """n > 1 shares prompt blocks; a small budget or max_batch forces admissions mid-run."""
    m = tiny("qwen3")
    prompts = prompts_of(LENGTHS)
    sampler = Sampler(m, block_size=4, kv_tokens=kv_tokens, max_batch=max_batch, prefix_attention=prefix_attention)
    outs = sampler.generate(prompts, SamplingParams(n=3, max_new_tokens=9, temperature=0.8, seed=3))
    for p, group in zip(prompts, outs):
        assert len(group) == 3 and len({tuple(c.token_ids) for c in group}) > 1  # samples differ
        for c in group:
            ref = full_forward_logprobs(m, p, c.token_ids, 0.8)
            assert (torch.tensor(c.logprobs) - ref).abs().max().item() < 1e-4
    assert len(sampler.pool.free) == len(sampler.pool.refs)  # every block back in the pool


def test_uniforms_depend_on_seed_prompt_sample_step_only():
    """What makes samples reproducible across batches and budgets: a draw's uniform is a function of (seed,
    prompt, sample, step) alone, whatever else is drawn beside it."""
    prompt, sample, step = [0, 3, 3, 7, 1], [0, 0, 2, 1, 5], [0, 9, 9, 4, 250]
    together = _uniform(11, prompt, sample, step, "cpu")
    alone = torch.cat([_uniform(11, [a], [b], [c], "cpu") for a, b, c in zip(prompt, sample, step)])
    assert torch.equal(together, alone) and len(set(together.tolist())) == 5
    assert ((together > 0) & (together < 1)).all()


def test_seeds_use_all_64_bits():
    u = lambda seed: _uniform(seed, [0, 1], [0, 0], [0, 0], "cpu")
    assert not torch.equal(u(5), u(5 + 2**32)) and not torch.equal(u(2**32), u(0))
    assert not torch.equal(u(2**64 - 1), u(2**32 - 1))


def test_a_draw_flips_only_near_a_cdf_boundary():
    """Logits differ by ~1e-4 across batch shapes (another summation order); the uniforms do not. Perturbing the
    logits that much changes a token only where the draw lies that close to a boundary of the CDF, and rarely."""
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(4000, 40, generator=g) * 2
    u = torch.rand(4000, generator=g, dtype=torch.float64).clamp(1e-6, 1 - 1e-6)
    a, _ = sample_tokens(logits, 1.0, 0, 1.0, u)
    b, _ = sample_tokens(logits + 1e-4 * torch.randn(4000, 40, generator=g), 1.0, 0, 1.0, u)
    flipped = a != b
    cdf = torch.softmax(logits.double(), -1).cumsum(-1)
    gap = (cdf - u[:, None]).abs().min(-1).values  # the draw's distance to the nearest boundary
    assert 0 < flipped.sum() < 40  # rare (here ~1e-4 * a few), but they do happen
    assert (gap[flipped] < 1e-3).all() and (a[~flipped] == b[~flipped]).all()


def test_batch_and_budget_change_logits_by_rounding_only():
    """Across budgets, batch limits and block sizes a sample agrees token for token, logprobs to 1e-4, up to a
    flip, which is allowed only where the draw lies within 1e-3 of a boundary of the CDF (none expected here)."""
    m = tiny("qwen2")
    prompts = prompts_of(LENGTHS)
    params = SamplingParams(n=2, max_new_tokens=8, temperature=1.0, seed=7)
    runs = [Sampler(m, block_size=4).generate(prompts, params),
            Sampler(m, block_size=4, kv_tokens=48, max_batch=3).generate(prompts, params),
            Sampler(m, block_size=8).generate(prompts, params)]
    flips = 0
    for other in runs[1:]:
        for i, (ga, gb) in enumerate(zip(runs[0], other)):
            for j, (a, b) in enumerate(zip(ga, gb)):
                t = next((t for t, (x, y) in enumerate(zip(a.token_ids, b.token_ids)) if x != y), len(a.token_ids))
                assert max(abs(x - y) for x, y in zip(a.logprobs[:t], b.logprobs[:t])) < 1e-4
                if t < len(a.token_ids):
                    flips += 1
                    with torch.no_grad():
                        logits = m(torch.tensor([prompts[i] + a.token_ids[:t]]))[0, -1].double()
                    cdf = torch.softmax(logits, -1).cumsum(-1)
                    assert (cdf - _uniform(7, [i], [j], [t], "cpu")).abs().min() < 1e-3
    assert flips <= 1


def test_bad_params_are_clear():
    sampler, prompts = Sampler(tiny("qwen2")), prompts_of([4])
    for kw, name in ((dict(max_new_tokens=0), "max_new_tokens"), (dict(n=0), "n"), (dict(seed=-1), "seed"),
                     (dict(seed=2**64), "seed")):
        with pytest.raises(ValueError, match=f"SamplingParams.{name} "):
            sampler.generate(prompts, SamplingParams(**kw))


def test_nothing_kept_after_generate_and_free_cache_regrows():
    """CPU: generate() returns with no K/V held (staging cache and decode store freed), also when it fails.
    Paged path: free_cache() drops the cache; the next generate allocates it again (here within a new budget)
    and samples the same."""
    m = tiny("qwen3")
    prompts, params = prompts_of(LENGTHS), SamplingParams(n=2, max_new_tokens=6, seed=1)
    cpu = Sampler(m, block_size=4)
    cpu.generate(prompts, params)
    assert cpu.kv_cache.cache is None and cpu.kv_cache.kv == {} and cpu.kv_cache.parts is None
    cpu._sample_into = None  # fails on the first draw
    with pytest.raises(TypeError):
        cpu.generate(prompts, params)
    assert cpu.kv_cache.cache is None and cpu.kv_cache.kv == {}
    paged = Sampler(m, block_size=4, prefix_attention=False)
    before = paged.generate(prompts, params)
    assert paged.kv_cache.cache is not None
    paged.free_cache(kv_tokens=64)
    assert paged.kv_cache.cache is None and paged.pool is None
    after = paged.generate(prompts, params)
    assert paged.max_blocks == 16 and paged.kv_cache.cache.shape[2] <= 16
    assert [[c.token_ids for c in g] for g in after] == [[c.token_ids for c in g] for g in before]


def test_decode_store_pads_by_an_eighth_at_most():
    """The CPU decode store keeps rows of similar length together: its rectangles hold at most 8/7 of the tokens
    plus 2 blocks of headroom per row, where one rectangle padded to the longest row would hold over 2x here."""
    m = tiny("qwen2", layers=1)
    lengths = [4, 6, 9, 12, 17, 23, 30, 38, 47, 60, 75, 90]
    sampler = Sampler(m, block_size=4)
    sampler.generate(prompts_of(lengths), SamplingParams(max_new_tokens=6, seed=3))
    rows, need = len(lengths), sum(n + 6 for n in lengths)
    assert sampler.stats["store_tokens"] <= 8 / 7 * need + 2 * 4 * rows
    assert rows * (max(lengths) + 6) > 2 * need


@pytest.mark.parametrize("prefix_attention", [True, False])
def test_preemption_under_a_tight_budget_changes_nothing(prefix_attention):
    """Samples grow into the pool until it runs dry; the newest are then preempted and refilled later. Their
    tokens and logprobs equal a run with room to spare, and every block comes back."""
    m = tiny("qwen3")
    prompts = prompts_of(LENGTHS)
    params = SamplingParams(n=3, max_new_tokens=16, temperature=1.0, seed=2)
    roomy = Sampler(m, block_size=4, prefix_attention=prefix_attention)
    tight = Sampler(m, block_size=4, kv_tokens=48, prefix_attention=prefix_attention)
    a, b = roomy.generate(prompts, params), tight.generate(prompts, params)
    assert roomy.stats["preempted"] == 0 and tight.stats["preempted"] > 0
    for p, ga, gb in zip(prompts, a, b):
        for ca, cb in zip(ga, gb):
            assert ca.token_ids == cb.token_ids
            ref = full_forward_logprobs(m, p, cb.token_ids, 1.0)
            assert (torch.tensor(cb.logprobs) - ref).abs().max().item() < 1e-4
    assert len(tight.pool.free) == len(tight.pool.refs) == 12


def test_same_seed_same_output_other_seed_differs():
    m = tiny("qwen3")
    prompts = prompts_of([5, 9])
    run = lambda seed: [[c.token_ids for c in g] for g in Sampler(m).generate(
        prompts, SamplingParams(n=4, max_new_tokens=10, temperature=1.0, seed=seed))]
    assert run(11) == run(11)
    assert run(11) != run(12)


def test_top_k_1_equals_greedy():
    m = tiny("qwen2")
    prompts = prompts_of([6, 13])
    greedy = Sampler(m).generate(prompts, SamplingParams(max_new_tokens=10, temperature=0))
    topk1 = Sampler(m).generate(prompts, SamplingParams(n=3, max_new_tokens=10, temperature=1.3, top_k=1))
    for (g,), group in zip(greedy, topk1):
        assert all(c.token_ids == g.token_ids for c in group)


def test_nucleus_on_hand_made_distribution():
    probs = torch.tensor([[0.05, 0.5, 0.1, 0.2, 0.15]])
    keep = lambda **kw: set(nucleus_mask(probs, kw.get("top_k", 0), kw.get("top_p", 1.0))[0].nonzero()[:, 0].tolist())
    assert keep(top_p=0.45) == {1}
    assert keep(top_p=0.69) == {1, 3}           # 0.5 + 0.2 reaches 0.69
    assert keep(top_p=0.71) == {1, 3, 4}        # the token that crosses p is included
    assert keep(top_p=0.999) == {0, 1, 2, 3, 4}
    assert keep(top_k=2) == {1, 3}
    assert keep(top_k=3, top_p=0.6) == {1, 3}
    assert keep(top_k=3, top_p=0.99) == {1, 3, 4}
    unnormalized = set(nucleus_mask(probs * 7.0, 0, 0.69)[0].nonzero()[:, 0].tolist())
    assert unnormalized == {1, 3}


def test_sampling_frequencies_follow_the_nucleus():
    """Inverse-CDF draws with top_p=0.7 hit only the nucleus, in proportion 0.5 : 0.2."""
    logits = torch.tensor([[0.05, 0.5, 0.1, 0.2, 0.15]]).log().expand(20000, 5)
    u = (torch.arange(20000, dtype=torch.float64) + 0.5) / 20000  # stratified uniforms
    tok, lp = sample_tokens(logits, 1.0, 0, 0.7, u)
    counts = torch.bincount(tok, minlength=5).tolist()
    assert counts[0] == counts[2] == counts[4] == 0
    assert abs(counts[1] / 20000 - 0.5 / 0.7) < 1e-3
    assert torch.allclose(lp, torch.tensor([0.05, 0.5, 0.1, 0.2, 0.15]).log()[tok])  # full distribution


def test_out_of_vocabulary_rows_never_sampled():
    m = tiny("qwen2")
    with torch.no_grad():
        m.lm_head.weight[250:] = m.lm_head.weight[:50] * 50  # padded rows with huge logits
    prompts = prompts_of([4, 7])
    for temperature in (0, 1.0):
        outs = Sampler(m, vocab_size=250).generate(prompts, SamplingParams(n=4, max_new_tokens=20,
                                                                           temperature=temperature))
        assert max(t for g in outs for c in g for t in c.token_ids) < 250


def test_stop_tokens_and_strings_free_blocks():
    m = tiny("qwen3")
    prompts = prompts_of(LENGTHS)
    free_run = Sampler(m, block_size=4).generate(prompts, SamplingParams(n=2, max_new_tokens=10, seed=5))
    stop_id = free_run[1][0].token_ids[3]  # a token this sample will produce at step 3
    sampler = Sampler(m, block_size=4)
    outs = sampler.generate(prompts, SamplingParams(n=2, max_new_tokens=10, seed=5, stop_token_ids=(stop_id,)))
    c = outs[1][0]
    assert c.finish_reason == "eos" and c.token_ids[-1] == stop_id and len(c.token_ids) <= 4
    assert c.token_ids == free_run[1][0].token_ids[:len(c.token_ids)]
    assert len(sampler.pool.free) == len(sampler.pool.refs)


def test_stop_strings_with_a_real_tokenizer(shared):
    tok = M.Tokenizer.from_pretrained(shared / "data" / "qwen_tokenizer")
    cfg = M.ModelConfig(model_type="qwen3", vocab_size=151936, hidden_size=32, intermediate_size=32,
                        num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1, head_dim=16,
                        qk_norm=True, tie_word_embeddings=True)
    torch.manual_seed(0)
    m = M.Transformer.from_config(cfg).eval()
    prompt = tok.apply_chat_template([{"role": "user", "content": "Hi"}])
    base = Sampler(m, tok).generate([prompt], SamplingParams(max_new_tokens=12, seed=1))[0][0]
    text = tok.decode(base.token_ids)
    stop = text[len(tok.decode(base.token_ids[:5])):][:3]  # characters produced around the 6th token
    assert stop
    c = Sampler(m, tok).generate([prompt], SamplingParams(max_new_tokens=12, seed=1, stop_strings=(stop,)))[0][0]
    assert c.finish_reason == "stop" and stop in tok.decode(c.token_ids)
    assert stop not in tok.decode(c.token_ids[:-1]) and c.token_ids == base.token_ids[:len(c.token_ids)]


def test_block_pool_refcounts():
    pool = BlockPool(4)
    a = pool.alloc(2)
    pool.share(a)
    pool.release(a)
    assert len(pool.free) == 2
    pool.release(a)
    assert len(pool.free) == 4


def test_budget_too_small_for_one_prompt_is_clear():
    with pytest.raises(ValueError, match="needs .* KV tokens; the budget is 32"):
        Sampler(tiny("qwen2"), block_size=4, kv_tokens=32).generate(prompts_of([20]),
                                                                    SamplingParams(max_new_tokens=20))


def test_load_weights_in_place_matches_trainer():
    sampler_model, trainer = tiny("qwen3", seed=0), tiny("qwen3", seed=1)
    sampler = Sampler(sampler_model)
    ptrs = [p.data_ptr() for p in sampler_model.parameters()]
    prompts = prompts_of([5, 9])
    sampler.generate(prompts, SamplingParams(max_new_tokens=4))
    sampler.load_weights(trainer)
    assert ptrs == [p.data_ptr() for p in sampler_model.parameters()]
    ids = torch.tensor([prompts[1]])
    assert torch.equal(sampler_model(ids), trainer(ids))
    outs = sampler.generate(prompts, SamplingParams(max_new_tokens=6, temperature=0))
    assert [g[0].token_ids for g in outs] == [M.greedy(trainer, p, 6)[len(p):] for p in prompts]


def test_cpu_linears_packed_during_generate_only(monkeypatch):
    """On CPU generate() runs every linear layer (biases included) on oneDNN-packed weights, and leaves the
    model's own forward untouched afterwards, also when generation fails midway."""
    m = tiny("qwen2")
    linears = [mod for mod in m.modules() if isinstance(mod, torch.nn.Linear)]
    sampler = Sampler(m)
    sampler.generate(prompts_of([5]), SamplingParams(max_new_tokens=2))
    assert set(sampler._packed) == set(linears)
    x = torch.randn(3, 7, 64)
    for mod in linears[:4]:  # q/k/v (with bias) and o
        assert "forward" not in vars(mod)
        torch.testing.assert_close(packed_linear(x, pack_linear_weight(mod.weight), mod.bias), mod(x),
                                   atol=1e-5, rtol=1e-5)
    def fail(*args):
        raise RuntimeError("midway")
    monkeypatch.setattr(sampler, "_decode", fail)
    with pytest.raises(RuntimeError, match="midway"):
        sampler.generate(prompts_of([5]), SamplingParams(max_new_tokens=3))
    assert all("forward" not in vars(mod) for mod in linears)


def test_shared_model_updated_by_optimizer_is_repacked():
    """Sampler and trainer on one CPU model: after an optimizer step the packed weights follow."""
    m = tiny("qwen3")
    sampler, prompts = Sampler(m), prompts_of([6, 9])
    before = sampler.generate(prompts, SamplingParams(max_new_tokens=6, temperature=0))
    opt = torch.optim.SGD(m.parameters(), lr=1.0)
    m.train()
    m(torch.tensor([prompts[0]])).logsumexp(-1).sum().backward()
    opt.step()
    m.eval()
    after = sampler.generate(prompts, SamplingParams(max_new_tokens=6, temperature=0))
    assert [g[0].token_ids for g in after] == [M.greedy(m, p, 6)[len(p):] for p in prompts]
    assert [g[0].token_ids for g in after] != [g[0].token_ids for g in before]


@pytest.mark.slow
def test_smollm2_greedy_equals_full_forward():
    pytest.importorskip("gguf")
    from convert_gguf import ensure_smollm2
    path = ensure_smollm2(str(CACHE / "smollm2-135m-instruct"))
    m = M.Transformer.from_pretrained(path).eval()
    tok = M.Tokenizer.from_pretrained(path)
    questions = ["What is the first-line treatment for anaphylaxis?",
                 "Which vitamin deficiency causes scurvy? Answer briefly."]
    prompts = [tok.apply_chat_template([{"role": "user", "content": q}]) for q in questions]
    outs = Sampler(m, tok).generate(prompts, SamplingParams(max_new_tokens=20, temperature=0,
                                                            stop_token_ids=(tok.eos_id,)))
    for p, (c,) in zip(prompts, outs):
        assert p + c.token_ids == M.greedy(m, p, 20, stop_ids={tok.eos_id})


def test_long_generation_regrows_the_decode_store():
    """Rows outgrow their rectangles of the CPU decode store every 2 blocks and are copied into larger ones:
    still exact."""
    m = tiny("qwen2", layers=1)
    prompts = prompts_of([5, 9])
    sampler = Sampler(m, block_size=4)
    outs = sampler.generate(prompts, SamplingParams(n=2, max_new_tokens=150, temperature=1.0, seed=2))
    assert sampler.stats["store_layouts"] > 10
    for p, group in zip(prompts, outs):
        for c in group:
            ref = full_forward_logprobs(m, p, c.token_ids, 1.0)
            assert len(c.token_ids) == 150 and (torch.tensor(c.logprobs) - ref).abs().max().item() < 1e-4


def early_stop_params(m, prompts, seed):
    """n = 3, 12 new tokens, and stop ids that samples hit at steps 2 to 8 (taken from a run without them)."""
    free_run = Sampler(m, block_size=4).generate(prompts, SamplingParams(n=3, max_new_tokens=12, seed=seed))
    stops = tuple({g[j].token_ids[k] for g, j, k in zip(free_run, (0, 1, 2, 0, 1), (2, 5, 8, 3, 6))})
    return SamplingParams(n=3, max_new_tokens=12, seed=seed, stop_token_ids=stops)


def test_logprobs_exact_when_rows_finish_at_different_steps():
    """Early stops change the running rows mid-run (the CPU path keeps finished rows in its per-row K/V
    copies until half are gone, then rebuilds them)."""
    m = tiny("qwen3")
    prompts = prompts_of(LENGTHS)
    outs = Sampler(m, block_size=4).generate(prompts, early_stop_params(m, prompts, seed=9))
    lengths = {len(c.token_ids) for g in outs for c in g}
    assert len(lengths) > 2  # rows really finished at different steps
    for p, group in zip(prompts, outs):
        for c in group:
            ref = full_forward_logprobs(m, p, c.token_ids, 1.0)
            assert (torch.tensor(c.logprobs) - ref).abs().max().item() < 1e-4


@pytest.mark.parametrize("tight_budget", [False, True])
def test_decode_graph_buffers_padded_path_is_exact(tight_budget):
    """The CUDA-graph path's static buffers, run uncaptured on CPU: batches shrink (early stops) and grow
    (admissions, refills after preemption) across buckets; stale padding rows must not write K/V again."""
    m = tiny("qwen2")
    prompts = prompts_of(LENGTHS)
    if tight_budget:  # growth preempts, refills come back
        params, kw = SamplingParams(n=3, max_new_tokens=16, seed=4), dict(kv_tokens=48)
    else:             # early stops shrink the batch, admissions (max_batch) grow it
        params, kw = early_stop_params(m, prompts, seed=4), dict(max_batch=7)
    sampler = Sampler(m, block_size=4, prefix_attention=False, cuda_graphs=True, **kw)
    outs = sampler.generate(prompts, params)
    eager = Sampler(m, block_size=4, prefix_attention=False).generate(prompts, params)
    assert [[c.token_ids for c in g] for g in outs] == [[c.token_ids for c in g] for g in eager]
    for p, group in zip(prompts, outs):
        for c in group:
            ref = full_forward_logprobs(m, p, c.token_ids, 1.0)
            assert (torch.tensor(c.logprobs) - ref).abs().max().item() < 1e-4
    if tight_budget:
        assert sampler.stats["preempted"] > 0
    else:
        assert len({len(c.token_ids) for g in outs for c in g}) > 2
    assert len(sampler.pool.free) == len(sampler.pool.refs)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_cuda_graph_decode_equals_eager_on_gpu():
    """Captured and replayed decode (Triton paged attention) against eager, fp32."""
    m = tiny("qwen2").cuda()
    prompts = prompts_of(LENGTHS)
    params = SamplingParams(n=3, max_new_tokens=12, seed=4)
    graphs = Sampler(m, block_size=16)
    outs = graphs.generate(prompts, params)
    eager = Sampler(m, block_size=16, cuda_graphs=False).generate(prompts, params)
    assert graphs.cuda_graphs and graphs.kv_cache.graphs.graphs  # really captured
    assert [[c.token_ids for c in g] for g in outs] == [[c.token_ids for c in g] for g in eager]
    reference = tiny("qwen2")  # same seed, on CPU
    for p, group in zip(prompts, outs):
        for c in group:
            ref = full_forward_logprobs(reference, p, c.token_ids, 1.0)
            assert (torch.tensor(c.logprobs) - ref).abs().max().item() < 1e-4
