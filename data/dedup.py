"""Deduplication within and across sources (decontamination against the benchmarks: data/decontam.py).

dedup(records): drops exact duplicates (same normalized question and option set) and near
duplicates (word 3-gram Jaccard >= threshold on question + options), found with MinHash and LSH
banding so it stays near-linear at 100k+ items. Earlier records win, so pass the preferred
source first.

Exact duplicates are keyed on the text with case, spacing and punctuation normalized, but the
symbols that change meaning kept (alpha/beta, arrows, < and >, + and -): "beta-blocker" and
"alpha-blocker", "Na+ > 145" and "Na+ < 145" are different items. Exact duplicates whose gold
answers differ are a labelling conflict nobody can settle by order: all copies go to review
(dropped with reason "conflicting_answers"), none is kept.

    python -m data.dedup in.jsonl out.jsonl --dropped review.jsonl
"""
import re
import unicodedata
import zlib
from collections import Counter, defaultdict

import numpy as np

from data.filter import write_outputs
from eval.records import ArgumentParser, check_outputs, command, float_in, read_jsonl

_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_TOKEN = re.compile(r"[a-z0-9\u00b5\u03b1-\u03c9]+|[" + _CJK + "]")  # Greek letters are words: alpha vs beta
# exact keys also keep the symbols that change meaning: arrows, comparisons, signs
_KEY_TOKEN = re.compile(r"[a-z0-9\u00b5\u03b1-\u03c9]+|[" + _CJK + r"]|[<>=+\-\u2212\u00b1\u2190-\u21ff\u2264\u2265%]")
_MASK64 = (1 << 64) - 1
_rng = np.random.default_rng(20240613)  # fixed: hashes must agree between runs and processes
_MULT = _rng.integers(1, 2**63, size=64, dtype=np.uint64) | np.uint64(1)  # odd multipliers, one per n-gram position


def tokens(text):
    return _TOKEN.findall(unicodedata.normalize("NFKC", text).lower())


def key_tokens(text):
    return _KEY_TOKEN.findall(unicodedata.normalize("NFKC", text).lower().replace("\u2212", "-"))


_token_hash_cache = {}


def token_hashes(toks):
    out = np.empty(len(toks), dtype=np.uint64)
    for i, t in enumerate(toks):
        h = _token_hash_cache.get(t)
        if h is None:
            b = t.encode()
            h = _token_hash_cache[t] = (zlib.crc32(b) << 32) | zlib.crc32(b[::-1] + b"#")
        out[i] = h
    return out


