"""Sample multi-hop questions from the graph: typed path templates weighted toward rare entities,
one node masked as the answer, relation-preserving distractors, and a uniqueness checker.

    python -m kg.sample --graph out/kg --n 10000 --out out/kg_questions.jsonl --seed 0
    python -m kg.sample --graph out/kg --check out/kg_questions.jsonl      # re-check a file against the graph

Every question is a small conjunctive query over the graph: facts such as (?d has_phenotype Seizure),
(?drug indicated_for ?d), with one variable asked. The Checker evaluates the query on the graph
(phenotype, onset and inheritance terms count their ontology descendants, as HPO's true-path rule
says), and a question is kept only if the answer is among the consistent entities and no distractor is.
"""
import argparse
import hashlib
import math
import os
import random
import re
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import numpy as np
from tqdm import tqdm

from eval.records import append_jsonl, done_ids, make_record, read_jsonl
from kg.build import FINDINGS, RELS, Graph, norm
from kg.readers import SourceError
from kg import verbalize

CLOSURE = {"has_phenotype", "onset", "inheritance", "side_effect"}  # objects inherit down the is_a tree
MODES = ["HP:0000006", "HP:0000007", "HP:0001417", "HP:0001419", "HP:0001423", "HP:0001427", "HP:0001450",
         "HP:0010984", "HP:0010982", "HP:0001442"]  # modes of inheritance asked about (the others are qualifiers)
ORGANISM = re.compile(r"^(\[?[A-Z][a-z]+\]? [a-z][a-z\-]+( subsp\. [a-z]+)?|\w*virus \w+|[A-Z][\w ]* virus( \d+)?)$")
MOA_TYPES = {"Mechanism of Action", "FDA Established Pharmacologic Class", "Physiologic Effect"}


@dataclass
class Question:
    template: str
    hops: int
    facts: list          # (s, rel, o); ints are nodes, "?x" strings are variables
    var_types: dict      # variable -> acceptable node types
    ask: str             # the masked variable
    answer: int
    focus: int           # the entity the path was drawn from (rarity is measured on it)
    path: list           # the walked chain as (node, rel, node) triples, hidden nodes included
    candidates: list = field(default_factory=list)  # distractor candidates, most plausible first
    context: dict = field(default_factory=dict)     # extra wording hints for verbalize (e.g. drug action)


def option_key(name):
    """Two options read as the same when their labels differ only in case, punctuation or a plural
    ("Cytochrome P450 2D6 Inhibitor" / "... Inhibitors")."""
    return " ".join(w[:-1] if len(w) > 3 and w.endswith("s") else w for w in norm(name).split())


