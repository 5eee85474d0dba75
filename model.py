"""Qwen2 / Qwen2.5 / Qwen3 (and Llama-family) dense decoders in Hugging Face layout (module names mirror
transformers', so checkpoint keys map one to one), safetensors loading and saving, the tokenizer and ChatML.

    model = Transformer.from_pretrained("Qwen2.5-7B-Instruct", dtype=torch.bfloat16, device="cuda")
    tok = Tokenizer.from_pretrained("Qwen2.5-7B-Instruct")
    ids = tok.apply_chat_template([{"role": "user", "content": "Hi"}])
    logits = model(torch.tensor([ids]))                      # [B, T, vocab]
"""
import json
import math
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from attention import dense_attention

FAMILIES = ("qwen2", "qwen3", "llama")
ROPE_TYPES = ("default", "linear", "dynamic", "yarn")


class CheckpointError(ValueError):
    """A config or checkpoint that cannot be loaded; the message names the file and the key or tensor."""


# ----------------------------------------------------------------------------------------------- config

@dataclass
class ModelConfig:
    model_type: str = "qwen3"
    vocab_size: int = 151936
    hidden_size: int = 1024
    intermediate_size: int = 3072
    num_hidden_layers: int = 28
    num_attention_heads: int = 16
    num_key_value_heads: int = 8
    head_dim: int = 128
    rms_norm_eps: float = 1e-6
    rope_theta: float = 1e6
    rope_scaling: dict | None = None  # {"rope_type": "linear"|"dynamic"|"yarn", "factor": ..., ...}
    max_position_embeddings: int = 40960
    tie_word_embeddings: bool = True
    qkv_bias: bool = False  # Qwen2/2.5: True
    o_bias: bool = False
    mlp_bias: bool = False
    qk_norm: bool = False  # Qwen3: per-head RMSNorm on q and k before RoPE
    eos_token_id: int | list | None = None
    raw: dict = field(default_factory=dict, repr=False, compare=False)  # the config.json as read, written back on save

    @classmethod
    def from_dict(cls, d, path="config.json"):
        def need(key):
            if key not in d:
                raise CheckpointError(f"{path}: missing key {key!r}")
            return d[key]

        mt = need("model_type")
        if mt not in FAMILIES:
            raise CheckpointError(f"{path}: model_type {mt!r} is not supported (supported: {', '.join(FAMILIES)})")
        if d.get("hidden_act", "silu") != "silu":
            raise CheckpointError(f"{path}: hidden_act {d['hidden_act']!r} is not supported (only 'silu')")
        if d.get("use_sliding_window"):
            raise CheckpointError(f"{path}: use_sliding_window=true is not supported")
        heads = need("num_attention_heads")
        theta, scaling = _parse_rope(d, path)
        bias = bool(d.get("attention_bias", False))
        return cls(
            model_type=mt, vocab_size=need("vocab_size"), hidden_size=need("hidden_size"),
            intermediate_size=need("intermediate_size"), num_hidden_layers=need("num_hidden_layers"),
            num_attention_heads=heads, num_key_value_heads=d.get("num_key_value_heads") or heads,
            head_dim=d.get("head_dim") or need("hidden_size") // heads, rms_norm_eps=d.get("rms_norm_eps", 1e-6),
            rope_theta=theta, rope_scaling=scaling, max_position_embeddings=d.get("max_position_embeddings", 32768),
            tie_word_embeddings=bool(d.get("tie_word_embeddings", False)), eos_token_id=d.get("eos_token_id"),
            qkv_bias=True if mt == "qwen2" else bias, o_bias=False if mt == "qwen2" else bias,
            mlp_bias=bool(d.get("mlp_bias", False)), qk_norm=mt == "qwen3", raw=dict(d))

    @classmethod
    def from_file(cls, path):
        if os.path.isdir(path):
            path = os.path.join(path, "config.json")
        d = _read_json(path, None)
        if d is None:
            raise CheckpointError(f"{path}: not found")
        return cls.from_dict(d, path)

    def to_dict(self):
        """config.json contents: the original keys, updated with this config's values."""
        d = dict(self.raw)
        d.update(model_type=self.model_type, vocab_size=self.vocab_size, hidden_size=self.hidden_size,
                 intermediate_size=self.intermediate_size, num_hidden_layers=self.num_hidden_layers,
                 num_attention_heads=self.num_attention_heads, num_key_value_heads=self.num_key_value_heads,
                 head_dim=self.head_dim, rms_norm_eps=self.rms_norm_eps, hidden_act="silu",
                 max_position_embeddings=self.max_position_embeddings, tie_word_embeddings=self.tie_word_embeddings)
        if self.eos_token_id is not None:  # a config built in code has no raw to carry it
            d["eos_token_id"] = self.eos_token_id
        d.setdefault("architectures", [{"qwen2": "Qwen2ForCausalLM", "qwen3": "Qwen3ForCausalLM",
                                        "llama": "LlamaForCausalLM"}[self.model_type]])
        if self.model_type != "qwen2":
            d["attention_bias"] = self.qkv_bias
        if self.model_type == "llama":
            d["mlp_bias"] = self.mlp_bias
        rope = {"rope_type": "default", **(self.rope_scaling or {}), "rope_theta": self.rope_theta}
        if "rope_parameters" in d:  # transformers-5 style stays that way
            d["rope_parameters"] = rope
        else:
            d["rope_theta"] = self.rope_theta
            d["rope_scaling"] = self.rope_scaling
        return d


