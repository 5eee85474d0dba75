"""Sample multi-hop questions from the graph: typed path templates weighted toward rare entities,
one node masked as the answer, relation-preserving distractors, kept only if kg/check.py's Checker passes them.

    python -m kg.sample --graph out/kg --n 10000 --out out/kg_questions.jsonl --seed 0
    python -m kg.sample --graph out/kg --check out/kg_questions.jsonl      # re-check a file against the graph
    python -m kg.sample --audit out/kg_questions.jsonl    # shortcut solvers and option-pair counts

Every question is a small conjunctive query over the graph: facts such as (?d has_phenotype Seizure),
(?drug indicated_for ?d), with one variable asked. Distractors come from competing entities (diseases that
share stated findings, and what they lead to) and from the answers of other questions; the Checker keeps a
question only if the answer fits every fact and each distractor is clearly wrong (see kg/check.py). A
rare-disease vignette opens with a hallmark: a finding most of the disease's patients have (HPO frequency)
that few other diseases share. kg/REVIEW.md is the manual review.
"""
import argparse
import hashlib
import math
import os
import random
import re
import sys
from collections import Counter, defaultdict

import numpy as np
from tqdm import tqdm

from eval.records import (ArgumentParser, UsageError, append_jsonl, check_outputs, command, drop_torn_tail,
                          float_in, int_at_least, make_record, read_jsonl)
from kg.build import FINDINGS, RELS, Graph, norm
from kg.check import (HALLMARK_MAX, MOA_TYPES, Checker, expand, Question, audit, check_file, family_key, implies,
                      print_audit, same_concept, shares_word, siblings)
from kg.readers import SourceError
from kg import verbalize

# modes asked about: AD, AR, X-linked recessive, X-linked dominant, mitochondrial. Digenic, Y-linked, somatic
# mosaicism... are rarely plausible and made the longest option a shortcut.
MODES = ["HP:0000006", "HP:0000007", "HP:0001419", "HP:0001423", "HP:0001427"]
# pharmacokinetic classes (what a drug does to other drugs' metabolism) are no answer to "what does it treat with"
PK_CLASS = re.compile(r"cytochrome p450|p-glycoprotein|organic (anion|cation) transport|breast cancer resistance|"
                      r"glucuronosyltransferase|\bugt\d", re.I)
PRENATAL_ONSET = re.compile(r"fetal|antenatal|embryonal|trimester", re.I)
GROUPING = re.compile(r"/|^abnormality of|abnormality$|^abnormal .*(morphology|physiology)$|^abnormal .* or ",
                      re.I)  # HPO headings ("Abnormal circulating enzyme concentration or activity")
ORGANISM = re.compile(r"^(\[?[A-Z][a-z]+\]? [a-z][a-z\-]+( subsp\. [a-z]+)?|\w*virus \w+|[A-Z][\w ]* virus( \d+)?)$")
NOT_REPORTED = re.compile(r"^abnormal|hyperemia", re.I)
HALLMARK_FREQ = 0.8  # HPO "very frequent" (80-99%) and "obligate" annotations


def per_node(method):
    """Cache a Sampler method that depends only on the graph and its arguments (a tuple comes back, so no caller
    can change the cached value): pools, findings and answers are asked for each draw, and sampling 2,000
    questions spent most of its time recomputing them. The result never depends on what was drawn before."""
    def cached(self, *args):
        key = (method.__name__,) + args
        if key not in self._memo:
            self._memo[key] = tuple(method(self, *args))
        return self._memo[key]
    cached.__name__, cached.__doc__ = method.__name__, method.__doc__
    return cached


# ---------------------------------------------------------------- templates

