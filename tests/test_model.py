"""model.py against transformers' own Qwen2 / Qwen3 / Llama, on tiny random checkpoints and real SmolLM2."""
import json
import os
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

import attention as A
import model as M

transformers = pytest.importorskip("transformers")
CACHE = Path(os.environ.get("FLEMING_CACHE", Path(__file__).resolve().parents[1] / ".cache"))
TOL = 1e-4


def tiny_hf(family, tmp_path, **overrides):
    """A random tiny transformers model of the family, saved in HF layout; returns (hf_model, dir)."""
    common = dict(vocab_size=300, hidden_size=64, intermediate_size=112, num_hidden_layers=3,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                  rms_norm_eps=1e-6)
    if family == "qwen2":  # biases on q/k/v, untied head
        cfg = transformers.Qwen2Config(**common, tie_word_embeddings=False, **overrides)
        hf = transformers.Qwen2ForCausalLM(cfg)
    elif family == "qwen3":  # q/k norms, explicit head_dim != hidden/heads, tied head
        cfg = transformers.Qwen3Config(**common, head_dim=24, tie_word_embeddings=True, **overrides)
        hf = transformers.Qwen3ForCausalLM(cfg)
    else:
        cfg = transformers.LlamaConfig(**common, tie_word_embeddings=True, **overrides)
        hf = transformers.LlamaForCausalLM(cfg)
    torch.manual_seed(0)
    with torch.no_grad():  # non-trivial norms and biases, so a missed weight shows in the logits
        for name, p in hf.named_parameters():
            if "norm" in name or name.endswith("bias"):
                p.add_(torch.randn_like(p) * 0.3)
    path = tmp_path / family
    hf.save_pretrained(path)
    return hf.eval(), path


def padded_batch(lengths, vocab=300, seed=0):
    """Left-padded random batch: ids, 0/1 mask, position ids counting from each row's first real token."""
    g = torch.Generator().manual_seed(seed)
    T = max(lengths)
    ids = torch.randint(0, vocab, (len(lengths), T), generator=g)
    mask = torch.zeros(len(lengths), T, dtype=torch.long)
    for i, n in enumerate(lengths):
        mask[i, T - n:] = 1
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    return ids, mask, pos


def max_err_on_real_tokens(a, b, mask):
    return (a - b).abs()[mask.bool()].max().item()


@pytest.mark.parametrize("family", ["qwen2", "qwen3", "llama"])
def test_logits_match_transformers(family, tmp_path):
    hf, path = tiny_hf(family, tmp_path)
    ours = M.Transformer.from_pretrained(path).eval()
    ids, mask, pos = padded_batch([17, 9, 3])
    with torch.no_grad():
        ref = hf(input_ids=ids, attention_mask=mask, position_ids=pos).logits
        out = ours(ids, position_ids=pos, segment_ids=mask)
    assert max_err_on_real_tokens(out, ref, mask) < TOL
    # explicit position ids that do not start at 0 (a continuation), no padding
    with torch.no_grad():
        ref = hf(input_ids=ids[:1], position_ids=pos[:1] + 40).logits
        out = ours(ids[:1], position_ids=pos[:1] + 40)
    assert (out - ref).abs().max().item() < TOL


def test_packed_segments_equal_separate_sequences(tmp_path):
    """Block-diagonal attention (packed SFT): each segment's logits equal those of the sequence alone."""
    hf, path = tiny_hf("qwen3", tmp_path)
    ours = M.Transformer.from_pretrained(path).eval()
    lengths = [5, 11, 4]
    seqs = [torch.randint(0, 300, (n,)) for n in lengths]
    ids = torch.cat(seqs)[None]
    seg = torch.cat([torch.full((n,), i + 1) for i, n in enumerate(lengths)])[None]
    pos = torch.cat([torch.arange(n) for n in lengths])[None]
    with torch.no_grad():
        packed = ours(ids, position_ids=pos, segment_ids=seg)[0]
        alone = torch.cat([hf(input_ids=s[None]).logits[0] for s in seqs])
    assert (packed - alone).abs().max().item() < TOL