def _mix(h):
    # splitmix64 finalizer so n-gram hashes are spread over all 64 bits
    h = (h ^ (h >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    h = (h ^ (h >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return h ^ (h >> np.uint64(31))


def ngram_hashes(toks, n):
    """Distinct 64-bit hashes of the token n-grams; a text shorter than n is one gram."""
    if not toks:
        return np.zeros(0, dtype=np.uint64)
    th = token_hashes(toks)
    return np.unique(gram_seq(th, min(n, len(th))))


def gram_seq(th, n):
    """Hash of the n-gram starting at each position of token hashes th (in order, with repeats)."""
    with np.errstate(over="ignore"):
        h = np.zeros(max(len(th) - n + 1, 0), dtype=np.uint64)
        for i in range(n):
            h += th[i:len(th) - n + 1 + i] * _MULT[i]
        h += np.uint64(n)  # a 3-token text and a 3-gram of a longer text hash alike; fine
        return _mix(h)


def item_text(rec):
    """Question plus the options in letter order (reordering options makes a new exact key anyway)."""
    return rec["question"] + "\n" + "\n".join(rec["options"].values())


def exact_key(rec):
    opts = sorted(" ".join(key_tokens(o)) for o in rec["options"].values())
    return " ".join(key_tokens(rec["question"])) + " || " + " | ".join(opts)


# --- MinHash + LSH ------------------------------------------------------------------------------

class MinHasher:
    """num_perm = bands * rows; a pair with Jaccard s becomes a candidate with probability
    1 - (1 - s^rows)^bands (16 x 6: 0.5 -> 22%, 0.7 -> 85%, 0.8 -> 99.2%); candidates are then
    checked with the exact Jaccard, so a low threshold costs time, not precision."""

    def __init__(self, bands=16, rows=6, seed=1):
        r = np.random.default_rng(seed)
        self.bands, self.rows = bands, rows
        self.a = r.integers(1, 2**63, size=bands * rows, dtype=np.uint64) | np.uint64(1)
        self.b = r.integers(0, 2**63, size=bands * rows, dtype=np.uint64)

    def signatures(self, gram_sets, chunk=200_000):
        """[len(gram_sets), num_perm] uint32 MinHash signatures, computed in chunks of grams."""
        k = len(self.a)
        out = np.full((len(gram_sets), k), np.iinfo(np.uint32).max, dtype=np.uint32)
        i = 0
        while i < len(gram_sets):
            j, total = i, 0
            while j < len(gram_sets) and (total == 0 or total + len(gram_sets[j]) <= chunk):
                total += len(gram_sets[j])
                j += 1
            sizes = np.array([len(g) for g in gram_sets[i:j]])
            nonempty = sizes > 0
            if nonempty.any():
                g = np.concatenate([gs for gs in gram_sets[i:j] if len(gs)])
                with np.errstate(over="ignore"):
                    v = ((g[:, None] * self.a[None, :] + self.b[None, :]) >> np.uint64(32)).astype(np.uint32)
                starts = np.concatenate([[0], np.cumsum(sizes[nonempty])[:-1]])
                out[i:j][nonempty] = np.minimum.reduceat(v, starts, axis=0)
            i = j
        return out

    def band_keys(self, sig):
        return [sig[b * self.rows:(b + 1) * self.rows].tobytes() + bytes([b]) for b in range(self.bands)]


def jaccard(a, b):
    if len(a) == 0 and len(b) == 0:
        return 1.0
    inter = len(np.intersect1d(a, b, assume_unique=True))
    return inter / (len(a) + len(b) - inter)


def _answer_text(rec):
    return " | ".join(" ".join(key_tokens(rec["options"][a])) for a in rec["answer"] if a in rec["options"])


def dedup(records, threshold=0.8, n=3, stats=None, dropped=None, hasher=None):
    """Keep the first of every exact or near-duplicate group (greedy, in input order).

    Exact: same normalized question and option set (meaning symbols kept, see exact_key); a group
    whose gold answer texts differ goes to review whole ("dedup:conflicting_answers:<source>").
    Near: MinHash/LSH candidates on question + options, confirmed when the word 3-gram Jaccard is
    >= threshold for the whole item AND for the question alone, AND the gold option reads the same.
    The last two keep minimal pairs that differ in the one word that matters ("first-class" vs
    "second-class" psychotropics, CMExam's short questions sharing one option list), which share
    most of their text but not the answer. Counts go to stats as "dedup:exact:<source>" /
    "dedup:near:<source>", cross-source drops also as "dedup:cross:<dropped source><-<kept source>";
    dropped records get meta.dup_of (meta.conflicts_with for the review group)."""
    stats = Counter() if stats is None else stats
    hasher = hasher or MinHasher()
    records = list(records)
    keys = [exact_key(r) for r in records]
    answers = defaultdict(set)
    for k, r in zip(keys, records):
        answers[k].add(_answer_text(r))
    conflict = {k for k, a in answers.items() if len(a) > 1}
    members = defaultdict(list)
    for k, r in zip(keys, records):
        if k in conflict:
            members[k].append([r["source"], r["id"]])
    keep = [i for i, k in enumerate(keys) if k not in conflict]
    for i, k in enumerate(keys):
        if k in conflict:
            rec = records[i]
            stats[f"dedup:conflicting_answers:{rec['source']}"] += 1
            if dropped is not None:
                others = [m for m in members[k] if m != [rec["source"], rec["id"]]]
                dropped.append({**rec, "meta": {**rec["meta"], "drop_reason": "conflicting_answers",
                                                "conflicts_with": others}})
    records, keys = [records[i] for i in keep], [keys[i] for i in keep]
    grams = [ngram_hashes(key_tokens(item_text(r)), n) for r in records]  # "K+" and "K-" are not near-duplicates
    sigs = hasher.signatures(grams)
    seen, buckets, kept = {}, defaultdict(list), []

    def near(i, j):
        if _answer_text(records[i]) != _answer_text(records[j]) or jaccard(grams[i], grams[j]) < threshold:
            return False
        qi, qj = (ngram_hashes(key_tokens(records[k]["question"]), n) for k in (i, j))
        return jaccard(qi, qj) >= threshold

    for i, rec in enumerate(records):
        twin, kind = seen.get(keys[i]), "exact"
        if twin is None:
            kind = "near"
            cands = {j for bk in hasher.band_keys(sigs[i]) for j in buckets.get(bk, ())}
            twin = next((j for j in sorted(cands) if near(i, j)), None)
        if twin is not None:
            other = records[twin]
            stats[f"dedup:{kind}:{rec['source']}"] += 1
            if other["source"] != rec["source"]:
                stats[f"dedup:cross:{rec['source']}<-{other['source']}"] += 1
            if dropped is not None:
                dropped.append({**rec, "meta": {**rec["meta"], "drop_reason": f"{kind}_duplicate",
                                                "dup_of": [other["source"], other["id"]]}})
            continue
        seen[keys[i]] = i
        for bk in hasher.band_keys(sigs[i]):
            buckets[bk].append(i)
        kept.append(rec)
    return kept


@command("data.dedup")
def main(argv=None):
    ap = ArgumentParser(prog="python -m data.dedup",
                        description="Drop exact and near-duplicate records (MinHash + LSH); exact "
                                    "duplicates with different answers go to --dropped for review.")
    ap.add_argument("inp", help="input records JSONL (earlier lines win ties)")
    ap.add_argument("out", help="output records JSONL")
    ap.add_argument("--threshold", type=float_in(0, 1, open_low=True), default=0.8,
                    help="near-duplicate Jaccard threshold")
    ap.add_argument("--dropped", help="write dropped records here")
    ap.add_argument("--skip-bad", action="store_true", help="count and skip malformed input lines")
    a = ap.parse_args(argv)
    check_outputs(files=[a.out, a.dropped])
    stats, dropped = Counter(), []
    recs = dedup(read_jsonl(a.inp, skip_bad=a.skip_bad, stats=stats), a.threshold, stats=stats, dropped=dropped)
    write_outputs(a, recs, dropped, stats)


if __name__ == "__main__":
    main()
