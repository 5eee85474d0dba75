"""What makes a sampled question sound, and what a test-taker could exploit in a file of them.

The Checker evaluates a question's query on the graph (phenotype, onset and inheritance terms count their
ontology descendants, as HPO's true-path rule says): the answer must be among the entities consistent with
every stated fact and no distractor may be. Because the graph is incomplete, "not in the graph" is weak
evidence that a distractor is wrong, so each distractor must also break at least two stated facts and share
no finding that few diseases have (the one an examinee keys on); no two options may be one concept reworded
or numbered members of one disease series; every fact the gold rests on must come from a curated source
(HPO, the Disease Ontology, DrugCentral) or from two sources. GraphFacts reads the graph (the is_a closure,
source trust, organ systems), the Checker judges on it, and audit() runs shortcut solvers on a written file.
kg/sample.py draws the questions; `python -m kg.sample --check/--audit FILE` runs this module on a file.
"""
import functools
import math
import random
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import numpy as np

from eval.records import read_jsonl
from kg.build import RELS, SOURCES, norm

CLOSURE = {"has_phenotype", "onset", "inheritance", "side_effect"}  # objects inherit down the is_a tree
TRUSTED = {"hpo", "do", "drugcentral"}  # curated; Wikidata (unvetted), HSDN (co-occurrence), SIDER (text mining) need a second
HALLMARK_MAX = 10  # a finding that at most this many diseases have characterises them
# pharmacologic classes that say how a drug acts (physiologic effects are shared by whole therapeutic areas)
MOA_TYPES = {"Mechanism of Action", "FDA Established Pharmacologic Class"}
ON_LABEL = {"DM", "SYM"}  # PharmacotherapyDB's reviewed categories: disease-modifying, symptomatic
PHENOTYPE_ROOT = "HP:0000118"  # its children are HPO's organ-system categories


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


FILLER = {"of", "the", "and", "with", "or", "in", "to", "a", "an", "type", "disease", "syndrome", "disorder", "due",
          "form", "class", "drug", "receptor", "hormone"}
SAME_WORD = {"inhibitor": "antagonist", "blocker": "antagonist", "analogue": "analog", "progestational": "progestin"}


@functools.lru_cache(maxsize=1 << 16)
def concept_words(name):
    words = {SAME_WORD.get(w, w) for w in option_key(name).split()} - FILLER
    # "histamine h1" is "histamine-1": a subtype letter that repeats another word's initial
    words = {w[1:] if re.fullmatch(r"[a-z]\d+[a-z]?", w) and any(v != w and v[0] == w[0] for v in words) else w
             for w in words}
    return frozenset(words or option_key(name).split())


def same_concept(a, b):
    """Labels of one concept: the same words in another order or wording ("Immunoneurologic disorder,
    X-linked" / "X-linked immunoneurologic disorder", "H1 receptor inhibitor" / "... antagonist"), or one
    label inside the other ("Prostaglandin analog" / "Prostaglandin E1 analog")."""
    x, y = concept_words(a), concept_words(b)
    return x <= y or y <= x


DESIGNATOR = re.compile(r"^(\d+[a-z]?\d*|[a-z]\d*|[ivx]+[a-z]?|type|subtype|group|complementation|form|autosomal|"
                        r"dominant|recessive|x|linked|susceptibility|to|with|without|or)$")


def family_key(name):
    """A disease series without its member's designator: 'Bardet-Biedl syndrome 3', '... 17' and
    'Joubert syndrome with ocular defect' / 'Joubert syndrome 13' share a key; '' when nothing is left."""
    words = norm(name).split()
    for stop in ("with", "without", "due", "associated", "caused"):  # a "with ..." variant keeps its head
        if stop in words[1:]:
            words = words[:words.index(stop, 1)]
    return " ".join(w for w in words if not DESIGNATOR.match(w))


def siblings(a, b):
    fa, fb = family_key(a), family_key(b)
    return bool(fa) and fa == fb


