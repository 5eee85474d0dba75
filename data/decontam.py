"""Decontamination: drop training items that copy an eval benchmark item, verbatim, lightly edited
(a few words changed, options reordered) or embedded in a longer text.

An item is compared with every benchmark item over its question AND its options, in two ways:

- long questions (>= SHORT = 30 tokens): word n-grams (n = 8 and min_coverage = 0.6, chosen by
  `--measure`). The benchmark item counts as copied when the tokens under n-grams it shares with
  the training item cover >= min_coverage of its question and long options (or of a long training
  text): a case copied with a few words changed and asked anew is caught. n-grams in
  more than max_df benchmark items are exam boilerplate ("Which of the following is the most
  appropriate next step in management") and never count; that frequency is taken over the
  benchmark items only, so ten training items copying one vignette cannot hide each other.
- every question, short ones above all (MedMCQA's median is 11 tokens, "Drug of choice for X is"):
  n-grams cannot see them, and a two-word edit breaks every gram. The item counts as copied when all
  its options but one (at least two) occur in the training item, as its options or as phrases in its
  text, in any order, AND q_share = 0.6 of its question's distinct content words occur within one
  window of the question's length (0.5 when every option is there; 0.3 when, besides, the gold
  answer is the same and the options are the item's own, not yes/no/maybe). A training item over the
  same options whose gold answer is another of them is a minimal pair ("drug of choice for absence /
  for myoclonic seizures"), not a copy: it teaches nothing about this item's answer.

Candidates come from inverted indexes (rare n-grams; rare question bigrams and option phrases), so
matching stays near-linear in the pool size. Chinese has no spaces: each CJK character is a token.

    python -m data.decontam --measure                  # planted copies vs gram length (the table in README)
    python -m data.decontam in.jsonl out.jsonl --bench medqa --bench medmcqa=path.jsonl
"""
import os
import random
import re
import sys
from collections import Counter

import numpy as np

from data.convert import check_json_file, convert_source
from data.dedup import gram_seq, token_hashes, tokens
from data.filter import write_outputs
from eval.loaders import BENCHMARKS, benchmark_path, load_benchmark
from eval.records import ArgumentParser, RecordError, check_outputs, command, float_in, int_at_least, read_jsonl

N = 8          # gram length for long questions, and
MIN_COVERAGE = 0.6  # the share of a long item its shared grams must cover (both measured: --measure, README)
SHORT = 30     # questions under this many tokens take no n-gram path (a shared stem is most of them)
MAX_OPT = 8    # an option phrase is looked up by its first MAX_OPT tokens
KEY_DF = 50    # short-path keys (question bigrams, option phrases) in more bench items than this are not indexed


# --- which benchmarks: the defaults plus what the user names -------------------------------------

DEFAULT_BENCH = tuple(BENCHMARKS)  # every eval benchmark eval.loaders knows


def bench_specs(named=(), only=False, data_dir=None):
    """[(name, path)]: the default benchmarks plus the named ones (NAME, or NAME=PATH to read a known
    benchmark from another file, or a new NAME=PATH of records JSONL); with only, the named ones alone."""
    chosen = {} if only else {n: None for n in DEFAULT_BENCH}
    for spec in named:
        name, _, path = spec.partition("=")
        if name not in BENCHMARKS and not path:
            raise RecordError(f"--bench {spec}: unknown benchmark {name!r} (known: {', '.join(BENCHMARKS)}); "
                              "a benchmark of your own is NAME=PATH to records JSONL")
        chosen[name] = path or chosen.get(name)
    if not chosen:
        raise RecordError("no benchmark to decontaminate against (--bench-only needs at least one --bench)")
    return [(n, os.path.abspath(p) if p else benchmark_path(n, None, data_dir)) for n, p in chosen.items()]