class Checker:
    """Evaluates a question's facts on the graph: which entities could fill the asked slot."""

    def __init__(self, g):
        self.g = g
        self._up, self._down, self._subj = {}, {}, {}

    def _walk(self, n, step, cache):
        if n not in cache:
            seen, todo = {n}, [n]
            while todo:
                for m in step(todo.pop(), "subclass_of").tolist():
                    if m not in seen:
                        seen.add(m)
                        todo.append(m)
            cache[n] = seen
        return cache[n]

    def ancestors(self, n):
        return self._walk(n, self.g.out, self._up)

    def descendants(self, n):
        return self._walk(n, self.g.inn, self._down)

    def related(self, a, b):
        """a and b stand in an is_a line (one is the other's ancestor): never both among options."""
        return a in self.ancestors(b) or b in self.ancestors(a)

    def subjects(self, rel, o):
        key = (rel, o)
        if key not in self._subj:
            objs = self.descendants(o) if rel in CLOSURE else (o,)
            s = set()
            for x in objs:
                s.update(self.g.inn(x, rel).tolist())
            if len(self._subj) > 200_000:
                self._subj.clear()
            self._subj[key] = s
        return self._subj[key]

    def objects(self, s, rel):
        out = set(self.g.out(s, rel).tolist())
        if rel in CLOSURE:
            for x in list(out):
                out |= self.ancestors(x)
        return out

    def holds(self, s, rel, o):
        return s in self.subjects(rel, o)

    def answers(self, facts, var_types, ask):
        """All entities that can fill `ask` with every fact true (arc consistency; exact for tree queries)."""
        dom = {v: None for v in var_types}
        for s, r, o in facts:
            sv, ov = isinstance(s, str), isinstance(o, str)
            if sv and not ov:
                dom[s] = self.subjects(r, o) if dom[s] is None else dom[s] & self.subjects(r, o)
            elif ov and not sv:
                dom[o] = self.objects(s, r) if dom[o] is None else dom[o] & self.objects(s, r)
            elif not sv and not ov and not self.holds(s, r, o):
                return set()  # the question states something the graph does not
        for v, types in var_types.items():
            if dom[v] is not None:
                dom[v] = {x for x in dom[v] if self.g.type_name(x) in types}
        links = [(s, r, o) for s, r, o in facts if isinstance(s, str) and isinstance(o, str)]
        for _ in range(2 * len(links) + 1):
            changed = False
            for a, r, b in links:
                if dom[a] is not None:
                    reach = set().union(*[self.objects(x, r) for x in dom[a]]) if dom[a] else set()
                    new = reach if dom[b] is None else dom[b] & reach
                    new = {x for x in new if self.g.type_name(x) in var_types[b]}
                    changed |= new != dom[b]
                    dom[b] = new
                if dom[b] is not None:
                    back = set().union(*[self.subjects(r, y) for y in dom[b]]) if dom[b] else set()
                    new = back if dom[a] is None else dom[a] & back
                    changed |= new != dom[a]
                    dom[a] = new
            if not changed:
                break
        return dom[ask] or set()

    def check(self, q, options):
        """None if the question is sound, else the reason it is not."""
        ok = self.answers(q.facts, q.var_types, q.ask)
        if q.answer not in ok:
            return "answer not consistent with the stated facts"
        if len(set(options)) != len(options) or len({option_key(self.g.names[o]) for o in options}) != len(options):
            return "duplicate options"
        for o in options:
            if o != q.answer and o in ok:
                return f"distractor {self.g.ids[o]} also satisfies every stated fact"
            if o != q.answer and self.related(o, q.answer):
                return f"distractor {self.g.ids[o]} is an ancestor or descendant of the answer"
        return None


# ---------------------------------------------------------------- templates

