"""kg/sample.py: questions from a small real graph; every one passes the uniqueness checker and an
independent brute-force re-check; letters balanced; rarity weighting; resume; an unseen Wikidata file."""
import copy
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from eval.records import read_jsonl, validate_record
from kg.build import RELS, SOURCES, build
from kg.build import main as build_main
from kg.sample import (CLOSURE, GROUPING, Checker, Question, Sampler, audit, generate_one, main, option_key, parse_mix,
                       record_to_question, same_concept, siblings, to_record, DEFAULT_MIX)

FIXTURE = Path(__file__).parent / "fixtures" / "kg" / "wikidata_diseases_unseen.jl"
# real HPO diseases, several with DrugCentral drugs after the DO join
DISEASES = {"OMIM:275000", "ORPHA:803", "OMIM:137580", "OMIM:154700", "ORPHA:558", "OMIM:219700", "ORPHA:586",
            "OMIM:143100", "ORPHA:399", "OMIM:300376", "ORPHA:98896", "OMIM:310200", "OMIM:607208", "OMIM:300624",
            "ORPHA:908", "OMIM:105400", "OMIM:176000", "OMIM:222100", "OMIM:601665", "OMIM:612359"}


@pytest.fixture(scope="module")
def graph(shared, tmp_path_factory):
    g = build(str(shared / "kg-sources"), ["hpo", "do", "drugcentral", "hsdn", "wikidata"], hpo_diseases=DISEASES)
    out = tmp_path_factory.mktemp("kg") / "g"
    g.save(out)
    return g, out


@pytest.fixture(scope="module")
def questions(graph):
    g, _ = graph
    s = Sampler(g)
    # gene questions are out of the default mix but still drawn on request, and checked like the others
    mix = parse_mix(DEFAULT_MIX.replace(",side_effect=1", "") + ",diagnosis_gene=1.5", Sampler.TEMPLATES)
    out = []
    for i in range(250):
        got = generate_one(s, i, 0, mix, 5)
        if got:
            out.append((i, got, to_record(g, *got, i, 0)))
    return out


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


def test_records_valid_and_templates_covered(questions):
    assert len(questions) >= 240
    recs = [r for _, _, r in questions]
    for r in recs:
        validate_record(r)
        assert len(set(r["options"].values())) == len(r["options"]) == 5
        assert r["meta"]["path"] and all(e["sources"] for e in r["meta"]["path"])
    assert len({r["id"] for r in recs}) == len(recs)
    assert {r["meta"]["template"] for r in recs} >= {"diagnosis", "diagnosis_gene", "diagnosis_treatment",
                                                     "treatment_class", "drug_mechanism", "drug_for_disease_target"}
    assert {r["meta"]["hops"] for r in recs} == {1, 2, 3}


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
            assert "also satisfies every stated fact" in ck.check(q, bad)
            planted += 1
    assert planted > 10
    q, options = questions[0][1]
    assert ck.check(q, [options[1]] + options[1:]) is not None  # a duplicate option


def test_letters_balanced(questions):
    letters = Counter(r["answer"] for _, _, r in questions)
    n = len(questions)
    assert set(letters) == set("ABCDE")
    assert max(letters.values()) - min(letters.values()) <= 6  # exact on every full block of 5 indices
    assert all(abs(c - n / 5) <= 6 for c in letters.values())


def test_rare_entities_favoured(graph):
    g, _ = graph
    s0, s1 = Sampler(g, alpha=0.0, rare_boost=1.0), Sampler(g, alpha=1.0)
    nodes, w1 = s1.pool("drug_mechanism")
    _, w0 = s0.pool("drug_mechanism")
    low = g.degree[nodes] <= np.quantile(g.degree[nodes], 0.25)
    assert w0[low].sum() == pytest.approx(low.mean())
    assert w1[low].sum() > low.mean() + 0.1
    rng = np.random.default_rng(0)
    draws = rng.choice(len(nodes), 2000, p=w1)
    assert low[draws].mean() > low.mean() + 0.1