class Sampler:
    def __init__(self, g, alpha=1.0, rare_boost=8.0, min_findings=3, max_findings=6, only=None, max_share=0.005,
                 hallmark_max=HALLMARK_MAX):
        self.g, self.ck = g, Checker(g)
        # a rare disease is recognisable from a finding most of its patients have and few other diseases share
        self.hallmark_max = hallmark_max
        # a vignette needs two findings that at most this share of annotated diseases have: "itch, rash and
        # fever" is unique only inside an incomplete graph
        self.specific = max(3, max_share * len(np.unique(g.src[g.rel == RELS.index("has_phenotype")])))
        # members of a numbered series ("intellectual developmental disorder 61", "spinocerebellar ataxia 36")
        # cannot be told apart from a vignette, nor can their genes or modes: never the focus of a question
        fam = defaultdict(list)
        for d in g.of_type("disease").tolist():
            k = family_key(g.names[d])
            if k and k != norm(g.names[d]):
                fam[k].append(d)
        self.series = {d for ms in fam.values() if len(ms) >= 3 for d in ms}
        self.only = None if only is None else set(only)  # restrict focus entities (e.g. the diseases of one file)
        self.alpha, self.rare_boost = alpha, rare_boost
        self.min_findings, self.max_findings = min_findings, max_findings
        self.modes = [g.index[m] for m in MODES if m in g.index]
        self._pools, self._memo = {}, {}

    # ---- pools of focus entities and rarity weights
    @per_node
    def usable_findings(self, d):
        """Findings of a disease that a vignette may state: HPO terms (not MeSH headings), on a trusted edge,
        not rare in the disease, sharing no word with its name ("elevated PTH" for hyperparathyroidism)."""
        g = self.g
        es = g.out_edges(d, "has_phenotype")
        f = g.freq[es]
        keep = np.isnan(f) | (f >= 0.3)
        return [int(g.dst[e]) for e in es[keep] if g.ids[g.dst[e]].startswith("HP:") and self.ck.trusted(e)
                and not GROUPING.search(g.names[g.dst[e]]) and not shares_word(g.names[g.dst[e]], g.names[d])]

    @per_node
    def hallmarks(self, d):
        """Usable findings that characterise d: annotated in at least 80% of its patients (HPO's very frequent
        and obligate) and found in at most hallmark_max diseases of the graph. Without one, a vignette of
        findings that are unique only in combination names nothing a clinician ties to the disease."""
        g = self.g
        freq = {int(g.dst[e]): g.freq[e] for e in g.out_edges(d, "has_phenotype")}
        return [p for p in self.usable_findings(d) if freq[p] >= HALLMARK_FREQ
                and len(self.ck.subjects("has_phenotype", p)) <= self.hallmark_max]

    def established(self, d):
        """A disease with a known gene, or one the Disease Ontology or OMIM names too. An Orphanet-only entity
        without a gene is a clinical grouping (radiation proctitis, hydatidiform mole, TEMPI syndrome) whose
        defining setting (an exposure, a pregnancy) no HPO term states, or a syndrome described once."""
        g = self.g
        names = [g.ids[d]] + g.xrefs.get(g.ids[d], [])
        return any(k.startswith(("DOID:", "OMIM:")) for k in names) or bool(self.answers_of("diagnosis_gene", d))

    def drug_ok(self, x):
        """A drug option: a DrugBank drug (Wikidata's treatments include 'oxygen therapy' and synonyms of
        DrugBank drugs under another name)."""
        return self.g.type_name(x) == "drug" and bool(re.match(r"DB\d+$", self.g.ids[x]))

    @per_node
    def trusted_in(self, x, rel):
        """Subjects of x's incoming `rel` edges that a trusted edge states."""
        return [int(self.g.src[e]) for e in self.g.in_edges(x, rel) if self.ck.trusted(e)]

    def modes_of(self, d):
        return set(self.g.out(d, "inheritance").tolist()) & set(self.modes)

    def pool(self, template):
        if template not in self._pools:
            g = self.g
            need = {"diagnosis": (), "diagnosis_gene": ("associated_gene",), "diagnosis_inheritance": ("inheritance",),
                    "diagnosis_treatment": ("indicated_for",), "treatment_class": ("indicated_for",),
                    "diagnosis_drug_target": ("indicated_for",), "diagnosis_cause": ("caused_by",),
                    "diagnosis_test": ("test",)}
            if template in need:
                nodes = []
                for d in g.of_type("disease").tolist():
                    if d in self.series or len(self.usable_findings(d)) < self.min_findings:
                        continue
                    rels = need[template]
                    if "indicated_for" not in rels and not (self.hallmarks(d) and self.established(d)):
                        continue  # a rare-disease question (the drug templates' diseases are common, frequency-less)
                    if "indicated_for" in rels and not any(self.drug_ok(x) for x in self.trusted_in(d, "indicated_for")):
                        continue
                    if "associated_gene" in rels and len(self.answers_of("diagnosis_gene", d)) != 1:
                        continue  # with several genes the asked one may be a minor or candidate gene
                    if "caused_by" in rels and not any(self.is_organism(x) for x in g.out(d, "caused_by").tolist()):
                        continue
                    if "test" in rels and not self.tests_of(d):
                        continue
                    if "inheritance" in rels and len(self.modes_of(d)) != 1:
                        continue  # a disease given two modes has two right answers
                    if template == "treatment_class" and not any(self._moa_classes(x) for x in self.trusted_in(d, "indicated_for")):
                        continue
                    nodes.append(d)
            elif template == "drug_mechanism":
                nodes = [x for x in g.of_type("drug").tolist() if self.drug_ok(x) and self._moa_classes(x)]
            elif template == "drug_for_disease_target":
                nodes = [x for x in g.of_type("drug").tolist() if self.drug_ok(x) and self._targets(x)
                         and self._indications(x)]
            elif template == "side_effect":
                nodes = [x for x in g.of_type("drug").tolist() if len(g.out(x, "side_effect")) >= 3
                         and len(g.out(x, "indicated_for")) + len(g.out(x, "in_class"))]
            else:
                raise ValueError(f"unknown template {template!r}")
            if self.only is not None:
                nodes = [x for x in nodes if x in self.only]
            nodes = np.array(nodes, dtype=np.int64)
            w = self.weights(nodes)
            if template == "diagnosis_inheritance" and len(nodes):  # each mode the answer equally often
                mode = np.array([min(self.modes_of(d)) for d in nodes.tolist()])
                for m in set(mode.tolist()):
                    w[mode == m] /= w[mode == m].sum()
                w /= w.sum()
            self._pools[template] = (nodes, w)
        return self._pools[template]

    def weights(self, nodes):
        if not len(nodes):
            return np.zeros(0)
        w = (self.g.degree[nodes].astype(np.float64) + 1) ** -self.alpha
        w *= np.where(self.g.rare[nodes], self.rare_boost, 1.0)
        return w / w.sum()

    @per_node
    def _moa_classes(self, drug):
        g = self.g
        es = g.out_edges(drug, "in_class")
        return [int(g.dst[e]) for e in es if g.attrs[g.attr[e]] in MOA_TYPES and not PK_CLASS.search(g.names[g.dst[e]])]

    @per_node
    def _indications(self, drug):
        g = self.g
        return [int(g.dst[e]) for e in g.out_edges(drug, "indicated_for") if self.ck.trusted(e)]

    @per_node
    def _targets(self, drug):
        """Target edges of a drug whose gene has a symbol (a bacterial gene known only as "NCBIGene:908646"
        would put a raw id in the stem)."""
        return [e for e in self.g.out_edges(drug, "targets").tolist() if ":" not in self.g.names[self.g.dst[e]]]

    def _drugs_for(self, d):
        return [x for x in self.trusted_in(d, "indicated_for") if self.drug_ok(x)]

    def _kin(self, drug):
        """What makes two drugs alternatives: their targets and mechanism classes."""
        return set(self.g.out(drug, "targets").tolist()) | set(self._moa_classes(drug))

    # ---- the vignette: findings that point to one disease
    def vignette(self, d, rng, spec=2, exclude=()):
        """Choose findings (and an onset) of disease d, `spec` of them specific; return (facts on ?d,
        consistent diseases). A question that asks past the diagnosis (its gene, mode, treatment) wants 3:
        the examinee must recognise the disease without seeing its name among the options."""
        g, ck = self.g, self.ck
        found = [p for p in self.usable_findings(d) if not any(p == x or ck.related(p, x) for x in exclude)]
        rng.shuffle(found)
        # specific findings first (fewer diseases share them), a lab or imaging finding early when there is one
        # and hallmark findings (present in most patients) before occasional ones
        freq = {int(g.dst[e]): g.freq[e] for e in g.out_edges(d, "has_phenotype")}
        found.sort(key=lambda p: math.log(len(ck.subjects("has_phenotype", p)) + 1) + rng.random() * 2
                   - (1.5 if g.type_name(p) != "phenotype" else 0) - (1.5 if freq.get(p, 0) >= 0.8 else 0))
        hall = self.hallmarks(d)
        hall = [p for p in hall if p in found]
        if hall:  # the stem opens with one finding that characterises the disease
            first = rng.choice(hall)
            found.remove(first)
            found.insert(0, first)
        chosen, cons = [], None
        nspec = lambda: sum(len(ck.subjects("has_phenotype", c)) <= self.specific for c in chosen)
        for p in found:
            if any(ck.related(p, c) or same_concept(g.names[p], g.names[c]) for c in chosen):
                continue
            s = ck.subjects("has_phenotype", p)
            new = s if cons is None else cons & s
            if d not in new:
                continue
            chosen.append(p)
            cons = new
            if len(chosen) >= self.max_findings or (len(chosen) >= self.min_findings and len(cons) == 1 and nspec() >= spec):
                break
        if len(chosen) < self.min_findings or nspec() < spec:
            return None, None
        facts = [("?d", "has_phenotype", p) for p in chosen]
        # a prenatal onset would make the stem a fetus, where most findings (and all lab values) cannot be seen
        onsets = [x for x in g.out(d, "onset").tolist() if not PRENATAL_ONSET.search(g.names[x])]
        if len(onsets) == 1:
            facts.append(("?d", "onset", onsets[0]))
            cons = cons & ck.subjects("onset", onsets[0])
        return facts, cons

    def competitors(self, facts, exclude):
        """Diseases sharing some of the stated findings, most shared first (the competing diagnoses)."""
        score = Counter()
        for s, r, o in facts:
            if s == "?d" and r == "has_phenotype" and not isinstance(o, str):
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
        facts, cons = self.vignette(d, rng, spec=3)
        if not facts:
            return None
        if reverse:
            nbrs = self.trusted_in(d, rel)
        else:
            nbrs = [int(self.g.dst[e]) for e in self.g.out_edges(d, rel) if self.ck.trusted(e)]
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
        q = self._via_disease("diagnosis_treatment", d, rng, "indicated_for", "drug", self.drug_ok, reverse=True)
        if q:  # a drug sharing a target or class with one used for the disease may well be used for it too
            q.context["avoid_kin"] = set().union(*[self._kin(x) for x in self.trusted_in(d, "indicated_for")])
        return q

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
        facts, cons = self.vignette(d, rng, spec=3)
        if not facts:
            return None
        drugs = [x for x in self.trusted_in(d, "indicated_for") if self.drug_ok(x) and self._moa_classes(x)]
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

    @per_node
    def tests_of(self, d):
        """Laboratory and imaging findings of d that a test in most of its patients shows (HPO frequency >= 80%)
        and that at most `specific` diseases share: the result the examinee should expect."""
        g = self.g
        freq = {int(g.dst[e]): g.freq[e] for e in g.out_edges(d, "has_phenotype")}
        return [p for p in self.usable_findings(d) if g.type_name(p) != "phenotype" and freq[p] >= HALLMARK_FREQ
                and len(self.ck.subjects("has_phenotype", p)) <= self.specific and self.reportable(p)]

    def reportable(self, p):
        """A result a report states: a direction or a named finding, not an HPO heading ('Abnormal circulating
        porphyrin concentration') or an examination sign filed as a lab finding ('conjunctival hyperemia')."""
        return not NOT_REPORTED.search(self.g.names[p])

    def t_diagnosis_test(self, d, rng):
        """2 hops: findings -> ?d -> a laboratory or imaging result of ?d (symptom -> disease -> test)."""
        tests = self.tests_of(d)
        if not tests:
            return None
        a = rng.choice(tests)
        # the stem gives the history and examination (no result HPO files as a phenotype: homocitrullinuria, metabolic
        # alkalosis); the question asks for the test, which no stated finding may imply
        results = [p for p in self.usable_findings(d) if verbalize.is_result(self.g, p)]
        facts, cons = self.vignette(d, rng, spec=3, exclude=[a] + results)
        if not facts or any(implies(self.g.names[o], self.g.names[a]) for _, _, o in facts):
            return None
        facts = facts + [("?d", "has_phenotype", "?x")]
        kind = self.g.type_name(a)
        cands = []
        for c in self.competitors(facts, cons)[:80]:
            cands += [x for x in self.g.out(c, "has_phenotype").tolist() if self.g.type_name(x) == kind
                      and x not in cands and self.g.ids[x].startswith("HP:") and self.reportable(x)]
        path = [(d, r, o) for s_, r, o in facts if s_ == "?d" and not isinstance(o, str)] + [(d, "has_phenotype", a)]
        return Question("diagnosis_test", 2, facts, {"?d": ("disease",), "?x": (kind,)}, "?x", a, d, path, cands)

    def t_diagnosis_drug_target(self, d, rng):
        """3 hops: findings -> ?d <- indicated_for ?drug -> targets ?t (symptom -> disease -> drug -> target)."""
        g = self.g
        drugs = [x for x in self.trusted_in(d, "indicated_for") if self.drug_ok(x) and 1 <= len(self._targets(x)) <= 3]
        if not drugs:
            return None
        facts, cons = self.vignette(d, rng, spec=3)
        if not facts:
            return None
        drug = rng.choice(drugs)
        t = int(g.dst[rng.choice(self._targets(drug))])
        facts = facts + [("?drug", "indicated_for", "?d"), ("?drug", "targets", "?t")]
        # a target that a class mate of a drug for d acts on is used for d too (CHRM1 of the anticholinergics in asthma)
        mates = {m for x in self._drugs_for(d) for c in self._moa_classes(x) for m in g.inn(c, "in_class").tolist()}
        avoid = {int(t_) for m in mates for t_ in g.out(m, "targets").tolist()}
        cands = []
        for comp in self.competitors(facts, cons)[:60]:
            for x in g.inn(comp, "indicated_for").tolist():
                cands += [int(g.dst[e]) for e in self._targets(x) if int(g.dst[e]) not in cands]
        path = [(d, r, o) for s_, r, o in facts if s_ == "?d" and not isinstance(o, str)]
        path += [(drug, "indicated_for", d), (drug, "targets", t)]
        return Question("diagnosis_drug_target", 3, facts, {"?d": ("disease",), "?drug": ("drug",), "?t": ("gene",)},
                        "?t", t, d, path, cands, {"avoid_targets": avoid})

    def t_drug_mechanism(self, drug, rng):
        """1 hop: a named drug (and one disease it is indicated for) -> its mechanism / class."""
        g = self.g
        c = rng.choice(self._moa_classes(drug))
        facts = [(drug, "in_class", "?c")]
        # a class whose drugs hit the same target, or treat the same disease, may describe this drug too
        ctx = {"avoid_kin": set(g.out(drug, "targets").tolist()) | set(self._indications(drug))}
        dis = self._indications(drug)
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
        d = rng.choice(self._indications(drug))
        e = int(rng.choice(self._targets(drug)))
        t = int(g.dst[e])
        facts = [("?x", "indicated_for", d), ("?x", "targets", t)]
        # distractors break both facts (a drug with the same target may be used for d without an edge saying
        # so): drugs acting the same way on other targets, indicated for other diseases
        action = g.attrs[g.attr[e]]
        cands = [int(g.src[k]) for k in np.flatnonzero(g.rel == RELS.index("targets")) if g.attrs[g.attr[k]] == action]
        rng.shuffle(cands)
        near = self.ck.ancestors(d) | self.ck.descendants(d)
        # the lures that make both clauses needed: a drug for d acting otherwise, a drug acting on t used for other
        # diseases (by no source for d or a disease in an is_a line with it)
        for_d = [x for x in self._drugs_for(d) if not self._kin(x) & self._kin(drug)]
        # ... and of another known class: a class mate on the same target is likely used for d too, the graph just
        # lacks the row (bumetanide beside torasemide for hypertension, phenobarbital beside primidone for epilepsy),
        # and a drug without an FDA class is often one used abroad for d (fenoterol for asthma, alprenolol for hypertension)
        cls = set(self._moa_classes(drug))
        on_t = [int(g.src[k]) for k in g.in_edges(t, "targets") if g.attrs[g.attr[k]] == action
                and not set(g.out(int(g.src[k]), "indicated_for").tolist()) & near
                and self._moa_classes(int(g.src[k])) and not set(self._moa_classes(int(g.src[k]))) & cls]
        rng.shuffle(for_d)
        rng.shuffle(on_t)
        cands = for_d[:1] + on_t[:1] + cands
        ctx = {"action": action, "avoid_kin": self._kin(drug), "lures": set(for_d[:1] + on_t[:1])}
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
                 "diagnosis_test": t_diagnosis_test, "diagnosis_drug_target": t_diagnosis_drug_target,
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
        ok = ck.answers(q.facts, q.var_types, q.ask) or set()
        types = q.var_types[q.ask]
        cands = list(q.candidates)
        head = cands[:3 * k]
        rng.shuffle(head)  # some variety among the most plausible ones
        if q.template == "diagnosis_inheritance":
            fallback, order, freq = [], head + cands[3 * k:], []  # the five modes and nothing else
        else:
            pool = self.role_pool(q)
            fallback = [int(x) for x in rng.sample(pool, min(len(pool), 50))]
            # every other distractor drawn the way answers are, so that "the option I have seen as an answer
            # before" is no better than chance
            like = self.answer_draws(q.template, rng, 12 * k)  # many: the category rule keeps few
            # and two keys of the template about as frequent as this one (frequent_in_category), first
            freq = self.frequent_in_category(q, rng)
            order = [x for pair in zip(like, head) for x in pair] + head[len(like):] + like[len(head):]
            order += cands[3 * k:] + fallback
        chosen, need = [q.answer], ck.needed_misses(q)
        avoid, lures = q.context.get("avoid_kin", set()), q.context.get("lures", set())
        # distractors from the answer's own category (organ system): an option alone in the stem's system is a
        # shortcut (kg/check.py audit); drugs and classes only prefer it, their pools are small
        home = ck.systems(q.answer) & ck.stem_systems(q)
        strict = bool(home) and g.type_name(q.answer) in ("disease",) + FINDINGS
        stem_sys = ck.stem_systems(q)
        order = sorted(order, key=lambda x: not ck.systems(x) & home) if home else order
        order = sorted(lures) + freq + order  # the frequent keys before the category preference
        # every entity the stem names: findings, and the drug or disease a question names outright
        stem_words = [expand(g.names[x]) for f in q.facts for x in (f[0], f[2]) if not isinstance(x, str)]
        if any(shares_word(g.names[q.answer], w) for w in stem_words):
            return None  # the stem gives the answer away ("abnormal mitochondria": mitochondrial inheritance)
        for x in order:
            if len(chosen) == k + 1:
                break
            if x in ok or x in chosen or g.type_name(x) not in types or not g.degree[x] or ck.related(x, q.answer):
                continue
            if g.type_name(x) == "drug" and (not self.drug_ok(x) or (self._kin(x) & avoid and x not in lures)):
                continue
            if strict and len(ck.systems(x) & stem_sys) < len(home):
                continue  # as much of the stem's organ systems as the answer covers
            if "?d" in q.var_types and g.type_name(x) in FINDINGS and ck.fits_focus(q, x) is not None:
                continue  # a result next to one the disease has, or following from one, is not clearly absent
            if q.template == "diagnosis_test" and not self.reportable(x) or x in q.context.get("avoid_targets", ()):
                continue
            if g.type_name(x) == "drug_class" and (PK_CLASS.search(g.names[x]) or self._class_kin(x) & avoid):
                continue
            if any(same_concept(g.names[x], g.names[c]) or (g.type_name(x) == "disease" and siblings(g.names[x], g.names[c]))
                   for c in chosen):
                continue
            if g.type_name(x) in ("disease", "agent") and any(shares_word(g.names[x], g.names[c]) for c in chosen):
                continue  # "AL amyloidosis" beside "heavy chain amyloidosis", two Orthoflaviviruses: too close to call
            if any(shares_word(g.names[x], w) for w in stem_words):
                continue  # the answer shares no word with the stem, so neither may a distractor
            if ck.misses(q, x) < (1 if x in lures else need) or ck.shared_key_finding(q, x) is not None:
                continue
            chosen.append(x)
        return chosen[1:] if len(chosen) == k + 1 else None

    @per_node
    def answers_of(self, template, x):
        """The entities a question of this template drawn on focus x could ask for."""
        g = self.g
        if template in ("diagnosis", "drug_for_disease_target"):
            return [x]
        if template == "diagnosis_gene":
            return [int(g.dst[e]) for e in g.out_edges(x, "associated_gene") if self.ck.trusted(e)]
        if template == "diagnosis_treatment":
            return [d for d in self.trusted_in(x, "indicated_for") if self.drug_ok(d)]
        if template == "diagnosis_cause":
            return [c for c in g.out(x, "caused_by").tolist() if self.is_organism(c)]
        if template == "treatment_class":
            return [c for d in self.trusted_in(x, "indicated_for") if self.drug_ok(d) for c in self._moa_classes(d)]
        if template == "diagnosis_drug_target":
            return [int(g.dst[e]) for d in self.trusted_in(x, "indicated_for") if self.drug_ok(d)
                    and 1 <= len(self._targets(d)) <= 3 for e in self._targets(d)]
        if template == "diagnosis_test":
            return self.tests_of(x)
        if template == "drug_mechanism":
            return self._moa_classes(x)
        return g.out(x, "side_effect").tolist()

    def answer_draws(self, template, rng, k):
        """k entities drawn as the template draws its answers: a focus by the pool weights, then one of its answers."""
        nodes, w = self.pool(template)
        out = []
        for _ in range(k):
            xs = self.answers_of(template, int(nodes[np.searchsorted(np.cumsum(w), rng.random() * w.sum())]))
            if xs:
                out.append(rng.choice(xs))
        return out

    def frequent_in_category(self, q, rng, n=2):
        """n keys of the template about as frequent as this one (by expected key frequency) that the category rule
        lets in (a disease or finding covering the stem's organ systems as the key does): a key that the weighted
        pool repeats needs repeated distractors beside it, or "the option most often a key" wins (diagnosis 33%,
        diagnosis_treatment 57%), and a rare key needs rare ones, or "the option seen least often" does."""
        ck, keys = self.ck, self.frequent_keys(q.template)
        rank = self._memo.setdefault(("rank", q.template), {x: i for i, x in enumerate(keys)})
        stem_sys = ck.stem_systems(q)
        home = ck.systems(q.answer) & stem_sys
        strict = bool(home) and self.g.type_name(q.answer) in ("disease",) + FINDINGS  # as in distractors()
        fits = lambda x: len(ck.systems(x) & stem_sys) >= len(home) if strict else True
        r = rank.get(q.answer, len(keys))
        near = sorted(range(len(keys)), key=lambda i: abs(i - r))[:400]
        top = [keys[i] for i in near if keys[i] != q.answer and fits(keys[i])][:8]
        rng.shuffle(top)
        return top[:n]

    @per_node
    def frequent_keys(self, template):
        """The template's answers, most expected first (each focus's pool weight shared among its answers)."""
        nodes, w = self.pool(template)
        freq = Counter()
        for x, wx in zip(nodes.tolist(), w.tolist()):
            xs = self.answers_of(template, x)
            for a in xs:
                freq[a] += wx / len(xs)
        return [a for a, _ in freq.most_common()]

    def _class_kin(self, c):
        """The targets of a class's drugs and the diseases they are indicated for."""
        g = self.g
        return set().union(*[set(g.out(x, "targets").tolist()) | set(self._indications(x))
                             for x in g.inn(c, "in_class").tolist()])