class Sampler:
    def __init__(self, g, alpha=1.0, rare_boost=2.0, min_findings=3, max_findings=6, only=None):
        self.g, self.ck = g, Checker(g)
        self.only = None if only is None else set(only)  # restrict focus entities (e.g. the diseases of one file)
        self.alpha, self.rare_boost = alpha, rare_boost
        self.min_findings, self.max_findings = min_findings, max_findings
        self.modes = [g.index[m] for m in MODES if m in g.index]
        self._pools = {}

    # ---- pools of focus entities and rarity weights
    def usable_findings(self, d):
        """(finding, freq) edges of a disease that a vignette may state: not rare in the disease."""
        g = self.g
        es = g.out_edges(d, "has_phenotype")
        f = g.freq[es]
        keep = np.isnan(f) | (f >= 0.3)
        dn = norm(g.names[d])
        # a finding named like the disease ("Papillary thyroid carcinoma" in papillary thyroid carcinoma) gives it away
        return [int(x) for x in g.dst[es[keep]] if norm(g.names[x]) not in dn and dn not in norm(g.names[x])]

    def pool(self, template):
        if template not in self._pools:
            g = self.g
            need = {"diagnosis": (), "diagnosis_gene": ("associated_gene",), "diagnosis_inheritance": ("inheritance",),
                    "diagnosis_treatment": ("indicated_for",), "treatment_class": ("indicated_for",),
                    "diagnosis_cause": ("caused_by",)}
            if template in need:
                nodes = []
                for d in g.of_type("disease").tolist():
                    if len(self.usable_findings(d)) < self.min_findings:
                        continue
                    rels = need[template]
                    if "indicated_for" in rels and not len(g.inn(d, "indicated_for")):
                        continue
                    if "associated_gene" in rels and not len(g.out(d, "associated_gene")):
                        continue
                    if "caused_by" in rels and not any(self.is_organism(x) for x in g.out(d, "caused_by").tolist()):
                        continue
                    if "inheritance" in rels and not set(g.out(d, "inheritance").tolist()) & set(self.modes):
                        continue
                    if template == "treatment_class" and not any(self._moa_classes(x) for x in g.inn(d, "indicated_for")):
                        continue
                    nodes.append(d)
            elif template == "drug_mechanism":
                nodes = [x for x in g.of_type("drug").tolist() if self._moa_classes(x)]
            elif template == "drug_for_disease_target":
                nodes = [x for x in g.of_type("drug").tolist() if len(g.out(x, "targets")) and len(g.out(x, "indicated_for"))]
            elif template == "side_effect":
                nodes = [x for x in g.of_type("drug").tolist() if len(g.out(x, "side_effect")) >= 3
                         and len(g.out(x, "indicated_for")) + len(g.out(x, "in_class"))]
            else:
                raise ValueError(f"unknown template {template!r}")
            if self.only is not None:
                nodes = [x for x in nodes if x in self.only]
            nodes = np.array(nodes, dtype=np.int64)
            self._pools[template] = (nodes, self.weights(nodes))
        return self._pools[template]

    def weights(self, nodes):
        if not len(nodes):
            return np.zeros(0)
        w = (self.g.degree[nodes].astype(np.float64) + 1) ** -self.alpha
        w *= np.where(self.g.rare[nodes], self.rare_boost, 1.0)
        return w / w.sum()

    def _moa_classes(self, drug):
        g = self.g
        es = g.out_edges(drug, "in_class")
        return [int(g.dst[e]) for e in es if g.attrs[g.attr[e]] in MOA_TYPES]

    # ---- the vignette: findings that point to one disease
    def vignette(self, d, rng):
        """Choose findings (and an onset) of disease d; return (facts on ?d, consistent diseases)."""
        g, ck = self.g, self.ck
        found = self.usable_findings(d)
        rng.shuffle(found)
        # specific findings first (fewer diseases share them), a lab or imaging finding early when there is one
        found.sort(key=lambda p: math.log(len(ck.subjects("has_phenotype", p)) + 1) + rng.random() * 2
                   - (1.5 if g.type_name(p) != "phenotype" else 0))
        chosen, cons = [], None
        for p in found:
            if any(ck.related(p, c) for c in chosen):
                continue
            s = ck.subjects("has_phenotype", p)
            new = s if cons is None else cons & s
            if d not in new:
                continue
            chosen.append(p)
            cons = new
            if len(chosen) >= self.max_findings or (len(chosen) >= self.min_findings and len(cons) == 1):
                break
        if len(chosen) < self.min_findings:
            return None, None
        facts = [("?d", "has_phenotype", p) for p in chosen]
        onsets = g.out(d, "onset").tolist()
        if len(onsets) == 1:
            facts.append(("?d", "onset", onsets[0]))
            cons = cons & ck.subjects("onset", onsets[0])
        return facts, cons

    def competitors(self, facts, exclude):
        """Diseases sharing some of the stated findings, most shared first (the competing diagnoses)."""
        score = Counter()
        for s, r, o in facts:
            if s == "?d" and r == "has_phenotype":
                for x in self.ck.subjects(r, o):
                    if x not in exclude:
                        score[x] += 1
        return [x for x, _ in score.most_common(200)]

    # ---- the templates: each returns a Question or None
    def t_diagnosis(self, d, rng):
        facts, cons = self.vignette(d, rng)
        if not facts:
            return None
        path = [(d, r, o) for _, r, o in facts]
        return Question("diagnosis", 1, facts, {"?d": ("disease",)}, "?d", d, d, path,
                        self.competitors(facts, cons))

    def _via_disease(self, name, d, rng, rel, ask_type, pick, reverse=False, hops=2):
        facts, cons = self.vignette(d, rng)
        if not facts:
            return None
        nbrs = (self.g.inn(d, rel) if reverse else self.g.out(d, rel)).tolist()
        nbrs = [x for x in nbrs if pick(x)]
        if not nbrs:
            return None
        a = rng.choice(nbrs)
        facts = facts + [("?x", rel, "?d") if reverse else ("?d", rel, "?x")]
        cands = []
        for c in self.competitors(facts, cons)[:60]:
            for x in (self.g.inn(c, rel) if reverse else self.g.out(c, rel)).tolist():
                if pick(x) and x not in cands:
                    cands.append(x)
        path = [(d, r, o) for s, r, o in facts if s == "?d" and not isinstance(o, str)]
        path.append((a, rel, d) if reverse else (d, rel, a))
        return Question(name, hops, facts, {"?d": ("disease",), "?x": (ask_type,)}, "?x", a, d, path, cands)

    def t_diagnosis_gene(self, d, rng):
        return self._via_disease("diagnosis_gene", d, rng, "associated_gene", "gene", lambda x: True)

    def t_diagnosis_inheritance(self, d, rng):
        modes = set(self.modes)
        q = self._via_disease("diagnosis_inheritance", d, rng, "inheritance", "inheritance", lambda x: x in modes)
        if q:
            q.candidates += [m for m in self.modes if m not in q.candidates]
        return q

    def t_diagnosis_treatment(self, d, rng):
        return self._via_disease("diagnosis_treatment", d, rng, "indicated_for", "drug", lambda x: True, reverse=True)

    def is_organism(self, x):
        """A named pathogen ("Streptococcus pneumoniae", "Alphavirus chikungunya"), not a broad group such as
        "Bacteria" (which would be a correct answer too) or a route ("airborne transmission")."""
        return self.g.type_name(x) == "agent" and bool(ORGANISM.match(self.g.names[x]))

    def t_diagnosis_cause(self, d, rng):
        q = self._via_disease("diagnosis_cause", d, rng, "caused_by", "agent", self.is_organism)
        if q:
            q.candidates += [x for x in self.g.of_type("agent").tolist() if self.is_organism(x) and x not in q.candidates]
        return q

    def t_treatment_class(self, d, rng):
        """3 hops: findings -> ?d <- indicated_for ?drug -> in_class ?c (a mechanism or established class)."""
        facts, cons = self.vignette(d, rng)
        if not facts:
            return None
        drugs = [x for x in self.g.inn(d, "indicated_for").tolist() if self._moa_classes(x)]
        if not drugs:
            return None
        drug = rng.choice(drugs)
        c = rng.choice(self._moa_classes(drug))
        facts = facts + [("?drug", "indicated_for", "?d"), ("?drug", "in_class", "?c")]
        cands = []
        for comp in self.competitors(facts, cons)[:60]:
            for x in self.g.inn(comp, "indicated_for").tolist():
                cands += [k for k in self._moa_classes(x) if k not in cands]
        path = [(d, r, o) for s, r, o in facts if s == "?d" and not isinstance(o, str)]
        path += [(drug, "indicated_for", d), (drug, "in_class", c)]
        return Question("treatment_class", 3, facts, {"?d": ("disease",), "?drug": ("drug",), "?c": ("drug_class",)},
                        "?c", c, d, path, cands)

    def t_drug_mechanism(self, drug, rng):
        """1 hop: a named drug (and one disease it is indicated for) -> its mechanism / class."""
        g = self.g
        c = rng.choice(self._moa_classes(drug))
        facts = [(drug, "in_class", "?c")]
        ctx = {}
        dis = g.out(drug, "indicated_for").tolist()
        if dis:
            ctx["disease"] = rng.choice(dis)
            facts.append((drug, "indicated_for", ctx["disease"]))
        # similar drugs (sharing a target or a class) lend their classes as distractors
        sims = Counter()
        for t in g.out(drug, "targets").tolist():
            sims.update(g.inn(t, "targets").tolist())
        for k in g.out(drug, "in_class").tolist():
            sims.update(g.inn(k, "in_class").tolist())
        cands = []
        ctype = g.attrs[g.attr[g.find_edge(drug, "in_class", c)]]
        for x, _ in sims.most_common(100):
            for e in g.out_edges(x, "in_class"):
                k = int(g.dst[e])
                if g.attrs[g.attr[e]] == ctype and k not in cands:
                    cands.append(k)
        path = [(drug, "in_class", c)] + ([(drug, "indicated_for", ctx["disease"])] if dis else [])
        return Question("drug_mechanism", 1, facts, {"?c": ("drug_class",)}, "?c", c, drug, path, cands, ctx)

    def t_drug_for_disease_target(self, drug, rng):
        """Two facts on one drug: indicated for D and acting on gene G; distractors keep one fact, break the other."""
        g = self.g
        d = rng.choice(g.out(drug, "indicated_for").tolist())
        e = int(rng.choice(g.out_edges(drug, "targets").tolist()))
        t = int(g.dst[e])
        facts = [("?x", "indicated_for", d), ("?x", "targets", t)]
        a = g.inn(d, "indicated_for").tolist()
        b = g.inn(t, "targets").tolist()
        rng.shuffle(a)
        rng.shuffle(b)
        cands = [x for pair in zip(a, b) for x in pair] + a + b
        ctx = {"action": g.attrs[g.attr[e]]}
        return Question("drug_for_disease_target", 1, facts, {"?x": ("drug",)}, "?x", drug, drug,
                        [(drug, "indicated_for", d), (drug, "targets", t)], cands, ctx)

    def t_side_effect(self, drug, rng):
        g = self.g
        se = rng.choice(g.out(drug, "side_effect").tolist())
        facts = [(drug, "side_effect", "?s")]
        sims = Counter()
        for k in g.out(drug, "in_class").tolist():
            sims.update(g.inn(k, "in_class").tolist())
        cands = []
        for x, _ in sims.most_common(30):
            cands += [s for s in g.out(x, "side_effect").tolist() if s not in cands]
        return Question("side_effect", 1, facts, {"?s": FINDINGS}, "?s", se, drug, [(drug, "side_effect", se)], cands)

    TEMPLATES = {"diagnosis": t_diagnosis, "diagnosis_gene": t_diagnosis_gene,
                 "diagnosis_inheritance": t_diagnosis_inheritance, "diagnosis_treatment": t_diagnosis_treatment,
                 "diagnosis_cause": t_diagnosis_cause, "treatment_class": t_treatment_class,
                 "drug_mechanism": t_drug_mechanism, "drug_for_disease_target": t_drug_for_disease_target,
                 "side_effect": t_side_effect}

    # ---- distractors
    def role_pool(self, q):
        """Entities that play the asked role somewhere in the graph (e.g. anything that is some drug's side
        effect), the fallback when the plausible candidates run out."""
        r, side = next((r, "dst" if o == q.ask else "src") for s, r, o in q.facts if q.ask in (s, o))
        key = (r, side, q.var_types[q.ask])
        if key not in self._pools:
            g = self.g
            sel = g.rel == RELS.index(r)
            nodes = np.unique(g.dst[sel] if side == "dst" else g.src[sel])
            self._pools[key] = [int(x) for x in nodes if g.type_name(x) in q.var_types[q.ask]]
        return self._pools[key]

    def distractors(self, q, k, rng):
        """k same-type entities from the candidates (plus a random fallback) that the checker rejects."""
        g, ck = self.g, self.ck
        ok = ck.answers(q.facts, q.var_types, q.ask)
        types = q.var_types[q.ask]
        cands = list(q.candidates)
        head = cands[:3 * k]
        rng.shuffle(head)  # some variety among the most plausible ones
        pool = self.role_pool(q)
        fallback = [int(x) for x in rng.sample(pool, min(len(pool), 50))]
        chosen, names = [], {option_key(g.names[q.answer])}
        for x in head + cands[3 * k:] + fallback:
            if len(chosen) == k:
                break
            if x in ok or x == q.answer or g.type_name(x) not in types or option_key(g.names[x]) in names:
                continue
            if ck.related(x, q.answer) or not g.degree[x]:
                continue
            chosen.append(x)
            names.add(option_key(g.names[x]))
        return chosen if len(chosen) == k else None


