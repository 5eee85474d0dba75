"""Deduplication within and across sources, and decontamination against the eval benchmarks.

dedup(records): drops exact duplicates (same normalized question and option set) and near
duplicates (word 3-gram Jaccard >= threshold on question + options), found with MinHash and LSH
banding so it stays near-linear at 100k+ items. Earlier records win, so pass the preferred
source first.

decontaminate(records, BenchIndex(benchmarks)): drops training items that share 13-grams of
question text with an eval item (the GPT-3 / Llama convention). Two guards keep unrelated items
that share exam boilerplate ("Which of the following is the most appropriate next step in
management?"): 13-grams found in more than `max_df` items (benchmarks and training pool together,
as GPT-3 ignored 13-grams frequent in its training data) are ignored, and an item counts as
contaminated only if the tokens under shared 13-grams cover at least `min_coverage` of one of the
two texts (0.7: a copy with an edit every ~25 words still covers ~0.9; unrelated MedQA items that
share a vitals line and a closing question stay under 0.5). A question shorter than 13 tokens is one
gram of question + sorted options. Chinese has no spaces, so each CJK character is one token.

    python -m data.dedup in.jsonl out.jsonl --bench medqa=test.jsonl ...   (see --help)
"""
import argparse
import re
import unicodedata
import zlib
from collections import Counter, defaultdict

import numpy as np

from eval.records import read_jsonl, write_jsonl