def load_benches(specs, data_dir=None, allow_missing=False, stats=None):
    """name -> records for each (name, path); one per file. A file that is missing, unreadable or holds no
    item is an error naming it, or with allow_missing a "bench:missing:<name>" stat (report.md's banner)."""
    stats = Counter() if stats is None else stats
    out, files, problems = {}, set(), []
    for name, path in specs:
        if path in files:
            continue  # pubmedqa_test500 is a subset of pubmedqa's file
        bst = {}
        try:
            if not os.path.exists(path):
                raise RecordError(f"{path}: file not found")
            check_json_file(path)
            if name in BENCHMARKS:
                recs = load_benchmark(name, path, data_dir=data_dir, skip_bad=True, stats=bst)
            else:
                recs = list(read_jsonl(path))
            if not recs:
                raise RecordError(f"{path}: no item could be read" + (f" (first: {bst['first_bad']})"
                                                                      if bst.get("first_bad") else " (empty)"))
        except (RecordError, OSError) as e:
            problems.append(f"{name}: {e}")
            stats[f"bench:missing:{name}"] = 1
            continue
        files.add(path)
        out[name] = recs
        stats[f"bench:items:{name}"] = len(recs)
        if bst.get("bad_lines"):
            stats[f"bench:unreadable_items:{name}"] = bst["bad_lines"]
    if problems and not allow_missing:
        raise RecordError("cannot decontaminate against " + "; ".join(problems) + ": give the file with "
                          "--bench NAME=PATH, or pass --allow-missing-bench to go on without it (report.md will "
                          "say so)")
    for p in problems:
        print(f"[decontam] WARNING, not checked: {p}", file=sys.stderr)
    return out


# --- matching -------------------------------------------------------------------------------------

def _grams(seqs, n):
    """(hash, owner, start) of every n-gram that lies inside one of the token lists seqs; the hashes are
    gram_seq's, computed for all lists at once."""
    lens = np.array([len(x) for x in seqs], dtype=np.int64)
    th = token_hashes([t for x in seqs for t in x])
    m = len(th) - n + 1
    if m <= 0:
        return np.zeros(0, np.uint64), np.zeros(0, np.int64), np.zeros(0, np.int64)
    owner = np.repeat(np.arange(len(seqs)), lens)
    ok = owner[:m] == owner[n - 1:]
    start = np.arange(m) - np.concatenate([[0], np.cumsum(lens)[:-1]])[owner[:m]]
    return gram_seq(th, n)[ok], owner[:m][ok], start[ok]


def _split(values, owner, count):
    """values grouped by owner 0..count-1 (owner ascending)."""
    return np.split(values, np.searchsorted(owner, np.arange(count), side="right")[:-1])


def _csr(h, owner):
    """Inverted index over (key, owner item) pairs, repeats dropped: (sorted keys, ptr, owner, df)."""
    order = np.lexsort((owner, h))
    h, owner = h[order], owner[order]
    first = np.ones(len(h), dtype=bool)
    first[1:] = (h[1:] != h[:-1]) | (owner[1:] != owner[:-1])
    h, owner = h[first], owner[first]
    keys, start, df = np.unique(h, return_index=True, return_counts=True)
    return keys, np.append(start, len(h)), owner, df


def _lookup(index, g, qid):
    """(query, owner item) pairs, one per shared key (repeats kept, for counting)."""
    keys, ptr, owner, _ = index
    if len(keys) == 0 or len(g) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    pos = np.minimum(np.searchsorted(keys, g), len(keys) - 1)
    hit = keys[pos] == g
    pos, qid = pos[hit], qid[hit]
    lens = ptr[pos + 1] - ptr[pos]
    offs = np.repeat(ptr[pos] - np.concatenate([[0], np.cumsum(lens)[:-1]]), lens) + np.arange(lens.sum())
    return np.repeat(qid, lens), owner[offs]


def _phrase(toks):
    return " " + " ".join(toks) + " "


def _gold_texts(rec):
    return {" ".join(tokens(rec["options"][a])) for a in rec["answer"] if a in rec["options"]}


