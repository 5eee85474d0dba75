"""Build one typed medical knowledge graph from the sources in kg-sources, and load it back.

    python -m kg.build --sources hpo,do,drugcentral,hsdn,wikidata --out out/kg
    python -m kg.build --sources hpo,do,drugcentral,hsdn,wikidata,sider --out out/kg-nc   # SIDER: non-commercial

Readers (kg/readers.py) state nodes, edges and xrefs; the Builder merges entities that the ontology
xrefs (or, for label-only sources, exact normalized names) say are the same, resolves references,
and writes a compact graph: nodes.json (id, name, type per node) + edges.npz (src, dst, rel,
frequency, provenance bitmask, attribute) + meta.json + stats.md. Graph.load reads it in about a second.

Every source file that its folder's MANIFEST.md lists must match the sha256 there (a copy cut at a line
boundary otherwise parses cleanly into a smaller graph); HPO annotations to unknown HPO ids fail above 1%.
--wikidata-diseases FILE (repeatable) adds a disease file in the Wikidata schema to the shared one. The graph
is written to a temporary folder and swapped in, so a killed build leaves the previous graph whole.
"""
import argparse
import functools
import json
import math
import os
import re
import shutil
import sys
import time
import unicodedata
import zipfile
from collections import Counter, defaultdict

import numpy as np

from eval.records import ArgumentParser, check_outputs, command, read_json
from kg.readers import FILES, NONCOMMERCIAL, READERS, Ref, SourceError, verify

TYPES = ["disease", "phenotype", "lab_finding", "imaging_finding", "inheritance", "onset", "drug", "drug_class",
         "gene", "anatomy", "agent"]
RELS = ["subclass_of", "has_phenotype", "inheritance", "onset", "associated_gene", "indicated_for", "targets",
        "in_class", "side_effect", "caused_by", "located_in", "transmitted_by"]
SOURCES = ["hpo", "do", "drugcentral", "sider", "hsdn", "wikidata", "hetionet"]
NAME_RANK = ["do", "drugcentral", "hpo", "hsdn", "sider", "wikidata", "hetionet"]  # whose label a merged entity shows
FINDINGS = ("phenotype", "lab_finding", "imaging_finding")
# canonical id of a merged entity: the first prefix in this order among its members
ID_PRIORITY = ["DOID", "ORPHA", "OMIM", "DECIPHER", "HP", "DB", "NCBIGene", "UBERON", "UMLS", "MESH", "WD", "name"]
DEFAULT_SOURCES = "hpo,do,drugcentral,hsdn,wikidata"
_NON_ALNUM = re.compile(r"[^a-z0-9]+")
# words that do not tell two disease labels apart ("Macular edema, cystoid" = "cystoid macular edema")
GENERIC = {"of", "the", "and", "with", "or", "in", "to", "a", "type", "disease", "syndrome", "disorder", "due",
           "form", "familial", "hereditary", "congenital", "isolated", "primary", "autosomal", "dominant", "recessive",
           "x", "linked", "susceptibility"}


@functools.lru_cache(maxsize=1 << 20)
def norm(name):
    """Matching key for a label: case, accents, apostrophes and punctuation do not matter."""
    s = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode().lower()
    s = s.replace("'", "").replace("\u2019", "")
    return _NON_ALNUM.sub(" ", s).strip()


def display(name):
    """Display form of a label: single spaces; an ALL-CAPS label of several words (old OMIM titles) in
    sentence case; a one-word acronym ("CHANDS", "DDOST-CDG") stays."""
    s = re.sub(r"\s+", " ", name).strip()
    if len(s) > 4 and s.upper() == s and any(c.isalpha() for c in s) and " " in s:
        s = s.capitalize()
    return s


def _prio(key):
    pre = "DB" if re.match(r"DB\d+$", key) else key.split(":")[0]
    return ID_PRIORITY.index(pre) if pre in ID_PRIORITY else len(ID_PRIORITY)