LEAK_FILLER = FILLER | {"abnormality", "abnormal", "increased", "decreased", "reduced", "elevated", "low", "high",
                        "progressive", "early", "late", "onset", "juvenile", "adult", "infantile", "childhood",
                        "severe", "mild", "acute", "chronic", "congenital", "hereditary", "familial", "primary",
                        "deficiency", "autosomal", "dominant", "recessive", "linked", "like", "body", "cell", "cells"}


@functools.lru_cache(maxsize=1 << 16)
def content_words(name):
    return frozenset(w for w in norm(name).split() if len(w) >= 4 and w not in LEAK_FILLER)


SYNONYMS = [(re.compile(r"\bIg([ADEGM])\b"), r"immunoglobulin \1 Ig\1"),  # raised IgD -> hyperimmunoglobulinemia D
            (re.compile(r"pyroglutam", re.I), "oxoprolin pyroglutam"),
            (re.compile(r"peptidase D", re.I), "prolidase peptidase D")]               # peptidase D -> prolidase deficiency        # L-pyroglutamic aciduria -> 5-oxoprolinuria


def expand(name):
    """A stem finding with the synonyms an answer's name may use instead ('IgD' -> 'immunoglobulin D'), so a
    leak through a synonym is caught by shares_word."""
    for pat, rep in SYNONYMS:
        name = pat.sub(rep, name)
    return name


def shares_word(a, b):
    """Do two labels share a content word (or its stem: 'parathyroid' in 'hyperparathyroidism')?"""
    for x in content_words(a):
        for y in content_words(b):
            if x[:5] == y[:5] or (len(x) >= 6 and x in y) or (len(y) >= 6 and y in x):
                return True
    return False


# findings that one test measures, or that follow one from the other (a haemolysis shows reticulocytes, an alkalosis
# a raised bicarbonate): an answer implied by a stated finding restates the stem, a distractor implied by a finding
# of the disease is a second true option (kg/REVIEW.md, issue 22)
IMPLIES = [("hemoly", "reticulocyt", "haptoglobin", "antiglobulin", "spherocyt"),
           ("alkalosis", "acidosis", "bicarbonate", "blood ph", "urine ph"), ("jaundice", "icterus", "bilirubin"),
           ("anemia", "hemoglobin", "hematocrit"), ("thrombocyt", "platelet"), ("neutrop", "neutrophil"),
           ("lymphop", "lymphocyt"), ("kalemi", "potassium"), ("natremi", "sodium"), ("calcemi", "calcium"),
           ("phosphatemi", "phosphate"), ("glycemi", "glucose", "diabetes"), ("ammon",), ("lactic", "lactate"),
           ("uricemi", "uric acid", "urate", "gout"), ("cholesta", "bile acid"), ("proteinuria", "nephrotic", "albumin"),
           ("rhabdomyolysis", "myoglobin", "creatine kinase"), ("thyroid", "thyroxine", "triiodothyronine"),
           ("gonad", "testosterone", "estradiol", "gonadotropin", "luteinizing", "follicle stimulating"),
           ("adrenal", "cortisol", "corticotropin", "acth"), ("aldosteron", "renin"), ("immunoglobulin", "ig"),
           ("hyperkeratosis", "hypergranulosis", "acanthosis", "parakeratosis"), ("blood urea", "azotemia", "uremia"),
           ("porphyri", "porphobilinogen", "aminolevulinic")]


def implies(a, b):
    """Do two finding labels name one measurement or a finding and its direct consequence (IMPLIES)?"""
    return bool(implies_groups(a) & implies_groups(b))


@functools.lru_cache(maxsize=1 << 17)
def implies_groups(name):
    """The IMPLIES groups a finding label names (a stem of the group in it; one of <= 3 letters only as a word)."""
    t = expand(name).lower()
    w = set(re.findall(r"[a-z]+", t))
    hit = lambda stem: (stem in w) if len(stem) <= 3 else (stem in t)  # "ig" only as a word
    return frozenset(i for i, grp in enumerate(IMPLIES) if any(hit(x) for x in grp))


def moa_classes(g, drug):
    """The drug's mechanism-of-action and established pharmacologic classes."""
    return {int(g.dst[e]) for e in g.out_edges(drug, "in_class") if g.attrs[g.attr[e]] in MOA_TYPES}