class BenchIndex:
    """The benchmark items, indexed for both matching paths."""

    def __init__(self, benchmarks, n=N, max_df=10, short=SHORT):
        self.n, self.short = n, short
        self.items, self.q, self.opts, self.gold = [], [], [], []
        for name, recs in benchmarks.items():
            for rec in recs:
                self.items.append((name, rec["id"]))
                self.q.append(tokens(rec["question"]))
                self.opts.append([t for t in (tokens(o) for o in rec["options"].values()) if t])
                self.gold.append(_gold_texts(rec))
        self.opt_str = [[" ".join(o) for o in opts] for opts in self.opts]
        odf = Counter(o for opts in self.opt_str for o in set(opts))
        self.rare_opts = [sum(odf[o] <= KEY_DF for o in opts) for opts in self.opt_str]  # yes/no/maybe: none
        count = len(self.items)
        # long path: grams of the question and of each option of >= n tokens, never across them
        segs, seg_item, seg_off, self.ntok = [], [], [], np.zeros(count, dtype=np.int64)
        for b, (q, opts) in enumerate(zip(self.q, self.opts)):
            off = 0
            for x in ([q] + [o for o in opts if len(o) >= n] if len(q) >= short else []):
                segs.append(x), seg_item.append(b), seg_off.append(off)
                off += len(x)
            self.ntok[b] = off
        h, sown, st = _grams(segs, n)
        item = np.array(seg_item, dtype=np.int64)[sown]
        start = np.array(seg_off, dtype=np.int64)[sown] + st
        self.seqs, self.starts = _split(h, item, count), _split(start, item, count)
        keys, _, _, df = _csr(h, item)
        self.boiler = keys[df > max_df]  # df over benchmark items only
        keep = ~np.isin(h, self.boiler)
        self.seqs_clean = _split(h[keep], item[keep], count)
        self.long = _csr(h[keep], item[keep])
        # short path: question bigrams (a one-word question: its word) and option phrases, rare ones only
        parts = [_grams(self.q, 2)[:2], _grams([q if len(q) == 1 else [] for q in self.q], 1)[:2]]
        prefix = [(o[:MAX_OPT], b) for b, opts in enumerate(self.opts) for o in opts]
        for L in range(1, MAX_OPT + 1):
            group = [(p, b) for p, b in prefix if len(p) == L]
            g, ow, _ = _grams([p for p, _ in group], L)
            parts.append((g, np.array([b for _, b in group], dtype=np.int64)[ow]))
        h = np.concatenate([p[0] for p in parts])
        item = np.concatenate([p[1] for p in parts])
        keys, _, _, df = _csr(h, item)
        keep = ~np.isin(h, keys[df > KEY_DF])
        self.short_index = _csr(h[keep], item[keep])
        self.short_nkeys = np.bincount(self.short_index[2], minlength=count)
        self.unindexed = int((self.short_nkeys == 0).sum())


def _coverage(starts, seq, shared, n, ntok):
    hit = starts[np.isin(seq, shared)]
    if ntok == 0 or len(hit) == 0:
        return 0.0
    covered = np.zeros(ntok, dtype=bool)
    for i in hit:
        covered[i:i + n] = True
    return covered.mean()


_STOP = set("a an the of in on at to for by with from and or is are was were be been which what who whom whose "
            "whereas while that this these those it its as not no all except following most least true false "
            "regarding about".split())


def _window_share(q, flat):
    """The largest share of q's distinct content tokens found inside one window of len(q) + 4 tokens
    of flat (function words do not count: "is seen in" says nothing)."""
    qs = set(q) - _STOP or set(q)
    pos = [i for i, t in enumerate(flat) if t in qs]
    best, w = 0, len(q) + 4
    for j, i in enumerate(pos):
        best = max(best, len({flat[k] for k in pos[j:] if k < i + w}))
        if best == len(qs):
            break
    return best / len(qs)


def _short_match(index, b, qtext, own, flat, gold, q_share):
    """Whether a training item copies bench item b by its question words and options: its question
    text as a phrase string, its own options (token strings), all its tokens, its gold option texts."""
    opts = index.opt_str[b]
    found = sum(o in own or f" {o} " in qtext for o in opts)
    if found < min(len(opts), max(2, len(opts) - 1)):
        return False
    if gold and gold <= set(opts) and not gold & index.gold[b]:
        return False  # a minimal pair: the same options, another answer
    # the more of the item is there, the fewer of its question words need be: every option (when they
    # are the item's own, not yes/no/maybe), and the same gold answer among them, is the item reworded
    every = found == len(opts) and len(opts) >= 3 and index.rare_opts[b] >= 2
    need = 0.3 if every and gold & index.gold[b] else 0.5 if every else q_share
    return bool(index.q[b]) and _window_share(index.q[b], flat) >= need


