"""One GRPO step on CPU split into rollout / weight sync / update: grpo.py against TRL's GRPOTrainer, same run.

    .venv/bin/python bench/grpo.py                  # SmolLM2-135M-Instruct, 2 MedQA prompts x k=8, 32 new tokens
    .venv/bin/python bench/grpo.py --prompts 4 --k 8 --max_new_tokens 128 --steps 4  # closer to a real step
    python bench/grpo.py --shape qwen2.5-0.5b --prompts 8 --k 8 --max_new_tokens 512   # one GPU, bf16

--shape builds a randomly initialised model of a published shape (SmolLM2's tokenizer, written beside it so
both sides load the same directory); random weights rarely emit EOS, so every completion runs to
max_new_tokens on both sides. On a GPU both sides train in bf16 with fp32 master weights (ours: FSDP2's
mixed precision; TRL: bf16=True) and ours samples in bf16.

Both sides: the same checkpoint in fp32, the same prompts (MedQA test items in the model's chat template via
eval.answer.build_prompt), k rollouts per prompt at temperature 1, at most max_new_tokens new tokens (EOS
stops early), the same reward (grpo.reward), one optimizer step over all prompts x k completions in one
micro-batch, no KL, no activation checkpointing. Each side runs `--steps` steps; the table shows the median
over the steps after the first (the first warms up), and the completion tokens generated, since the two
samplers draw different completions (a ratio of times per generated token is printed too).
  ours  rollout = Sampler.generate + reward; update = trainer logprobs + loss + backward + AdamW (FSDP2 over a
        world of one, as in a real run); sync = gathered weights copied into the sampler.
  TRL   rollout = the time inside model.generate (transformers' generate, TRL's default without vLLM);
        update = the rest of the training step (reward, logprobs, loss, backward, optimizer); sync = none
        (the sampler is the trained model).
TRL is a bench-only dependency (trl==1.16.0): grpo.py never imports it.
"""
import argparse
import os
import statistics
import sys
import tempfile
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import grpo  # noqa: E402
from eval.answer import build_prompt  # noqa: E402
from eval.loaders import load_medqa  # noqa: E402
from model import Tokenizer, Transformer  # noqa: E402
from sample import Sampler  # noqa: E402
from training import fsdp_wrap, setup_dist, teardown_dist  # noqa: E402

SHARED = os.environ.get("FLEMING_SHARED", os.path.join(os.path.dirname(ROOT), "shared"))
SHAPES = {  # published configs (Qwen2.5-0.5B / 1.5B config.json), the vocabulary kept at Qwen's size
    "qwen2.5-0.5b": dict(model_type="qwen2", vocab_size=151936, hidden_size=896, intermediate_size=4864,
                         num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2, head_dim=64,
                         qkv_bias=True, tie_word_embeddings=True, rope_theta=1000000.0),
    "qwen2.5-1.5b": dict(model_type="qwen2", vocab_size=151936, hidden_size=1536, intermediate_size=8960,
                         num_hidden_layers=28, num_attention_heads=12, num_key_value_heads=2, head_dim=128,
                         qkv_bias=True, tie_word_embeddings=True, rope_theta=1000000.0),
}


def random_checkpoint(shape, tokenizer_dir):
    """A randomly initialised model of `shape` saved with the tokenizer of tokenizer_dir; returns its dir."""
    from model import ModelConfig
    cfg = ModelConfig(**SHAPES[shape], max_position_embeddings=32768)
    torch.manual_seed(0)
    net = Transformer.from_config(cfg)
    out = os.path.join(tempfile.mkdtemp(prefix="grpo-bench-"), shape)
    net.save_pretrained(out, tokenizer_dir=tokenizer_dir)
    return out


def run_ours(a, recs):
    env = setup_dist()
    cuda = env.device.type == "cuda"
    cfg = grpo.Config(k=a.k, max_new_tokens=a.max_new_tokens, micro_batch_size=a.prompts * a.k, lr=1e-6,
                      grad_checkpointing=False)
    tok = Tokenizer.from_pretrained(a.model)
    policy = Transformer.from_pretrained(a.model, device=env.device)  # fp32 master weights
    policy.train()
    fsdp_wrap(policy, policy.model.layers, env.device, bf16=cuda)
    opt = torch.optim.AdamW(policy.parameters(), lr=cfg.lr, betas=(0.9, 0.99), weight_decay=0.0)
    net = Transformer.from_pretrained(a.model, dtype=torch.bfloat16 if cuda else torch.float32, device=env.device)
    sampler = Sampler(net, tok)
    stop = tok.stop_ids(net.config.eos_token_id)
    reward_fn = grpo.reward
    rows = []
    for step in range(a.steps):
        batch = recs[step * a.prompts:(step + 1) * a.prompts]
        t0 = grpo._now(env.device)
        groups = grpo.rollout(sampler, tok, batch, cfg, step, 0, stop, reward_fn)
        sampler.free_cache()
        t1 = grpo._now(env.device)
        grpo.update(cfg, policy, opt, groups, env)
        t2 = grpo._now(env.device)
        sampler.load_weights(policy)
        t3 = grpo._now(env.device)
        tokens = sum(len(c.token_ids) for g in groups for c in g.completions)
        rows.append({"rollout": t1 - t0, "sync": t3 - t2, "update": t2 - t1, "tokens": tokens})
        print(f"ours step {step}: rollout {t1 - t0:.2f}s, sync {t3 - t2:.3f}s, update {t2 - t1:.2f}s, {tokens} tokens")
    teardown_dist()
    return rows