def indication_rules(g):
    """{indication edge: the rule that refuses it} over the indications only DrugCentral states. Its rows come
    from PharmacotherapyDB, where physicians labelled each pair disease-modifying (DM), symptomatic (SYM) or not an
    indication. Rules (a second source, Wikidata, SIDER or HSDN, confirms a row whatever these say):
      unreviewed      the row has no DM/SYM label: it was never reviewed (morphine for Parkinson disease,
                      isotretinoin for hypertension, dopamine for Parkinson disease);
      no class match  labelled, but no other drug sharing a target or a mechanism class with it has a labelled row
                      for that disease: the drug's class does not treat the disease (atorvastatin for hypertension;
                      this also refuses true rows of drugs alone in their class, such as metformin for type 2
                      diabetes: the graph cannot tell them apart, and a key must not rest on a wrong row)."""
    rel = RELS.index("indicated_for")
    rows = [int(e) for e in np.flatnonzero(g.rel == rel) if g.provenance(e) == ["drugcentral"]]
    treats = defaultdict(set)  # drug -> diseases of its labelled rows
    for e in np.flatnonzero(g.rel == rel).tolist():
        if g.attrs[g.attr[e]] in ON_LABEL:
            treats[int(g.src[e])].add(int(g.dst[e]))
    kin = lambda x: set(g.out(x, "targets").tolist()) | moa_classes(g, x)
    by_kin = defaultdict(set)
    for x in treats:
        for k in kin(x):
            by_kin[k].add(x)
    out = {}
    for e in rows:
        x, d = int(g.src[e]), int(g.dst[e])
        if g.attrs[g.attr[e]] not in ON_LABEL:
            out[e] = "unreviewed"
        elif not any(d in treats[m] for k in kin(x) for m in by_kin[k] - {x}):
            out[e] = "no class match"
    return out


class GraphFacts:
    """What the graph states, read with HPO's true-path rule: ancestors and descendants on the is_a tree, the
    subjects and objects of a relation (and a finding's near neighbours), whether an edge is trusted, and the organ
    systems an entity belongs to. All cached: they depend only on the graph."""

    def __init__(self, g):
        self.g = g
        self._up, self._down, self._trusted, self._systems, self._verdicts = {}, {}, {}, {}, None
        # subjects, objects and near neighbours by key, and the Checker's lookups (subjects() clears it when large)
        self._lookups = {}
        self.near_limit = 0.01 * len(np.unique(g.src[g.rel == RELS.index("has_phenotype")]))
        root = g.index.get(PHENOTYPE_ROOT)
        self.system_roots = set(g.inn(root, "subclass_of").tolist()) if root is not None else set()

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
        if key not in self._lookups:
            objs = self.descendants(o) if rel in CLOSURE else (o,)
            s = set()
            for x in objs:
                s.update(self.g.inn(x, rel).tolist())
            if len(self._lookups) > 200_000:
                self._lookups.clear()
            self._lookups[key] = s
        return self._lookups[key]

    def objects(self, s, rel):
        key = ("objects", s, rel)
        if key not in self._lookups:
            out = set(self.g.out(s, rel).tolist())
            if rel in CLOSURE:
                for x in list(out):
                    out |= self.ancestors(x)
            self._lookups[key] = frozenset(out)
        return self._lookups[key]

    def holds(self, s, rel, o):
        return s in self.subjects(rel, o)

    def trusted(self, e):
        """An edge from a curated source, or stated by two sources; an indication that DrugCentral alone states
        must also pass indication_rules (a bare DrugCentral row put morphine 'for' Parkinson disease)."""
        e = int(e)
        if e not in self._trusted:
            self._trusted[e] = self._trust(e)
        return self._trusted[e]

    def _trust(self, e):
        src = self.g.provenance(e)
        if len(src) >= 2:
            return True
        if self.g.rel[e] == RELS.index("indicated_for") and src == ["drugcentral"]:
            return self.indication_verdicts().get(int(e)) is None
        return bool(TRUSTED & set(src))

    def indication_verdicts(self):
        """{edge: rule that refuses it} over the indications DrugCentral alone states (see indication_rules)."""
        if self._verdicts is None:
            self._verdicts = indication_rules(self.g)
        return self._verdicts

    def near(self, rel, o):
        """Subjects that have o, or a finding beside it under a specific parent ("hemarthrosis" beside "joint
        hemorrhage"): a distractor that has a near neighbour of a stated finding does not really miss it,
        the annotations are just coarser or finer than the stem."""
        key = ("near", rel, o)
        if key not in self._lookups:
            s = set(self.subjects(rel, o))
            if rel == "has_phenotype":
                for p in self.g.out(o, "subclass_of").tolist():
                    sp = self.subjects(rel, p)
                    if len(sp) <= self.near_limit:
                        s |= sp
            self._lookups[key] = s
        return self._lookups[key]

    # ---- categories: the organ systems an option belongs to
    def systems(self, x):
        """HPO organ-system categories (children of 'Phenotypic abnormality'): of a finding, those above it; of a
        disease, the three most common among its findings; of a drug, those of the diseases it treats; of a
        class, those of its drugs (first 20); empty for genes, modes and agents."""
        if x in self._systems:
            return self._systems[x]
        g, t = self.g, self.g.type_name(x)
        if t in ("phenotype", "lab_finding", "imaging_finding"):
            out = self.ancestors(x) & self.system_roots
        elif t == "disease":
            c = Counter(s for p in g.out(x, "has_phenotype").tolist() for s in self.ancestors(p) & self.system_roots)
            out = {s for s, _ in c.most_common(3)}
        elif t == "drug":
            out = set().union(*[self.systems(d) for d in g.out(x, "indicated_for").tolist()[:20]])
        elif t == "drug_class":
            out = set().union(*[self.systems(d) for d in g.inn(x, "in_class").tolist()[:20]])
        else:
            out = set()
        self._systems[x] = frozenset(out)
        return self._systems[x]

    def stem_systems(self, q):
        """The organ systems of what the stem names: its findings, and a named disease or drug."""
        named = [x for f in q.facts for x in (f[0], f[2]) if not isinstance(x, str)
                 and self.g.type_name(x) in ("disease", "drug", "phenotype", "lab_finding", "imaging_finding")
                 and not (f[1] == "in_class" or f[1] == "targets")]
        return frozenset().union(*[self.systems(x) for x in named]) if named else frozenset()