# ---------------------------------------------------------------- generation

def parse_mix(s, available):
    mix = {}
    for part in s.split(","):
        name, _, w = part.partition("=")
        name = name.strip()
        if name not in available:
            raise UsageError(f"--mix: unknown template {name!r}; choose from {sorted(available)}")
        try:
            mix[name] = float_in(0, math.inf)(w) if w else 1.0
        except argparse.ArgumentTypeError as e:
            raise UsageError(f"--mix: {name}={w}: {e}") from None
    return mix


def parse_hops(text):
    """An argparse type: comma-separated hop counts, e.g. 2,3."""
    return {int_at_least(1)(h) for h in text.split(",")}


# diagnosis_gene, diagnosis_inheritance and diagnosis_cause are left out by default: in kg/REVIEW.md 14 of 35, 1 of 8
# and 0 of 3 were acceptable (the gene or mode of a syndrome few can identify; an organism behind fever, cough and
# headache). Ask for them with --mix.
# diagnosis_test is out too: 9 of 25 acceptable in two reviews (kg/REVIEW.md, issue 22), against 70-90% for the others.
DEFAULT_MIX = ("diagnosis=2,diagnosis_treatment=1.5,treatment_class=1.5,diagnosis_drug_target=1.5,"
               "drug_mechanism=0.7,drug_for_disease_target=0.7,side_effect=0.5")


