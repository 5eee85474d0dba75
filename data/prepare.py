"""The data driver: public QA files -> clean, decontaminated, labelled SFT / RL / validation pools.

    convert -> filter -> anonymize -> dedup -> decontam -> verify* -> difficulty* -> mix
                                                          (* only with --endpoint)

Each step is one function reading a JSONL of records from the work dir and writing the next
(`NN_<step>.jsonl`, atomically, with a `.stats.json` beside it); a step whose output exists is
skipped, so a rerun resumes after the last finished step (--force reruns everything). The LLM
steps append to `verify.jsonl` / `difficulty.jsonl` keyed by source/id and skip done items.
Dropped records go to `dropped/<step>.jsonl` with meta.drop_reason; `report.md` has the counts.

Sources are FORMAT[:SPLIT]=PATH with FORMAT one of medqa (jsonl, answer_idx), medmcqa (the
list-style copy or the authors' opa..opd / cop 1-4 layout, jsonl or csv), pubmedqa (ori_pqal.json),
cmexam (the list-style jsonl or the published CSV with multi-answer items), huatuo (HuatuoGPT-o1's
MedQA-style JSON list), records (our own JSONL, e.g. kg/ synthetic items). Ids follow eval's
loaders, so a training item and its benchmark twin share an id.

Unlike eval's loaders, conversion does not validate content: an empty option or an answer that is
not among the options reaches the format filter, which counts it by reason. Only a structurally
broken line (bad JSON, a missing field, a wrong type) stops the run with file:line and the reason,
or with --skip-bad is counted and skipped.

    python -m data.prepare --out work/data                          # shared files, no LLM steps
    python -m data.prepare --out work/data --endpoint http://h:8000/v1 --model-name gpt-oss-120b
"""
import argparse
import hashlib
import json
import math
import os
import re
import sys
import time
from collections import Counter

from data import anonymize as anon_mod
from data.convert import DEFAULT_SOURCES, check_source, convert_source, parse_source
from data.decontam import MIN_COVERAGE, N as GRAM_N, BenchIndex, bench_specs, decontaminate, load_benches
from data.dedup import dedup
from data.filter import filter_records
from data.mix import mix, parse_weights, report
from eval.loaders import DATA_DIR
from eval.records import (ArgumentParser, RecordError, UsageError, check_outputs, command, fail, float_in, int_at_least,
                          read_jsonl, validate_record, write_jsonl)

STALE_TMP = re.compile(r"\.tmp\d*$")  # write_jsonl's <file>.tmp<pid>, the report's <file>.tmp
STEPS = ["convert", "filter", "anonymize", "dedup", "decontam", "verify", "difficulty", "mix"]


# --- steps: each reads the previous JSONL and writes its own ------------------------------------

class Run:
    def __init__(self, a):
        self.a, self.dir = a, a.out
        self.stats = Counter()
        os.makedirs(os.path.join(self.dir, "dropped"), exist_ok=True)
        for folder in (self.dir, os.path.join(self.dir, "dropped")):  # a killed run's half-written temp files
            for name in os.listdir(folder):
                if STALE_TMP.search(name):
                    os.remove(os.path.join(folder, name))

    def path(self, i, step):
        return os.path.join(self.dir, f"{i:02d}_{step}.jsonl")

    def read(self, path):
        bad = {}
        recs = list(read_jsonl(path, validate=False, skip_bad=self.a.skip_bad, stats=bad))
        if bad:
            self.stats[f"bad_lines:{os.path.basename(path)}"] += bad["bad_lines"]
        return recs

    def step(self, i, name, fn, inp, key):
        """Run fn(records, stats, dropped) -> records unless its output exists under the same key (a hash
        of the step's arguments and input files); returns the output path."""
        out = self.path(i, name)
        st_path = out + ".stats.json"
        done = _read_stats(st_path) if os.path.exists(out) and not self.a.force else None
        if done and done.get("key") == key:
            self.stats.update(done["stats"])
            print(f"[{name}] done before with the same arguments and inputs: {out}")
            return out
        if done:
            print(f"[{name}] arguments or inputs changed since the last run: running it again")
        t0 = time.time()
        st, dropped = Counter(), []
        recs = fn(self.read(inp) if inp else None, st, dropped)
        for r in recs:
            st[f"count:{name}:{r['source']}"] += 1
        write_jsonl(out, recs)
        if dropped or name in ("filter", "dedup", "decontam", "verify"):
            write_jsonl(os.path.join(self.dir, "dropped", f"{name}.jsonl"), dropped)
        st[f"seconds:{name}"] = round(time.time() - t0, 2)
        tmp = f"{st_path}.tmp{os.getpid()}"
        with open(tmp, "w") as f:  # written last and atomically: a stats file that reads is a finished step
            json.dump({"key": key, "stats": st}, f, indent=1, sort_keys=True)
        os.replace(tmp, st_path)
        self.stats.update(st)
        print(f"[{name}] {len(recs)} records -> {out} ({st[f'seconds:{name}']}s)")
        return out


