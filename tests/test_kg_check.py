"""kg/check.py on questions drawn from a small real graph (the fixtures of test_kg_sample): every question
passes the Checker and an independent brute-force re-check; each rule (a consistent distractor, fewer than two
broken facts, a shared specific finding, sibling subtypes and same-concept options, an unconfirmed gold fact)
is planted and caught; the audit catches a planted shortcut."""
import copy
from collections import Counter

from kg.build import RELS, SOURCES
from kg.check import CLOSURE, Checker, Question, audit, option_key, record_to_question, same_concept, siblings
from test_kg_sample import graph, questions  # noqa: F401  (module fixtures: the graph and 250 questions)


class Brute:
    """A naive evaluator on the raw edge arrays (no CSR, no caches shared with the Checker)."""

    def __init__(self, g):
        self.g = g
        self.edges = set(zip(g.src.tolist(), [RELS[r] for r in g.rel.tolist()], g.dst.tolist()))
        self.children, self.subj, self.obj = {}, {}, {}
        for s, r, d in self.edges:
            self.subj.setdefault((r, d), set()).add(s)
            self.obj.setdefault((s, r), set()).add(d)
            if r == "subclass_of":
                self.children.setdefault(d, []).append(s)

    def holds(self, s, rel, o):
        """s rel o, or for closure relations s rel (any is_a descendant of o)."""
        targets, todo = {o}, [o]
        while todo and rel in CLOSURE:
            for c in self.children.get(todo.pop(), []):
                if c not in targets:
                    targets.add(c)
                    todo.append(c)
        return any((s, rel, t) in self.edges for t in targets)

    def fits(self, facts, ask, x, hidden):
        """Can x fill `ask` with every fact true, for some value of the (at most one) hidden variable?"""
        if not hidden:
            values = [None]
        else:  # values of the hidden variable linked to x by the fact joining them
            v, values = hidden[0], set()
            for s, r, o in facts:
                if s == v and o == ask:
                    values |= self.subj.get((r, x), set())
                if s == ask and o == v:
                    values |= self.obj.get((x, r), set())
        for y in values:
            bind = {ask: x} if y is None else {ask: x, hidden[0]: y}
            if all(self.holds(bind.get(s, s), r, bind.get(o, o)) for s, r, o in facts):
                return True
        return False


def test_uniqueness_checker_and_independent_recheck(graph, questions):
    g, _ = graph
    ck, brute = Checker(g), Brute(g)
    checked = Counter()
    for i, (q, options), rec in questions:
        assert ck.check(q, options) is None
        q2, opts2 = record_to_question(g, rec)  # what was written re-checks the same way
        assert opts2 == options and ck.check(q2, opts2) is None
        hidden = [v for v in q.var_types if v != q.ask]
        if len(hidden) > 1:
            continue
        for o in options:  # brute force on the raw arrays: the answer fits, no distractor does
            assert brute.fits(q.facts, q.ask, o, hidden) == (o == q.answer), (rec["question"], g.names[o])
        checked[q.template] += 1
    assert sum(checked.values()) > 150


def test_checker_rejects_a_consistent_distractor(graph, questions):
    g, _ = graph
    ck = Checker(g)
    planted = 0
    for _, (q, options), _ in questions:
        others = [x for x in ck.answers(q.facts, q.var_types, q.ask) - {q.answer}
                  if x not in options and not ck.related(x, q.answer)
                  and not any(same_concept(g.names[x], g.names[o]) for o in options)]
        if others:
            k = next(k for k, o in enumerate(options) if o != q.answer)
            bad = list(options)
            bad[k] = others[0]
            why = ck.check(q, bad)  # a finding of a drug's disease is caught first as one the disease has
            assert "also satisfies every stated fact" in why or (q.template == "drug_finding" and "fits the disease" in why)
            planted += 1
    assert planted > 10
    q, options = questions[0][1]
    assert ck.check(q, [options[1]] + options[1:]) is not None  # a duplicate option


def test_distractor_must_break_two_facts(graph, questions):
    """Keep only the facts a distractor satisfies plus one it breaks: the checker now rejects it."""
    g, _ = graph
    ck = Checker(g)
    planted = 0
    for _, (q, options), _ in questions:
        if q.template != "diagnosis":
            continue
        for x in [o for o in options if o != q.answer]:  # every distractor (the first is often a frequent key)
            fits = [f for f in q.facts if x in ck.near(f[1], f[2])]  # met, or met by a near neighbour finding
            broken = [f for f in q.facts if x not in ck.near(f[1], f[2])]
            assert len(broken) >= 2  # what the sampler wrote already obeys the rule
            if len(fits) < 1:
                continue
            q2 = Question(q.template, q.hops, fits + broken[:1], q.var_types, q.ask, q.answer, q.focus, q.path)
            assert ck.misses(q2, x) == 1
            assert "breaks fewer than 2 stated facts" in ck.check(q2, [q.answer, x])
            planted += 1
    assert planted >= 5