def letter_slot(seed, i, n_opt):
    """Answer position for question i: a fresh permutation of the n_opt slots in each block of n_opt
    questions, so letters are exactly balanced on every full block (and resumable by index)."""
    block = random.Random(f"{seed}-block-{i // n_opt}").sample(range(n_opt), n_opt)
    return block[i % n_opt]


def generate_one(s, i, seed, mix, n_opt, hops=None, tries=30, salt=0):
    """Question i: deterministic in (seed, i, salt); returns (Question, options) or None."""
    names = [t for t in mix if hops is None or TEMPLATE_HOPS[t] in hops]
    ws = [mix[t] for t in names]
    # the template is drawn once and kept for most attempts: redrawing it on each failure let the templates that
    # fail often (the 3-hop chains) fall far below their weight (4% of questions for 29% of the weight)
    fixed = random.Random(f"{seed}-{i}-{salt}-template").choices(names, ws)[0]
    for attempt in range(tries):
        rng = random.Random(f"{seed}-{i}-{salt}-{attempt}")
        t = rng.choices(names, ws)[0]
        t = fixed if attempt < tries - 10 else t
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
        if verbalize.lint(verbalize.stem(s.g, q)):
            continue  # a stem that reads wrong is redrawn
        slot = letter_slot(seed, i, n_opt)
        rng.shuffle(ds)
        options = ds[:slot] + [q.answer] + ds[slot:]
        if s.ck.check(q, options) is None:
            return q, options
    return None