def test_cli_resume_and_check(graph, tmp_path, capsys):
    _, gdir = graph
    out = tmp_path / "q.jsonl"
    args = ["--graph", str(gdir), "--out", str(out), "--seed", "3", "--options", "4"]
    main(args + ["--n", "20"])
    first = out.read_text().splitlines()
    main(args + ["--n", "40"])  # resumes: the first 20 stay, 20 more appended
    both = out.read_text().splitlines()
    assert both[:20] == first and len(both) == 40
    fresh = tmp_path / "fresh.jsonl"
    main(["--graph", str(gdir), "--out", str(fresh), "--seed", "3", "--options", "4", "--n", "40"])
    assert fresh.read_text().splitlines() == both  # deterministic in (seed, index)
    stats = (tmp_path / "q.stats.md").read_text()
    assert "| A | 10 | 25.0% |" in stats and "low-degree" in stats
    with pytest.raises(SystemExit) as e:
        main(["--graph", str(gdir), "--check", str(out)])
    assert e.value.code == 0 and "0 fail" in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:
        main(["--graph", str(tmp_path / "nowhere"), "--out", str(out)])
    assert "nodes.json: not found" in str(e.value.code)


def test_extra_wikidata_file_is_additive_and_untrusted_alone(shared):
    """--wikidata-diseases adds to the shared file (medicines included); a fact only Wikidata states is no
    ground for a gold answer, so a disease known only from it yields no question."""
    g = build(str(shared / "kg-sources"), ["hpo", "do", "drugcentral", "wikidata"], hpo_diseases=set(),
              extra={"wikidata": {"extra_diseases": [str(FIXTURE)]}})
    new = [g.index[json.loads(line)["DiseaseURI"].replace("http://www.wikidata.org/entity/", "WD:")]
           for line in FIXTURE.read_text().splitlines()]
    assert sum(g.ids[d].startswith("DOID:") for d in new) >= 6  # joined to the Disease Ontology by label
    assert "WD:Q170102" in g.index  # scrapie, the first record of the shared file, is still read
    assert any(k.startswith("WD:") and g.type_name(g.index[k]) == "drug" for k in g.index)  # and the medicines
    s = Sampler(g, only=new)
    mix = parse_mix("diagnosis=1,diagnosis_treatment=1", Sampler.TEMPLATES)
    got = [generate_one(s, i, 0, mix, 4) for i in range(10)]
    for x in got:
        assert x is None or Checker(g).check(*x) is None
    only_wd = [d for d in g.of_type("disease").tolist() if g.ids[d].startswith("WD:") and len(g.out(d, "has_phenotype"))]
    assert only_wd and all(not s.usable_findings(d) for d in only_wd)


def test_distractor_must_break_two_facts(graph, questions):
    """Keep only the facts a distractor satisfies plus one it breaks: the checker now rejects it."""
    g, _ = graph
    ck = Checker(g)
    planted = 0
    for _, (q, options), _ in questions:
        if q.template != "diagnosis":
            continue
        x = next(o for o in options if o != q.answer)
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


def test_rare_disease_stem_opens_with_a_hallmark(graph, questions):
    """A diagnosis or gene question states a finding that most patients of its disease have (HPO frequency
    >= 80%) and few other diseases share; a disease without one is not asked about."""
    g, _ = graph
    s = Sampler(g)
    n = 0
    for _, (q, _), _ in questions:
        if q.template in ("diagnosis", "diagnosis_gene"):
            p = q.facts[0][2]
            e = g.find_edge(q.focus, "has_phenotype", p)
            assert g.freq[e] >= 0.8 and len(s.ck.subjects("has_phenotype", p)) <= s.hallmark_max
            n += 1
    assert n >= 30
    assert GROUPING.search("Abnormal circulating enzyme concentration or activity")  # a heading, never stated
    assert not GROUPING.search("Elevated circulating creatine kinase concentration")
    d = int(s.pool("diagnosis")[0][0])
    es = [g.find_edge(d, "has_phenotype", p) for p in s.hallmarks(d)]
    old = g.freq[es].copy()
    g.freq[es] = 0.5  # its hallmarks now seen in half the patients only
    try:
        assert d not in Sampler(g).pool("diagnosis")[0]
    finally:
        g.freq[es] = old


