"""Run benchmarks against a model and write one JSONL line per item, resumably.

    python -m eval.run --benchmarks medqa,medmcqa --endpoint http://localhost:8000/v1 \\
        --model-name Qwen2.5-7B-Instruct --out runs/qwen7b [--limit 100] [--n 1] [--temperature 0]
    torchrun --nproc-per-node 8 -m eval.run --benchmarks medqa --model ckpt/ --out runs/ckpt   (local sampler)

RUN_DIR holds config.json (the settings; a resume must use the same ones), one part file per
benchmark and rank ({bench}.part{rank}.jsonl, rows: id, benchmark, prompt, output, extracted, gold,
correct, format_ok) and summary.json. Rank r of WORLD_SIZE takes items i % WORLD_SIZE == r. Items whose id is
already in any part file of the benchmark are skipped, so a killed run resumes where it stopped and
a change of world size redoes nothing. With --n > 1, output / extracted / correct are lists of n,
and the summary adds majority-vote accuracy (maj@n) and pass@k.

--skip-bad drops malformed items (counted, the first one named) but refuses a benchmark it would
mostly empty. --shuffle-options SEED permutes each item's options (fixed per item id and seed; the
gold letter follows its option); a benchmark whose gold answers pile on one letter gets a warning.
"""
import argparse
import glob
import json
import math
import os
import sys
from collections import Counter

from eval.llm import LLMError, endpoint_error, make_client, run_step
from eval.records import (ArgumentParser, RecordError, UsageError, check_outputs, command, fail, float_in, int_at_least,
                          read_json)
from eval.answer import build_prompt, format_ok, score
from eval.loaders import BENCHMARKS, answer_skew, benchmark_path, load_benchmark, shuffle_options

# settings that change the numbers: a resumed run must not mix them (the endpoint may move)
RESULT_KEYS = ("model", "model_name", "n", "temperature", "top_p", "max_tokens", "system", "seed", "shuffle_options")


def parse_args(argv=None):
    p = ArgumentParser(prog="python -m eval.run", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--benchmarks", required=True, help=f"comma-separated, from: {', '.join(BENCHMARKS)}")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--endpoint", help="OpenAI-compatible server URL, e.g. http://localhost:8000/v1")
    src.add_argument("--model", help="local Hugging Face checkpoint dir (generated with sample.py)")
    p.add_argument("--model-name", help="the served model's name (with --endpoint)")
    p.add_argument("--out", required=True, help="run directory (created; resumed if it exists)")
    p.add_argument("--limit", type=int_at_least(1), help="first N items of each benchmark")
    p.add_argument("--n", type=int_at_least(1), default=1, help="samples per item (>1: maj@n and pass@k)")
    p.add_argument("--temperature", type=float_in(0, math.inf), default=0.0)
    p.add_argument("--top-p", type=float_in(0, 1, open_low=True))
    p.add_argument("--max-tokens", type=int_at_least(1), default=4096)
    p.add_argument("--seed", type=int)
    p.add_argument("--system", help="optional system prompt")
    p.add_argument("--data-dir", help="shared data dir (default: $FLEMING_DATA or ../shared/data)")
    p.add_argument("--path", action="append", default=[], metavar="NAME=FILE",
                   help="file for a benchmark, e.g. medxpertqa=/data/MedXpertQA/test.jsonl (repeatable)")
    p.add_argument("--skip-bad", action="store_true",
                   help="skip malformed benchmark items (counted) instead of stopping; a benchmark that would "
                        "lose more than half its items is still an error")
    p.add_argument("--shuffle-options", type=int, metavar="SEED",
                   help="shuffle each item's options, fixed per item id and SEED (the gold letter follows its option)")
    p.add_argument("--concurrency", type=int_at_least(1), default=16, help="requests in flight (endpoint mode)")
    p.add_argument("--timeout", type=float_in(0, math.inf, open_low=True), default=600.0, help="seconds per request")
    p.add_argument("--max-retries", type=int_at_least(0), default=6)
    p.add_argument("--backoff", type=float_in(0, math.inf), default=1.0, help="first retry wait in seconds (doubles)")
    p.add_argument("--api-key-env", default="OPENAI_API_KEY", help="env var holding the API key")
    a = p.parse_args(argv)
    check_outputs(folders=[a.out])
    if a.endpoint and not a.model_name:
        p.error("--endpoint needs --model-name")
    if a.endpoint and (why := endpoint_error(a.endpoint)):
        p.error(f"--endpoint {why}")
    a.benchmarks = [b.strip() for b in a.benchmarks.split(",") if b.strip()]
    unknown = [b for b in a.benchmarks if b not in BENCHMARKS]
    if unknown:
        p.error(f"unknown benchmark(s) {unknown}; known: {', '.join(BENCHMARKS)}")
    paths = {}
    for kv in a.path:
        name, sep, path = kv.partition("=")
        if not sep or name not in BENCHMARKS:
            p.error(f"--path wants NAME=FILE with NAME a known benchmark, got {kv!r}")
        paths[name] = path
    a.path = paths
    if a.n < 1:
        p.error("--n must be >= 1")
    return a


