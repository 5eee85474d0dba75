"""The whole paper on one machine, with its Table-4 ablation (base, +CoT SFT, +RL stage 1, +RL stage 2).

    python demo.py config/demo_cpu.py                  # 2-core CPU, a tiny Qwen3-shaped model, one seed
    python demo.py config/demo_cpu.py --seeds=0,1,2    # three seeds: mean and standard error of each row
    python demo.py config/demo_1gpu.py                 # one GPU, a real checkpoint; config/demo_8gpu.py: torchrun x 8

Stages, each skipped when its output exists (a rerun resumes; a killed training stage continues from its last
checkpoint):
  kg         python -m kg.build                                  -> kg/ (shared by the seeds)
  world      kg.world: n_diseases of the graph, their facts, 1-3 hop questions, held-out = new compositions
  knowledge  THE KNOWLEDGE PHASE, standing in for pretraining: sft.py on the world's facts (several phrasings
             each) and its one-hop questions answered directly -> the "base" model, which knows the facts
  sft        CoT cold start: sft.py on chains of thought over the training questions (one sentence per hop)
  grpo1/2    grpo.py --stage 1 (Easy + Moderate until the plateau), --stage 2 (mined hard items, more rollouts),
             options shuffled per rollout
  eval       held-out greedy after each stage (base: answering directly, without reasoning, the paper's
             non-inference row); pass@1 and pass@k at temperature 1 on training and held-out questions
then the ablation table (ablation.md, ablation.json) and the curves (curves.png).
"""
import hashlib
import json
import os
import random
import shlex
import shutil
import subprocess
import sys
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

import torch

import training as T
from eval.answer import build_prompt, format_error, format_ok
from eval.records import iter_jsonl, read_jsonl, usage_error, write_jsonl

ROWS = (("base", "base"), ("sft", "+CoT SFT"), ("grpo1", "+RL stage 1"), ("grpo2", "+RL stage 2"))
COLUMNS = {"accuracy": "accuracy", "hop2_accuracy": "2 hops", "hard_accuracy": "3 hops (hard)",
           "format_rate": "format rate", "tags_ok": "tags well formed"}  # summarize()'s keys the tables share
CHATML = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}" \
         "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
TAGS = ["<think>", "</think>", "<answer>", "</answer>"]


@dataclass
class Config:
    out_dir: str = "runs/demo"
    seed: int = 0
    seeds: str = ""             # "0,1,2": one run per seed in out_dir/seed<s>, then mean +- s.e. (overrides seed)
    # the world (kg.world)
    kg_sources: str = "hpo,do,drugcentral,hsdn,wikidata"
    n_diseases: int = 100
    held: float = 0.6           # share of the 2-3 hop compositions held out
    options: int = 5
    fact_copies: int = 3        # each fact sentence's copies per epoch of the knowledge phase (its QAs: one)
    sft_share: float = 1.0      # share of the multi-hop training questions in the CoT cold-start set (RL: all)
    knowledge_qa: str = "chat"  # the one-hop questions in the knowledge phase too: "chat" (prompt with options,
                                # answered in the tag), "short" (the stem and its answer as one sentence: a real
                                # tokenizer makes the chat form ~4x the tokens) or "none" (the facts alone)
    eval_max_tokens: int = 96
    pass_k: int = 8             # samples per question for pass@1 / pass@k (temperature 1)
    pass_n: int = 100           # questions per split (training, held-out) scored for pass@k
    medqa: int = 0              # > 0: also score each reasoning row greedily on the first N MedQA test items
    medqa_max_tokens: int = 256
    # model: base_model = an HF checkpoint dir; "" = build a tiny Qwen3-shaped one with the settings below
    base_model: str = ""
    vocab_size: int = 2048
    hidden_size: int = 128
    num_layers: int = 4
    num_heads: int = 4
    num_kv_heads: int = 2
    intermediate_size: int = 384
    # stages: --key=value options for sft.py (knowledge, sft) and grpo.py (grpo1, grpo2); their --help lists them
    launcher: str = ""          # "" = this Python; e.g. "torchrun --nproc_per_node=8"
    cpu_threads: int = 0        # > 0: OMP_NUM_THREADS for every stage (0: leave it)
    knowledge: dict = field(default_factory=dict)
    sft: dict = field(default_factory=dict)
    grpo1: dict = field(default_factory=dict)
    grpo2: dict = field(default_factory=dict)


# ------------------------------------------------------------------------------------------------ data

def chat(rec, direct):
    """A question as a chat with its answer: the option's text in the answer tag, after (unless direct) a chain of
    thought of one sentence per hop (the facts, in their own words)."""
    cot = "" if direct else f"<think>{rec['meta']['cot']}</think>\n"
    target = f"{cot}<answer>{rec['meta']['answer_text']}</answer>"
    return {"id": rec["id"], "messages": build_prompt(rec, direct=direct) + [{"role": "assistant", "content": target}]}