TEMPLATE_HOPS = {"diagnosis": 1, "diagnosis_gene": 2, "diagnosis_inheritance": 2, "diagnosis_treatment": 2,
                 "diagnosis_cause": 2, "diagnosis_test": 2, "treatment_class": 3, "diagnosis_drug_target": 3, "drug_mechanism": 1, "drug_for_disease_target": 1,
                 "side_effect": 1}


def _ref(g, x):
    return x if isinstance(x, str) else g.ids[x]


def _system_names(g, systems):
    return sorted(g.names[x].replace("Abnormality of the ", "").replace("Abnormality of ", "") for x in systems)


def to_record(g, q, options, i, seed, split="train", ck=None):
    """The shared record; meta keeps the walked path, the stated facts and each edge's provenance."""
    ck = ck or _checker(g)
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
            # organ systems (HPO categories) of the stem and of each option: the audit's category shortcut
            "systems": {"stem": _system_names(g, ck.stem_systems(q)),
                        "options": {l: _system_names(g, ck.systems(o)) for l, o in zip(letters, options)}},
            "graph_sources": g.info.get("sources", [])}
    return make_record(f"kg-{seed}-{i:06d}", "kg", split, question, [verbalize.option_text(g, o) for o in options],
                       letters[options.index(q.answer)], None, meta)