# ----------------------------------------------------------------------------- scoring


def majority(extracted):
    """Most common extracted answer; None when nothing was extracted or the top is a tie (no guess)."""
    votes = Counter(e for e in extracted if e is not None).most_common()
    if not votes or (len(votes) > 1 and votes[0][1] == votes[1][1]):
        return None
    return votes[0][0]


def pass_at_k(n, c, k):
    """Unbiased pass@k from n samples with c correct (Chen et al. 2021)."""
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def make_row(rec, outputs, benchmark, prompt):
    scored = [score(rec, o) for o in outputs]
    multi = bool(rec["meta"].get("multi_answer"))
    formats = [format_ok(o, rec["options"], multi) for o in outputs]
    row = {"id": rec["id"], "benchmark": benchmark, "prompt": prompt, "gold": rec["answer"]}
    if len(outputs) == 1:
        row.update(output=outputs[0], extracted=scored[0][0], correct=scored[0][1], format_ok=formats[0])
    else:
        maj = majority([e for e, _ in scored])
        row.update(output=outputs, extracted=[e for e, _ in scored], correct=[c for _, c in scored],
                   format_ok=formats,
                   majority=maj, majority_correct=maj is not None and set(maj) == set(rec["answer"]))
    return row


# ----------------------------------------------------------------------------- files


def part_path(out, bench, rank):
    return os.path.join(out, f"{bench}.part{rank}.jsonl")


def read_items(out, bench):
    """All finished rows of a benchmark across part files, one per id (torn lines from a kill skipped)."""
    rows = {}
    for path in sorted(glob.glob(os.path.join(glob.escape(out), f"{bench}.part*.jsonl"))):
        with open(path, encoding="utf-8", errors="replace") as f:  # a bad byte spoils one row, not the run
            for line in f:
                try:
                    row = json.loads(line)
                    if "correct" in row:  # a row without a result is not one of ours
                        rows.setdefault(row["id"], row)
                except (ValueError, KeyError, TypeError):
                    continue
    return list(rows.values())