def make_corpora(world_dir, out, fact_copies=1, sft_share=1.0, seed=0, knowledge_qa="chat"):
    """knowledge.jsonl (the facts as documents, fact_copies times each, + every one-hop question in the
    knowledge_qa form) and cot.jsonl: the cold-start set, every one-hop training question and sft_share of the
    multi-hop ones (picked by a hash of the composition) with their chains of thought. RL trains on all of them.
    A fact stored only as a statement is not recalled as an answer (SmolLM2's facts-only run: chance on its own
    facts), so the knowledge phase asks the one-hop questions too."""
    facts = [{**r, "id": f"{r['id']}.{c}"} for c in range(fact_copies)
             for _, r in iter_jsonl(os.path.join(world_dir, "facts.jsonl"))]
    train = list(read_jsonl(os.path.join(world_dir, "train.jsonl")))
    one_hop = [r for r in train if r["meta"]["hops"] == 1]
    form = {"chat": lambda r: chat(r, direct=True),
            "short": lambda r: {"id": r["id"], "text": f"{r['question']} {r['meta']['answer_text']}."}}
    qa = [form[knowledge_qa](r) for r in one_hop] if knowledge_qa != "none" else []
    write_jsonl(os.path.join(out, "knowledge.jsonl"), facts + qa)
    cold = [r for r in train if r["meta"]["hops"] == 1 or _unit(f"cold start:{seed}:{r['meta']['composition']}") < sft_share]
    write_jsonl(os.path.join(out, "cot.jsonl"), [chat(r, direct=False) for r in cold])


def _unit(key):
    """A stable number in [0, 1) for a string."""
    return int(hashlib.sha1(key.encode()).hexdigest()[:8], 16) / 16 ** 8


# ----------------------------------------------------------------------------------------------- model

def build_base(cfg, out, texts, entities=()):
    """A random Qwen3-shaped model (tied head, q/k norm) with a byte-level BPE tokenizer trained on `texts`,
    in Hugging Face layout, so sft.py, grpo.py and the sampler load it as any checkpoint. Each name in
    `entities` becomes one token (a whole-word match): at this scale, recalling a fact is then predicting one
    token, and copying a name one copy, not a spelling of five subword pieces."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers

    import model as M

    os.makedirs(out + ".tok", exist_ok=True)
    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    tk.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=cfg.vocab_size, special_tokens=SPECIALS,
                                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tk.add_tokens(TAGS)  # the format's tags as single tokens (not special: decoding keeps them)
    tk.add_tokens([AddedToken(e, single_word=True) for e in sorted(set(entities))])
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

def evaluate(model_dir, recs, path, max_tokens, n=1, seed=0):
    """Completions of recs (greedy, or n samples at temperature 1), one JSONL row per id (resumed)."""
    from eval.llm import make_client, run_step
    from eval.run import make_row

    def row(rec, outs):
        r = make_row(rec, outs, "held", None)
        ok = [format_ok(o, rec["options"]) for o in outs]
        r.update(format_ok=ok[0] if n == 1 else ok, **_tags(rec))
        del r["prompt"]
        return r

    run_step(make_client(model_dir=model_dir), recs, path, build_prompt, row,
             n=n, temperature=1.0 if n > 1 else 0.0, max_tokens=max_tokens, seed=seed, desc=os.path.basename(path))


def _tags(rec):
    """What the report splits an eval row by."""
    return {"difficulty": rec["difficulty"], "template": rec["meta"]["template"], "hops": rec["meta"]["hops"],
            "n_options": len(rec["options"])}


@torch.no_grad()
def score_options(model_dir, recs, path):
    """The base row: the model answering directly, without reasoning, read as the option whose answer tag it
    finds most likely (sum of the log-probabilities of "<answer>text</answer>" after the direct prompt), the way
    base models are scored on multiple choice. It always names an option, so it measures what the model knows,
    not whether it can write a format. Rows as evaluate()'s, appended to path (resumed by id)."""
    import model as M
    from eval.records import append_jsonl, done_ids

    done = done_ids(path)
    tok, net = M.Tokenizer.from_pretrained(model_dir), M.Transformer.from_pretrained(model_dir).eval()
    for rec in (r for r in recs if r["id"] not in done):
        head = tok.apply_chat_template(build_prompt(rec, direct=True))
        tails = [tok.encode(f"<answer>{o}</answer>") for o in rec["options"].values()]
        scores = option_logprobs(net, head, tails)
        pick = list(rec["options"])[max(range(len(scores)), key=scores.__getitem__)]
        append_jsonl(path, [{"id": rec["id"], "gold": rec["answer"], "extracted": pick, "correct": pick == rec["answer"],
                             "format_ok": True, **_tags(rec)}])