class Checker(GraphFacts):
    """Judges a question on the graph's facts: which entities fill the asked slot (answers), how many stated facts
    an option breaks (misses), and the rules an answer and its distractors must pass (check)."""

    def __init__(self, g):
        super().__init__(g)
        self._cost_of, self._cost = None, {}

    def misses(self, q, x):
        """The fewest stated facts that option x breaks, over every value of the hidden variables (a link
        between two variables must hold; the facts counted are those naming an entity)."""
        if self._cost_of is not q:  # the sampler asks this for every candidate of one question: share the work
            self._cost_of, self._cost = q, {}
        memo = self._cost
        unary, links = defaultdict(list), []
        for s, r, o in q.facts:
            sv, ov = isinstance(s, str), isinstance(o, str)
            if sv and ov:
                links.append((s, r, o))
            elif sv:
                unary[s].append(self.near(r, o))
            elif ov:
                unary[o].append(self.objects(s, r))

        def cost(v, val, came):
            if (v, val, came) not in memo:
                memo[v, val, came] = walk(v, val, came)
            return memo[v, val, came]

        def walk(v, val, came):
            c = sum(val not in ok for ok in unary[v])
            for a, r, b in links:
                if v not in (a, b) or came in (a, b):
                    continue
                w = b if a == v else a
                key = ("typed", val, r, a == v, q.var_types[w])  # the neighbours of one type, shared by questions
                nbrs = self._lookups.get(key)
                if nbrs is None:
                    nbrs = self.objects(val, r) if a == v else self.subjects(r, val)
                    nbrs = self._lookups[key] = [y for y in nbrs if self.g.type_name(y) in q.var_types[w]]
                if not nbrs:
                    return math.inf
                c += min(cost(w, y, v) for y in nbrs)
            return c
        return cost(q.ask, x, None)

    def shared_key_finding(self, q, x):
        """A stated finding that at most HALLMARK_MAX diseases have (or a near neighbour of it) which disease
        option x has too: the examinee keys on it ("fish odor": trimethylaminuria beside dimethylglycine
        dehydrogenase deficiency), so x is a differential however many other facts it misses."""
        if q.var_types.get(q.ask) != ("disease",):
            return None
        for s, r, o in q.facts:
            if s == q.ask and r == "has_phenotype" and len(self.subjects(r, o)) <= HALLMARK_MAX and x in self.near(r, o):
                return o
        return None

    def fits_focus(self, q, x):
        """A finding of the focus disease that makes finding option x true as well (x beside it under a specific
        parent, or one test or consequence of it: reticulocytosis beside chronic hemolytic anemia); None if none."""
        g = self.g
        if q.var_types.get(q.ask, ("",))[0] not in ("phenotype", "lab_finding", "imaging_finding") or "?d" not in q.var_types:
            return None
        key = ("fits", q.focus, x)  # a drug's disease has hundreds of findings (HSDN) and is asked often: once each
        if key not in self._lookups:
            self._lookups[key] = x if q.focus in self.near("has_phenotype", x) else next(
                (p for p in g.out(q.focus, "has_phenotype").tolist() if implies(g.names[p], g.names[x])), None)
        return self._lookups[key]

    def restated(self, q):
        """A stated finding that implies the asked finding (bicarbonate after 'metabolic alkalosis'); None if none."""
        if q.var_types.get(q.ask, ("",))[0] not in ("phenotype", "lab_finding", "imaging_finding"):
            return None
        return next((o for _, r, o in self.vignette_facts(q) if implies(self.g.names[o], self.g.names[q.answer])), None)

    def needed_misses(self, q):
        return min(2, sum(isinstance(s, str) != isinstance(o, str) for s, _, o in q.facts))

    def answers(self, facts, var_types, ask, start=None):
        """All entities that can fill `ask` with every fact true (arc consistency; exact for tree queries); `start`
        restricts variables to given sets. None when nothing constrains `ask` (every entity of its type fits)."""
        dom = {v: (start or {}).get(v) for v in var_types}
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
                    if dom[a] is not None and len(dom[a]) < len(dom[b]):
                        # the same set, found from the few values of a: a drug's disease has hundreds of findings
                        # whose subjects (every disease under "Phenotypic abnormality") took half of kg.sample's time
                        new = {x for x in dom[a] if not self.objects(x, r).isdisjoint(dom[b])}
                    else:
                        back = set().union(*[self.subjects(r, y) for y in dom[b]]) if dom[b] else set()
                        new = back if dom[a] is None else dom[a] & back
                    changed |= new != dom[a]
                    dom[a] = new
            if not changed:
                break
        return dom[ask] if dom[ask] is not None or ask not in var_types else None

    def check(self, q, options):
        """None if the question is sound, else the reason it is not."""
        g = self.g
        ok = self.answers(q.facts, q.var_types, q.ask) or set()
        if q.answer not in ok:
            return "answer not consistent with the stated facts"
        if len(set(options)) != len(options) or len({option_key(g.names[o]) for o in options}) != len(options):
            return "duplicate options"
        for s, r, o in q.path:
            e = g.find_edge(s, r, o)
            if e is None or not self.trusted(e):
                return f"gold fact {g.ids[s]} {r} {g.ids[o]} rests on one unconfirmed source"
        need = self.needed_misses(q)
        if self.restated(q) is not None:
            return f"the stated finding {g.ids[self.restated(q)]} implies the answer"
        for o in options:
            if o != q.answer and self.fits_focus(q, o) is not None:
                return f"distractor {g.ids[o]} fits the disease too ({g.ids[self.fits_focus(q, o)]})"
            if o != q.answer and o in ok:
                return f"distractor {g.ids[o]} also satisfies every stated fact"
            if o != q.answer and self.related(o, q.answer):
                return f"distractor {g.ids[o]} is an ancestor or descendant of the answer"
            if o != q.answer and self.misses(q, o) < (1 if q.template == "drug_for_disease_target" else need):
                return f"distractor {g.ids[o]} breaks fewer than {need} stated facts"
            if o != q.answer and self.shared_key_finding(q, o) is not None:
                return f"distractor {g.ids[o]} has the specific finding {g.ids[self.shared_key_finding(q, o)]}"
        for i, a in enumerate(options):
            for b in options[i + 1:]:
                if same_concept(g.names[a], g.names[b]):
                    return f"options {g.ids[a]} and {g.ids[b]} name one concept"
                if g.type_name(a) == "disease" and siblings(g.names[a], g.names[b]):
                    return f"options {g.ids[a]} and {g.ids[b]} are sibling subtypes"
        return self.unneeded(q, options)

    # ---- necessity: every clause of the stem and every hop of the path is used
    def vignette_facts(self, q):
        """The stated findings of the hidden disease (its age is the vignette's framing, not a clause)."""
        return [f for f in q.facts if f[0] == "?d" and f[1] == "has_phenotype" and not isinstance(f[2], str)]

    def differential(self, findings):
        """Diseases that have every finding or a near neighbour of it (see near)."""
        out = None
        for _, r, o in findings:
            out = self.near(r, o) if out is None else out & self.near(r, o)
        return out if out is not None else set()

    def unneeded(self, q, options):
        """None if every clause is needed, else the reason one is not:
        - the stated findings of a hidden disease are one clause, the diagnosis hop (per finding, a proof would need a
          distractor that misses that finding only, which the two-broken-facts rule forbids: an annotation missing
          from an incomplete graph is weak evidence; and a graph-level rule, "each finding narrows the
          differential", cut stems to one or two findings: kg/REVIEW.md);
        - a clause that names an entity (the disease and the target of a drug question) needs a distractor that
          satisfies every other clause and fails that one;
        - a question that asks past the diagnosis needs a lure: a distractor reached by the same hops from a
          competing diagnosis (a disease that shares a stated finding), so the diagnosis hop is needed too."""
        g = self.g
        vig = self.vignette_facts(q)
        ok = self.answers(q.facts, q.var_types, q.ask) or set()
        wrong = [o for o in options if o != q.answer]
        for f in q.facts:
            if f in vig or f[0] == "?d" or isinstance(f[0], str) == isinstance(f[2], str):
                continue  # findings, the age, links between variables and stated premises
            # only the options matter: the domain starts from them (the whole domain of "?d has_phenotype ?f" is
            # every finding of every disease, and took most of a drug_finding question's time)
            rest = self.answers([x for x in q.facts if x != f], q.var_types, q.ask, start={q.ask: set(wrong)})
            if rest is not None and not any(o in rest and o not in ok for o in wrong):
                return f"clause {f[1]} {g.ids[f[2]] if isinstance(f[2], int) else g.ids[f[0]]} is not needed"
        if vig and q.ask != "?d" and "?d" in q.var_types:
            full = self.differential(vig)
            rivals = set().union(*[self.subjects(r, o) for _, r, o in vig]) - full
            links = [x for x in q.facts if x not in vig and not (x[0] == "?d" and not isinstance(x[2], str))]
            reach = self.answers(links, q.var_types, q.ask, start={"?d": rivals}) or set()
            if not any(o in reach for o in wrong):
                return "no distractor comes from a competing diagnosis: the diagnosis hop is not needed"
        return None


