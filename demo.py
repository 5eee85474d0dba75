"""The whole paper on one machine, with its Table-4 ablation (base, +CoT SFT, +RL stage 1, +RL stage 2).

    python demo.py config/demo_cpu.py            # 2-core CPU, a tiny Qwen3-shaped model, ~15 minutes
    python demo.py config/demo_1gpu.py           # one GPU, a real checkpoint; config/demo_8gpu.py: torchrun x 8

Stages, each skipped when its output exists (a rerun resumes; a killed SFT / GRPO stage continues from its
last checkpoint):
  kg        python -m kg.build                          -> kg/
  questions kg.sample's templates on a small world of diseases (n_diseases; 0 = the whole graph)
  split     kg.split: leak-free train / held-out by answer entity (the disease, for a diagnosis question)
  cot       python -m data.distill --template           -> cot/sft.jsonl (CoT targets written from the KG paths)
  base      a tiny Qwen3-shaped model and a BPE tokenizer trained on the training text (or base_model)
  sft, grpo1, grpo2   sft.py, grpo.py --stage 1, grpo.py --stage 2, run as `launcher script --key=value ...`
  eval      greedy on the held-out questions after each stage -> eval/<stage>.jsonl (resumed by id)
then the ablation table (ablation.md) and the training curves (curves.png).
"""
import json
import os
import random
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field

import torch

import training as T
from eval.answer import build_prompt, format_ok
from eval.records import read_jsonl, write_jsonl

ROWS = (("base", "base"), ("sft", "+CoT SFT"), ("grpo1", "+RL stage 1"), ("grpo2", "+RL stage 2"))
CHATML = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}" \
         "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
TAGS = ["<think>", "</think>", "<answer>", "</answer>"]


@dataclass
class Config:
    out_dir: str = "runs/demo"
    seed: int = 0
    # data
    kg_sources: str = "hpo,do,drugcentral,hsdn,wikidata"
    n_diseases: int = 120       # the world the questions are drawn from (0: the whole graph)
    n_questions: int = 2000
    templates: str = "diagnosis=3,diagnosis_gene=1.5,diagnosis_inheritance=1,diagnosis_treatment=1.5,treatment_class=1"
    held: float = 0.2           # share of questions held out (kg.split)
    eval_limit: int = 0         # held-out questions evaluated (0: all)
    eval_max_tokens: int = 192
    # model: base_model = an HF checkpoint dir; "" = build a tiny Qwen3-shaped one with the settings below
    base_model: str = ""
    vocab_size: int = 2048
    hidden_size: int = 128
    num_layers: int = 4
    num_heads: int = 4
    num_kv_heads: int = 2
    intermediate_size: int = 384
    # stages: --key=value options for sft.py and grpo.py (their --help lists them)
    launcher: str = ""          # "" = this Python; e.g. "torchrun --nproc_per_node=8"
    cpu_threads: int = 0        # > 0: OMP_NUM_THREADS for every stage (0: leave it)
    sft: dict = field(default_factory=dict)
    grpo1: dict = field(default_factory=dict)
    grpo2: dict = field(default_factory=dict)


# ------------------------------------------------------------------------------------------------ data

def difficulty(rec):
    """The demo's difficulty label, from the path length (the paper asks an LLM): 1 hop easy, 2 moderate, 3+
    difficult. Stage 1 trains on Easy + Moderate, stage 2 weights Difficult up; the hard subset is 2+ hops."""
    hops = rec["meta"].get("hops", 1)
    return "easy" if hops <= 1 else "moderate" if hops == 2 else "difficult"