def contamination(records, index, min_coverage=MIN_COVERAGE, q_share=0.6, chunk=2000):
    """For each record: (benchmark item index, score, path) of a copied benchmark item, or None.
    score is the coverage (long path) or 1.0 (short path)."""
    out = [None] * len(records)
    n = index.n
    for lo in range(0, len(records), chunk):
        recs = records[lo:lo + chunk]
        segs = [[tokens(r["question"])] + [tokens(o) for o in r["options"].values()] for r in recs]
        flat = [[t for x in ss for t in x] for ss in segs]
        # long path
        h, ow, _ = _grams(flat, n)
        grams = _split(h, ow, len(recs))
        rid, bid = _lookup(index.long, h, ow)
        for r, b in np.unique(np.stack([rid, bid], 1), axis=0).tolist() if len(rid) else []:
            shared = np.intersect1d(grams[r], index.seqs_clean[b])
            cov = _coverage(index.starts[b], index.seqs[b], shared, n, index.ntok[b])
            if len(flat[r]) >= index.short:  # a long training text that is mostly this bench item
                cov = max(cov, _coverage(np.arange(len(grams[r])), grams[r], shared, n, len(flat[r])))
            if cov >= min_coverage and (out[lo + r] is None or cov > out[lo + r][1]):
                out[lo + r] = (b, float(cov), "long")
        # short path: candidates share >= 2 rare keys (or all of an item's keys)
        parts = [_grams(flat, L)[:2] for L in range(1, MAX_OPT + 1)]
        h = np.concatenate([p[0] for p in parts])
        ow = np.concatenate([p[1] for p in parts])
        order = np.lexsort((h, ow))
        h, ow = h[order], ow[order]
        first = np.ones(len(h), dtype=bool)
        first[1:] = (h[1:] != h[:-1]) | (ow[1:] != ow[:-1])
        rid, bid = _lookup(index.short_index, h[first], ow[first])
        if not len(rid):
            continue
        pairs, counts = np.unique(np.stack([rid, bid], 1), axis=0, return_counts=True)
        need = np.minimum(2, index.short_nkeys[pairs[:, 1]])
        for (r, b) in pairs[counts >= need].tolist():
            if out[lo + r] is not None:
                continue
            own = {" ".join(o) for o in segs[r][1:]}
            if _short_match(index, b, _phrase(segs[r][0]), own, flat[r], _gold_texts(recs[r]), q_share):
                out[lo + r] = (b, 1.0, "short")
    return out


def decontaminate(records, index, min_coverage=MIN_COVERAGE, q_share=0.6, stats=None, dropped=None):
    """Drop records that copy a benchmark item; count per source and benchmark as
    "decontam:<source>:<benchmark>"; dropped records get meta.contaminated_by [bench, id, score, path]."""
    stats = Counter() if stats is None else stats
    records = list(records)
    kept = []
    for rec, m in zip(records, contamination(records, index, min_coverage, q_share)):
        if m is None:
            kept.append(rec)
            continue
        name, bid = index.items[m[0]]
        stats[f"decontam:{rec['source']}:{name}"] += 1
        if dropped is not None:
            dropped.append({**rec, "meta": {**rec["meta"], "drop_reason": "contaminated",
                                            "contaminated_by": [name, bid, round(m[1], 3), m[2]]}})
    return kept


# --- measurement: planted copies of real benchmark items, and clean pools --------------------------

_FILLER = ["usually", "patient", "clinical", "often", "typical", "common", "following", "likely", "main", "best"]


def _edit(q, k, rng):
    """Change k words (CJK: characters) of q: what a careless or deliberate copy does."""
    words = q.split(" ")
    if re.search("[\u4e00-\u9fff]", q):  # Chinese: no spaces
        chars = list(q)
        for i in rng.sample(range(len(chars)), min(k, len(chars))):
            chars[i] = "某"
        return "".join(chars)
    for i in rng.sample(range(len(words)), min(k, len(words))):
        words[i] = rng.choice(_FILLER)
    return " ".join(words)


def _reorder(rec, rng):
    letters = list(rec["options"])
    order = letters[:]
    rng.shuffle(order)
    opts = {chr(65 + i): rec["options"][l] for i, l in enumerate(order)}
    ans = "".join(sorted(chr(65 + order.index(a)) for a in rec["answer"]))
    return opts, ans