def test_varlen_layout_for_flash():
    seg = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 2, 2, 2]])
    cu, cu_k, max_q, max_k, index = A._varlen_layout(seg)
    assert cu.tolist() == cu_k.tolist() == [0, 2, 5, 7, 10] and max_q == max_k == 3 and index is None
    # a prompt (1) and two completions (2, 3) that see it; row 2 pads with a segment of its own
    seg = torch.tensor([[1, 1, 2, 2, 3], [1, 2, 2, 0, 0]])
    pre = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    cu, cu_k, max_q, max_k, index = A._varlen_layout(seg, pre)
    assert cu.tolist() == [0, 2, 4, 5, 6, 8, 10] and max_q == 2
    assert cu_k.tolist() == [0, 2, 6, 9, 10, 13, 15] and max_k == 4
    assert index.tolist() == [0, 1, 0, 1, 2, 3, 0, 1, 4, 5, 5, 6, 7, 8, 9]
    with pytest.raises(ValueError, match="must come before"):
        A._varlen_layout(torch.tensor([[2, 1]]), torch.tensor([[1, 1]]))


def shared_prompt_batch(prompt, comps):
    """One packed row: the prompt once, then each completion (its own segment, prefix = the prompt)."""
    ids = torch.cat([prompt] + comps)[None]
    seg = torch.cat([torch.ones(len(prompt), dtype=torch.long)]
                    + [torch.full((len(c),), j + 2) for j, c in enumerate(comps)])[None]
    pre = torch.ones_like(seg)
    pos = torch.cat([torch.arange(len(prompt))] + [torch.arange(len(prompt), len(prompt) + len(c)) for c in comps])
    return ids, pos[None], seg, pre


def test_shared_prompt_equals_each_completion_alone(tmp_path):
    """GRPO's update layout (tree mask): a completion's logits equal those of prompt + completion alone."""
    hf, path = tiny_hf("qwen3", tmp_path)
    ours = M.Transformer.from_pretrained(path).eval()
    prompt = torch.randint(0, 300, (6,))
    comps = [torch.randint(0, 300, (n,)) for n in (4, 1, 7)]
    ids, pos, seg, pre = shared_prompt_batch(prompt, comps)
    with torch.no_grad():
        packed = ours(ids, position_ids=pos, segment_ids=seg, prefix_ids=pre)[0]
        at = len(prompt)
        assert (packed[:at] - hf(input_ids=prompt[None]).logits[0]).abs().max().item() < TOL
        for c in comps:
            alone = hf(input_ids=torch.cat([prompt, c])[None]).logits[0, len(prompt):]
            assert (packed[at:at + len(c)] - alone).abs().max().item() < TOL
            at += len(c)


def _reference_varlen(q, k, v, cu_q, cu_k, max_q, max_k, causal=True):
    """flash_attn_varlen_func's contract in plain torch: causal aligned bottom-right, GQA by head groups."""
    out = []
    for i in range(len(cu_q) - 1):
        qi, ki, vi = q[cu_q[i]:cu_q[i + 1]], k[cu_k[i]:cu_k[i + 1]], v[cu_k[i]:cu_k[i + 1]]
        Lq, Lk = len(qi), len(ki)
        allowed = torch.arange(Lk)[None, :] <= torch.arange(Lq)[:, None] + (Lk - Lq)
        o = F.scaled_dot_product_attention(qi.transpose(0, 1), ki.transpose(0, 1), vi.transpose(0, 1),
                                           attn_mask=allowed, enable_gqa=True)
        out.append(o.transpose(0, 1))
    return torch.cat(out)


def test_flash_varlen_path_matches_the_cpu_path(monkeypatch):
    """The GPU path (cu_seqlens, gathered prompt keys, flash-attn) with a reference kernel equals the CPU path."""
    torch.manual_seed(0)
    prompt, comps = torch.randint(0, 300, (5,)), [torch.randint(0, 300, (n,)) for n in (3, 1, 6)]
    ids, pos, seg, pre = shared_prompt_batch(prompt, comps)
    T = ids.shape[1]
    q, k, v = torch.randn(1, T, 4, 8), torch.randn(1, T, 2, 8), torch.randn(1, T, 2, 8)
    for prefix in (None, pre):
        want = A.dense_attention(seg, prefix)(q, k, v, 0)
        monkeypatch.setattr(A, "_use_flash", lambda q: True)
        monkeypatch.setattr(A, "flash_attn_varlen_func", _reference_varlen)
        got = A.dense_attention(seg, prefix)(q, k, v, 0)
        monkeypatch.undo()
        assert (got - want).abs().max().item() < 1e-5