# ---------------------------------------------------------------- generation

def parse_mix(s, available):
    mix = {}
    for part in s.split(","):
        name, _, w = part.partition("=")
        name = name.strip()
        if name not in available:
            raise SystemExit(f"error: unknown template {name!r}; choose from {sorted(available)}")
        mix[name] = float(w) if w else 1.0
    return mix


DEFAULT_MIX = ("diagnosis=3,diagnosis_gene=1.5,diagnosis_inheritance=1,diagnosis_treatment=1.5,diagnosis_cause=0.5,"
               "treatment_class=1,drug_mechanism=1,drug_for_disease_target=1,side_effect=1")


def letter_slot(seed, i, n_opt):
    """Answer position for question i: a fresh permutation of the n_opt slots in each block of n_opt
    questions, so letters are exactly balanced on every full block (and resumable by index)."""
    block = random.Random(f"{seed}-block-{i // n_opt}").sample(range(n_opt), n_opt)
    return block[i % n_opt]


def generate_one(s, i, seed, mix, n_opt, hops=None, tries=30, salt=0):
    """Question i: deterministic in (seed, i, salt); returns (Question, options) or None."""
    names = [t for t in mix if hops is None or TEMPLATE_HOPS[t] in hops]
    ws = [mix[t] for t in names]
    for attempt in range(tries):
        rng = random.Random(f"{seed}-{i}-{salt}-{attempt}")
        t = rng.choices(names, ws)[0]
        nodes, w = s.pool(t)
        if not len(nodes):
            continue
        focus = int(nodes[np.searchsorted(np.cumsum(w), rng.random() * w.sum())]) if len(nodes) > 1 else int(nodes[0])
        q = Sampler.TEMPLATES[t](s, focus, rng)
        if q is None:
            continue
        ds = s.distractors(q, n_opt - 1, rng)
        if ds is None:
            continue
        slot = letter_slot(seed, i, n_opt)
        rng.shuffle(ds)
        options = ds[:slot] + [q.answer] + ds[slot:]
        if s.ck.check(q, options) is None:
            return q, options
    return None