def _parse_rope(d, path):
    """(theta, scaling or None) from old-style rope_theta/rope_scaling or transformers-5 rope_parameters."""
    rope = d.get("rope_parameters") or d.get("rope_scaling") or {}
    if any(isinstance(v, dict) for v in rope.values()):
        raise CheckpointError(f"{path}: per-layer-type rope_parameters are not supported")
    theta = float(rope.get("rope_theta", d.get("rope_theta", 10000.0)))
    rtype = rope.get("rope_type", rope.get("type", "default"))
    if rtype not in ROPE_TYPES:
        raise CheckpointError(f"{path}: rope type {rtype!r} is not supported (supported: {', '.join(ROPE_TYPES)})")
    if rtype == "default":
        return theta, None
    scaling = {k: v for k, v in rope.items() if k not in ("type", "rope_theta")}
    scaling["rope_type"] = rtype
    if rtype in ("linear", "dynamic") and "factor" not in scaling:
        raise CheckpointError(f"{path}: rope type {rtype!r} needs a 'factor'")
    if rtype == "yarn":
        scaling.setdefault("original_max_position_embeddings",
                           d.get("original_max_position_embeddings", d.get("max_position_embeddings")))
    return theta, scaling


# ------------------------------------------------------------------------------------------------- RoPE

def rope_frequencies(cfg, seq_len=None):
    """(inv_freq [head_dim/2], attention_scaling) as transformers computes them for each rope type."""
    dim, base, s = cfg.head_dim, cfg.rope_theta, cfg.rope_scaling or {"rope_type": "default"}
    exponents = torch.arange(0, dim, 2, dtype=torch.int64).float() / dim
    rtype = s["rope_type"]
    if rtype == "yarn":
        return _yarn_frequencies(cfg, s, dim, base)
    if rtype == "dynamic":  # NTK: raise the base once the sequence outgrows the trained length
        L, f = max(seq_len or 0, cfg.max_position_embeddings), s["factor"]
        base = base * ((f * L / cfg.max_position_embeddings) - (f - 1)) ** (dim / (dim - 2))
    inv_freq = 1.0 / (base ** exponents)
    return (inv_freq / s["factor"] if rtype == "linear" else inv_freq), 1.0