def plant(rec, kind, rng, i):
    """A training item copying bench record rec: verbatim | edited | embedded | embedded_all."""
    q, opts, ans = rec["question"], dict(rec["options"]), rec["answer"]
    if kind == "edited":  # two or three words changed (one in a very short question), options reordered
        nt = len(tokens(q))
        q = _edit(q, 1 if nt < 8 else 2 if nt < 20 else 3, rng)
        opts, ans = _reorder(rec, rng)
    elif kind == "embedded":  # inside a longer text, options reordered
        q = ("Case from last week's teaching round, shared by a resident. " + q
             + " Discuss the mechanism, the differential diagnosis and the management in detail.")
        opts, ans = _reorder(rec, rng)
    elif kind == "vignette":  # the case copied with a few words changed, asking something else
        nt = len(tokens(q))
        q = _edit(q, 1 if nt < 8 else 2 if nt < 20 else 3, rng) + " What is the most important next question to ask?"
        opts, ans = {"A": "Travel history", "B": "Family history", "C": "Sexual history", "D": "Diet"}, "A"
    elif kind == "embedded_all":  # question and options written into a passage; the item asks something else
        q = ("Read this practice question and its options. " + q + "\n"
             + "\n".join(f"({k}) {v}" for k, v in rec["options"].items()) + "\nHow hard is this question?")
        opts, ans = {"A": "Easy", "B": "Moderate", "C": "Difficult"}, "B"
    return {**rec, "id": f"planted-{kind}-{i}", "source": "planted", "split": "train", "question": q,
            "options": opts, "answer": ans, "difficulty": None, "meta": {"copy_of": rec["id"]}}


KINDS = ("verbatim", "edited", "embedded", "embedded_all", "vignette")


def planted_set(bench, names, per, seed=0):
    """per items of each named benchmark (long and short questions apart), each copied in every KIND."""
    rng = random.Random(seed)
    out = []
    for name in names:
        recs = bench[name]
        for size, pick in (("short", [r for r in recs if len(tokens(r["question"])) < 13]),
                           ("long", [r for r in recs if len(tokens(r["question"])) >= 13])):
            for j, rec in enumerate(rng.sample(pick, min(per, len(pick)))):
                # a question under SHORT tokens with new options is a new item; a vignette asked anew is not
                for kind in KINDS if len(tokens(rec["question"])) >= SHORT else KINDS[:-1]:
                    p = plant(rec, kind, rng, f"{name}-{size}-{j}")
                    p["meta"].update(kind=kind, size=size, bench=name)
                    out.append(p)
    return out


def _real_overlap(rec, brec):
    """An independent check that a removed clean item really is its benchmark item (or a copy):
    same gold answer text and most of the question's words."""
    a, b = set(tokens(rec["question"])), set(tokens(brec["question"]))
    ga = set(tokens(" ".join(_gold_texts(rec)))) or {"?"}
    gb = set(tokens(" ".join(_gold_texts(brec)))) or {"!"}
    return len(ga & gb) >= 0.5 * len(ga | gb) and len(a & b) >= 0.6 * len(b)


