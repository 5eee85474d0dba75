"""kg/sample.py: questions from a small real graph; every one passes the uniqueness checker and an
independent brute-force re-check; letters balanced; rarity weighting; resume; an unseen Wikidata file."""
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from eval.records import read_jsonl, validate_record
from kg.build import RELS, build
from kg.sample import (CLOSURE, Checker, Sampler, generate_one, main, parse_mix, record_to_question, to_record,
                       DEFAULT_MIX, same_concept)

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
    mix = parse_mix(DEFAULT_MIX.replace(",side_effect=1", ""), Sampler.TEMPLATES)
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