class Builder:
    def __init__(self):
        self.nodes = {}      # key -> dict(type, names [(source rank, name)], syn, src bits, rare)
        self.parent = {}     # union-find over keys
        self.aliases = defaultdict(list)
        self.edges = []      # (src, rel, dst, source, freq, attr, optional)
        self.by_name = []    # keys to merge with an existing same-type entity of the same name
        self.hints = {}
        self.dropped = Counter()
        self.checked_same = []  # (foreign id, DOID) xref identities to confirm by label before merging

    # ------------------------------------------------ what readers call
    def node(self, key, type, name, source, synonyms=(), rare=False):
        n = self.nodes.get(key)
        if n is None:
            n = self.nodes[key] = {"type": type, "names": [], "syn": set(), "src": 0, "rare": False}
        if name:  # gene symbols keep their case; other labels get the display form
            n["names"].append((NAME_RANK.index(source), name.strip() if type == "gene" else display(name)))
        n["syn"].update(synonyms)
        n["src"] |= 1 << SOURCES.index(source)
        n["rare"] |= rare

    def edge(self, src, rel, dst, source, freq=math.nan, attr=None, optional=False):
        self.edges.append((src, RELS.index(rel), dst, SOURCES.index(source), freq, attr, optional))

    def same(self, a, b, source=None, check_names=False):
        if check_names:
            self.checked_same.append((a, b, source))
            return
        ra, rb = self._find(a), self._find(b)
        if ra != rb:
            self.parent[ra] = rb

    def alias(self, alias, key):
        self.aliases[alias].append(key)

    def same_by_name(self, key):
        self.by_name.append(key)

    def name_hint(self, key, name):
        self.hints[key] = name

    def _find(self, k):
        root = k
        while self.parent.get(root, root) != root:
            root = self.parent[root]
        while k != root:  # path compression
            self.parent[k], k = root, self.parent.get(k, k)
        return root

    # ------------------------------------------------ merging and resolution
    def _words(self, key):
        n = self.nodes[key]
        return [set(norm(x).split()) - GENERIC for x in [nm for _, nm in n["names"]] + sorted(n["syn"])]

    def _merge_checked(self):
        """An ontology xref is an identity only when the two labels name the same disease: DO maps some
        common diseases to an OMIM entry for a hereditary form, and some ids to a different disease.
        A refused identity becomes 'the foreign entry is a kind of the DOID disease'."""
        for a, b, source in self.checked_same:
            if a not in self.nodes or b not in self.nodes or not self.nodes[a]["names"]:
                self.same(a, b)
                continue
            agree = any(x and y and len(x & y) >= 0.5 * max(len(x), len(y)) and (x & y)
                        for x in self._words(a) for y in self._words(b))
            if agree:
                self.same(a, b)
            else:
                self.dropped["xref identity refused (labels differ)"] += 1
                self.edge(a, "subclass_of", b, source)

    def _merge_by_name(self):
        later = set(self.by_name)
        index = defaultdict(set)
        for key, n in self.nodes.items():
            if key in later:
                continue
            for _, nm in n["names"]:
                index[(n["type"], norm(nm))].add(self._find(key))
            for s in n["syn"]:
                index[(n["type"], norm(s))].add(self._find(key))
        for key in self.by_name:
            n = self.nodes[key]
            hits = set()
            for _, nm in n["names"]:
                hits |= index.get((n["type"], norm(nm)), set())
            if len(hits) == 1:  # an ambiguous label merges with nothing
                self.same(key, next(iter(hits)))

    def finish(self):
        """Merge, resolve references and return the graph as plain arrays (see Graph)."""
        self._merge_checked()
        self._merge_by_name()
        groups = defaultdict(list)
        for key in self.nodes:
            groups[self._find(key)].append(key)
        ids, names, types, rare, srcs, xrefs, idx = [], [], [], [], [], {}, {}
        for members in groups.values():
            members.sort(key=lambda k: (_prio(k), k))
            canon = members[0]
            ns = [nm for k in members for nm in self.nodes[k]["names"]]
            name = min(ns)[1] if ns else self.hints.get(canon, canon)
            i = len(ids)
            for k in members:
                idx[k] = i
            ids.append(canon)
            names.append(name)
            types.append(TYPES.index(self.nodes[canon]["type"]))
            # rarity from a rare-disease source: DO's rare slim decides for a DOID, else an Orphanet id
            doids = [k for k in members if k.startswith("DOID:")]
            rare.append(any(self.nodes[k]["rare"] for k in (doids or members)))
            srcs.append(int(np.bitwise_or.reduce([self.nodes[k]["src"] for k in members])))
            if len(members) > 1:
                xrefs[canon] = members[1:]
        for alias, keys in self.aliases.items():  # alias -> node ids of any type
            self.aliases[alias] = sorted({idx[k] for k in keys if k in idx})
        name_index = defaultdict(list)
        for key, n in self.nodes.items():
            for nm in [x for _, x in n["names"]] + sorted(n["syn"]):
                lst = name_index[norm(nm)]
                if idx[key] not in lst:
                    lst.append(idx[key])
        type_of = lambda i: TYPES[types[i]]

        def resolve(end):
            if isinstance(end, str):
                if end in idx:
                    return idx[end]
                root = self._find(end)  # e.g. an OMIM id merged into a DOID that has no OMIM node itself
                return next((idx[k] for k in groups.get(root, [])), None)
            cands = []
            if end.kind == "id":
                cands = list(self.aliases.get(end.value, []))
                if end.value in idx:
                    cands.append(idx[end.value])
            label = end.value if end.kind == "name" else end.label
            for t in end.types:
                hit = next((i for i in cands if type_of(i) == t), None)
                if hit is None and label:
                    hit = next((i for i in name_index.get(norm(label), []) if type_of(i) == t), None)
                if hit is not None:
                    return hit
            if not end.fallback or not label or not norm(label):
                return None
            key = end.value if end.kind == "id" else f"name:{end.fallback}:{norm(label)}"
            if key not in idx:  # a new entity only this source knows
                idx[key] = len(ids)
                ids.append(key)
                names.append(display(label))
                types.append(TYPES.index(end.fallback))
                rare.append(False)
                srcs.append(0)
                name_index[norm(label)].append(idx[key])
            return idx[key]

        merged = {}
        attrs = [None]
        attr_id = {None: 0}
        for s, r, d, src, freq, attr, optional in self.edges:
            si, di = resolve(s), resolve(d)
            if si is None or di is None:
                self.dropped["optional" if optional else f"unresolved {RELS[r]}"] += 1
                continue
            if si == di:
                self.dropped["self loop"] += 1
                continue
            srcs[si] |= 1 << src
            srcs[di] |= 1 << src
            if attr not in attr_id:
                attr_id[attr] = len(attrs)
                attrs.append(attr)
            k = (si, r, di)
            if k in merged:
                p, f, a = merged[k]
                f = f if math.isnan(freq) else (freq if math.isnan(f) else max(f, freq))
                merged[k] = (p | 1 << src, f, a or attr_id[attr])
            else:
                merged[k] = (1 << src, freq, attr_id[attr])
        keys = np.array(list(merged.keys()), dtype=np.int32).reshape(-1, 3)
        vals = list(merged.values())
        arrays = {"src": keys[:, 0], "rel": keys[:, 1].astype(np.int8), "dst": keys[:, 2],
                  "prov": np.array([v[0] for v in vals], dtype=np.uint8),
                  "freq": np.array([v[1] for v in vals], dtype=np.float32),
                  "attr": np.array([v[2] for v in vals], dtype=np.int16)}
        nodes = {"ids": ids, "names": names, "types": types, "rare": rare, "sources": srcs, "xrefs": xrefs}
        return nodes, arrays, {"attrs": attrs, "dropped": dict(self.dropped)}