def run_trl(a, recs):
    import transformers
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    tok = transformers.AutoTokenizer.from_pretrained(a.model)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    cuda = torch.cuda.is_available()
    model = transformers.AutoModelForCausalLM.from_pretrained(a.model, dtype=torch.float32)
    if cuda:
        model.to("cuda")
    rows, clock = [], {"gen": 0.0, "tokens": 0, "t0": 0.0}
    generate = model.generate

    def now():
        if cuda:
            torch.cuda.synchronize()
        return time.perf_counter()

    def timed_generate(*args, **kw):
        t = now()
        out = generate(*args, **kw)
        clock["gen"] += now() - t
        prompt_len = (kw.get("input_ids") if "input_ids" in kw else args[0]).shape[1]
        gen = out[:, prompt_len:]
        ends = (gen == tok.eos_token_id).int()
        # tokens up to and including the first EOS (or all of them)
        first = torch.where(ends.any(1), ends.argmax(1) + 1, torch.full_like(ends[:, 0], gen.shape[1]))
        clock["tokens"] += int(first.sum())
        return out
    model.generate = timed_generate

    by_prompt = {r["id"]: r for r in recs}

    def reward_fn(prompts, completions, id, **kw):
        return [grpo.reward(by_prompt[i], c[0]["content"] if isinstance(c, list) else c, "eos")[0]
                for i, c in zip(id, completions)]

    class Timer(transformers.TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):
            clock.update(gen=0.0, tokens=0, t0=now())

        def on_step_end(self, args, state, control, **kw):
            total = now() - clock["t0"]
            rows.append({"rollout": clock["gen"], "sync": 0.0, "update": total - clock["gen"],
                         "tokens": clock["tokens"]})
            print(f"TRL  step {len(rows) - 1}: rollout {clock['gen']:.2f}s, update {total - clock['gen']:.2f}s, "
                  f"{clock['tokens']} tokens")

    ds = Dataset.from_list([{"prompt": build_prompt(r), "id": r["id"]} for r in recs[:a.prompts * a.steps]])
    cfg = GRPOConfig(output_dir=tempfile.mkdtemp(prefix="trl-bench-"), per_device_train_batch_size=a.prompts * a.k,
                     num_generations=a.k, max_completion_length=a.max_new_tokens, max_steps=a.steps,
                     learning_rate=1e-6, beta=0.0, temperature=1.0, top_p=1.0, report_to=[], save_strategy="no",
                     logging_steps=1, use_cpu=not cuda, bf16=cuda, gradient_checkpointing=False, shuffle_dataset=False,
                     seed=0, disable_tqdm=True)
    GRPOTrainer(model=model, reward_funcs=reward_fn, args=cfg, train_dataset=ds, processing_class=tok,
                callbacks=[Timer()]).train()
    return rows


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=os.path.join(ROOT, ".cache", "smollm2-135m-instruct"),
                   help="checkpoint dir (with --shape: only its tokenizer is used)")
    p.add_argument("--shape", choices=sorted(SHAPES), help="a random model of this published shape instead")
    p.add_argument("--prompts", type=int, default=2)
    p.add_argument("--k", type=int, default=8)
    p.add_argument("--max_new_tokens", type=int, default=32)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    if not os.path.exists(os.path.join(a.model, "config.json")):
        sys.exit(f"error: no checkpoint at {a.model} (run convert_gguf.py, see the README)")
    if a.shape:
        a.model = random_checkpoint(a.shape, a.model)
    recs = load_medqa(os.path.join(SHARED, "data", "medqa", "phrases_no_exclude_test.jsonl"))[:a.prompts * a.steps]
    where = torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU, {a.threads} threads"
    print(f"{a.model}: {a.prompts} prompts x k={a.k}, <= {a.max_new_tokens} new tokens, {a.steps} steps, {where}")
    ours, trl = run_ours(a, recs), run_trl(a, recs)
    warm = slice(1, None) if a.steps > 1 else slice(None)
    med = lambda rows, key: statistics.median(r[key] for r in rows[warm])
    print(f"\nmedian over steps {'2..' if a.steps > 1 else '1..'}{a.steps} (seconds)")
    print(f"{'':10}{'ours':>10}{'TRL':>10}{'TRL/ours':>10}")
    for key in ("rollout", "sync", "update"):
        o, t = med(ours, key), med(trl, key)
        print(f"{key:10}{o:10.3f}{t:10.3f}{(t / o if o else float('nan')):10.2f}")
    o = sum(med(ours, k) for k in ("rollout", "sync", "update"))
    t = sum(med(trl, k) for k in ("rollout", "sync", "update"))
    print(f"{'step':10}{o:10.3f}{t:10.3f}{t / o:10.2f}")
    ot, tt = med(ours, "tokens"), med(trl, "tokens")
    print(f"{'tokens':10}{ot:10.0f}{tt:10.0f}")
    print(f"rollout per generated token: ours {1e3 * med(ours, 'rollout') / ot:.1f} ms, "
          f"TRL {1e3 * med(trl, 'rollout') / tt:.1f} ms ({(med(trl, 'rollout') / tt) / (med(ours, 'rollout') / ot):.2f}x)")


if __name__ == "__main__":
    main()