_TOKEN = re.compile(r"[a-z0-9]+|[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_MASK64 = (1 << 64) - 1
_rng = np.random.default_rng(20240613)  # fixed: hashes must agree between runs and processes
_MULT = _rng.integers(1, 2**63, size=64, dtype=np.uint64) | np.uint64(1)  # odd multipliers, one per n-gram position


def tokens(text):
    return _TOKEN.findall(unicodedata.normalize("NFKC", text).lower())


_token_hash_cache = {}


def _token_hashes(toks):
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
    th = _token_hashes(toks)
    if len(th) < n:
        n = len(th)
    with np.errstate(over="ignore"):
        h = np.zeros(len(th) - n + 1, dtype=np.uint64)
        for i in range(n):
            h += th[i:len(th) - n + 1 + i] * _MULT[i]
        h += np.uint64(n)  # a 3-token text and a 3-gram of a longer text hash alike; fine
        return np.unique(_mix(h))


def question_text(rec):
    return rec["question"]


def item_text(rec):
    """Question plus the options in letter order (reordering options makes a new exact key anyway)."""
    return rec["question"] + "\n" + "\n".join(rec["options"].values())


def exact_key(rec):
    opts = sorted(" ".join(tokens(o)) for o in rec["options"].values())
    return " ".join(tokens(rec["question"])) + " || " + " | ".join(opts)


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
    return " | ".join(" ".join(tokens(rec["options"][a])) for a in rec["answer"] if a in rec["options"])


def dedup(records, threshold=0.8, n=3, stats=None, dropped=None, hasher=None):
    """Keep the first of every exact or near-duplicate group (greedy, in input order).

    Exact: same normalized question and option set. Near: MinHash/LSH candidates on question +
    options, confirmed when the word 3-gram Jaccard is >= threshold for the whole item AND for the
    question alone, AND the gold option reads the same. The last two keep minimal pairs that
    differ in the one word that matters ("first-class" vs "second-class" psychotropics, CMExam's
    short questions sharing one option list), which share most of their text but not the answer.
    Counts go to stats as "dedup:exact:<source>" / "dedup:near:<source>", cross-source drops also
    as "dedup:cross:<dropped source><-<kept source>"; dropped records get meta.dup_of."""
    stats = Counter() if stats is None else stats
    hasher = hasher or MinHasher()
    records = list(records)
    grams = [ngram_hashes(tokens(item_text(r)), n) for r in records]
    sigs = hasher.signatures(grams)
    seen, buckets, kept = {}, defaultdict(list), []

    def near(i, j):
        if _answer_text(records[i]) != _answer_text(records[j]) or jaccard(grams[i], grams[j]) < threshold:
            return False
        qi, qj = (ngram_hashes(tokens(records[k]["question"]), n) for k in (i, j))
        return jaccard(qi, qj) >= threshold

    for i, rec in enumerate(records):
        key = exact_key(rec)
        twin, kind = seen.get(key), "exact"
        if twin is None:
            kind = "near"
            cands = {j for bk in hasher.band_keys(sigs[i]) for j in buckets.get(bk, ())}
            twin = next((j for j in sorted(cands) if near(i, j)), None)
        if twin is not None:
            other = records[twin]
            stats[f"dedup:{kind}:{rec['source']}"] += 1
            if kind == "exact" and other["answer"] != rec["answer"]:
                stats[f"dedup:exact_conflicting_answer:{rec['source']}"] += 1
            if other["source"] != rec["source"]:
                stats[f"dedup:cross:{rec['source']}<-{other['source']}"] += 1
            if dropped is not None:
                dropped.append({**rec, "meta": {**rec["meta"], "drop_reason": f"{kind}_duplicate",
                                                "dup_of": [other["source"], other["id"]]}})
            continue
        seen[key] = i
        for bk in hasher.band_keys(sigs[i]):
            buckets[bk].append(i)
        kept.append(rec)
    return kept


# --- decontamination ----------------------------------------------------------------------------

def decontam_grams(rec, n=13):
    """(gram hash sequence, token count) of the question. A question shorter than n tokens is too
    short for 13-grams: it becomes one gram of the question plus its sorted options, so it matches
    only the same short question with the same options (CMExam and MedMCQA share option lists
    across short questions, and "Skeletal muscles:" alone says nothing)."""
    toks = tokens(question_text(rec))
    if len(toks) >= n:
        return _gram_seq(toks, n), len(toks)
    key = toks + ["||"] + sorted(" ".join(tokens(o)) for o in rec["options"].values())
    return ngram_hashes(key, len(key)), 1


def _gram_seq(toks, n):
    """Hash of the n-gram starting at each position (in order, with repeats), for coverage."""
    th = _token_hashes(toks)
    with np.errstate(over="ignore"):
        h = np.zeros(len(th) - n + 1, dtype=np.uint64)
        for i in range(n):
            h += th[i:len(th) - n + 1 + i] * _MULT[i]
        h += np.uint64(n)
        return _mix(h)


def _coverage(seq, shared, n, ntok):
    """Fraction of a text's tokens inside at least one of its n-grams that are in `shared`."""
    hit = np.flatnonzero(np.isin(seq, shared))
    if ntok < n:  # a short item is one gram
        return 1.0 if len(hit) else 0.0
    covered = np.zeros(ntok, dtype=bool)
    for i in hit:
        covered[i:i + n] = True
    return covered.mean()


class BenchIndex:
    """The eval benchmarks' 13-grams, as an inverted index (gram hash -> benchmark items, CSR)."""

    def __init__(self, benchmarks, n=13):
        self.n = n
        self.items, self.seqs, self.ntok = [], [], []  # (benchmark, id); gram sequence; token count
        for name, recs in benchmarks.items():
            for rec in recs:
                seq, ntok = decontam_grams(rec, n)
                self.items.append((name, rec["id"]))
                self.seqs.append(seq)
                self.ntok.append(ntok)
        uniq = [np.unique(s) for s in self.seqs]
        h = np.concatenate(uniq) if uniq else np.zeros(0, np.uint64)
        owner = np.repeat(np.arange(len(uniq)), [len(u) for u in uniq])
        order = np.argsort(h, kind="stable")
        h, self.owner = h[order], owner[order]
        self.hashes, start, self.df = np.unique(h, return_index=True, return_counts=True)
        self.ptr = np.append(start, len(h))

    def candidates(self, grams):
        """(record index, benchmark item index) pairs sharing at least one gram; grams[i] is record
        i's distinct gram hashes with boilerplate already removed."""
        sizes = np.array([len(g) for g in grams], dtype=np.int64)
        if len(self.hashes) == 0 or sizes.sum() == 0:
            return np.zeros((0, 2), dtype=np.int64)
        g = np.concatenate(grams)
        rid = np.repeat(np.arange(len(grams)), sizes)
        pos = np.minimum(np.searchsorted(self.hashes, g), len(self.hashes) - 1)
        hit = self.hashes[pos] == g
        pos, rid = pos[hit], rid[hit]
        lens = self.ptr[pos + 1] - self.ptr[pos]
        # every hit expands to all benchmark items that own the gram
        offs = np.repeat(self.ptr[pos] - np.concatenate([[0], np.cumsum(lens)[:-1]]), lens) + np.arange(lens.sum())
        pairs = np.stack([np.repeat(rid, lens), self.owner[offs]], axis=1)
        return np.unique(pairs, axis=0)


def contamination(records, index, max_df=10):
    """For each record, its worst overlap with any benchmark item: (benchmark item index, coverage)
    or None. coverage = the larger of the two texts' fractions of tokens covered by shared 13-grams.
    A 13-gram found in more than max_df items (benchmarks and these records together) is exam
    boilerplate and is ignored, as GPT-3 ignored 13-grams frequent in its training set."""
    n = index.n
    seqs, ntoks = zip(*[decontam_grams(r, n) for r in records]) if records else ((), ())
    uniq = [np.unique(s) for s in seqs]
    allg = np.concatenate(uniq) if uniq else np.zeros(0, np.uint64)
    tr_hash, tr_df = np.unique(allg, return_counts=True)
    # document frequency over both sides; boilerplate grams are dropped before matching
    df = tr_df.copy()
    pos = np.minimum(np.searchsorted(index.hashes, tr_hash), max(len(index.hashes) - 1, 0))
    if len(index.hashes):
        inb = index.hashes[pos] == tr_hash
        df[inb] += index.df[pos[inb]]
    common = tr_hash[df > max_df]
    clean = [u[~np.isin(u, common)] for u in uniq]
    out = [None] * len(records)
    for r, b in index.candidates(clean).tolist():
        shared = np.intersect1d(clean[r], index.seqs[b])
        cov = max(_coverage(seqs[r], shared, n, ntoks[r]), _coverage(index.seqs[b], shared, n, index.ntok[b]))
        if out[r] is None or cov > out[r][1]:
            out[r] = (b, cov)
    return out


def decontaminate(records, index, min_coverage=0.7, max_df=10, stats=None, dropped=None):
    """Drop records whose 13-gram coverage against some benchmark item is >= min_coverage; count per
    source and benchmark as "decontam:<source>:<benchmark>"; dropped records get meta.contaminated_by."""
    stats = Counter() if stats is None else stats
    records = list(records)
    kept = []
    for rec, m in zip(records, contamination(records, index, max_df)):
        if m is None or m[1] < min_coverage:
            kept.append(rec)
            continue
        name, bid = index.items[m[0]]
        stats[f"decontam:{rec['source']}:{name}"] += 1
        if dropped is not None:
            dropped.append({**rec, "meta": {**rec["meta"], "drop_reason": "contaminated",
                                            "contaminated_by": [name, bid, round(float(m[1]), 3)]}})
    return kept


def main():
    ap = argparse.ArgumentParser(description="Dedup records (exact + MinHash near-duplicates) and remove items "
                                             "that overlap eval benchmarks by 13-grams.")
    ap.add_argument("inp", help="input records JSONL (earlier lines win ties)")
    ap.add_argument("out", help="output records JSONL")
    ap.add_argument("--bench", action="append", default=[], metavar="NAME=RECORDS.jsonl",
                    help="benchmark records to decontaminate against (repeatable)")
    ap.add_argument("--threshold", type=float, default=0.8, help="near-duplicate Jaccard threshold")
    ap.add_argument("--min-coverage", type=float, default=0.7,
                    help="contamination: fraction of tokens covered by 13-grams shared with one eval item")
    ap.add_argument("--max-df", type=int, default=10, help="ignore 13-grams found in more than this many items")
    ap.add_argument("--dropped", help="write dropped records here")
    ap.add_argument("--skip-bad", action="store_true", help="count and skip malformed input lines")
    a = ap.parse_args()
    stats, dropped = Counter(), []
    recs = dedup(read_jsonl(a.inp, skip_bad=a.skip_bad, stats=stats), a.threshold, stats=stats, dropped=dropped)
    if a.bench:
        bench = {b.split("=", 1)[0]: list(read_jsonl(b.split("=", 1)[1])) for b in a.bench}
        recs = decontaminate(recs, BenchIndex(bench), a.min_coverage, a.max_df, stats, dropped)
    write_jsonl(a.out, recs)
    if a.dropped:
        write_jsonl(a.dropped, dropped)
    for k, v in sorted(stats.items()):
        print(f"{k}\t{v}")


if __name__ == "__main__":
    main()