@pytest.mark.parametrize("family", ["qwen2", "qwen3"])
def test_save_pretrained_loads_in_transformers(family, tmp_path):
    cfg = M.ModelConfig.from_file(tiny_hf(family, tmp_path)[1])
    torch.manual_seed(1)
    ours = M.Transformer.from_config(cfg).eval()  # our own random weights this time
    for p in ours.parameters():
        torch.nn.init.normal_(p, std=0.2)
    ours.save_pretrained(tmp_path / "ours")
    files = set(os.listdir(tmp_path / "ours"))
    assert files == {"config.json", "model.safetensors"}
    if cfg.tie_word_embeddings:
        assert "lm_head.weight" not in load_file(tmp_path / "ours" / "model.safetensors")
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "ours").eval()
    ids, mask, pos = padded_batch([12, 7])
    with torch.no_grad():
        ref = hf(input_ids=ids, attention_mask=mask, position_ids=pos).logits
        out = ours(ids, position_ids=pos, segment_ids=mask)
    assert max_err_on_real_tokens(out, ref, mask) < TOL


def test_sharded_checkpoint_both_ways(tmp_path):
    hf, path = tiny_hf("qwen2", tmp_path)
    hf.save_pretrained(tmp_path / "hf_sharded", max_shard_size="100KB")
    assert (tmp_path / "hf_sharded" / "model.safetensors.index.json").exists()
    ours = M.Transformer.from_pretrained(tmp_path / "hf_sharded").eval()
    ours.save_pretrained(tmp_path / "ours_sharded", max_shard_bytes=100_000)
    index = json.loads((tmp_path / "ours_sharded" / "model.safetensors.index.json").read_text())
    shards = set(index["weight_map"].values())
    assert len(shards) > 2 and all((tmp_path / "ours_sharded" / s).exists() for s in shards)
    back = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "ours_sharded").eval()
    ids = torch.randint(0, 300, (2, 10))
    with torch.no_grad():
        ref = hf(input_ids=ids).logits
        assert (ours(ids) - ref).abs().max().item() < TOL
        assert (back(input_ids=ids).logits - ref).abs().max().item() < TOL


ROPE_CASES = {
    "linear": {"rope_type": "linear", "factor": 4.0},
    "dynamic": {"rope_type": "dynamic", "factor": 2.0},
    "yarn": {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32},
}


@pytest.mark.parametrize("kind", list(ROPE_CASES))
def test_rope_scaling_matches_transformers(kind, tmp_path):
    """Old-style config (rope_theta + rope_scaling), positions past the trained length."""
    hf, path = tiny_hf("qwen2", tmp_path)
    conf = json.loads((path / "config.json").read_text())
    conf.pop("rope_parameters", None)
    conf.update(rope_theta=10000.0, rope_scaling=dict(ROPE_CASES[kind]))
    (path / "config.json").write_text(json.dumps(conf))
    hf = transformers.AutoModelForCausalLM.from_pretrained(path).eval()
    ours = M.Transformer.from_pretrained(path).eval()
    assert ours.config.rope_scaling["rope_type"] == kind
    ids = torch.randint(0, 300, (1, 24))
    pos = torch.arange(24)[None] * 7  # up to 161 > max_position_embeddings (128)
    with torch.no_grad():
        ref = hf(input_ids=ids, position_ids=pos).logits
        out = ours(ids, position_ids=pos)
    assert (out - ref).abs().max().item() < TOL


def test_real_configs_load_and_7b_size(shared):
    sizes = {}
    for f in sorted((shared / "configs").glob("*.json")):
        cfg = M.ModelConfig.from_file(f)
        sizes[f.stem] = M.Transformer.from_config(cfg, device="meta").num_parameters()
    assert round(sizes["qwen2.5-7b-instruct"] / 1e9, 2) == 7.62
    qwen25 = M.ModelConfig.from_file(shared / "configs" / "qwen2.5-7b-instruct.json")
    assert qwen25.qkv_bias and not qwen25.tie_word_embeddings and qwen25.rope_scaling is None
    qwen3 = M.ModelConfig.from_file(shared / "configs" / "qwen3-0.6b.json")
    assert qwen3.qk_norm and qwen3.tie_word_embeddings and qwen3.head_dim == 128


def test_config_roundtrip_keeps_style(tmp_path, shared):
    cfg = M.ModelConfig.from_file(shared / "configs" / "qwen2.5-7b-instruct.json")
    d = cfg.to_dict()
    assert d["rope_theta"] == 1e6 and "rope_parameters" not in d and d["sliding_window"] == 131072
    assert M.ModelConfig.from_dict(d) == cfg
    built = M.ModelConfig(model_type="qwen3", vocab_size=300, hidden_size=32, intermediate_size=64,
                          num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1, head_dim=16,
                          eos_token_id=7)  # no raw config.json behind it
    assert built.to_dict()["eos_token_id"] == 7 and M.ModelConfig.from_dict(built.to_dict()).eos_token_id == 7