def _yarn_frequencies(cfg, s, dim, base):
    orig = s["original_max_position_embeddings"]
    factor = s.get("factor") or cfg.max_position_embeddings / orig

    def mscale(scale, m=1.0):
        return 1.0 if scale <= 1 else 0.1 * m * math.log(scale) + 1.0

    attn_factor = s.get("attention_factor")
    if attn_factor is None:
        m, m_all = s.get("mscale"), s.get("mscale_all_dim")
        attn_factor = mscale(factor, m) / mscale(factor, m_all) if m and m_all else mscale(factor)

    def correction_dim(rotations):  # the dimension whose wavelength makes `rotations` turns over `orig`
        return dim * math.log(orig / (rotations * 2 * math.pi)) / (2 * math.log(base))

    low, high = correction_dim(s.get("beta_fast") or 32), correction_dim(s.get("beta_slow") or 1)
    if s.get("truncate", True):
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, dim - 1)
    if low == high:
        high += 0.001
    ramp = ((torch.arange(dim // 2, dtype=torch.float32) - low) / (high - low)).clamp(0, 1)
    pos_freqs = base ** (torch.arange(0, dim, 2).float() / dim)
    extrapolate = 1 - ramp  # 1 on high-frequency dims (kept), 0 on low-frequency dims (interpolated)
    inv_freq = (1.0 / (factor * pos_freqs)) * (1 - extrapolate) + (1.0 / pos_freqs) * extrapolate
    return inv_freq, float(attn_factor)


def apply_rope(x, cos, sin):
    """x [B, T, H, D]; cos/sin [B, T, D] (rotate-half convention, as transformers' Qwen/Llama)."""
    cos, sin = cos[:, :, None, :], sin[:, :, None, :]
    x1, x2 = x.chunk(2, dim=-1)
    return x * cos + torch.cat((-x2, x1), dim=-1) * sin


# ---------------------------------------------------------------------------------------------- modules

class RMSNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):  # normalise in fp32, scale in the input dtype (as transformers does)
        if x.dtype == torch.float32:  # the same arithmetic in one call
            return F.rms_norm(x, x.shape[-1:], self.weight, self.eps)
        return self.weight * F.rms_norm(x.float(), x.shape[-1:], eps=self.eps).to(x.dtype)


class Attention(nn.Module):
    def __init__(self, cfg, layer_idx):
        super().__init__()
        self.layer_idx, self.n_heads, self.n_kv, self.head_dim = layer_idx, cfg.num_attention_heads, \
            cfg.num_key_value_heads, cfg.head_dim
        q_dim, kv_dim = self.n_heads * self.head_dim, self.n_kv * self.head_dim
        self.q_proj = nn.Linear(cfg.hidden_size, q_dim, bias=cfg.qkv_bias)
        self.k_proj = nn.Linear(cfg.hidden_size, kv_dim, bias=cfg.qkv_bias)
        self.v_proj = nn.Linear(cfg.hidden_size, kv_dim, bias=cfg.qkv_bias)
        self.o_proj = nn.Linear(q_dim, cfg.hidden_size, bias=cfg.o_bias)
        if cfg.qk_norm:
            self.q_norm = RMSNorm(self.head_dim, cfg.rms_norm_eps)
            self.k_norm = RMSNorm(self.head_dim, cfg.rms_norm_eps)

    def forward(self, x, cos, sin, attend):
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.n_heads, self.head_dim)
        k = self.k_proj(x).view(B, T, self.n_kv, self.head_dim)
        v = self.v_proj(x).view(B, T, self.n_kv, self.head_dim)
        if hasattr(self, "q_norm"):
            q, k = self.q_norm(q), self.k_norm(k)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        return self.o_proj(attend(q, k, v, self.layer_idx).reshape(B, T, -1))


class MLP(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.gate_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=cfg.mlp_bias)
        self.up_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=cfg.mlp_bias)
        self.down_proj = nn.Linear(cfg.intermediate_size, cfg.hidden_size, bias=cfg.mlp_bias)

    def forward(self, x):  # SwiGLU
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(nn.Module):
    def __init__(self, cfg, layer_idx):
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.self_attn = Attention(cfg, layer_idx)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.mlp = MLP(cfg)

    def forward(self, x, cos, sin, attend):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, attend)
        return x + self.mlp(self.post_attention_layernorm(x))