TEMPLATE_HOPS = {"diagnosis": 1, "diagnosis_gene": 2, "diagnosis_inheritance": 2, "diagnosis_treatment": 2,
                 "diagnosis_cause": 2, "treatment_class": 3, "drug_mechanism": 1, "drug_for_disease_target": 1,
                 "side_effect": 1}


def _ref(g, x):
    return x if isinstance(x, str) else g.ids[x]


def to_record(g, q, options, i, seed, split="train"):
    """The shared record; meta keeps the walked path, the stated facts and each edge's provenance."""
    letters = [chr(ord("A") + k) for k in range(len(options))]
    question = verbalize.stem(g, q)
    evidence = []
    for s, r, o in q.path:
        e = g.find_edge(s, r, o)
        evidence.append({"subject": g.ids[s], "subject_name": g.names[s], "relation": r, "object": g.ids[o],
                         "object_name": g.names[o], "sources": g.provenance(e) if e is not None else [],
                         "frequency": None if e is None or np.isnan(g.freq[e]) else round(float(g.freq[e]), 3)})
    key = hashlib.sha1(repr((q.template, sorted(tuple(map(str, f)) for f in q.facts), q.answer)).encode()).hexdigest()[:12]
    meta = {"template": q.template, "hops": q.hops, "masked": q.ask,
            "facts": [[_ref(g, s), r, _ref(g, o)] for s, r, o in q.facts],
            "var_types": {k: list(v) for k, v in q.var_types.items()},
            "path": evidence, "answer_id": g.ids[q.answer], "focus_id": g.ids[q.focus],
            "focus_rare": bool(g.rare[q.focus]), "focus_degree": int(g.degree[q.focus]),
            "option_ids": {l: g.ids[o] for l, o in zip(letters, options)}, "content_key": key,
            "graph_sources": g.info.get("sources", [])}
    return make_record(f"kg-{seed}-{i:06d}", "kg", split, question, [verbalize.option_text(g, o) for o in options],
                       letters[options.index(q.answer)], None, meta)