def record_to_question(g, rec):
    """Rebuild the query of a written record, to re-check it against a graph."""
    m = rec["meta"]
    node = lambda x: x if x.startswith("?") else g.index[x]
    facts = [(node(s), r, node(o)) for s, r, o in m["facts"]]
    path = [(g.index[e["subject"]], e["relation"], g.index[e["object"]]) for e in m["path"]]
    q = Question(m["template"], m["hops"], facts, {k: tuple(v) for k, v in m["var_types"].items()}, m["masked"],
                 g.index[m["answer_id"]], g.index[m["focus_id"]], path)
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


# ---------------------------------------------------------------- audit: what a test-taker could exploit

def _words5(text):
    return {w[:5] for w in norm(text).split() if len(w) >= 4 and w not in LEAK_FILLER}


def _trigrams(text):
    t = f"  {norm(text)} "
    return {t[i:i + 3] for i in range(len(t) - 2)}


def _jaccard(a, b):
    return len(a & b) / max(1, len(a | b))


def _leave_one_out(recs, key):
    """Per record, a scorer of option texts by how often `key(rec)` counts them in the *other* records."""
    tot = Counter()
    for r in recs:
        tot.update(key(r))
    return lambda r, text: tot[text] - key(r)[text]


def solvers(recs):
    """Shortcut solvers that read only the question file: name -> scoring function (rec, letter) -> float."""
    gold = _leave_one_out(recs, lambda r: Counter({(r["meta"]["template"], r["options"][r["answer"]]): 1}))
    seen = _leave_one_out(recs, lambda r: Counter(r["options"].values()))
    return {
        "longest option": lambda r, l: len(r["options"][l]),
        "most word overlap with the stem": lambda r, l: len(_words5(r["options"][l]) & _words5(r["question"])),
        "most frequent answer of its template": lambda r, l: gold(r, (r["meta"]["template"], r["options"][l])),
        "most similar to the other options": lambda r, l: sum(
            _jaccard(_trigrams(r["options"][l]), _trigrams(t)) for m, t in r["options"].items() if m != l),
        "option seen least often in other questions": lambda r, l: -seen(r, r["options"][l]),
        "only option from the stem's organ system": lambda r, l: len(
            set(_systems(r)["options"].get(l, [])) & set(_systems(r)["stem"])),
    }