def build(root, sources, limit=None, hpo_diseases=None, extra=None):
    """Run the named readers over kg-sources `root`; return a Graph. `limit` reads only the first rows
    of each file and `hpo_diseases` keeps only those HPO diseases (small graphs for tests);
    `extra` maps a reader name to keyword arguments (e.g. wikidata's extra_diseases). Every source file
    a folder's MANIFEST.md lists must match its sha256 there."""
    b = Builder()
    for s in sources:
        if s not in READERS:
            raise SourceError(f"unknown source {s!r}; choose from {sorted(READERS)}")
    unchecked = verify(root, [f for s in sources for f in FILES[s]])
    for s in sources:
        kw = dict((extra or {}).get(s, {}))
        if s == "hpo" and hpo_diseases is not None:
            kw["diseases"] = set(hpo_diseases)
        READERS[s](root, b, limit=limit, **kw)
    nodes, arrays, info = b.finish()
    info["sources"] = list(sources)
    info["unverified_files"] = unchecked
    return Graph(nodes, arrays, info)


class Graph:
    """The graph in memory: node table + edge arrays, with per-(node, relation) CSR indexes both ways."""

    def __init__(self, nodes, arrays, info):
        self.ids, self.names = nodes["ids"], nodes["names"]
        self.type = np.asarray(nodes["types"], dtype=np.int8)
        self.rare = np.asarray(nodes["rare"], dtype=bool)
        self.node_sources = np.asarray(nodes["sources"], dtype=np.uint8)
        self.xrefs = nodes.get("xrefs", {})
        self.src, self.dst, self.rel = arrays["src"], arrays["dst"], arrays["rel"]
        self.freq, self.prov, self.attr = arrays["freq"], arrays["prov"], arrays["attr"]
        self.info = info
        self.attrs = info["attrs"]
        self.index = {k: i for i, k in enumerate(self.ids)}
        for canon, members in self.xrefs.items():
            for m in members:
                self.index.setdefault(m, self.index[canon])
        n, r = len(self.ids), len(RELS)
        self.out_order, self.out_off = self._csr(self.src.astype(np.int64) * r + self.rel, n * r)
        self.in_order, self.in_off = self._csr(self.dst.astype(np.int64) * r + self.rel, n * r)
        self.degree = np.bincount(self.src, minlength=n) + np.bincount(self.dst, minlength=n)

    @staticmethod
    def _csr(keys, size):
        order = np.argsort(keys, kind="stable")
        off = np.zeros(size + 1, dtype=np.int64)
        np.cumsum(np.bincount(keys, minlength=size), out=off[1:])
        return order, off

    def out_edges(self, node, rel):
        k = node * len(RELS) + RELS.index(rel)
        return self.out_order[self.out_off[k]:self.out_off[k + 1]]

    def in_edges(self, node, rel):
        k = node * len(RELS) + RELS.index(rel)
        return self.in_order[self.in_off[k]:self.in_off[k + 1]]

    def out(self, node, rel):
        return self.dst[self.out_edges(node, rel)]

    def inn(self, node, rel):
        return self.src[self.in_edges(node, rel)]

    def type_name(self, node):
        return TYPES[self.type[node]]

    def of_type(self, *types):
        return np.flatnonzero(np.isin(self.type, [TYPES.index(t) for t in types]))

    def provenance(self, e):
        return [s for i, s in enumerate(SOURCES) if self.prov[e] >> i & 1]

    def find_edge(self, s, rel, d):
        es = self.out_edges(s, rel)
        hit = es[self.dst[es] == d]
        return int(hit[0]) if len(hit) else None

    def lookup(self, name_or_id, type=None):
        """Node by id (any merged xref id works) or by exact normalized name."""
        if name_or_id in self.index:
            return self.index[name_or_id]
        key = norm(name_or_id)
        for i, nm in enumerate(self.names):
            if norm(nm) == key and (type is None or self.type_name(i) == type):
                return i
        return None

    # ------------------------------------------------ storage
    def save(self, out):
        """Write into a temporary folder beside `out`, then swap it in: a kill leaves the old graph or the
        new one, never a mix of the two."""
        out = os.path.abspath(out)
        tmp, old = f"{out}.tmp-{os.getpid()}", f"{out}.old-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        self._write(tmp)
        if os.path.exists(out):
            os.rename(out, old)
        os.rename(tmp, out)
        shutil.rmtree(old, ignore_errors=True)

    def _write(self, out):
        os.makedirs(out)
        with open(os.path.join(out, "nodes.json"), "w") as f:
            json.dump({"ids": self.ids, "names": self.names, "types": self.type.tolist(), "rare": self.rare.tolist(),
                       "sources": self.node_sources.tolist(), "xrefs": self.xrefs}, f)
        np.savez(os.path.join(out, "edges.npz"), src=self.src, dst=self.dst, rel=self.rel, freq=self.freq,
                 prov=self.prov, attr=self.attr)
        with open(os.path.join(out, "meta.json"), "w") as f:
            json.dump({**self.info, "types": TYPES, "rels": RELS, "source_bits": SOURCES}, f, indent=1)
        with open(os.path.join(out, "stats.md"), "w") as f:
            f.write(self.stats_markdown())

    @classmethod
    def load(cls, path):
        for name in ("nodes.json", "edges.npz", "meta.json"):
            if not os.path.isfile(os.path.join(path, name)):
                raise SourceError(f"{os.path.join(path, name)}: not found; build the graph first (python -m kg.build)")
        def read(name, fn):
            try:
                return fn(os.path.join(path, name))
            except (ValueError, OSError, EOFError, KeyError, zipfile.BadZipFile) as e:
                raise SourceError(f"{os.path.join(path, name)}: unreadable ({type(e).__name__}: {e}); "
                                  f"rebuild the graph") from None

        def npz(p):
            with np.load(p) as z:
                return {k: z[k] for k in ("src", "dst", "rel", "freq", "prov", "attr")}

        info = read("meta.json", read_json)
        if info.get("types") != TYPES or info.get("rels") != RELS:
            raise SourceError(f"{path}/meta.json: built by a different kg version (types/relations differ); rebuild")
        nodes = read("nodes.json", read_json)
        arrays = read("edges.npz", npz)
        n = len(nodes.get("ids", []))
        if len(arrays["src"]) and max(arrays["src"].max(), arrays["dst"].max()) >= n:
            raise SourceError(f"{path}/edges.npz: edges name nodes beyond the {n:,} in nodes.json (files from "
                              f"different builds); rebuild the graph")
        return cls(nodes, arrays, info)

    # ------------------------------------------------ report
    def counts(self):
        nt = Counter(TYPES[t] for t in self.type)
        et = Counter(RELS[r] for r in self.rel)
        return dict(nt), dict(et)

    def stats_markdown(self):
        nt, et = self.counts()
        lines = [f"# Knowledge graph: {len(self.ids):,} entities, {len(self.src):,} edges", "",
                 f"Sources: {', '.join(self.info.get('sources', []))}", "",
                 "| entity type | count | rare-flagged |", "|---|---:|---:|"]
        for t in TYPES:
            if nt.get(t):
                rare = int(self.rare[self.type == TYPES.index(t)].sum())
                lines.append(f"| {t} | {nt[t]:,} | {rare:,} |")
        lines += ["", "| relation | edges | " + " | ".join(SOURCES) + " |", "|---|---:|" + "---:|" * len(SOURCES)]
        for ri, r in enumerate(RELS):
            if et.get(r):
                p = self.prov[self.rel == ri]
                per = [f"{int(((p >> i) & 1).sum()):,}" for i in range(len(SOURCES))]
                lines.append(f"| {r} | {et[r]:,} | " + " | ".join(per) + " |")
        multi = int(sum(1 for p in self.node_sources if bin(int(p)).count("1") > 1))
        lines += ["", f"Entities merged from more than one id: {len(self.xrefs):,}; "
                      f"entities with edges from more than one source: {multi:,}."]
        if self.info.get("dropped"):
            lines += ["", "Edges not kept: " + ", ".join(f"{k} {v:,}" for k, v in sorted(self.info["dropped"].items()))]
        return "\n".join(lines) + "\n"


