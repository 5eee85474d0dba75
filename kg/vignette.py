"""The vignette: findings of a disease (and an onset) that point to it, a hallmark first, and the competing
diagnoses that share them. Mixed into kg/sample.py's QuestionSampler (it needs FocusPools' findings).
"""
import math
from collections import Counter

from kg.check import same_concept
from kg.pools import PRENATAL_ONSET, per_node


class Vignettes:
    """A stem's findings for one disease, and the diseases that compete with it."""
    def vignette(self, d, rng, spec=2, exclude=()):
        """Choose findings (and an onset) of disease d, `spec` of them specific; return (facts on ?d,
        consistent diseases). A question that asks past the diagnosis (its gene, mode, treatment) wants 3:
        the examinee must recognise the disease without seeing its name among the options."""
        g, ck = self.g, self.ck
        found = [p for p in self.usable_findings(d) if not any(p == x or ck.related(p, x) for x in exclude)]
        rng.shuffle(found)
        # specific findings first (fewer diseases share them), a lab or imaging finding early when there is one
        # and hallmark findings (present in most patients) before occasional ones
        freq = self.finding_freq(d)
        found.sort(key=lambda p: math.log(len(ck.subjects("has_phenotype", p)) + 1) + rng.random() * 2
                   - (1.5 if g.type_name(p) != "phenotype" else 0) - (1.5 if freq.get(p, 0) >= 0.8 else 0))
        hall = self.hallmarks(d)
        hall = [p for p in hall if p in found]
        if hall:  # the stem opens with one finding that characterises the disease
            first = rng.choice(hall)
            found.remove(first)
            found.insert(0, first)
        key = (self.cardinal(d) or (None,))[0]
        if key is not None and key in found and key != found[0]:
            # and keeps its cardinal sign, however many diseases share it (Woodhouse-Sakati syndrome without its
            # alopecia, present in every patient, was a stem of streak ovaries only; kg/REVIEW.md)
            found.remove(key)
            found.insert(1 if hall else 0, key)
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

    def finding_freq(self, d):
        """{finding: HPO frequency} of disease d (computed once per disease; callers only read it)."""
        key = ("freq", d)
        if key not in self._memo:
            g = self.g
            self._memo[key] = {int(g.dst[e]): g.freq[e] for e in g.out_edges(d, "has_phenotype")}
        return self._memo[key]

    @per_node
    def cardinal(self, d):
        """(p,) for the sign that defines d to a clinician: of its usable clinical findings (not a laboratory or
        imaging result) the most frequent, when HPO gives it as present in every patient (obligate, 100%), the
        least shared on a tie; () otherwise. The vignette's specificity order alone drops it when many diseases
        share it (alopecia, deafness), and the stem is then unique only inside the graph."""
        g = self.g
        freq = self.finding_freq(d)
        signs = [p for p in self.usable_findings(d) if g.type_name(p) == "phenotype" and freq[p] >= 1.0]
        if not signs:
            return ()
        return (min(signs, key=lambda p: (len(self.ck.subjects("has_phenotype", p)), p)),)

    def competitors(self, facts, exclude):
        """Diseases sharing some of the stated findings, most shared first (the competing diagnoses)."""
        score = Counter()
        for s, r, o in facts:
            if s == "?d" and r == "has_phenotype" and not isinstance(o, str):
                for x in self.ck.subjects(r, o):
                    if x not in exclude:
                        score[x] += 1
        return [x for x, _ in score.most_common(200)]