def make_questions(cfg, path):
    """n_questions from kg.sample's templates, their focus diseases restricted to n_diseases of the graph (a
    small world: each disease is seen from several templates, so what one question teaches another uses)."""
    from tqdm import tqdm

    from kg.build import Graph
    from kg.sample import Sampler, generate_one, parse_mix, to_record

    g = Graph.load(os.path.join(cfg.out_dir, "kg"))
    mix = parse_mix(cfg.templates, Sampler.TEMPLATES)
    only = None
    if cfg.n_diseases:  # the diseases most templates can ask about, ties broken by a seeded shuffle
        full = Sampler(g)
        pools = [set(full.pool(t)[0].tolist()) for t in mix if t != "diagnosis" or len(mix) == 1]
        cands = random.Random(cfg.seed).sample(sorted(set().union(*pools)), len(set().union(*pools)))
        only = sorted(cands, key=lambda d: -sum(d in p for p in pools))[:cfg.n_diseases]
    s = Sampler(g, only=only)
    recs, seen = [], set()
    bar = tqdm(total=cfg.n_questions, desc="questions")
    for i in range(3 * cfg.n_questions):  # an index may give no question, or one already drawn
        if len(recs) >= cfg.n_questions:
            break
        got = generate_one(s, i, cfg.seed, mix, 5)
        if got is None:
            continue
        r = to_record(g, *got, i, cfg.seed)
        if r["meta"]["content_key"] in seen:
            continue
        seen.add(r["meta"]["content_key"])
        recs.append({**r, "difficulty": difficulty(r)})
        bar.update()
    bar.close()
    if not recs:
        raise SystemExit(f"demo.py: no question could be drawn from {g.info.get('sources')} with templates={cfg.templates}")
    write_jsonl(path, recs)
    return recs


# ----------------------------------------------------------------------------------------------- model

