"""Mixing: per-source weights and a public/synthetic ratio, deterministic by seed, producing the SFT
pool, the RL pool and a small validation split; plus the Markdown stats report of the whole run.

Every source is ordered by id and shuffled with its own seeded RNG, so the result depends only on
(seed, records), not on file order, and adding a source does not reshuffle the others. Weights are
the fraction of a source to take (0..1). The synthetic ratio is the target share of synthetic items
(meta.synthetic, or a source starting with "kg"); when there are too few synthetic items the public
side is scaled down instead of repeating anything. The validation split is stratified by source;
the rest is split into disjoint RL and SFT pools, stratified by source and difficulty, so the RL
stages see items the cold start did not memorize.

    python -m data.mix labelled.jsonl --out-dir pools/ --weights medqa=1,medmcqa=0.5 --synthetic-ratio 0.3
"""
import os
import random
from collections import Counter, defaultdict

from eval.records import (ArgumentParser, UsageError, check_outputs, command, float_in, int_at_least, read_jsonl,
                          write_jsonl)


def is_synthetic(rec):
    return bool(rec["meta"].get("synthetic")) or rec["source"].startswith("kg")


def parse_weights(spec):
    """"medqa=1,medmcqa=0.5" -> {"medqa": 1.0, "medmcqa": 0.5}."""
    out = {}
    for part in filter(None, (spec or "").split(",")):
        name, _, w = part.partition("=")
        try:
            out[name.strip()] = float(w)
        except ValueError:
            raise ValueError(f"bad weight {part!r}: use SOURCE=FRACTION") from None
        if not 0 <= out[name.strip()] <= 1:
            raise ValueError(f"weight {part!r} must be between 0 and 1 (a fraction of the source)")
    return out


def _shuffled_by_source(records, seed):
    groups = defaultdict(list)
    for r in records:
        groups[r["source"]].append(r)
    for src, recs in groups.items():
        recs.sort(key=lambda r: r["id"])
        random.Random(f"{seed}:{src}").shuffle(recs)
    return dict(sorted(groups.items()))


def _take(groups, total):
    """Shrink every group proportionally so they hold `total` items (largest remainder)."""
    n = sum(len(g) for g in groups.values())
    if total >= n:
        return groups
    quota = {s: len(g) * total / n for s, g in groups.items()}
    k = {s: int(q) for s, q in quota.items()}
    for s in sorted(quota, key=lambda s: (k[s] - quota[s], s))[:total - sum(k.values())]:
        k[s] += 1
    return {s: g[:k[s]] for s, g in groups.items()}


def mix(records, weights=None, synthetic_ratio=None, rl_frac=0.5, val_frac=0.02, val_max=500, seed=0, stats=None):
    """{"sft": [...], "rl": [...], "val": [...]}; each record gets meta.pool."""
    stats = Counter() if stats is None else stats
    weights = weights or {}
    groups = _shuffled_by_source(records, seed)
    unknown = set(weights) - set(groups)
    if unknown:
        raise ValueError(f"weights name sources not in the data: {sorted(unknown)} (have {sorted(groups)})")
    groups = {s: g[:round(len(g) * weights.get(s, 1.0))] for s, g in groups.items()}
    pub = {s: g for s, g in groups.items() if not (g and is_synthetic(g[0]))}
    syn = {s: g for s, g in groups.items() if g and is_synthetic(g[0])}
    n_pub, n_syn = sum(map(len, pub.values())), sum(map(len, syn.values()))
    if synthetic_ratio is not None and n_pub and n_syn:
        if not 0 < synthetic_ratio < 1:
            raise ValueError("synthetic_ratio must be between 0 and 1")
        want_syn = round(n_pub * synthetic_ratio / (1 - synthetic_ratio))
        if want_syn <= n_syn:
            syn = _take(syn, want_syn)
        else:  # too little synthetic data: scale the public side down instead
            pub = _take(pub, round(n_syn * (1 - synthetic_ratio) / synthetic_ratio))
    groups = {**pub, **syn}
    n = sum(map(len, groups.values()))
    val_groups = _take(groups, min(val_max, round(n * val_frac)))
    pools = {"sft": [], "rl": [], "val": []}
    for src, g in groups.items():
        k = len(val_groups[src])
        pools["val"] += g[:k]
        by_diff = defaultdict(list)
        for r in g[k:]:
            by_diff[r["difficulty"] or "none"].append(r)
        for d, rs in sorted(by_diff.items()):
            m = round(len(rs) * rl_frac)
            pools["rl"] += rs[:m]
            pools["sft"] += rs[m:]
    for name, recs in pools.items():
        pools[name] = [{**r, "meta": {**r["meta"], "pool": name}} for r in recs]
        for r in recs:
            stats[f"pool:{name}:{r['source']}"] += 1
            stats[f"pool_difficulty:{name}:{r['difficulty'] or 'none'}"] += 1
    return pools


# --- report -------------------------------------------------------------------------------------

def _table(header, rows):
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