def _read_stats(path):
    """A finished step's {"key", "stats"}, or None when missing or torn (then the step is not done)."""
    try:
        with open(path) as f:
            d = json.load(f)
        return d if isinstance(d, dict) and isinstance(d.get("stats"), dict) else None
    except (OSError, ValueError):
        return None


def file_hash(path, _cache={}):
    st = os.stat(path)
    k = (path, st.st_size, st.st_mtime_ns)
    if k not in _cache:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        _cache[k] = h.hexdigest()
    return _cache[k]


def step_key(name, args, files=()):
    """What a step's output depends on: its name, its arguments, the content of its input files."""
    blob = json.dumps([name, args, [(f, file_hash(f)) for f in files]], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def warning_banner(stats, steps):
    """The lines report.md opens with when the pools were not checked against every benchmark."""
    missing = sorted(k.split(":", 2)[2] for k in stats if k.startswith("bench:missing:"))
    if "decontam" not in steps:
        return ["> **WARNING: decontamination did not run: the pools were checked against NO eval benchmark.**", ""]
    if missing:
        return [f"> **WARNING: NOT decontaminated against {', '.join(missing)}** (file missing, unreadable or "
                "empty; the run went on under --allow-missing-bench). Scores on these benchmarks may be inflated "
                "by training on their items.", ""]
    return []


@command("data.prepare")
def main(argv=None):
    ap = ArgumentParser(prog="python -m data.prepare",
                        description=__doc__.split("\n\n")[0],
                        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("--out", required=True, help="work directory (steps resume from what is in it)")
    ap.add_argument("--data-dir", default=DATA_DIR, help="shared data dir for relative source paths and benchmarks")
    ap.add_argument("--source", action="append", default=[], metavar="FORMAT[:SPLIT]=PATH",
                    help=f"input (repeatable); default: {' '.join(DEFAULT_SOURCES)}")
    ap.add_argument("--bench", action="append", default=[], metavar="NAME[=PATH]",
                    help="eval benchmark to decontaminate against, IN ADDITION to the defaults (every benchmark "
                         "in eval.loaders.BENCHMARKS at its file under --data-dir); NAME=PATH reads a known "
                         "benchmark from PATH, or a new NAME from PATH as records JSONL (repeatable)")
    ap.add_argument("--bench-only", action="store_true",
                    help="decontaminate against the --bench benchmarks only, not the defaults")
    ap.add_argument("--allow-missing-bench", action="store_true",
                    help="go on when a benchmark file is missing, unreadable or empty (default: error); "
                         "report.md then opens with a warning naming it")
    ap.add_argument("--steps", default=",".join(STEPS), help="comma-separated subset of " + ",".join(STEPS))
    ap.add_argument("--force", action="store_true", help="rerun steps whose output exists")
    ap.add_argument("--skip-bad", action="store_true", help="count and skip malformed input lines instead of stopping")
    g = ap.add_argument_group("filter / dedup / decontamination")
    g.add_argument("--min-options", type=int_at_least(2), default=3)
    g.add_argument("--near-dup", type=float_in(0, 1, open_low=True), default=0.8,
                   help="near-duplicate word 3-gram Jaccard")
    g.add_argument("--min-coverage", type=float_in(0, 1, open_low=True), default=MIN_COVERAGE,
                   help="contamination: share of a benchmark item's tokens under shared n-grams")
    g.add_argument("--gram", type=int_at_least(1), default=GRAM_N, help="n-gram length for long questions")
    g.add_argument("--max-df", type=int_at_least(1), default=10,
                   help="n-grams in more benchmark items than this are boilerplate")
    g = ap.add_argument_group("LLM steps (run only with --endpoint or --model)")
    g.add_argument("--endpoint", help="OpenAI-compatible base URL of the verifier / judge")
    g.add_argument("--model", help="local checkpoint dir for the verifier / judge (sample.py), instead of --endpoint")
    g.add_argument("--model-name", help="served model name")
    g.add_argument("--api-key-env", default="OPENAI_API_KEY")
    g.add_argument("--timeout", type=float_in(0, math.inf, open_low=True), default=600.0)
    g.add_argument("--retries", type=int_at_least(0), default=6)
    g.add_argument("--backoff", type=float_in(0, math.inf), default=1.0)
    g.add_argument("--concurrency", type=int_at_least(1), default=16)
    g.add_argument("--verify-n", type=int_at_least(1), default=5, help="verifier answers per item")
    g.add_argument("--keep-flagged", action="store_true", help="keep items the verifier never got right")
    g = ap.add_argument_group("mixing")
    g.add_argument("--weights", default="", help="per-source fractions, e.g. medqa=1,medmcqa=0.5")
    g.add_argument("--synthetic-ratio", type=float_in(0, 1, open_low=True, open_high=True),
                   help="target share of synthetic items (0..1)")
    g.add_argument("--rl-frac", type=float_in(0, 1), default=0.5)
    g.add_argument("--val-frac", type=float_in(0, 1, open_high=True), default=0.02)
    g.add_argument("--val-max", type=int_at_least(0), default=500)
    g.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    check_outputs(folders=[a.out])
    steps = [s.strip() for s in a.steps.split(",") if s.strip()]
    if set(steps) - set(STEPS):
        ap.error(f"unknown steps {sorted(set(steps) - set(STEPS))}")
    if a.endpoint and not a.model_name:
        ap.error("--endpoint needs --model-name")
    try:
        parse_weights(a.weights)
    except ValueError as e:
        ap.error(f"argument --weights: {e}")
    try:
        for spec in a.source:
            parse_source(spec, a.data_dir)
    except UsageError as e:
        ap.error(str(e))
    run_pipeline(a, steps)


def run_pipeline(a, steps):
    from eval.llm import LLMError
    sources = a.source or DEFAULT_SOURCES
    source_files = [check_source(spec, a.data_dir) for spec in sources]  # every input checked before any output
    bench = bench_specs(a.bench, a.bench_only, a.data_dir)
    bench_stats = Counter()  # read before any step writes: a bad benchmark file stops the run with nothing changed
    benches = load_benches(bench, a.data_dir, a.allow_missing_bench, bench_stats) if "decontam" in steps else None
    run = Run(a)
    order = []
    prev = None

    def do(i, name, fn, args, files=()):
        nonlocal prev
        if name in steps:
            key = step_key(name, args, [prev] * bool(prev) + list(files))
            prev = run.step(i, name, fn, prev, key)
            order.append(name)
        elif os.path.exists(run.path(i, name)):
            prev = run.path(i, name)  # a step left out now but done before still feeds the next one
            done = _read_stats(prev + ".stats.json")
            if done:
                run.stats.update(done["stats"])
            order.append(name)

    def convert(_, st, dropped):
        recs = []
        for spec in sources:
            got = convert_source(spec, a.data_dir, a.skip_bad, st)
            recs += got
        keys = Counter((r["source"], r["id"]) for r in recs)
        dup = [k for k, v in keys.items() if v > 1]
        if dup:
            raise RecordError(f"ids repeat within a source, e.g. {dup[:3]}: give each source once")
        return recs

    def filt(recs, st, dropped):
        out = filter_records(recs, st, dropped, a.min_options)
        for r in out:
            validate_record(r)  # everything after the filter is schema-valid
        return out

    def dd(recs, st, dropped):
        return dedup(recs, a.near_dup, stats=st, dropped=dropped)

    def decon(recs, st, dropped):
        st.update(bench_stats)
        index = BenchIndex(benches, n=a.gram, max_df=a.max_df)
        return decontaminate(recs, index, a.min_coverage, stats=st, dropped=dropped)

    do(1, "convert", convert, [sources, a.skip_bad], source_files)
    do(2, "filter", filt, [a.min_options])
    do(3, "anonymize", lambda recs, st, dropped: anon_mod.anonymize(recs, st), [])
    do(4, "dedup", dd, [a.near_dup])
    do(5, "decontam", decon, [bench, a.gram, a.min_coverage, a.max_df, a.allow_missing_bench],
       [p for _, p in bench if os.path.exists(p)])
    llm_steps = [s for s in ("verify", "difficulty") if s in steps]
    if llm_steps and not (a.endpoint or a.model):
        print(f"[{','.join(llm_steps)}] skipped: no --endpoint or --model (items keep difficulty=null, no pass rate)")
    elif llm_steps:
        from data.difficulty import apply_difficulty, run_difficulty
        from data.verify import apply_verify, client_from_args, run_verify
        client = client_from_args(a)
        res_v, res_d = os.path.join(a.out, "verify.jsonl"), os.path.join(a.out, "difficulty.jsonl")

        def verify(recs, st, dropped):
            run_verify(client, recs, res_v, n=a.verify_n)
            return apply_verify(recs, res_v, a.keep_flagged, dropped, st)

        def label(recs, st, dropped):
            run_difficulty(client, recs, res_d)
            return apply_difficulty(recs, res_d, st)
        try:
            who = [a.endpoint, a.model, a.model_name]
            do(6, "verify", verify, who + [a.verify_n, a.keep_flagged])
            do(7, "difficulty", label, who)
        except LLMError as e:  # a runtime failure: exit 1
            fail(f"{e}; finished items are saved: rerun the same command to resume", "data.prepare")

    if "mix" in steps:
        t0 = time.time()
        recs = run.read(prev)
        try:
            pools = mix(recs, parse_weights(a.weights), a.synthetic_ratio, a.rl_frac, a.val_frac, a.val_max, a.seed,
                        run.stats)
        except ValueError as e:  # --weights naming a source the data does not have
            raise UsageError(f"--weights: {e}") from None
        for name, rs in pools.items():
            for r in rs:
                validate_record(r)
            write_jsonl(os.path.join(a.out, f"{name}.jsonl"), rs)
        run.stats["seconds:mix"] = round(time.time() - t0, 2)
        order.append("mix")
        print(f"[mix] " + ", ".join(f"{k}={len(v)}" for k, v in pools.items()))
    banner = warning_banner(run.stats, order)
    path = os.path.join(a.out, "report.md")
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        f.write("\n".join(banner) + ("\n" if banner else ""))
        f.write(report(run.stats, [s for s in order if s != "mix"]))
        secs = {k.split(":", 1)[1]: v for k, v in run.stats.items() if k.startswith("seconds:")}
        f.write("\n## Seconds per step\n\n" + " | ".join(f"{k} {v}" for k, v in secs.items()) + "\n")
    os.replace(path + ".tmp", path)
    for line in banner[:1]:
        print(line.replace("*", "").lstrip("> "), file=sys.stderr)
    print(f"report: {path}")


if __name__ == "__main__":
    main()