def _systems(rec):
    return rec["meta"].get("systems") or {"stem": [], "options": {}}


def unconfirmed(rec):
    """Path edges (the facts the gold rests on) that only one non-curated source states."""
    return [e for e in rec["meta"]["path"] if not TRUSTED & set(e["sources"]) and len(e["sources"]) < 2]


def audit(recs, seed=0):
    """Accuracy of each shortcut solver (ties broken at random) and counts of suspect option pairs."""
    rng = random.Random(seed)
    result = {"n": len(recs), "chance": float(np.mean([1 / len(r["options"]) for r in recs])) if recs else 0.0,
              "solvers": {}}
    for name, score in solvers(recs).items():
        right, by_t = 0, defaultdict(lambda: [0, 0])
        for r in recs:
            sc = {l: score(r, l) for l in r["options"]}
            best = max(sc.values())
            pick = rng.choice(sorted(l for l, v in sc.items() if v == best))
            right += pick == r["answer"]
            by_t[r["meta"]["template"]][0] += pick == r["answer"]
            by_t[r["meta"]["template"]][1] += 1
        result["solvers"][name] = {"accuracy": right / max(1, len(recs)),
                                   "by_template": {t: (a / n, n) for t, (a, n) in by_t.items()}}
    sib = same = unconf = 0
    for r in recs:
        opts = list(r["options"].values())
        pairs = [(a, b) for i, a in enumerate(opts) for b in opts[i + 1:]]
        same += sum(same_concept(a, b) for a, b in pairs)
        if r["meta"].get("masked") == "?d":
            sib += sum(siblings(a, b) for a, b in pairs)
        unconf += bool(unconfirmed(r))
    result.update(sibling_pairs=sib, same_concept_pairs=same, unconfirmed_golds=unconf,
                  hops=dict(sorted(Counter(r["meta"].get("hops") for r in recs).items())))
    return result


def print_audit(res):
    print(f"{res['n']} questions; chance {res['chance']:.1%}")
    n = max(1, res["n"])
    print("  hops: " + ", ".join(f"{h}: {c} ({c / n:.1%})" for h, c in res.get("hops", {}).items()))
    for name, v in res["solvers"].items():
        worst = max(v["by_template"].items(), key=lambda kv: kv[1][0] if kv[1][1] >= 20 else 0)
        print(f"  {name:44s} {v['accuracy']:6.1%}   (highest template: {worst[0]} {worst[1][0]:.1%} of {worst[1][1]})")
    print(f"  sibling-subtype option pairs: {res['sibling_pairs']}; same-concept option pairs: "
          f"{res['same_concept_pairs']}; golds resting on one unconfirmed source: {res['unconfirmed_golds']}")