@command("kg.build", usage=(SourceError,))
def main(argv=None):
    ap = ArgumentParser(prog="python -m kg.build",
                        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                        epilog="Sources: " + ", ".join(READERS) + ". SIDER is CC BY-NC-SA (non-commercial) "
                               "and is read only when named.")
    ap.add_argument("--kg-sources", default=None, help="folder with hpo/, disease-ontology/, hetionet-upstream/, "
                    "wikidata-medical/ (default: ../shared/kg-sources beside the repo, or $FLEMING_SHARED/kg-sources)")
    ap.add_argument("--sources", default=DEFAULT_SOURCES, help=f"comma-separated readers (default {DEFAULT_SOURCES})")
    ap.add_argument("--wikidata-diseases", action="append", default=[], metavar="FILE",
                    help="a Wikidata-style disease JSONL file read in addition to the shared one (repeatable)")
    ap.add_argument("--out", required=True, help="output folder for nodes.json, edges.npz, meta.json, stats.md")
    args = ap.parse_args(argv)
    check_outputs(folders=[args.out])
    root = args.kg_sources or os.path.join(os.environ.get("FLEMING_SHARED", os.path.join(
        os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "shared")), "kg-sources")
    sources = [s.strip() for s in args.sources.split(",") if s.strip()]
    if any(s in NONCOMMERCIAL for s in sources):
        print(f"note: {', '.join(s for s in sources if s in NONCOMMERCIAL)} is licensed CC BY-NC-SA "
              f"(non-commercial use only); the graph in {args.out} inherits that.", file=sys.stderr)
    if args.wikidata_diseases and "wikidata" not in sources:
        ap.error("--wikidata-diseases needs the wikidata source in --sources")
    extra = {"wikidata": {"extra_diseases": args.wikidata_diseases}}
    t0 = time.time()
    if not sources:
        ap.error(f"argument --sources: no source named; choose from {', '.join(READERS)}")
    g = build(root, sources, extra=extra)
    g.info["build_seconds"] = round(time.time() - t0, 1)
    if g.info["unverified_files"]:
        print("note: no MANIFEST.md checksum for " + ", ".join(g.info["unverified_files"]) + ": their "
              "completeness is not verified", file=sys.stderr)
    g.save(args.out)
    nt, et = g.counts()
    print(f"built {len(g.ids):,} entities, {len(g.src):,} edges in {g.info['build_seconds']} s -> {args.out}")
    print("entities: " + ", ".join(f"{k} {v:,}" for k, v in sorted(nt.items(), key=lambda x: -x[1])))
    print("edges: " + ", ".join(f"{k} {v:,}" for k, v in sorted(et.items(), key=lambda x: -x[1])))


if __name__ == "__main__":
    main()