def option_logprobs(net, head, tails):
    """log p(tail | head) for each tail, in one forward over one packed row: the prompt once, then each tail as a
    segment that sees the prompt (attention.dense_attention's prefix ids) at the positions it would have after it. The
    first token of every tail is predicted at the prompt's last position."""
    H, n = len(head), [len(t) for t in tails]
    ids = torch.tensor([head + [x for t in tails for x in t]])
    pos = torch.tensor([list(range(H)) + [H + j for m in n for j in range(m)]])
    seg = torch.tensor([[1] * H + [2 + i for i, m in enumerate(n) for _ in range(m)]])
    logp = net(ids, position_ids=pos, segment_ids=seg, prefix_ids=torch.ones_like(seg))[0].float().log_softmax(-1)
    out, start = [], H
    for t, m in zip(tails, n):
        at = torch.tensor([H - 1] + list(range(start, start + m - 1)))  # where each tail token is predicted
        out.append(logp[at, torch.tensor(t)].sum().item())
        start += m
    return out


def tags_ok(row):
    """The format check without its last rule: the tags are well formed, whether or not the answer names an
    option (here a completion that fails only that rule has followed a wrong chain to an entity no option has)."""
    return row["format_ok"] or format_error(row.get("output"), {}) in ("no valid choice in the answer tag",
                                                                    "no single answer")


def mean(xs):
    return sum(xs) / len(xs) if xs else float("nan")


def mean_se(xs):
    """The mean of xs and its standard error."""
    m = mean(xs)
    return m, (sum((x - m) ** 2 for x in xs) / max(len(xs) - 1, 1) / len(xs)) ** 0.5


def summarize(rows):
    by = lambda h: [r["correct"] for r in rows if r["hops"] == h]
    return {"n": len(rows), "accuracy": mean([r["correct"] for r in rows]), "hop2_accuracy": mean(by(2)),
            "hard_accuracy": mean(by(3)), "n_hard": len(by(3)), "format_rate": mean([r["format_ok"] for r in rows]),
            "tags_ok": mean([tags_ok(r) for r in rows]),
            "extraction_failures": mean([r["extracted"] is None for r in rows]),
            "letters": dict(sorted(Counter(r["extracted"] or "none" for r in rows).items())),
            "gold_letters": dict(sorted(Counter(r["gold"] for r in rows).items()))}


def pass_at(rows):
    """pass@1 (mean share correct over the n samples), pass@n (any correct) and what guessing gives."""
    if not rows:
        return {}
    n = len(rows[0]["correct"])
    return {"n": len(rows), "k": n, "pass1": mean([mean(r["correct"]) for r in rows]),
            "passk": mean([any(r["correct"]) for r in rows]),
            "guess1": mean([1 / r["n_options"] for r in rows]),
            "guessk": mean([1 - (1 - 1 / r["n_options"]) ** n for r in rows])}


def paired_gain(a, b):
    """(mean gain of b over a, its standard error) on the same questions (rows matched by id)."""
    ca = {r["id"]: r["correct"] for r in a}
    d = [float(r["correct"]) - float(ca[r["id"]]) for r in b if r["id"] in ca]
    return mean_se(d) if len(d) >= 2 else (float("nan"), float("nan"))


# ---------------------------------------------------------------------------------------------- stages

def write_atomic(path, text):
    """A whole file, written to a temp file and renamed: a killed run never leaves half of one."""
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.replace(path + ".tmp", path)


def _cpu():
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