def summarize_items(rows):
    """Accuracy (mean over items of the fraction of correct samples), extraction-failure rate, format rate
    (the reward's format check) and mean output length in characters (all three over samples) and, for
    n > 1, maj@n and pass@k. Rows written before format_ok was recorded count as unknown."""
    if not rows:
        return {"n_done": 0, "accuracy": None, "extraction_failure_rate": None}
    as_list = lambda r, key: r.get(key) if isinstance(r["correct"], list) else [r.get(key)]  # noqa: E731
    correct, extracted = [as_list(r, "correct") for r in rows], [as_list(r, "extracted") for r in rows]
    outputs = [o for r in rows for o in as_list(r, "output")]
    formats = [f for r in rows if "format_ok" in r for f in as_list(r, "format_ok")]
    n = min(len(c) for c in correct)
    s = {"n_done": len(rows), "n_samples": n,
         "accuracy": sum(sum(c) / len(c) for c in correct) / len(rows),
         "n_correct": sum(sum(c) for c in correct),
         "extraction_failure_rate": sum(e is None for ex in extracted for e in ex) / sum(len(ex) for ex in extracted),
         "format_rate": sum(formats) / len(formats) if formats else None,
         "mean_output_chars": sum(len(o or "") for o in outputs) / len(outputs)}
    if n > 1:
        s["maj_accuracy"] = sum(bool(r.get("majority_correct")) for r in rows) / len(rows)
        ks = sorted({k for k in (1, 2, 4, 8, 16, 32, 64, n) if k <= n})
        s["pass_at_k"] = {str(k): sum(pass_at_k(len(c), sum(c), k) for c in correct) / len(rows) for k in ks}
    return s


def summarize(out):
    """summary of a run dir from its part files (the truth) and config.json (expected item counts)."""
    cfg = read_json(os.path.join(out, "config.json"))
    if not isinstance(cfg, dict):
        raise RecordError(f"{os.path.join(out, 'config.json')}: not an eval.run config (a {type(cfg).__name__})")
    benches = {}
    items = cfg.get("items")
    for bench, expected in (items if isinstance(items, dict) else {}).items():
        s = summarize_items(read_items(out, bench))
        s["n_expected"] = expected
        s["complete"] = s["n_done"] == expected
        benches[bench] = s
    accs = [s["accuracy"] for s in benches.values() if s["accuracy"] is not None]
    return {"model": cfg.get("model_name") or cfg.get("model"), "config": cfg, "benchmarks": benches,
            "macro_accuracy": sum(accs) / len(accs) if accs else None,
            "complete": all(s["complete"] for s in benches.values())}


def write_json(path, obj):
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, ensure_ascii=False)
        f.write("\n")
    os.replace(tmp, path)


def open_run(a, counts):
    """Create or resume RUN_DIR/config.json; refuse to mix runs with different result settings."""
    os.makedirs(a.out, exist_ok=True)
    path = os.path.join(a.out, "config.json")
    cfg = {"model": a.model, "model_name": a.model_name, "endpoint": a.endpoint, "n": a.n,
           "temperature": a.temperature, "top_p": a.top_p, "max_tokens": a.max_tokens, "system": a.system,
           "seed": a.seed, "shuffle_options": a.shuffle_options, "items": {}}
    if os.path.exists(path):
        old = read_json(path)
        if not isinstance(old, dict):
            raise RecordError(f"{path}: not an eval.run config (a {type(old).__name__}); use a new --out")
        diff = [k for k in RESULT_KEYS if old.get(k) != cfg[k]]
        if diff:
            raise UsageError(f"{path} was started with different settings "
                             f"({', '.join(f'{k}: {old.get(k)!r} vs {cfg[k]!r}' for k in diff)}); use a new --out")
        cfg["items"] = old.get("items", {})
    cfg["items"].update(counts)
    if int(os.environ.get("RANK", 0)) == 0 or not os.path.exists(path):
        write_json(path, cfg)
    return cfg


# ----------------------------------------------------------------------------- main