def test_rare_disease_needs_a_gene_or_a_second_vocabulary(graph, monkeypatch):
    """An Orphanet-only disease without a gene (a clinical grouping such as radiation proctitis) is not asked."""
    g, _ = graph
    s = Sampler(g)
    nodes = s.pool("diagnosis")[0].tolist()
    assert nodes and all(s.established(d) for d in nodes)
    d = nodes[0]
    old = g.ids[d]
    g.ids[d] = "ORPHA:0"  # known to Orphanet alone
    try:
        assert s.established(d) == bool(s.answers_of("diagnosis_gene", d))
        monkeypatch.setattr(Sampler, "answers_of", lambda self, t, x: [])  # and without a gene
        assert not s.established(d) and d not in Sampler(g).pool("diagnosis")[0]
    finally:
        g.ids[d] = old


def test_target_named_by_an_id_is_not_asked(graph, questions):
    g, _ = graph
    qs = [q for _, (q, _), _ in questions if q.template == "drug_for_disease_target"]
    assert qs and all(":" not in g.names[q.facts[1][2]] for q in qs)
    drug, t = qs[0].focus, qs[0].facts[1][2]
    s = Sampler(g)
    assert any(g.dst[e] == t for e in s._targets(drug))
    old = g.names[t]
    g.names[t] = "NCBIGene:908646"
    try:
        assert not any(g.dst[e] == t for e in s._targets(drug))
    finally:
        g.names[t] = old


def test_gold_fact_needs_a_trusted_source(graph, questions):
    g, _ = graph
    ck = Checker(g)
    q, options = next(x for _, x, _ in questions if x[0].template == "diagnosis_gene")
    s, r, o = q.path[-1]
    e = g.find_edge(s, r, o)
    assert ck.check(q, options) is None
    old = g.prov[e]
    g.prov[e] = 1 << SOURCES.index("wikidata")  # the same fact, stated by Wikidata alone
    try:
        assert "rests on one unconfirmed source" in ck.check(q, options)
        g.prov[e] |= 1 << SOURCES.index("hsdn")  # confirmed by a second source: accepted
        assert ck.check(q, options) is None
    finally:
        g.prov[e] = old


def test_audit_catches_a_planted_shortcut(questions):
    recs = [r for _, _, r in questions]
    res = audit(recs)
    assert res["sibling_pairs"] == res["same_concept_pairs"] == res["unconfirmed_golds"] == 0
    assert set(res["solvers"]) == {"longest option", "most word overlap with the stem",
                                   "most frequent answer of its template", "most similar to the other options",
                                   "option seen least often in other questions"}
    bad = copy.deepcopy(recs)
    for r in bad:  # the gold made the longest option, and a distractor renamed as a reordered gold
        r["options"][r["answer"]] += " (as described in the literature)" * 20
    assert audit(bad)["solvers"]["longest option"]["accuracy"] == 1.0
    r = bad[0]
    other = next(l for l in r["options"] if l != r["answer"])
    r["options"][other] = " ".join(reversed(r["options"][r["answer"]].split()))
    assert audit(bad)["same_concept_pairs"] >= 1


@pytest.mark.slow
def test_full_graph_shortcuts_near_chance_and_rarity_weighting(shared, tmp_path, capsys):
    """2,000 questions from the full default graph: every shortcut solver within chance + 8 points, no
    sibling/same-concept pairs or unconfirmed golds, and the rarity weighting moves the share of rare-disease
    focus by at least 15 points against uniform sampling."""
    build_main(["--kg-sources", str(shared / "kg-sources"), "--out", str(tmp_path / "kg")])
    args = ["--graph", str(tmp_path / "kg"), "--n", "2000", "--seed", "1"]
    main(args + ["--out", str(tmp_path / "q.jsonl")])
    main(args + ["--out", str(tmp_path / "u.jsonl"), "--alpha", "0", "--rare-boost", "1"])
    recs = list(read_jsonl(tmp_path / "q.jsonl"))
    res = audit(recs)
    for name, v in res["solvers"].items():
        assert v["accuracy"] <= res["chance"] + 0.08, (name, v["accuracy"])
    assert res["sibling_pairs"] == res["same_concept_pairs"] == res["unconfirmed_golds"] == 0
    drugs = ("drug_mechanism", "drug_for_disease_target", "side_effect")  # their focus is a drug, never rare
    rare = lambda rs: np.mean([r["meta"]["focus_rare"] for r in rs if r["meta"]["template"] not in drugs])
    assert rare(recs) - rare(list(read_jsonl(tmp_path / "u.jsonl"))) >= 0.15