class Run:
    def __init__(self, cfg):
        self.cfg, self.out = cfg, cfg.out_dir
        os.makedirs(self.out, exist_ok=True)
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
        write_atomic(self.times_path, json.dumps(self.times, indent=1))

    def script(self, script, opts):
        cmd = (launcher_cmd(self.cfg.launcher) or [sys.executable]) + [script] + \
              [f"--{k}={v}" for k, v in opts.items()]
        print("   " + " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True)


def launcher_cmd(launcher):
    """The launcher's words, its program taken from this Python's folder when the PATH has none of that name
    (`.venv/bin/python demo.py config/demo_8gpu.py` finds .venv/bin/torchrun without an activated venv)."""
    words = shlex.split(launcher)
    if words and not shutil.which(words[0]):
        beside = os.path.join(os.path.dirname(sys.executable), words[0])
        words[0] = beside if shutil.which(beside) else words[0]
    return words


def check_config(cfg):
    """Every option checked before the first stage (kg.build takes minutes): sizes, shares, the launcher,
    --base_model, --out_dir, and each stage's options as its trainer parses and checks them. (--kg_sources is
    kg.build's to check: its one-line error, then demo.py's line naming the failed stage, exit 2.)"""
    import grpo
    import sft

    T.check_min(cfg, 1, "fact_copies", "eval_max_tokens", "pass_k", "pass_n", "medqa_max_tokens", "vocab_size",
                "hidden_size", "num_layers", "num_heads", "num_kv_heads", "intermediate_size")
    T.check_min(cfg, 0, "medqa", "cpu_threads")
    if cfg.n_diseases == 1 or cfg.n_diseases < 0:
        raise T.ConfigError(f"--n_diseases={cfg.n_diseases}: 0 (every one that qualifies) or >= 2")
    T.check_min(cfg, 2, "options")
    if cfg.knowledge_qa not in ("chat", "short", "none"):
        raise T.ConfigError(f"--knowledge_qa={cfg.knowledge_qa}: one of chat, short, none")
    if not 0 < cfg.held <= 1 - 1e-9:
        raise T.ConfigError(f"--held={cfg.held}: a share strictly between 0 and 1")
    if not 0 < cfg.sft_share <= 1:
        raise T.ConfigError(f"--sft_share={cfg.sft_share}: a share strictly between 0 and 1 (or 1)")
    if not cfg.base_model:
        if cfg.vocab_size < 256 + len(SPECIALS):
            raise T.ConfigError(f"--vocab_size={cfg.vocab_size}: at least the 256 bytes and {len(SPECIALS)} specials")
        if cfg.hidden_size % cfg.num_heads or cfg.num_heads % cfg.num_kv_heads:
            raise T.ConfigError(f"--hidden_size={cfg.hidden_size}, --num_heads={cfg.num_heads}, --num_kv_heads="
                                f"{cfg.num_kv_heads}: heads must divide hidden_size, and kv heads the heads")
    try:
        launcher = launcher_cmd(cfg.launcher)
    except ValueError as e:
        raise T.ConfigError(f"--launcher={cfg.launcher}: {e}") from None
    if launcher and not shutil.which(launcher[0]):
        raise T.ConfigError(f"--launcher={cfg.launcher}: no program {launcher[0]!r} on the PATH or beside "
                            f"{sys.executable}")
    T.check_paths(model=cfg.base_model or None, out_dir=cfg.out_dir, model_option="base_model")
    if cfg.base_model:  # its config, weights and tokenizer there (the knowledge phase would find out in a minute)
        import model as M
        try:
            M.ModelConfig.from_file(cfg.base_model)
            M.checkpoint_files(cfg.base_model)
            M.Tokenizer.from_pretrained(cfg.base_model)
        except M.CheckpointError as e:
            raise T.ConfigError(f"--base_model: {e}") from None
    for name, trainer, check in (("knowledge", sft, None), ("sft", sft, None), ("grpo1", grpo, 1), ("grpo2", grpo, 2)):
        opts = getattr(cfg, name)
        if not isinstance(opts, dict):
            raise T.ConfigError(f"--{name}: a dict of {trainer.__name__}.py options, not {opts!r}")
        owned = sorted(set(opts) & {"model", "train_file", "data", "out_dir", "resume"})
        if owned:
            raise T.ConfigError(f"--{name}: {owned[0]!r} is demo.py's to set (each stage reads the one before it)")
        try:  # as run_seed passes them: --key=value
            c = T.parse_config(trainer.Config, [f"--{k}={v}" for k, v in opts.items()], prog="demo.py")
            if trainer is sft:
                sft.check_config(replace(c, train_file="-", model="-"), 1)
            elif opts.get("stage", check) != check:
                raise T.ConfigError(f"--stage={opts['stage']}: this is stage {check}'s options")
            else:
                grpo.check_config(replace(c, stage=check))
        except T.ConfigError as e:
            raise T.ConfigError(f"--{name}: {e}") from None


def main(argv=None):
    try:
        cfg = T.parse_config(Config, sys.argv[1:] if argv is None else argv, prog="demo.py")
        try:
            seeds = [int(s) for s in cfg.seeds.split(",")] if cfg.seeds else []
        except ValueError:
            raise T.ConfigError(f"--seeds={cfg.seeds}: comma-separated integers") from None
        check_config(cfg)
    except T.ConfigError as e:
        usage_error(e, "demo.py")
    try:
        return run_all(cfg, seeds)
    except subprocess.CalledProcessError as e:  # the stage printed its own error above
        print(f"demo.py: `{shlex.join(map(str, e.cmd[:3]))} ...` failed (exit {e.returncode}); a rerun resumes "
              f"from the finished stages", file=sys.stderr)
        sys.exit(e.returncode)


def run_all(cfg, seeds):
    if cfg.cpu_threads:  # on a shared CPU, OpenMP threads spinning against other jobs slow a tiny model 5-20x
        os.environ["OMP_NUM_THREADS"] = str(cfg.cpu_threads)
        torch.set_num_threads(cfg.cpu_threads)
    kg_dir = os.path.join(cfg.out_dir, "kg")
    t0 = time.time()
    Run(cfg).stage("kg", os.path.join(kg_dir, "meta.json"), lambda: subprocess.run(
        [sys.executable, "-m", "kg.build", "--sources", cfg.kg_sources, "--out", kg_dir], check=True))
    if not seeds:
        return run_seed(cfg, kg_dir)
    results = {s: run_seed(replace(cfg, seed=s, out_dir=os.path.join(cfg.out_dir, f"seed{s}")), kg_dir) for s in seeds}
    report_seeds(cfg, results, time.time() - t0)


def run_seed(cfg, kg_dir):
    """One seed's whole pipeline in cfg.out_dir; returns its ablation.json."""
    run = Run(cfg)
    p = run.p
    t_start = time.time()

    def make_world():
        from kg.build import Graph
        from kg.world import build_world, write

        world = build_world(Graph.load(kg_dir), cfg.n_diseases, cfg.seed)
        fs, train, test = write(world, p("world"), cfg.seed, cfg.held, cfg.options)
        print(f"   {len(world['diseases'])} diseases, {len(fs)} fact sentences, {len(train)} training questions, "
              f"{len(test)} held-out (2-3 hop compositions never asked in training)")
        make_corpora(p("world"), p("world"), cfg.fact_copies, cfg.sft_share, cfg.seed, cfg.knowledge_qa)
    run.stage("world", p("world", "cot.jsonl"), make_world)

    base = cfg.base_model or p("init")

    def make_init():
        texts = [r.get("text") or "\n".join(m["content"] for m in r["messages"])
                 for name in ("knowledge.jsonl", "cot.jsonl") for _, r in iter_jsonl(p("world", name))]
        from kg.world import entity_names

        names = entity_names(json.load(open(p("world", "world.json"))))
        print(f"   {build_base(cfg, base, texts, names) / 1e6:.2f}M parameters (random weights), "
              f"{len(names)} entity tokens")
    if not cfg.base_model:
        run.stage("init", p("init", "config.json"), make_init)

    train = list(read_jsonl(p("world", "train.jsonl")))
    held = list(read_jsonl(p("world", "held.jsonl")))
    rng = random.Random(cfg.seed)
    multi_train = [r for r in train if r["meta"]["hops"] > 1]
    probe = {"train": rng.sample(multi_train, min(cfg.pass_n, len(multi_train))),
             "held": rng.sample(held, min(cfg.pass_n, len(held)))}
    facts_probe = rng.sample([r for r in train if r["meta"]["hops"] == 1], min(cfg.pass_n, len(train)))
    models = {"base": p("knowledge", "hf"), "sft": p("sft", "hf"), "grpo1": p("grpo", "stage1", "hf"),
              "grpo2": p("grpo", "stage2", "hf")}

    def train_and_eval(name, script, opts, ckpt_dir):
        """The stage's training (resumed from its last checkpoint), then its evaluation, each unless done."""
        resume = T.latest_checkpoint(ckpt_dir) is not None or (
            script == "sft.py" and os.path.exists(os.path.join(ckpt_dir, "metrics.jsonl")))
        run.stage(name, models[name], lambda: run.script(script, {**opts, **({"resume": True} if resume else {})}))

        def go():
            if name == "base":  # and how much of the world the base model knows: one-hop questions, answered directly
                score_options(models[name], held, p("eval", f"{name}.jsonl"))
                score_options(models[name], facts_probe, p("eval", "base_facts.jsonl"))
            else:
                evaluate(models[name], held, p("eval", f"{name}.jsonl"), cfg.eval_max_tokens)
                for split, recs in probe.items():
                    evaluate(models[name], recs, p("eval", f"{name}_pass_{split}.jsonl"), cfg.eval_max_tokens,
                             n=cfg.pass_k, seed=cfg.seed)
            open(p("eval", f"{name}.done"), "w").close()
        run.stage(f"eval {name}", p("eval", f"{name}.done"), go)
        if cfg.medqa and name != "base":
            def medqa():
                subprocess.run([sys.executable, "-m", "eval.run", "--benchmarks", "medqa", "--model", models[name],
                                "--out", p("medqa", name), "--limit", str(cfg.medqa),
                                "--max-tokens", str(cfg.medqa_max_tokens)], check=True)
                open(p("medqa", f"{name}.done"), "w").close()
            run.stage(f"medqa {name}", p("medqa", f"{name}.done"), medqa)

    train_and_eval("base", "sft.py", {"model": base, "train_file": p("world", "knowledge.jsonl"),
                                      "out_dir": p("knowledge"), "seed": cfg.seed, **cfg.knowledge}, p("knowledge"))
    train_and_eval("sft", "sft.py", {"model": models["base"], "train_file": p("world", "cot.jsonl"),
                                     "out_dir": p("sft"), "seed": cfg.seed, **cfg.sft}, p("sft"))
    for s in (1, 2):
        opts = {"stage": s, "model": models["sft"] if s == 1 else models["grpo1"], "data": p("world", "train.jsonl"),
                "out_dir": p("grpo"), "seed": cfg.seed, "shuffle_options": True, **(cfg.grpo1 if s == 1 else cfg.grpo2)}
        train_and_eval(f"grpo{s}", "grpo.py", opts, p("grpo", f"stage{s}"))
    return report(run, held, time.time() - t_start)


# --------------------------------------------------------------------------------------------- report

def pct(x):
    return f"{100 * x:.1f}%"


def pm(gain):
    """A (gain, standard error) pair in points, "+1.2 +- 0.3"; "" for none."""
    return f"{100 * gain[0]:+.1f} +- {100 * gain[1]:.1f}" if gain else ""


def md_table(head, sep, rows):
    """A markdown table's lines: the header's cells, sep (the alignment line), then each row's cells."""
    line = lambda cells: "| " + " | ".join(map(str, cells)) + " |"
    return [line(head), sep] + [line(r) for r in rows]


@contextmanager
def write_report(out_dir, lines, out, png, nrows, ncols, figsize):
    """ablation.md (the lines) and ablation.json (out) in out_dir; then the axes of a new figure, a flat list, to
    draw on, each given a grid after and the figure saved as png there."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    text = "\n".join(lines) + "\n"
    write_atomic(os.path.join(out_dir, "ablation.md"), text)
    write_atomic(os.path.join(out_dir, "ablation.json"), json.dumps(out, indent=1))
    fig, ax = plt.subplots(nrows, ncols, figsize=figsize)
    yield ax.flatten()
    for a in ax.flatten():
        a.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(os.path.join(out_dir, png), dpi=90)
    plt.close(fig)
    print("\n" + text + f"\nwritten: {os.path.join(out_dir, 'ablation.md')}, {os.path.join(out_dir, png)}")


def load_results(run):
    rows = lambda name: [r for _, r in iter_jsonl(run.p("eval", f"{name}.jsonl"), skip_bad=True)]
    held = {k: rows(k) for k, _ in ROWS}
    res = {k: summarize(held[k]) for k, _ in ROWS}
    for k, _ in ROWS[1:]:
        res[k]["pass"] = {s: pass_at(rows(f"{k}_pass_{s}")) for s in ("train", "held")}
    facts = rows("base_facts")
    res["base"]["facts_known"] = sum(r["correct"] for r in facts) / max(len(facts), 1)
    subsets = {"all": lambda r: True, "hop2": lambda r: r["hops"] == 2, "hard": lambda r: r["hops"] == 3}
    gains = {f"{b}:{sub}": paired_gain([r for r in held[a] if keep(r)], [r for r in held[b] if keep(r)])
             for (a, _), (b, _) in zip(ROWS, ROWS[1:]) for sub, keep in subsets.items()}
    return res, gains


def report(run, held, wall):
    times = run.times
    res, gains = load_results(run)
    parts = {"base": ("world", "init", "base"), "sft": ("sft",), "grpo1": ("grpo1",), "grpo2": ("grpo2",)}
    spent = lambda names, key: sum(times.get(n, {}).get(key, 0.0) for n in names)
    b = res["base"]
    lines = [f"Held-out: {len(held)} questions, each a 2-3 hop composition of known facts never asked in training "
             f"({b['n_hard']} with 3 hops: 'hard'); 5 options, shuffled per item (chance 20%); greedy.",
             f"The base model (after the knowledge phase) answers {pct(b['facts_known'])} of one-hop fact questions."]
    lines += [""] + md_table(
        ["model", *COLUMNS.values(), "extraction failures", "gain (+- s.e.)", "answer letters", "stage wall (CPU) time"],
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |",
        [[name, *(pct(res[k][c]) for c in (*COLUMNS, "extraction_failures")), pm(gains.get(f"{k}:all")),
          " ".join(f"{l}:{c}" for l, c in res[k]["letters"].items()),
          f"{spent(parts[k], 'wall'):.0f} s ({spent(parts[k], 'cpu'):.0f} s)"] for k, name in ROWS])
    lines += ["", "base answers without reasoning (the paper's non-inference row); the others reason first. Format rate:"
              " the reward's format check (well-formed tags and an answer that names one option); tags well formed:"
              " the same check without the option rule.", "",
              "RL's headroom: pass@1 and pass@k at temperature 1, against what guessing among the options gives.", ""]
    lines += md_table(["model", "split", "pass@1", "pass@k", "guessing pass@1", "guessing pass@k"],
                      "| --- | --- | ---: | ---: | ---: | ---: |",
                      [[name, f"{s} ({q['n']}, k={q['k']})", *(pct(q[c]) for c in ("pass1", "passk", "guess1", "guessk"))]
                       for k, name in ROWS[1:] for s, q in res[k]["pass"].items() if q])
    lines += medqa_table(run)
    lines += ["", f"Total: {spent(times, 'wall') / 60:.1f} min wall time, {spent(times, 'cpu') / 60:.1f} min CPU time; "
              f"this invocation: {wall / 60:.1f} min.", ""]
    lines += verdicts(res, gains)
    out = {"results": res, "gains": gains, "times": times}
    with write_report(run.out, lines, out, "curves.png", 2, 3, (15, 7.5)) as ax:
        plot(ax, run, res)
    return out


def medqa_table(run):
    """The reasoning rows on MedQA test (--medqa N items, greedy), with the answer letters: out-of-world
    questions, scored as measured."""
    from eval.run import read_items

    rows = {k: read_items(run.p("medqa", k), "medqa") for k, _ in ROWS[1:] if os.path.isdir(run.p("medqa", k))}
    if not rows:
        return []
    cells, prev = [], None
    for k, r in rows.items():
        n, letters = max(len(r), 1), Counter("".join(x["extracted"] or []) or "none" for x in r)
        cells.append([dict(ROWS)[k], len(r), pct(sum(x["correct"] for x in r) / n),
                      pm(paired_gain(prev, r) if prev else None), pct(sum(x["extracted"] is None for x in r) / n),
                      " ".join(f"{l}:{c}" for l, c in sorted(letters.items()))])
        prev = r
    return ["", "MedQA test (US, 4 options; first items, greedy; outside the world):", ""] + md_table(
        ["model", "items", "accuracy", "gain (+- s.e.)", "extraction failures", "answer letters"],
        "| --- | ---: | ---: | ---: | ---: | --- |", cells)


def verdicts(res, gains):
    """Whether each stage did its job, in words: HELPED when its held-out gain exceeds two standard errors of the
    paired difference, DID NOT HELP otherwise."""
    out = []
    for (a, an), (b, bn) in zip(ROWS, ROWS[1:]):
        m, se = gains[f"{b}:all"]
        ok = m > 2 * se
        out.append(f"{'HELPED' if ok else 'DID NOT HELP'}: {bn} vs {an}: held-out accuracy {pct(res[a]['accuracy'])} -> "
                   f"{pct(res[b]['accuracy'])} ({100 * m:+.1f} points, 2 s.e. = {200 * se:.1f})")
    h2, hh = gains["grpo2:hop2"][0], gains["grpo2:hard"][0]
    out.append(f"RL stage 2's gain is {'largest' if hh > max(h2, 0) else 'NOT largest'} on the hard (3-hop) questions: "
               f"{100 * hh:+.1f} points there, {100 * h2:+.1f} on 2-hop ones")
    top = max((c / max(res[k]["n"], 1), l, name) for k, name in ROWS for l, c in res[k]["letters"].items() if l != "none")
    out.append(f"the most common answer letter of any row: {top[1]} in {pct(top[0])} of {top[2]}'s answers")
    return out


def report_seeds(cfg, results, wall):
    """Mean and standard error across seeds of each row, and the per-seed table."""
    seeds = list(results)
    fmt = lambda xs: "{:.1f} +- {:.1f}".format(*(100 * v for v in mean_se(xs)))
    get = lambda k, key: [results[s]["results"][k][key] for s in seeds]
    held = lambda k, key: [results[s]["results"][k]["pass"]["held"][key] for s in seeds]
    lines = [f"{len(seeds)} seeds ({', '.join(map(str, seeds))}): a new world, split, model and training run each. "
             "Mean +- standard error across seeds.", ""]
    lines += md_table(["model", *COLUMNS.values()], "| --- | ---: | ---: | ---: | ---: | ---: |",
                      [[name, *(fmt(get(k, c)) for c in COLUMNS)] for k, name in ROWS])
    cell = lambda r, k: pct(r["results"][k]["accuracy"]) + (f" ({pm(r['gains'][f'{k}:all'])})" if k != "base" else "")
    lines += ["", "Per seed (held-out accuracy; gain over the row above +- its paired s.e.):", ""]
    lines += md_table(["seed", *(n for _, n in ROWS)], "| ---" * (len(ROWS) + 1) + " |",
                      [[s, *(cell(results[s], k) for k, _ in ROWS)] for s in seeds])
    lines += ["", "pass@1 / pass@k (temperature 1) on held-out, mean across seeds:", ""] + md_table(
        ["model", "pass@1", "pass@k", "guessing pass@k"], "| --- | ---: | ---: | ---: |",
        [[name, fmt(held(k, "pass1")), fmt(held(k, "passk")), pct(held(k, "guessk")[0])] for k, name in ROWS[1:]])
    lines += [""] + [f"seed {s}: " + v for s in seeds for v in verdicts(results[s]["results"], results[s]["gains"])]
    lines += ["", f"this invocation: {wall / 60:.1f} min"]
    with write_report(cfg.out_dir, lines, {str(s): r for s, r in results.items()}, "seeds.png", 1, 2, (13, 4.5)) as ax:
        plot_seeds(ax, results)


def plot_seeds(ax, results):
    """seeds.png: each row's held-out accuracy (all, 2 hops, 3 hops) as mean +- s.e. over the seeds, and pass@1 /
    pass@k on training and held-out questions beside guessing."""
    seeds, names = list(results), [n for _, n in ROWS]
    for key, off, label in (("accuracy", -0.25, "all"), ("hop2_accuracy", 0, "2 hops"), ("hard_accuracy", 0.25, "3 hops")):
        stats = [mean_se([results[s]["results"][k][key] for s in seeds]) for k, _ in ROWS]
        ax[0].bar([i + off for i in range(len(ROWS))], [m for m, _ in stats], 0.25, yerr=[e for _, e in stats],
                  capsize=3, label=label)
    ax[0].set_xticks(range(len(ROWS)), names)
    ax[0].set_title(f"held-out accuracy (greedy), mean +- s.e. over {len(seeds)} seeds")
    ax[0].legend()
    for split, style in (("train", "o-"), ("held", "s--")):
        for key in ("pass1", "passk"):
            stats = [mean_se([results[s]["results"][k]["pass"][split][key] for s in seeds]) for k, _ in ROWS[1:]]
            ax[1].errorbar(names[1:], [m for m, _ in stats], [e for _, e in stats], fmt=style, capsize=3,
                           label=f"{key.replace('pass', 'pass@')} {split}")
    q = results[seeds[0]]["results"]["sft"]["pass"]["held"]
    for g in (q["guess1"], q["guessk"]):
        ax[1].axhline(g, color="gray", ls=":")
    ax[1].set_title(f"pass@1 / pass@{q['k']} at temperature 1 (dotted: guessing)")
    ax[1].legend(fontsize=8)


def plot(ax, run, res):
    """curves.png: the training losses, GRPO's curves by step, held-out accuracy by stage, pass@1 / pass@k."""
    rows = lambda *stage: T.Metrics(run.p(*stage, "metrics.jsonl")).rows()
    know, sft, g1, g2 = rows("knowledge"), rows("sft"), rows("grpo", "stage1"), rows("grpo", "stage2")
    offset = len(g1)
    grpo = [(r["step"], r) for r in g1] + [(offset + r["step"], r) for r in g2]
    ax[0].plot([r["step"] for r in know], [r["loss"] for r in know], label="knowledge phase")
    ax[0].plot([r["step"] for r in sft], [r["loss"] for r in sft], label="CoT SFT")
    ax[0].set_yscale("log")
    ax[0].set_title("training loss")
    ax[0].legend()
    for a, key, title in zip(ax[1:4], ("reward", "accuracy", "zero_signal_frac"),
                             ("GRPO reward", "GRPO rollout accuracy", "zero-signal groups")):
        a.plot([s for s, _ in grpo], [r[key] for _, r in grpo], ".-")
        a.axvline(offset + 0.5, color="gray", ls="--")
        a.set_title(title + " (stage 1 | stage 2)")
        a.set_xlabel("step")
    names = [n for _, n in ROWS]
    x = range(len(names))
    for key, off in (("accuracy", -0.3), ("hop2_accuracy", -0.1), ("hard_accuracy", 0.1), ("format_rate", 0.3)):
        ax[4].bar([i + off for i in x], [res[k][key] for k, _ in ROWS], width=0.2, label=key)
    ax[4].set_xticks(list(x), names)
    ax[4].set_title("held-out after each stage (greedy)")
    ax[4].legend(fontsize=7)
    for s, style in (("train", "o-"), ("held", "s--")):
        qs = [res[k]["pass"][s] for k, _ in ROWS[1:]]
        if all(qs):
            ax[5].plot(names[1:], [q["pass1"] for q in qs], style, label=f"pass@1 {s}")
            ax[5].plot(names[1:], [q["passk"] for q in qs], style, label=f"pass@{qs[0]['k']} {s}")
            for guess in (qs[0]["guessk"], qs[0]["guess1"]):
                ax[5].axhline(guess, color="gray", ls=":")
    ax[5].set_title("pass@1 / pass@k (temperature 1); dotted: guessing")
    ax[5].legend(fontsize=7)


if __name__ == "__main__":
    main()