def record_to_question(g, rec):
    """Rebuild the query of a written record, to re-check it against a graph."""
    m = rec["meta"]
    node = lambda x: x if x.startswith("?") else g.index[x]
    facts = [(node(s), r, node(o)) for s, r, o in m["facts"]]
    q = Question(m["template"], m["hops"], facts, {k: tuple(v) for k, v in m["var_types"].items()}, m["masked"],
                 g.index[m["answer_id"]], g.index[m["focus_id"]], [])
    return q, [g.index[m["option_ids"][l]] for l in rec["options"]]


def check_file(g, path):
    ck, bad, n = Checker(g), Counter(), 0
    for rec in read_jsonl(path):
        n += 1
        try:
            q, options = record_to_question(g, rec)
        except KeyError as e:
            bad[f"id {e} not in graph"] += 1
            continue
        why = ck.check(q, options)
        if why is None and options[ord(rec["answer"]) - ord("A")] != q.answer:
            why = "answer letter does not point at the answer entity"
        if why:
            bad[why.split(" ")[0] + " " + why.split(" ", 2)[-1] if why.startswith("distractor") else why] += 1
    return n, bad


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--graph", required=True, help="folder written by python -m kg.build")
    ap.add_argument("--out", help="output JSONL (appended to; ids already there are skipped, so a rerun resumes)")
    ap.add_argument("--n", type=int, default=1000, help="number of questions (an index that yields none is skipped)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--options", type=int, default=5, help="options per question (answer + distractors)")
    ap.add_argument("--mix", default=DEFAULT_MIX, help=f"template=weight list (default {DEFAULT_MIX})")
    ap.add_argument("--hops", default=None, help="keep only templates with these hop counts, e.g. 2,3")
    ap.add_argument("--alpha", type=float, default=1.0, help="rarity weight: focus drawn with prob ~ (degree+1)^-alpha")
    ap.add_argument("--rare-boost", type=float, default=2.0, help="extra weight for rare-flagged diseases (HPO/Orphanet/DO rare)")
    ap.add_argument("--split", default="train")
    ap.add_argument("--stats", default=None, help="Markdown stats report (default: OUT with .stats.md)")
    ap.add_argument("--check", default=None, help="instead of generating, re-check this JSONL against the graph")
    args = ap.parse_args(argv)
    try:
        g = Graph.load(args.graph)
    except SourceError as e:
        sys.exit(f"error: {e}")
    if args.check:
        n, bad = check_file(g, args.check)
        print(f"{n} questions checked, {sum(bad.values())} fail" + "".join(f"\n  {k}: {v}" for k, v in bad.items()))
        sys.exit(1 if bad else 0)
    if not args.out:
        ap.error("--out is required when generating")
    s = Sampler(g, alpha=args.alpha, rare_boost=args.rare_boost)
    mix = parse_mix(args.mix, Sampler.TEMPLATES)
    if "sider" not in g.info.get("sources", []):
        mix.pop("side_effect", None)  # no side-effect edges without the (opt-in) SIDER source
    hops = {int(h) for h in args.hops.split(",")} if args.hops else None
    done = done_ids(args.out)
    seen = {r["meta"]["content_key"] for r in read_jsonl(args.out)} if done else set()
    failed, batch, have = 0, [], len(done)
    bar = tqdm(total=args.n, initial=min(have, args.n), desc="questions")
    for i in range(2 * args.n):  # index i gives question i or nothing; go on until n questions exist
        if have >= args.n:
            break
        rid = f"kg-{args.seed}-{i:06d}"
        if rid in done:
            continue
        rec = None
        for extra in range(5):  # a content duplicate of an earlier question is redrawn
            got = generate_one(s, i, args.seed, mix, args.options, hops, salt=extra)
            if got is None:
                break
            r = to_record(g, *got, i, args.seed, args.split)
            if r["meta"]["content_key"] not in seen:
                rec = r
                break
        if rec is None:
            failed += 1
            continue
        seen.add(rec["meta"]["content_key"])
        have += 1
        bar.update()
        batch.append(rec)
        if len(batch) >= 100:  # a kill loses at most this batch; a rerun regenerates it identically
            append_jsonl(args.out, batch)
            batch = []
    append_jsonl(args.out, batch)
    bar.close()
    recs = list(read_jsonl(args.out))
    stats = args.stats or os.path.splitext(args.out)[0] + ".stats.md"
    with open(stats, "w") as f:
        f.write(stats_markdown(g, s, recs, mix))
    print(f"{len(recs)} questions in {args.out} ({failed} indices gave no question); stats -> {stats}")
    if have < args.n:
        print(f"warning: only {have} of {args.n} questions could be drawn with this mix", file=sys.stderr)