def load_items(bench, a):
    """A benchmark's records, or a UsageError with one clear line. --skip-bad is suggested only when it
    would work (the file loads with it and keeps most items); with it, a benchmark that loses more
    than half its items (or all) is refused rather than scored on what is left."""
    path = benchmark_path(bench, a.path.get(bench), a.data_dir)
    stats = {}
    try:
        recs = load_benchmark(bench, path=path, data_dir=a.data_dir, skip_bad=a.skip_bad, stats=stats)
    except RecordError as e:
        hint = ""
        if not a.skip_bad:
            probe = {}
            try:
                kept = len(load_benchmark(bench, path=path, data_dir=a.data_dir, skip_bad=True, stats=probe))
                bad = probe.get("bad_lines", 0)
                if kept and 2 * bad <= kept + bad:
                    hint = f" (--skip-bad would skip {bad} of {kept + bad} items)"
            except RecordError:
                pass  # not a per-item problem: skipping cannot help
        raise UsageError(f"{bench}: {e}{hint}") from None
    bad = stats.get("bad_lines", 0)
    total = len(recs) + bad
    if not recs or 2 * bad > total:
        why = f"{bad} of its {total} items are malformed" if total else "it holds no items"
        first = f" (first: {stats['first_bad']})" if stats.get("first_bad") else ""
        raise UsageError(f"{bench}: {path}: {why}{first}; not scoring what is left: "
                         f"check that the file is {bench}'s published layout")
    if bad:
        first = f"; first: {stats['first_bad']}" if stats.get("first_bad") else ""
        print(f"eval.run: {bench}: skipped {bad} malformed item(s) of {total}{first}", file=sys.stderr)
    return recs


@command("eval.run")
def main(argv=None):
    a = parse_args(argv)
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    data = {}
    for bench in a.benchmarks:
        recs = load_items(bench, a)
        if a.shuffle_options is not None:
            recs = [shuffle_options(r, a.shuffle_options) for r in recs]
        skew = answer_skew(recs)
        if skew:
            hint = "" if a.shuffle_options is not None else "; --shuffle-options SEED spreads the letters"
            print(f"eval.run: warning: {bench}: {skew[0]} is the gold answer of {100 * skew[1]:.1f}% of the items: "
                  f"always answering {skew[0]} scores that much{hint}", file=sys.stderr)
        data[bench] = recs[: a.limit] if a.limit else recs
    client_kw = dict(timeout=a.timeout, max_retries=a.max_retries, backoff=a.backoff,
                     api_key_env=a.api_key_env, concurrency=a.concurrency) if a.endpoint else {}
    try:
        client = make_client(endpoint=a.endpoint, model=a.model_name, model_dir=a.model, **client_kw)
    except ValueError as e:  # model.CheckpointError: a bad checkpoint dir, named in the message
        raise UsageError(str(e)) from None
    open_run(a, {b: len(r) for b, r in data.items()})
    gen = dict(n=a.n, temperature=a.temperature, max_tokens=a.max_tokens)
    gen.update({k: v for k, v in (("top_p", a.top_p), ("seed", a.seed)) if v is not None})
    try:
        for bench, recs in data.items():
            done = {r["id"] for r in read_items(a.out, bench)}
            mine = [r for i, r in enumerate(recs) if i % world == rank and r["id"] not in done]
            prompts = {r["id"]: build_prompt(r, a.system) for r in mine}
            run_step(client, mine, part_path(a.out, bench, rank), lambda r: prompts[r["id"]],
                     lambda r, outs, b=bench: make_row(r, outs, b, prompts[r["id"]]),
                     desc=f"{bench} [rank {rank}/{world}]", **gen)
    except LLMError as e:  # a runtime failure: exit 1
        fail(f"{e}; finished items are saved in {a.out}: rerun the same command to resume", "eval.run")
    finally:
        summary = summarize(a.out)
        write_json(os.path.join(a.out, "summary.json"), summary)
    for bench, s in summary["benchmarks"].items():
        acc = "-" if s["accuracy"] is None else f"{100 * s['accuracy']:.2f}"
        print(f"{bench:18s} {acc:>6s}  ({s['n_done']}/{s['n_expected']} items, "
              f"extraction failures {100 * (s['extraction_failure_rate'] or 0):.1f}%)")
    if summary["macro_accuracy"] is not None:
        print(f"{'macro average':18s} {100 * summary['macro_accuracy']:6.2f}")


if __name__ == "__main__":
    main()