class Decoder(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(Block(cfg, i) for i in range(cfg.num_hidden_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)


class Transformer(nn.Module):
    """The causal LM. State-dict keys equal transformers' (model.layers.0.self_attn.q_proj.weight, ...)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.config = cfg
        self.model = Decoder(cfg)
        self.lm_head = nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False)
        if cfg.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight
        self.grad_checkpointing = False  # recompute each block in backward (activation checkpointing)
        # RoPE frequencies stay fp32 and out of the state dict, so model.to(bf16) or meta init never touch
        # them; one copy per device, made on first use.
        self._inv_freq = {}

    def rope(self, position_ids, dtype):
        """cos, sin [B, T, head_dim] for integer positions [B, T]."""
        dev = position_ids.device
        if self.config.rope_scaling and self.config.rope_scaling["rope_type"] == "dynamic":
            inv_freq, scale = rope_frequencies(self.config, int(position_ids.max()) + 1)
            inv_freq = inv_freq.to(dev)
        else:
            if dev not in self._inv_freq:
                with torch.device("cpu"):
                    inv_freq, scale = rope_frequencies(self.config)
                self._inv_freq[dev] = inv_freq.to(dev), scale
            inv_freq, scale = self._inv_freq[dev]
        freqs = position_ids[..., None].float() * inv_freq
        emb = torch.cat((freqs, freqs), dim=-1)
        return (emb.cos() * scale).to(dtype), (emb.sin() * scale).to(dtype)

    def forward(self, input_ids, position_ids=None, segment_ids=None, attend=None, return_hidden=False,
                prefix_ids=None):
        """input_ids [B, T] -> logits [B, T, vocab] (or hidden states [B, T, hidden]). segment_ids, prefix_ids:
        attention.dense_attention's masks; attend replaces the attention (the sampler's paged cache)."""
        B, T = input_ids.shape
        if position_ids is None:
            position_ids = torch.arange(T, device=input_ids.device).expand(B, T)
        if attend is None:
            attend = dense_attention(segment_ids, prefix_ids)
        x = self.model.embed_tokens(input_ids)
        cos, sin = self.rope(position_ids, x.dtype)
        for layer in self.model.layers:
            if self.grad_checkpointing and self.training:
                x = checkpoint(layer, x, cos, sin, attend, use_reentrant=False)
            else:
                x = layer(x, cos, sin, attend)
        x = self.model.norm(x)
        return x if return_hidden else self.lm_head(x)

    # -------------------------------------------------------------------------------- checkpoints

    @classmethod
    def from_config(cls, cfg, dtype=torch.float32, device="cpu"):
        """Random init in the target dtype/device (for tests and benchmarks); device="meta" allocates nothing."""
        with torch.device(device):
            return cls(cfg).to(dtype)

    @classmethod
    def from_pretrained(cls, path, dtype=torch.float32, device="cpu"):
        """Load a checkpoint dir without a second copy in memory: built on meta, each tensor assigned as it is read
        (FSDP training reads each rank's shard only: training.load_sharded)."""
        model = cls.from_config(ModelConfig.from_file(path), device="meta")
        for key, tensor in read_checkpoint(path, model):
            assign_parameter(model, key, nn.Parameter(tensor[:].to(device=device, dtype=dtype)))
        return model

    def save_pretrained(self, out_dir, state_dict=None, max_shard_bytes=5 * 2**30, tokenizer_dir=None):
        """config.json + safetensors (sharded with an index over the limit), tied weights once, atomically (a temp
        dir renamed). state_dict: the gathered one when the model is FSDP-sharded."""
        from safetensors.torch import save_file

        sd = state_dict if state_dict is not None else self.state_dict()
        sd = {k: v.detach().contiguous().cpu() for k, v in sd.items()
              if not (k == "lm_head.weight" and self.config.tie_word_embeddings)}
        shards, size = [{}], 0
        for k, v in sd.items():  # greedy, in module order, as transformers does
            if shards[-1] and size + v.nbytes > max_shard_bytes:
                shards.append({})
                size = 0
            shards[-1][k] = v
            size += v.nbytes
        out_dir = os.path.abspath(out_dir)
        os.makedirs(os.path.dirname(out_dir), exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=".tmp-" + os.path.basename(out_dir), dir=os.path.dirname(out_dir))
        os.chmod(tmp, 0o755)  # mkdtemp makes it 0700: an export must be readable by others
        cfg = dict(self.config.to_dict(), torch_dtype=str(next(iter(sd.values())).dtype).removeprefix("torch."))
        with open(os.path.join(tmp, "config.json"), "w") as f:
            json.dump(cfg, f, indent=2)
        names = ["model.safetensors"] if len(shards) == 1 else \
            [f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))]
        for name, shard in zip(names, shards):
            save_file(shard, os.path.join(tmp, name), metadata={"format": "pt"})
        if len(shards) > 1:
            index = {"metadata": {"total_size": sum(v.nbytes for v in sd.values())},
                     "weight_map": {k: name for name, shard in zip(names, shards) for k in shard}}
            with open(os.path.join(tmp, "model.safetensors.index.json"), "w") as f:
                json.dump(index, f, indent=2)
        if tokenizer_dir:
            for name in TOKENIZER_FILES + ("generation_config.json",):
                if os.path.exists(os.path.join(tokenizer_dir, name)):
                    shutil.copy(os.path.join(tokenizer_dir, name), tmp)
            _write_stop_ids(tmp, self.config.eos_token_id)
        if os.path.exists(out_dir):  # swap: the old checkpoint survives until the new one is complete
            os.rename(out_dir, tmp + ".old")
        os.rename(tmp, out_dir)
        shutil.rmtree(tmp + ".old", ignore_errors=True)

    def num_parameters(self):
        return sum(p.numel() for p in self.parameters())  # tied weights count once