def stats_markdown(g, s, recs, mix):
    """Questions by template and hops, rare share vs uniform sampling of the same pools, letter balance."""
    by_t = Counter(r["meta"]["template"] for r in recs)
    by_h = Counter(r["meta"]["hops"] for r in recs)
    letters = Counter(r["answer"] for r in recs)
    lines = [f"# KG questions: {len(recs):,}", "", "| template | hops | questions | rare-flagged focus | uniform | "
             "low-degree focus | uniform |", "|---|---:|---:|---:|---:|---:|---:|"]
    tot = defaultdict(float)
    for t in mix:
        nodes, _ = s.pool(t)
        rs = [r for r in recs if r["meta"]["template"] == t]
        if not len(nodes) or not rs:
            continue
        deg = g.degree[nodes]
        q1 = np.quantile(deg, 0.25)
        uni_rare, uni_low = float(g.rare[nodes].mean()), float((deg <= q1).mean())
        got_rare = np.mean([r["meta"]["focus_rare"] for r in rs])
        got_low = np.mean([r["meta"]["focus_degree"] <= q1 for r in rs])
        for k, v in (("rare", got_rare), ("urare", uni_rare), ("low", got_low), ("ulow", uni_low)):
            tot[k] += v * len(rs)
        lines.append(f"| {t} | {TEMPLATE_HOPS[t]} | {len(rs):,} | {got_rare:.1%} | {uni_rare:.1%} | {got_low:.1%} | {uni_low:.1%} |")
    n = max(len(recs), 1)
    lines.append(f"| all | | {len(recs):,} | {tot['rare'] / n:.1%} | {tot['urare'] / n:.1%} | {tot['low'] / n:.1%} | "
                 f"{tot['ulow'] / n:.1%} |")
    lines += ["", "Rare-flagged: a disease annotated by HPO (OMIM/Orphanet/DECIPHER) or in DO's rare slim. Low-degree: "
              "focus degree at or below the 25th percentile of its template's pool. 'uniform' is the same share "
              "when the focus is drawn uniformly from the pool.", "",
              "Questions by hops: " + ", ".join(f"{h} hops {c:,}" for h, c in sorted(by_h.items())), "",
              "| answer letter | count | share |", "|---|---:|---:|"]
    for l in sorted(letters):
        lines.append(f"| {l} | {letters[l]:,} | {letters[l] / n:.1%} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