@command("kg.sample", usage=(SourceError,))
def main(argv=None):
    ap = ArgumentParser(prog="python -m kg.sample",
                        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--graph", help="folder written by python -m kg.build (not needed for --audit)")
    ap.add_argument("--out", help="output JSONL (appended to; ids already there are skipped, so a rerun resumes)")
    ap.add_argument("--n", type=int_at_least(1), default=1000, help="number of questions (an index that yields none is skipped)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--options", type=int_at_least(2), default=5, help="options per question (answer + distractors)")
    ap.add_argument("--mix", default=DEFAULT_MIX, help=f"template=weight list (default {DEFAULT_MIX})")
    ap.add_argument("--hops", type=parse_hops, default=None, help="keep only templates with these hop counts, e.g. 2,3")
    ap.add_argument("--alpha", type=float_in(-math.inf, math.inf), default=1.0,
                    help="rarity weight: focus drawn with prob ~ (degree+1)^-alpha")
    ap.add_argument("--rare-boost", type=float_in(0, math.inf, open_low=True), default=8.0,
                    help="extra weight for rare diseases (DO rare slim, Orphanet); --alpha 0 --rare-boost 1 draws "
                         "uniformly")
    ap.add_argument("--split", default="train")
    ap.add_argument("--stats", default=None, help="Markdown stats report (default: OUT with .stats.md)")
    ap.add_argument("--check", default=None, help="instead of generating, re-check this JSONL against the graph")
    ap.add_argument("--audit", default=None, help="instead of generating, run the shortcut solvers on this JSONL")
    args = ap.parse_args(argv)
    if args.audit:
        print_audit(audit(list(read_jsonl(args.audit)), args.seed))
        return
    if not args.graph:
        ap.error("--graph is required unless --audit is given")
    g = Graph.load(args.graph)
    if args.check:
        n, bad = check_file(g, args.check)
        print(f"{n} questions checked, {sum(bad.values())} fail" + "".join(f"\n  {k}: {v}" for k, v in bad.items()))
        sys.exit(1 if bad else 0)
    if not args.out:
        ap.error("--out is required when generating")
    stats = args.stats or os.path.splitext(args.out)[0] + ".stats.md"
    check_outputs(files=[args.out, stats])
    mix = parse_mix(args.mix, Sampler.TEMPLATES)
    s = Sampler(g, alpha=args.alpha, rare_boost=args.rare_boost)
    if "sider" not in g.info.get("sources", []):
        mix.pop("side_effect", None)  # no side-effect edges without the (opt-in) SIDER source
    hops = args.hops
    have_before = list(read_jsonl(args.out, torn_tail=True)) if os.path.exists(args.out) else []  # checked first:
    seen = {content_key(r, args.out) for r in have_before}  # a wrong --out is refused before it is touched
    done = {r["id"] for r in have_before}
    if drop_torn_tail(args.out):
        print(f"{args.out}: dropped a half-written last line (a killed run); resuming")
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
            r = to_record(g, *got, i, args.seed, args.split, s.ck)
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
    with open(stats + ".tmp", "w") as f:  # replaced whole: a kill leaves the old report or the new one
        f.write(stats_markdown(g, s, recs, mix))
    os.replace(stats + ".tmp", stats)
    print(f"{len(recs)} questions in {args.out} ({failed} indices gave no question); stats -> {stats}")
    if have < args.n:
        print(f"warning: only {have} of {args.n} questions could be drawn with this mix", file=sys.stderr)


_CHECKERS = {}


def _checker(g):
    """One Checker per graph for to_record's categories (its caches make the second call cheap)."""
    if id(g) not in _CHECKERS:
        _CHECKERS.clear()
        _CHECKERS[id(g)] = Checker(g)
    return _CHECKERS[id(g)]


def content_key(rec, path):
    """The content key of a question already in --out; a record without one means --out is another file."""
    key = rec["meta"].get("content_key")
    if not isinstance(key, str):
        raise UsageError(f"{path}: record {rec['id']!r} has no meta.content_key: not a kg.sample output "
                         "(give --out a new file, or the one this command wrote)")
    return key


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
    lines += ["", "Rare-flagged: a disease in DO's rare slim, or (without a DOID) an Orphanet disease. Low-degree: "
              "focus degree at or below the 25th percentile of its template's pool. 'uniform' is the same share "
              "when the focus is drawn uniformly from the pool.", "",
              "Questions by hops: " + ", ".join(f"{h} hops {c:,}" for h, c in sorted(by_h.items())), "",
              "| answer letter | count | share |", "|---|---:|---:|"]
    for l in sorted(letters):
        lines.append(f"| {l} | {letters[l]:,} | {letters[l] / n:.1%} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
