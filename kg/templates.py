"""The question templates: each draws a Question (stated facts, the asked variable, its answer, the walked path
and plausible candidates for distractors) around one focus entity, or None. Disease templates start from a
vignette (findings -> disease -> ...); drug templates from a named drug. kg/sample.py's QuestionSampler mixes
these with FocusPools, Vignettes and Distractors.
"""
import re
from collections import Counter

import numpy as np

from kg.build import FINDINGS, RELS
from kg.check import Question, implies
from kg import verbalize
from kg.pools import NOT_A_SIGN, SPECTRUM, VAGUE, class_families


# an option of a drug's disease: neither vague nor a research measurement
REFUSE_FINDING = re.compile(f"{VAGUE.pattern}|{NOT_A_SIGN.pattern}", re.I)


class DiseaseTemplates:
    """findings -> disease -> (itself, gene, mode, drug, cause, test, drug class, drug target); each template
    returns a Question or None."""
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
        # the class must explain the drug's use (epinephrine's beta, not its alpha, agonism for asthma)
        drugs = [x for x in self.trusted_in(d, "indicated_for") if self.drug_ok(x) and self.explaining_classes(x, d)]
        if not drugs:
            return None
        drug = rng.choice(drugs)
        c = rng.choice(self.explaining_classes(drug, d))
        facts = facts + [("?drug", "indicated_for", "?d"), ("?drug", "in_class", "?c")]
        cands = []
        for comp in self.competitors(facts, cons)[:60]:
            for x in self.g.inn(comp, "indicated_for").tolist():
                cands += [k for k in self._moa_classes(x) if k not in cands]
        path = [(d, r, o) for s, r, o in facts if s == "?d" and not isinstance(o, str)]
        path += [(drug, "indicated_for", d), (drug, "in_class", c)]
        # no distractor of the transmitter family of a class any source gives a drug for d ('Sympathomimetic-like
        # Agent' or 'alpha-Adrenergic Agonist' in an asthma question: adrenergic drugs are asthma drugs)
        fams = {f for x in self.g.inn(d, "indicated_for").tolist() for k in self._moa_classes(x)
                for f in class_families(self.g.names[k])}
        return Question("treatment_class", 3, facts, {"?d": ("disease",), "?drug": ("drug",), "?c": ("drug_class",)},
                        "?c", c, d, path, cands, {"avoid_families": fams})

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


class DrugTemplates:
    """A named drug -> its class; a drug named by two facts; a drug -> its side effect."""
    def t_drug_mechanism(self, drug, rng):
        """1 hop: a named drug (and one disease it is indicated for) -> its mechanism / class."""
        g = self.g
        c = rng.choice(self._moa_classes(drug))
        facts = [(drug, "in_class", "?c")]
        # a class whose drugs hit the same target, or treat the same disease, may describe this drug too
        ctx = {"avoid_kin": set(g.out(drug, "targets").tolist()) | set(self._indications(drug)),
               "avoid_families": class_families(g.names[c]) & SPECTRUM}
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
        if ("acting", action) not in self._memo:  # every drug acting so on some target, in edge order
            self._memo["acting", action] = [int(g.src[k]) for k in np.flatnonzero(g.rel == RELS.index("targets"))
                                            if g.attrs[g.attr[k]] == action]
        cands = list(self._memo["acting", action])
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


class DrugChainTemplates:
    """Two hops from a named drug: the disease it points to, then a finding of that disease; the target it acts on,
    then another drug acting on that target the same way."""

    def t_drug_finding(self, drug, rng):
        """2 hops: drug -> indicated_for ?d -> has_phenotype ?f (starting riluzole points to ALS, and ALS to
        fasciculations). The drug points to one disease (points_to); distractors are findings of none of the
        diseases any source gives the drug for (the checker's query reads every indication row)."""
        g = self.g
        d = self.points_to(drug)[0]
        a = rng.choice(self.pointing_findings(d))
        facts = [(drug, "indicated_for", "?d"), ("?d", "has_phenotype", "?f")]
        # the pointing findings of the other diseases drugs point to: answers of the same template, other systems
        # too (the category rule in distractors() keeps the stem's organ systems first)
        cands = []
        for x in self.pool("drug_finding")[0].tolist():
            for p in self.answers_of("drug_finding", x):
                if p not in cands and self.points_to(x)[0] != d:
                    cands.append(p)
        rng.shuffle(cands)
        return Question("drug_finding", 2, facts, {"?d": ("disease",), "?f": FINDINGS}, "?f", a, d,
                        [(drug, "indicated_for", d), (d, "has_phenotype", a)], cands,
                        {"refuse": REFUSE_FINDING, "names_avoid": self.neighbour_uses(drug, d)})

    def t_shared_target(self, drug, rng):
        """2 hops: drug -> targets ?t <- targets ?y (timolol and carteolol both block ADRB1). Distractors act on
        none of the drug's targets and share no mechanism class with it (avoid_kin)."""
        g = self.g
        y = rng.choice(self.target_partners(drug))
        shared = [int(g.dst[e]) for e in self._targets(drug) if int(g.dst[e]) in g.out(y, "targets").tolist()]
        t = shared[0]
        facts = [(drug, "targets", "?t"), ("?y", "targets", "?t")]
        # plausible wrong drugs: those for the same diseases acting otherwise, then any drug with a class
        cands = [x for d in self._indications(drug) for x in self._drugs_for(d) if x != drug]
        rng.shuffle(cands)
        ctx = {"avoid_kin": self._kin(drug) | self._kin(y)}
        return Question("shared_target", 2, facts, {"?t": ("gene",), "?y": ("drug",)}, "?y", y, drug,
                        [(drug, "targets", t), (y, "targets", t)], cands, ctx)