def test_distractor_must_not_share_a_specific_finding(graph, questions):
    """A disease that has a stated finding few diseases have is a differential, whatever else it misses."""
    g, _ = graph
    ck = Checker(g)
    planted = 0
    for _, (q, options), _ in questions:
        if q.template != "diagnosis":
            continue
        assert not any(ck.shared_key_finding(q, o) for o in options if o != q.answer)
        ok = ck.answers(q.facts, q.var_types, q.ask)
        for _, r, p in q.facts:
            if r != "has_phenotype" or len(ck.subjects(r, p)) > 10:
                continue
            xs = [x for x in ck.subjects(r, p) if x not in ok and not ck.related(x, q.answer)
                  and ck.misses(q, x) >= ck.needed_misses(q) and option_key(g.names[x]) != option_key(g.names[q.answer])]
            if xs:  # a disease the other rules let through, sharing the specific finding p
                assert ck.shared_key_finding(q, xs[0]) is not None  # p, or an earlier one it shares too
                assert "has the specific finding" in ck.check(q, [q.answer, xs[0]])
                planted += 1
                break
    assert planted >= 3


def test_no_sibling_subtypes_or_same_concept_options(graph, questions):
    assert siblings("Neu-Laxova syndrome 1", "Neu-Laxova syndrome 2")
    assert siblings("Surfactant metabolism dysfunction, pulmonary, 4", "Surfactant metabolism dysfunction, pulmonary, 5")
    assert siblings("Joubert syndrome 13", "Joubert syndrome with ocular defect")
    assert siblings("Spastic paraplegia 4, autosomal dominant", "Spastic paraplegia 7, autosomal recessive")
    assert not siblings("Meckel syndrome 10", "Joubert syndrome 35")
    assert same_concept("Immunoneurologic disorder, X-linked", "X-linked immunoneurologic disorder")
    assert same_concept("Trigonocephaly-short stature-developmental delay syndrome",
                        "Trigonocephaly with short stature and developmental delay")
    assert same_concept("Histamine-1 Receptor Inhibitor", "Histamine-1 Receptor Antagonist")
    assert same_concept("Prostaglandin Analog", "Prostaglandin E1 Analog")
    assert same_concept("Histamine-1 Receptor Inhibitor", "Histamine H1 Receptor Antagonists")
    assert not same_concept("Histamine-1 Receptor Inhibitor", "Histamine H2 Receptor Antagonists")
    assert not same_concept("Autosomal dominant inheritance", "Autosomal recessive inheritance")
    g, _ = graph
    ck = Checker(g)
    for want, rename in (("sibling subtypes", lambda a: a + " 2"), ("name one concept", lambda a: "X " + a)):
        for _, (q, options), _ in questions:
            if q.template == "diagnosis":
                a, b = [o for o in options if o != q.answer][:2]
                break
        old = g.names[b]
        g.names[b] = rename(g.names[a]) if want == "name one concept" else rename(g.names[a]) .replace(" 2", "") + " 2"
        try:
            if want == "sibling subtypes":
                g.names[a], keep_a = g.names[a] + " 1", g.names[a]
            why = ck.check(q, options)
        finally:
            g.names[b] = old
            if want == "sibling subtypes":
                g.names[a] = keep_a
        assert want in why, why


def test_gold_fact_needs_a_trusted_source(graph, questions):
    g, _ = graph
    ck = Checker(g)
    q, options = next(x for _, x, _ in questions if x[0].template == "diagnosis_gene")
    s, r, o = q.path[-1]
    e = g.find_edge(s, r, o)
    assert ck.check(q, options) is None
    old = g.prov[e]
    g.prov[e] = 1 << SOURCES.index("wikidata")  # the same fact, stated by Wikidata alone
    try:  # a Checker caches each edge's trust: a changed graph gets a new one
        assert "rests on one unconfirmed source" in Checker(g).check(q, options)
        g.prov[e] |= 1 << SOURCES.index("hsdn")  # confirmed by a second source: accepted
        assert Checker(g).check(q, options) is None
    finally:
        g.prov[e] = old


def test_audit_catches_a_planted_shortcut(questions):
    recs = [r for _, _, r in questions]
    res = audit(recs)
    assert res["sibling_pairs"] == res["same_concept_pairs"] == res["unconfirmed_golds"] == 0
    assert set(res["solvers"]) == {"longest option", "most word overlap with the stem",
                                   "most frequent answer of its template", "most similar to the other options",
                                   "option seen least often in other questions",
                                   "only option from the stem's organ system"}
    bad = copy.deepcopy(recs)
    for r in bad:  # the gold made the longest option, and a distractor renamed as a reordered gold
        r["options"][r["answer"]] += " (as described in the literature)" * 20
    assert audit(bad)["solvers"]["longest option"]["accuracy"] == 1.0
    r = bad[0]
    other = next(l for l in r["options"] if l != r["answer"])
    r["options"][other] = " ".join(reversed(r["options"][r["answer"]].split()))
    assert audit(bad)["same_concept_pairs"] >= 1