def build_base(cfg, out, texts):
    """A random Qwen3-shaped model (tied head, q/k norm) with a byte-level BPE tokenizer trained on `texts`,
    in Hugging Face layout, so sft.py, grpo.py and the sampler load it as any checkpoint."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    import model as M

    os.makedirs(out + ".tok", exist_ok=True)
    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    tk.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=cfg.vocab_size, special_tokens=SPECIALS,
                                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tk.add_tokens(TAGS)  # the format's tags as single tokens (not special: decoding keeps them)
    tk.save(os.path.join(out + ".tok", "tokenizer.json"))
    with open(os.path.join(out + ".tok", "tokenizer_config.json"), "w") as f:
        json.dump({"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>", "chat_template": CHATML}, f)
    mc = M.ModelConfig(model_type="qwen3", vocab_size=tk.get_vocab_size(), hidden_size=cfg.hidden_size,
                       intermediate_size=cfg.intermediate_size, num_hidden_layers=cfg.num_layers,
                       num_attention_heads=cfg.num_heads, num_key_value_heads=cfg.num_kv_heads,
                       head_dim=cfg.hidden_size // cfg.num_heads, qk_norm=True, tie_word_embeddings=True,
                       max_position_embeddings=2048, rope_theta=10000.0, eos_token_id=tk.token_to_id("<|im_end|>"))
    mc.raw = {"eos_token_id": mc.eos_token_id, "pad_token_id": tk.token_to_id("<|endoftext|>")}  # into config.json
    torch.manual_seed(cfg.seed)
    net = M.Transformer.from_config(mc)
    for p in net.parameters():
        if p.dim() > 1:
            torch.nn.init.normal_(p, std=0.02)
    net.save_pretrained(out, tokenizer_dir=out + ".tok")  # atomic: out exists only when complete
    return net.num_parameters()


# ------------------------------------------------------------------------------------------------ eval

def evaluate(model_dir, recs, path, max_tokens):
    """Greedy completions of the held-out questions, one JSONL row per id (resumed); returns the rows."""
    from eval.llm import make_client, run_step
    from eval.run import make_row

    def row(rec, outs):
        r = make_row(rec, outs, "held", None)
        r.update(format_ok=format_ok(outs[0], rec["options"]), difficulty=rec["difficulty"],
                 template=rec["meta"]["template"])
        del r["prompt"]
        return r

    run_step(make_client(model_dir=model_dir), recs, path, build_prompt, row, max_tokens=max_tokens, desc="eval")
    return [r for _, r in read_jsonl_rows(path)]


def read_jsonl_rows(path):
    from eval.records import iter_jsonl
    return iter_jsonl(path, skip_bad=True)


def summarize(rows):
    hard = [r for r in rows if r["difficulty"] != "easy"]
    mean = lambda xs: sum(xs) / len(xs) if xs else float("nan")
    return {"n": len(rows), "accuracy": mean([r["correct"] for r in rows]),
            "hard_accuracy": mean([r["correct"] for r in hard]), "n_hard": len(hard),
            "format_rate": mean([r["format_ok"] for r in rows]),
            "extraction_failures": mean([r["extracted"] is None for r in rows])}


# ---------------------------------------------------------------------------------------------- stages

def _cpu():
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


class Run:
    def __init__(self, cfg):
        self.cfg, self.out = cfg, cfg.out_dir
        self.times_path = os.path.join(self.out, "times.json")
        self.times = json.load(open(self.times_path)) if os.path.exists(self.times_path) else {}

    def p(self, *parts):
        return os.path.join(self.out, *parts)

    def stage(self, name, done, fn):
        """Run fn unless `done` exists. Its wall and CPU seconds (this process and its children) are kept in
        times.json; a rerun adds to an unfinished stage's and keeps a finished one's."""
        if os.path.exists(done):
            print(f"== {name}: done ({done})")
            return
        print(f"== {name}", flush=True)
        t0, c0 = time.time(), _cpu()
        fn()
        old = self.times.get(name, {"wall": 0.0, "cpu": 0.0})
        self.times[name] = {"wall": old["wall"] + time.time() - t0, "cpu": old["cpu"] + _cpu() - c0}
        tmp = self.times_path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.times, f, indent=1)
        os.replace(tmp, self.times_path)

    def script(self, script, opts):
        cmd = (shlex.split(self.cfg.launcher) or [sys.executable]) + [script] + \
              [f"--{k}={v}" for k, v in opts.items()]
        print("   " + " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True)


def main(argv=None):
    try:
        cfg = T.parse_config(Config, sys.argv[1:] if argv is None else argv, prog="demo.py")
    except T.ConfigError as e:
        sys.exit(f"demo.py: error: {e}")
    if cfg.cpu_threads:  # on a shared CPU, OpenMP threads spinning against other jobs slow a tiny model 5-20x
        os.environ["OMP_NUM_THREADS"] = str(cfg.cpu_threads)
        torch.set_num_threads(cfg.cpu_threads)
    run = Run(cfg)
    p = run.p
    os.makedirs(cfg.out_dir, exist_ok=True)
    t_start = time.time()
    py = [sys.executable, "-m"]

    run.stage("kg", p("kg", "meta.json"), lambda: subprocess.run(
        py + ["kg.build", "--sources", cfg.kg_sources, "--out", p("kg")], check=True))
    run.stage("questions", p("questions.jsonl"), lambda: make_questions(cfg, p("questions.jsonl")))
    run.stage("split", p("split", "held.jsonl"), lambda: subprocess.run(
        py + ["kg.split", "--records", p("questions.jsonl"), "--out", p("split"), "--held", str(cfg.held),
              "--seed", str(cfg.seed)], check=True))
    run.stage("cot", p("cot", "sft.jsonl"), lambda: subprocess.run(
        py + ["data.distill", "--records", p("split", "train.jsonl"), "--out", p("cot"), "--template"], check=True))
    base = cfg.base_model or p("base")

    def make_base():
        texts = [m["content"] for _, r in read_jsonl_rows(p("cot", "sft.jsonl")) for m in r["messages"]]
        print(f"   {build_base(cfg, base, texts) / 1e6:.2f}M parameters")
    if not cfg.base_model:
        run.stage("base", p("base", "config.json"), make_base)

    held = list(read_jsonl(p("split", "held.jsonl")))
    if not held:
        sys.exit(f"demo.py: {p('split', 'held.jsonl')} is empty: more questions, or a larger --held")
    if cfg.eval_limit:
        held = random.Random(cfg.seed).sample(held, min(cfg.eval_limit, len(held)))
    models = {"base": base, "sft": p("sft", "hf"), "grpo1": p("grpo", "stage1", "hf"), "grpo2": p("grpo", "stage2", "hf")}

    def ev(name):
        run.stage(f"eval {name}", p("eval", f"{name}.done"), lambda: (
            evaluate(models[name], held, p("eval", f"{name}.jsonl"), cfg.eval_max_tokens),
            open(p("eval", f"{name}.done"), "w").close()))

    def train(name, script, opts, out_dir, ckpt_dir):
        resume = T.latest_checkpoint(ckpt_dir) is not None or (
            script == "sft.py" and os.path.exists(os.path.join(out_dir, "metrics.jsonl")))
        run.stage(name, models[name], lambda: run.script(script, {**opts, **({"resume": True} if resume else {})}))

    ev("base")
    train("sft", "sft.py", {"init_from": base, "train_file": p("cot", "sft.jsonl"), "out_dir": p("sft"), **cfg.sft},
          p("sft"), p("sft"))
    ev("sft")
    for s in (1, 2):
        opts = {"stage": s, "model": models["sft"] if s == 1 else models["grpo1"], "data": p("split", "train.jsonl"),
                "out_dir": p("grpo"), "seed": cfg.seed, **(cfg.grpo1 if s == 1 else cfg.grpo2)}
        train(f"grpo{s}", "grpo.py", opts, p("grpo"), p("grpo", f"stage{s}"))
        ev(f"grpo{s}")
    report(run, held, time.time() - t_start)


# --------------------------------------------------------------------------------------------- report

def report(run, held, wall):
    p, times = run.p, run.times
    res = {k: summarize([r for _, r in read_jsonl_rows(p("eval", f"{k}.jsonl"))]) for k, _ in ROWS}
    parts = {"base": ("kg", "questions", "split", "cot", "base"), "sft": ("sft",), "grpo1": ("grpo1",),
             "grpo2": ("grpo2",)}
    spent = lambda names, key: sum(times.get(n, {}).get(key, 0.0) for n in names)
    pct = lambda x: f"{100 * x:.1f}%"
    n_hard = res["base"]["n_hard"]
    lines = [f"Held-out: {len(held)} KG questions ({n_hard} with 2+ hops: 'hard'), 5 options (chance 20%), greedy.",
             "", "| model | accuracy | hard (2+ hops) | format rate | extraction failures | stage wall (CPU) time | "
             "eval wall time |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for k, name in ROWS:
        r = res[k]
        lines.append(f"| {name} | {pct(r['accuracy'])} | {pct(r['hard_accuracy'])} | {pct(r['format_rate'])} | "
                     f"{pct(r['extraction_failures'])} | {spent(parts[k], 'wall'):.0f} s ({spent(parts[k], 'cpu'):.0f} s) "
                     f"| {spent(['eval ' + k], 'wall'):.0f} s |")
    lines += ["", f"Total: {spent(times, 'wall') / 60:.1f} min wall time, {spent(times, 'cpu') / 60:.1f} min CPU time "
              f"(the data and base-model row includes building the KG and the questions: "
              f"{spent(parts['base'], 'wall'):.0f} s); this invocation: {wall / 60:.1f} min.", ""]
    lines += verdicts(res)
    text = "\n".join(lines) + "\n"
    with open(p("ablation.md"), "w") as f:
        f.write(text)
    with open(p("ablation.json"), "w") as f:
        json.dump({"results": res, "times": times}, f, indent=1)
    plot(run, res)
    print("\n" + text + f"\nwritten: {p('ablation.md')}, {p('curves.png')}")


def verdicts(res):
    """Whether each stage did its job, in words (the issue: say so when one does not)."""
    b, s, g1, g2 = (res[k] for k, _ in ROWS)
    out = []
    def say(ok, good, bad):
        out.append(("helped: " if ok else "DID NOT HELP: ") + (good if ok else bad))
    say(s["format_rate"] > b["format_rate"] + 0.2, f"CoT SFT lifted the format rate {b['format_rate']:.0%} -> {s['format_rate']:.0%}",
        f"CoT SFT left the format rate at {s['format_rate']:.0%} (base {b['format_rate']:.0%}): too few SFT steps")
    why = (" (RL on the training questions sharpens what the policy already gets right; a held-out answer is never "
           "a training answer of its template, so where SFT left the policy near chance (20%) there is little to sharpen)")
    noise = lambda n: 2 * (2 * 0.16 / max(n, 1)) ** 0.5  # 2 s.e. of a difference of two accuracies near chance
    say(g1["accuracy"] - s["accuracy"] > noise(b["n"]), f"RL stage 1 lifted held-out accuracy {s['accuracy']:.1%} -> {g1['accuracy']:.1%}",
        f"RL stage 1 did not lift held-out accuracy beyond noise ({s['accuracy']:.1%} -> {g1['accuracy']:.1%}, "
        f"noise +-{noise(b['n']):.1%})" + why)
    if not b["n_hard"]:
        out.append("stage 2 on the hard subset: no held-out question has 2+ hops (one-hop templates only)")
        return out
    say(g2["hard_accuracy"] - g1["hard_accuracy"] > noise(b["n_hard"]),
        f"RL stage 2 lifted hard (2+ hop) held-out accuracy {g1['hard_accuracy']:.1%} -> {g2['hard_accuracy']:.1%}",
        f"RL stage 2 did not lift hard held-out accuracy beyond noise ({g1['hard_accuracy']:.1%} -> "
        f"{g2['hard_accuracy']:.1%}, noise +-{noise(b['n_hard']):.1%})" + why)
    return out


def plot(run, res):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sft = T.Metrics(run.p("sft", "metrics.jsonl")).rows()
    g = [T.Metrics(run.p("grpo", f"stage{s}", "metrics.jsonl")).rows() for s in (1, 2)]
    offset = len(g[0])
    grpo = [(r["step"], r) for r in g[0]] + [(offset + r["step"], r) for r in g[1]]
    fig, ax = plt.subplots(2, 3, figsize=(14, 7))
    ax = ax.flatten()
    ax[0].plot([r["step"] for r in sft], [r["loss"] for r in sft], label="train")
    val = [(r["step"], r["val_loss"]) for r in sft if "val_loss" in r]
    if val:
        ax[0].plot(*zip(*val), "o-", label="val")
    ax[0].set_title("CoT SFT loss")
    ax[0].legend()
    for a, key, title in zip(ax[1:5], ("reward", "accuracy", "zero_signal_frac", "response_len"),
                             ("GRPO reward", "GRPO rollout accuracy", "zero-signal groups", "response length (tokens)")):
        a.plot([s for s, _ in grpo], [r[key] for _, r in grpo], ".-")
        a.axvline(offset + 0.5, color="gray", ls="--")
        a.set_title(title + " (stage 1 | stage 2)")
    names = [n for _, n in ROWS]
    x = range(len(names))
    for key, off in (("accuracy", -0.3), ("hard_accuracy", -0.1), ("format_rate", 0.1), ("extraction_failures", 0.3)):
        ax[5].bar([i + off for i in x], [res[k][key] for k, _ in ROWS], width=0.2, label=key)
    ax[5].set_xticks(list(x), names)
    ax[5].set_title("held-out after each stage")
    ax[5].legend(fontsize=7)
    for a in ax[:5]:
        a.set_xlabel("step")
        a.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(run.p("curves.png"), dpi=90)
    plt.close(fig)


if __name__ == "__main__":
    main()
