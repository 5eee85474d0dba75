"""Distractors: same-type entities that the checker proves wrong, drawn from the competing diagnoses, the
answers of other questions (as often as keys of the same frequency) and the stem's organ systems, so that no
shortcut solver of the audit beats chance. Mixed into kg/sample.py's QuestionSampler.
"""
from collections import Counter
from itertools import chain

import numpy as np

from kg.build import FINDINGS, RELS
from kg.check import content_words, expand, same_concept, shares_word, siblings
from kg.pools import PK_CLASS, class_families, per_node


class Distractors:
    """The wrong options of a question."""
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
        if home:  # a stable partition, computed only as far as the loop below reads it
            order = chain((x for x in order if ck.systems(x) & home), (x for x in order if not ck.systems(x) & home))
        order = chain(sorted(lures), freq, order)  # the frequent keys before the category preference
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
            if "refuse" in q.context and q.context["refuse"].search(g.names[x]):
                continue  # a name the template refuses as an option
            if g.type_name(x) == "drug_class" and (PK_CLASS.search(g.names[x]) or self._class_kin(x) & avoid
                                                   or class_families(g.names[x]) & q.context.get("avoid_families", set())):
                continue
            if g.type_name(x) == "disease" == g.type_name(q.answer) and self.twins(x, q.answer):
                continue  # a twin differential (biotinidase beside holocarboxylase synthetase deficiency)
            if any(ws <= content_words(g.names[x]) for ws in q.context.get("names_avoid", ())):
                continue  # names another use of the stem's drug ('recurrent bronchitis' for orciprenaline)
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

    def answer_draws(self, template, rng, k):
        """k entities drawn as the template draws its answers: a focus by the pool weights, then one of its answers."""
        nodes, w = self.pool(template)
        if ("cum", template) not in self._memo:  # the same floats each time: computed once
            self._memo["cum", template] = (np.cumsum(w), w.sum())
        cum, total = self._memo["cum", template]
        out = []
        for _ in range(k):
            xs = self.answers_of(template, int(nodes[np.searchsorted(cum, rng.random() * total)]))
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