def _write_stop_ids(path, eos_token_id):
    """generation_config.json's eos_token_id = Tokenizer.stop_ids, so transformers' generate() on an SFT'd base
    checkpoint stops at the end of the chat turn it was taught."""
    try:
        stops = Tokenizer.from_pretrained(path).stop_ids(eos_token_id)
    except (CheckpointError, KeyError):  # no tokenizer, or one without the EOS it names: nothing to add
        return
    gen = _read_json(os.path.join(path, "generation_config.json"), {})
    old = gen.get("eos_token_id")
    gen["eos_token_id"] = sorted(set(stops) | set([old] if isinstance(old, int) else old or []))
    with open(os.path.join(path, "generation_config.json"), "w") as f:
        json.dump(gen, f, indent=2)


def read_checkpoint(path, model):
    """(key, tensor) for each tensor of the checkpoint dir, its shape checked against `model` (any device, meta
    too). tensor is a lazy slice of the memory-mapped file, read when indexed (tensor[a:b]: rows a..b-1) while the
    generator sits at that key. A CheckpointError names an unexpected, misshapen or missing tensor."""
    from safetensors import safe_open

    cfg = model.config
    expected = {k: v.shape for k, v in model.state_dict().items()}
    if cfg.tie_word_embeddings:
        expected.pop("lm_head.weight")
    seen = set()
    for file in checkpoint_files(path):
        with safe_open(file, framework="pt", device="cpu") as f:
            for key in f.keys():
                if key not in expected:
                    if key == "lm_head.weight" or key.endswith("rotary_emb.inv_freq"):
                        continue  # a tied head saved anyway; old checkpoints' RoPE buffers
                    raise CheckpointError(f"{file}: unexpected tensor {key!r} for a {cfg.model_type} "
                                          f"model with this config")
                tensor = f.get_slice(key)
                shape = tuple(tensor.get_shape())
                if shape != tuple(expected[key]):
                    raise CheckpointError(f"{file}: tensor {key!r} has shape {shape}, config.json "
                                          f"implies {tuple(expected[key])}")
                yield key, tensor
                seen.add(key)
    missing = sorted(set(expected) - seen)
    if missing:
        raise CheckpointError(f"{path}: checkpoint is missing tensor {missing[0]!r}"
                              + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))


def checkpoint_files(path):
    """The safetensors files of a checkpoint dir, from the index when sharded."""
    index = os.path.join(path, "model.safetensors.index.json")
    if os.path.exists(index):
        with open(index) as f:
            weight_map = json.load(f).get("weight_map")
        if not isinstance(weight_map, dict):
            raise CheckpointError(f"{index}: no 'weight_map' object")
        files = [os.path.join(path, n) for n in dict.fromkeys(weight_map.values())]
        for file in files:
            if not os.path.exists(file):
                raise CheckpointError(f"{index}: lists {os.path.basename(file)}, which is not in {path}")
        return files
    single = os.path.join(path, "model.safetensors")
    if os.path.exists(single):
        return [single]
    if any(n.endswith((".bin", ".pt", ".pth")) for n in os.listdir(path)):
        raise CheckpointError(f"{path}: only pickled weights found; fleming loads safetensors only")
    raise CheckpointError(f"{path}: no model.safetensors or model.safetensors.index.json")