def _by(stats, prefix):
    """{rest-of-key: count} for keys "prefix:rest"."""
    return {k[len(prefix) + 1:]: v for k, v in stats.items() if k.startswith(prefix + ":")}


def report(stats, steps, title="Data preparation report"):
    """Markdown from the run's Counter. `steps` lists the step names whose per-source record counts
    are in stats as "count:<step>:<source>", in pipeline order."""
    lines = [f"# {title}", ""]
    sources = sorted({k.split(":", 2)[2] for k in stats if k.startswith("count:")})
    lines += ["## Records per source after each step", "",
              _table(["source"] + steps, [[s] + [stats.get(f"count:{st}:{s}", 0) for st in steps] for s in sources]
                     + [["**total**"] + [sum(stats.get(f"count:{st}:{s}", 0) for s in sources) for st in steps]]), ""]
    drops = _by(stats, "drop")
    reasons = sorted({k.split(":", 1)[1] for k in drops if ":" in k})
    if reasons:
        lines += ["## Format filter drops", "",
                  _table(["source"] + reasons + ["total"],
                         [[s] + [drops.get(f"{s}:{r}", 0) for r in reasons] + [sum(drops.get(f"{s}:{r}", 0) for r in reasons)]
                          for s in sources if any(drops.get(f"{s}:{r}") for r in reasons)]), ""]
    dd = _by(stats, "dedup")
    if dd:
        lines += ["## Deduplication", "", _table(["kind", "count"], sorted(dd.items())), ""]
    dc = _by(stats, "decontam")
    if dc:
        benches = sorted({k.split(":", 1)[1] for k in dc})
        lines += ["## Decontamination (training items that copy an eval benchmark item)", "",
                  _table(["source"] + benches, [[s] + [dc.get(f"{s}:{b}", 0) for b in benches]
                                                for s in sorted({k.split(':', 1)[0] for k in dc})]), ""]
    for name, prefix in (("Anonymization", "anon"), ("Label verification", "verify"), ("Difficulty labels", "difficulty"),
                         ("Benchmarks indexed", "bench"), ("Malformed input lines skipped", "bad_lines")):
        d = _by(stats, prefix)
        if d:
            lines += [f"## {name}", "", _table(["key", "count"], sorted(d.items())), ""]
    pools = _by(stats, "pool")
    if pools:
        names = ["sft", "rl", "val"]
        srcs = sorted({k.split(":", 1)[1] for k in pools})
        lines += ["## Output pools by source", "",
                  _table(["source"] + names, [[s] + [pools.get(f"{p}:{s}", 0) for p in names] for s in srcs]), ""]
        pd = _by(stats, "pool_difficulty")
        diffs = sorted({k.split(":", 1)[1] for k in pd})
        lines += ["## Output pools by difficulty", "",
                  _table(["difficulty"] + names, [[d] + [pd.get(f"{p}:{d}", 0) for p in names] for d in diffs]), ""]
    return "\n".join(lines)


@command("data.mix")
def main(argv=None):
    ap = ArgumentParser(prog="python -m data.mix",
                        description="Mix labelled records into SFT / RL / validation pools (deterministic).")
    ap.add_argument("inp", help="labelled records JSONL")
    ap.add_argument("--out-dir", required=True, help="writes sft.jsonl, rl.jsonl, val.jsonl, mix_report.md")
    ap.add_argument("--weights", default="", help="per-source fractions, e.g. medqa=1,medmcqa=0.5")
    ap.add_argument("--synthetic-ratio", type=float_in(0, 1, open_low=True, open_high=True),
                    help="target share of synthetic items (0..1)")
    ap.add_argument("--rl-frac", type=float_in(0, 1), default=0.5, help="share of the non-validation items for RL")
    ap.add_argument("--val-frac", type=float_in(0, 1, open_high=True), default=0.02)
    ap.add_argument("--val-max", type=int_at_least(0), default=500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-bad", action="store_true", help="count and skip malformed input lines")
    a = ap.parse_args(argv)
    check_outputs(folders=[a.out_dir])
    try:
        weights = parse_weights(a.weights)
    except ValueError as e:
        ap.error(f"argument --weights: {e}")
    stats = Counter()
    recs = list(read_jsonl(a.inp, skip_bad=a.skip_bad, stats=stats))
    try:
        pools = mix(recs, weights, a.synthetic_ratio, a.rl_frac, a.val_frac, a.val_max, a.seed, stats)
    except ValueError as e:  # --weights naming a source the data does not have
        raise UsageError(f"{a.inp}: {e}") from None
    os.makedirs(a.out_dir, exist_ok=True)
    for name, rs in pools.items():
        write_jsonl(os.path.join(a.out_dir, f"{name}.jsonl"), rs)
    tmp = os.path.join(a.out_dir, f"mix_report.md.tmp{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(report(stats, []))
    os.replace(tmp, os.path.join(a.out_dir, "mix_report.md"))
    print({k: len(v) for k, v in pools.items()})


if __name__ == "__main__":
    main()