def test_load_in_bf16_directly(tmp_path):
    _, path = tiny_hf("qwen3", tmp_path)
    ours = M.Transformer.from_pretrained(path, dtype=torch.bfloat16)
    assert {p.dtype for p in ours.parameters()} == {torch.bfloat16}
    assert ours.lm_head.weight is ours.model.embed_tokens.weight
    assert not any(p.is_meta for p in ours.parameters())
    out = ours(torch.randint(0, 300, (1, 5)))
    assert out.dtype == torch.bfloat16 and torch.isfinite(out).all()


def test_activation_checkpointing_same_gradients(tmp_path):
    _, path = tiny_hf("qwen2", tmp_path)
    ids = torch.randint(0, 300, (2, 8))
    grads = []
    for ckpt in (False, True):
        m = M.Transformer.from_pretrained(path).train()
        m.grad_checkpointing = ckpt
        m(ids).logsumexp(-1).mean().backward()
        grads.append(torch.cat([p.grad.flatten() for p in m.parameters()]))
    assert torch.allclose(grads[0], grads[1], atol=1e-6)


# ---------------------------------------------------------------------------------------- bad input

def test_missing_tensor_names_key_and_dir(tmp_path):
    _, path = tiny_hf("qwen3", tmp_path)
    sd = load_file(path / "model.safetensors")
    del sd["model.layers.1.mlp.up_proj.weight"]
    save_file(sd, path / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(M.CheckpointError, match=r"missing tensor 'model\.layers\.1\.mlp\.up_proj\.weight'") as e:
        M.Transformer.from_pretrained(path)
    assert str(path) in str(e.value)


def test_wrong_shape_names_tensor_and_file(tmp_path):
    _, path = tiny_hf("qwen3", tmp_path)
    sd = load_file(path / "model.safetensors")
    sd["model.layers.0.self_attn.k_proj.weight"] = torch.zeros(8, 64)
    save_file(sd, path / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(M.CheckpointError, match=r"model\.safetensors: tensor 'model\.layers\.0\.self_attn\.k_proj"
                                                 r"\.weight' has shape \(8, 64\)"):
        M.Transformer.from_pretrained(path)


@pytest.mark.parametrize("edit, msg", [
    ({"model_type": "gpt2"}, r"config\.json: model_type 'gpt2' is not supported"),
    ({"rope_scaling": {"type": "longrope", "factor": 2.0}, "rope_parameters": None},
     r"config\.json: rope type 'longrope' is not supported"),
    ({"hidden_act": "gelu"}, r"config\.json: hidden_act 'gelu'"),
])
def test_bad_config_is_one_clear_error(edit, msg, tmp_path):
    _, path = tiny_hf("qwen2", tmp_path)
    conf = json.loads((path / "config.json").read_text())
    conf.update(edit)
    (path / "config.json").write_text(json.dumps(conf))
    with pytest.raises(M.CheckpointError, match=msg):
        M.Transformer.from_pretrained(path)


def test_pickle_only_checkpoint_refused(tmp_path):
    _, path = tiny_hf("qwen2", tmp_path)
    (path / "model.safetensors").rename(path / "pytorch_model.bin")
    with pytest.raises(M.CheckpointError, match="safetensors only"):
        M.Transformer.from_pretrained(path)


# ---------------------------------------------------------------------------------- tokenizer + chat

@pytest.fixture(scope="module")
def qwen_tok_dir(shared):
    return shared / "data" / "qwen_tokenizer"


@pytest.fixture(scope="module")
def hf_tok(qwen_tok_dir):
    return transformers.AutoTokenizer.from_pretrained(qwen_tok_dir)


TEXTS = [
    "Hello, world!",
    "A 45-year-old man presents with crushing chest pain (troponin I 2.3 ng/mL); BP 90/60 mmHg.\n\nWhat next?",
    "患者，男，45岁，胸痛3小时。最可能的诊断是？",
    "  leading spaces, tabs\tand\r\nCRLF   \n\n\n trailing   ",
    "Numbers 1234567 and 3.14159, emoji 🩺💊, accents café naïve, Ωmega",
    "<think>\nreasoning\n</think>\n\n<answer>B</answer><|im_end|>",
]


def test_tokenizer_encodes_like_transformers(qwen_tok_dir, hf_tok):
    tok = M.Tokenizer.from_pretrained(qwen_tok_dir)
    assert tok.encode("Hello, world!") == [9707, 11, 1879, 0]
    for text in TEXTS:
        ids = tok.encode(text)
        assert ids == hf_tok.encode(text, add_special_tokens=False), text
        assert tok.decode(ids) == text


def test_special_tokens_are_single_ids(qwen_tok_dir):
    tok = M.Tokenizer.from_pretrained(qwen_tok_dir)
    conf = json.loads((qwen_tok_dir / "tokenizer_config.json").read_text())
    for idx, t in conf["added_tokens_decoder"].items():
        assert tok.encode(t["content"]) == [int(idx)]
    assert tok.encode("<think>") == [151667] and tok.encode("</think>") == [151668]
    assert tok.eos_id == 151645 and tok.pad_id == 151643 and len(tok) == 151669


CHATS = [
    [{"role": "user", "content": "What causes scurvy?"}],
    [{"role": "system", "content": "You are a careful physician."},
     {"role": "user", "content": "Dose of amoxicillin for otitis media?"}],
    [{"role": "user", "content": "Q1"}, {"role": "assistant", "content": "<think>\nhmm\n</think>\n\nA1"},
     {"role": "user", "content": "Q2"}],
    [{"role": "user", "content": "Q1"}, {"role": "assistant", "content": "<think>\nstep 1\n</think>\n\nA1"}],
]


@pytest.mark.parametrize("template", ["Qwen-Qwen2.5-7B-Instruct.jinja", "Qwen-Qwen3-0.6B.jinja"])
@pytest.mark.parametrize("chat", range(len(CHATS)))
@pytest.mark.parametrize("thinking", [True, False])
def test_chat_template_ids_equal_transformers(template, chat, thinking, qwen_tok_dir, hf_tok):
    jinja = (qwen_tok_dir / template).read_text()
    tok = M.Tokenizer.from_pretrained(qwen_tok_dir, chat_template=str(qwen_tok_dir / template))
    msgs = CHATS[chat]
    gen = msgs[-1]["role"] == "user"
    ref = hf_tok.apply_chat_template(msgs, chat_template=jinja, tokenize=True, add_generation_prompt=gen,
                                     enable_thinking=thinking, return_dict=False)
    assert tok.apply_chat_template(msgs, add_generation_prompt=gen, enable_thinking=thinking) == list(ref)


def test_default_system_prompts(qwen_tok_dir):
    q25 = M.Tokenizer.from_pretrained(qwen_tok_dir, chat_template=str(qwen_tok_dir / "Qwen-Qwen2.5-7B-Instruct.jinja"))
    q3 = M.Tokenizer.from_pretrained(qwen_tok_dir, chat_template=str(qwen_tok_dir / "Qwen-Qwen3-0.6B.jinja"))
    vl = M.Tokenizer.from_pretrained(qwen_tok_dir)  # tokenizer_config.json's own (Qwen2.5-VL) template
    assert q25.default_system == M.QWEN25_SYSTEM and q3.default_system is None
    assert vl.default_system == "You are a helpful assistant." and q3.thinking_template
    with pytest.raises(ValueError, match="unsupported chat message"):
        q25.render_chat([{"role": "tool", "content": "x"}])


# ------------------------------------------------------------------------------ real checkpoint

@pytest.fixture(scope="module")
def smollm2():
    pytest.importorskip("gguf")
    from convert_gguf import ensure_smollm2
    return ensure_smollm2(str(CACHE / "smollm2-135m-instruct"))


@pytest.mark.slow
def test_smollm2_greedy_equals_transformers(smollm2):
    """A real pretrained checkpoint (Llama family): greedy continuation equal token for token."""
    hf = transformers.AutoModelForCausalLM.from_pretrained(smollm2).eval()
    hf_tok = transformers.AutoTokenizer.from_pretrained(smollm2)
    ours = M.Transformer.from_pretrained(smollm2).eval()
    tok = M.Tokenizer.from_pretrained(smollm2)
    msgs = [{"role": "user", "content": "What is the first-line treatment for anaphylaxis?"}]
    prompt = tok.apply_chat_template(msgs)
    assert prompt == list(hf_tok.apply_chat_template(msgs, tokenize=True, add_generation_prompt=True,
                                                     return_dict=False))
    n_new = 24
    ref = hf.generate(torch.tensor([prompt]), max_new_tokens=n_new, do_sample=False, eos_token_id=None,
                      pad_token_id=hf_tok.pad_token_id)[0].tolist()
    out = M.greedy(ours, prompt, n_new)
    assert out == ref
    text = tok.decode(out[len(prompt):])
    assert len(set(out[len(prompt):])) > 5, text  # a real model says something, not one token repeated
    with torch.no_grad():
        err = (ours(torch.tensor([out])) - hf(torch.tensor([out])).logits).abs().max().item()
    assert err < 1e-3