def measure(data_dir, ns=(6, 8, 10, 13), per=25, clean_files=(), seed=0, show=5, coverages=(MIN_COVERAGE,)):
    """Recall on planted copies and removals of clean items, for each gram length: a Markdown table."""
    names = ["medqa", "medmcqa", "pubmedqa", "mmlu_pro_health", "mmlu_pro_biology", "cmexam"]
    bench = {n: load_benchmark(n, data_dir=data_dir, skip_bad=True) for n in names}
    planted = planted_set(bench, ["medqa", "medmcqa", "pubmedqa", "mmlu_pro_health", "cmexam"], per, seed)
    clean = {"medqa train + huatuo demo": convert_source("medqa:train=medqa/medqa_train_small.jsonl", data_dir)
             + convert_source("huatuo:train=huatuogpt_o1_demo/demo_data.json", data_dir)}
    for f in clean_files:
        clean[f] = list(read_jsonl(f, validate=False))
    split = {}  # a benchmark against itself: distinct items sharing stems, options, boilerplate
    for name in ("medmcqa", "medqa", "pubmedqa"):
        half = len(bench[name]) // 2
        split[f"{name} 2nd half vs 1st"] = (bench[name][half:], {name: bench[name][:half]})
    cols = [f"{k} {s}" for s in ("long", "short") for k in (KINDS if s == "long" else KINDS[:-1])]
    rows = []
    for n, cov in [(n, c) for n in ns for c in coverages]:
        index = BenchIndex(bench, n=n)
        found = contamination(planted, index, cov)
        hits = Counter((p["meta"]["kind"], p["meta"]["size"]) for p, m in zip(planted, found) if m)
        total = Counter((p["meta"]["kind"], p["meta"]["size"]) for p in planted)
        row = [str(n), str(cov)] + [f"{hits[tuple(c.split())]}/{total[tuple(c.split())]}" for c in cols]
        misses = [(p["meta"]["bench"], p["meta"]["kind"], p["question"][:90]) for p, m in zip(planted, found) if not m]
        removed = []
        for label, recs in clean.items():
            got = [(r, index, m) for r, m in zip(recs, contamination(recs, index, cov)) if m]
            removed.append((label, got))
        for label, (recs, b) in split.items():
            ix = BenchIndex(b, n=n)
            removed.append((label, [(r, ix, m) for r, m in zip(recs, contamination(recs, ix, cov)) if m]))
        bylookup = {}
        for nm, recs in list(bench.items()):
            for r in recs:
                bylookup[(nm, r["id"])] = r
        for label, got in removed:
            real = sum(_real_overlap(r, bylookup[ix.items[m[0]]]) for r, ix, m in got)
            row.append(f"{len(got)} ({len(got) - real} not real)")
            if show:
                for r, ix, m in [g for g in got if not _real_overlap(g[0], bylookup[g[1].items[g[2][0]]])][:show]:
                    b = bylookup[ix.items[m[0]]]
                    print(f"  n={n} {label}: {r['id']} {m[2]} {m[1]:.2f}\n    train: {r['question'][:150]!r} "
                          f"{list(r['options'].values())[:5]}\n    bench: {b['question'][:150]!r} "
                          f"{list(b['options'].values())[:5]}", file=sys.stderr)
        if show:
            for x in misses[:show]:
                print(f"  n={n} missed: {x}", file=sys.stderr)
        rows.append(row)
    header = ["n", "min cov"] + cols + [lab for lab, _ in removed]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _ints(text):
    """An argparse type: a comma-separated list of positive integers."""
    return [int_at_least(1)(x) for x in text.split(",")]


def _floats(text):
    """An argparse type: a comma-separated list of shares in (0, 1]."""
    return [float_in(0, 1, open_low=True)(x) for x in text.split(",")]


@command("data.decontam")
def main(argv=None):
    from eval.loaders import DATA_DIR
    ap = ArgumentParser(prog="python -m data.decontam",
                        description="Remove training records that copy eval benchmark items, or "
                                    "--measure recall on planted copies vs gram length.")
    ap.add_argument("inp", nargs="?", help="input records JSONL")
    ap.add_argument("out", nargs="?", help="output records JSONL")
    ap.add_argument("--bench", action="append", default=[], metavar="NAME[=PATH]",
                    help="benchmark to check against (repeatable): a name from eval.loaders (NAME=PATH: another "
                         "file of it), or a new NAME=PATH of records JSONL")
    ap.add_argument("--data-dir", default=DATA_DIR)
    ap.add_argument("--n", type=int_at_least(1), default=N, help="gram length for long questions")
    ap.add_argument("--min-coverage", type=float_in(0, 1, open_low=True), default=MIN_COVERAGE)
    ap.add_argument("--dropped", help="write dropped records here")
    ap.add_argument("--measure", action="store_true", help="print the planted-copy table and exit")
    ap.add_argument("--ns", type=_ints, default=[6, 8, 10, 13], help="--measure: gram lengths to try")
    ap.add_argument("--per", type=int_at_least(1), default=25, help="--measure: items per benchmark and size")
    ap.add_argument("--coverages", type=_floats, default=[MIN_COVERAGE], help="--measure: min coverages to try")
    ap.add_argument("--clean", action="append", default=[], help="--measure: more clean records JSONL (e.g. kg/ items)")
    a = ap.parse_args(argv)
    check_outputs(files=[a.out, a.dropped])
    if a.measure:
        print(measure(a.data_dir, a.ns, a.per, a.clean, coverages=a.coverages))
        return
    if not (a.inp and a.out and a.bench):
        ap.error("give IN OUT and at least one --bench (or --measure)")
    bench = load_benches(bench_specs(a.bench, True, a.data_dir), a.data_dir)
    stats, dropped = Counter(), []
    recs = decontaminate(list(read_jsonl(a.inp)), BenchIndex(bench, n=a.n), a.min_coverage, stats=stats,
                         dropped=dropped)
    write_outputs(a, recs, dropped, stats)


if __name__ == "__main__":
    main()