def assign_parameter(model, key, param):
    """Put param in place of the Transformer's parameter named key; a tied head follows its embedding."""
    module_name, _, name = key.rpartition(".")
    model.get_submodule(module_name)._parameters[name] = param
    if key == "model.embed_tokens.weight" and model.config.tie_word_embeddings:
        model.lm_head.weight = param


# -------------------------------------------------------------------------------- tokenizer and chat

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt", "chat_template.jinja",
                   "special_tokens_map.json")
# The pre-tokenizer regex of Qwen2/2.5/3 (as in their tokenizer.json).
QWEN_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
              r"\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN25_SYSTEM = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."


class Tokenizer:
    """Byte-level BPE through the `tokenizers` library, plus ChatML rendering in plain Python. default_system: the
    system prompt inserted when there is none (Qwen2.5's; Qwen3: None); thinking_template: Qwen3's <think>."""

    def __init__(self, tk, chat_template=None, eos_token=None, pad_token=None):
        self.tk = tk
        self.chat_template = chat_template
        self.thinking_template = bool(chat_template and "enable_thinking" in chat_template)
        self.default_system = _template_default_system(chat_template)
        self.eos_token = eos_token or "<|im_end|>"
        self.pad_token = pad_token or "<|endoftext|>"

    @classmethod
    def from_pretrained(cls, path, chat_template=None):
        """tokenizer.json, or vocab.json + merges.txt; chat_template: a .jinja path or text overriding path's."""
        from tokenizers import Tokenizer as HFTokenizer

        conf = _read_json(os.path.join(path, "tokenizer_config.json"), {})
        if os.path.exists(os.path.join(path, "tokenizer.json")):
            tk = HFTokenizer.from_file(os.path.join(path, "tokenizer.json"))
        elif os.path.exists(os.path.join(path, "vocab.json")) and os.path.exists(os.path.join(path, "merges.txt")):
            tk = _bpe_from_vocab_merges(path, conf)
        else:
            raise CheckpointError(f"{path}: no tokenizer.json, nor vocab.json + merges.txt")
        if chat_template and os.path.exists(chat_template):
            chat_template = open(chat_template).read()
        if chat_template is None and os.path.exists(os.path.join(path, "chat_template.jinja")):
            chat_template = open(os.path.join(path, "chat_template.jinja")).read()
        chat_template = chat_template or conf.get("chat_template")

        def token(v):
            return v.get("content") if isinstance(v, dict) else v
        return cls(tk, chat_template, token(conf.get("eos_token")), token(conf.get("pad_token")))

    def __len__(self):
        return self.tk.get_vocab_size(with_added_tokens=True)

    def encode(self, text):
        return self.tk.encode(text, add_special_tokens=False).ids

    def decode(self, ids, skip_special_tokens=False):
        return self.tk.decode(list(ids), skip_special_tokens=skip_special_tokens)

    def token_id(self, token):
        i = self.tk.token_to_id(token)
        if i is None:
            raise KeyError(f"token {token!r} is not in the vocabulary")
        return i

    @property
    def eos_id(self):
        return self.token_id(self.eos_token)

    @property
    def eot_id(self):
        """ChatML's end of turn: an Instruct tokenizer's EOS; a base checkpoint's EOS is <|endoftext|> instead."""
        return self.token_id("<|im_end|>")

    def stop_ids(self, eos_token_id=None):
        """The ids that end a reply: the end of turn (if any), the tokenizer's EOS, the config's eos_token_id(s)."""
        ids = {self.eos_id, *([eos_token_id] if isinstance(eos_token_id, int) else eos_token_id or [])}
        if self.tk.token_to_id("<|im_end|>") is not None:
            ids.add(self.eot_id)
        return tuple(sorted(ids))

    @property
    def pad_id(self):
        return self.token_id(self.pad_token)

    def render_chat(self, messages, add_generation_prompt=True, enable_thinking=True):
        """ChatML text for system/user/assistant messages, as the model's jinja template renders it."""
        for m in messages:
            if m.get("role") not in ("system", "user", "assistant") or not isinstance(m.get("content"), str):
                raise ValueError(f"unsupported chat message {m!r}: roles system/user/assistant with string content")
        out = []
        if messages and messages[0]["role"] == "system":
            out.append(f"<|im_start|>system\n{messages[0]['content']}<|im_end|>\n")
            messages = messages[1:]
        elif self.default_system is not None:
            out.append(f"<|im_start|>system\n{self.default_system}<|im_end|>\n")
        last_user = max([i for i, m in enumerate(messages) if m["role"] == "user"], default=len(messages) - 1)
        for i, m in enumerate(messages):
            if m["role"] == "assistant" and self.thinking_template:
                out.append(_qwen3_assistant(m["content"], after_last_query=i > last_user,
                                            is_last=i == len(messages) - 1))
            else:
                out.append(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n")
        if add_generation_prompt:
            out.append("<|im_start|>assistant\n")
            if self.thinking_template and not enable_thinking:
                out.append("<think>\n\n</think>\n\n")
        return "".join(out)

    def apply_chat_template(self, messages, add_generation_prompt=True, enable_thinking=True):
        """Token ids of render_chat (equal to transformers' apply_chat_template(tokenize=True))."""
        return self.encode(self.render_chat(messages, add_generation_prompt, enable_thinking))


def _qwen3_assistant(content, after_last_query, is_last):
    """Qwen3's template: reasoning in <think> is kept only for turns after the last user query."""
    reasoning = ""
    if "</think>" in content:
        reasoning = content.split("</think>")[0].rstrip("\n").split("<think>")[-1].lstrip("\n")
        content = content.split("</think>")[-1].lstrip("\n")
    if after_last_query and (is_last or reasoning):
        body = f"<think>\n{reasoning.strip(chr(10))}\n</think>\n\n{content.lstrip(chr(10))}"
    else:
        body = content
    return f"<|im_start|>assistant\n{body}<|im_end|>\n"


def _template_default_system(template):
    """The system prompt a ChatML jinja template inserts when none is given (None if it inserts none)."""
    if not template:
        return QWEN25_SYSTEM  # ChatML without a template: the Qwen2.5 convention
    m = re.search(r"'<\|im_start\|>system(?:\\n|\n)([^'<]+)<\|im_end\|>", template)
    return m.group(1) if m else None


def _bpe_from_vocab_merges(path, conf):
    from tokenizers import AddedToken, Regex, decoders, models, normalizers, pre_tokenizers
    from tokenizers import Tokenizer as HFTokenizer

    bpe = models.BPE.from_file(os.path.join(path, "vocab.json"), os.path.join(path, "merges.txt"))
    tk = HFTokenizer(bpe)
    tk.normalizer = normalizers.NFC()
    tk.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN_SPLIT), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tk.decoder = decoders.ByteLevel()
    added = sorted(conf.get("added_tokens_decoder", {}).items(), key=lambda kv: int(kv[0]))
    for idx, t in added:
        tok = AddedToken(t["content"], special=t.get("special", False), normalized=t.get("normalized", False),
                         lstrip=t.get("lstrip", False), rstrip=t.get("rstrip", False),
                         single_word=t.get("single_word", False))
        tk.add_special_tokens([tok]) if tok.special else tk.add_tokens([tok])
        if tk.token_to_id(t["content"]) != int(idx):
            raise CheckpointError(f"{path}/tokenizer_config.json: added token {t['content']!r} got id "
                                  f"{tk.token_to_id(t['content'])}, the file says {idx}")
    return tk


def _read_json(path, default):
    if not os.path.exists(path):
        return default
    try:
        with open(path) as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path}:{e.lineno}: invalid JSON ({e.msg})") from None


# ------------------------------------------------------------------------------------------ reference

@torch.no_grad()
def greedy(model, ids, max_new_tokens, stop_ids=()):
    """Greedy decoding with the plain full forward, no cache: the reference the sampler is tested against."""
    ids = list(ids)
    for _ in range(max_new_tokens):
        nxt = int(model(torch.tensor([ids]))[0, -1].argmax())
        ids.append(nxt)
        if nxt in stop_ids:
            break
    return ids
