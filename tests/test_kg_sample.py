"""kg/sample.py: questions from a small real graph (test_kg_check re-checks them rule by rule): records valid,
templates covered, letters balanced; rarity weighting; hallmark findings and established diseases; resume and
--check; an unseen Wikidata file; on the full graph, shortcuts near chance and the rarity effect."""
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from eval.records import read_jsonl, validate_record
from kg.build import build
from kg.build import main as build_main
from kg.check import Checker, audit
from kg.pools import GROUPING
from kg.sample import QuestionSampler, generate_one, main, parse_mix, to_record, DEFAULT_MIX

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
    s = QuestionSampler(g)
    # gene and test questions are out of the default mix but still drawn on request, and checked like the others
    mix = parse_mix(DEFAULT_MIX + ",diagnosis_gene=1.5,diagnosis_test=1.5", QuestionSampler.TEMPLATES)
    mix.pop("side_effect")  # no SIDER in this graph
    out = []
    for i in range(250):
        got = generate_one(s, i, 0, mix, 5)
        if got:
            out.append((i, got, to_record(g, *got, i, 0)))
    return out


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


def test_letters_balanced(questions):
    letters = Counter(r["answer"] for _, _, r in questions)
    n = len(questions)
    assert set(letters) == set("ABCDE")
    assert max(letters.values()) - min(letters.values()) <= 6  # exact on every full block of 5 indices
    assert all(abs(c - n / 5) <= 6 for c in letters.values())


def test_rare_entities_favoured(graph):
    g, _ = graph
    s0, s1 = QuestionSampler(g, alpha=0.0, rare_boost=1.0), QuestionSampler(g, alpha=1.0)
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
    torn = tmp_path / "torn.jsonl"  # killed mid-write: 20 whole lines and half of the 21st
    torn.write_text("\n".join(both[:20]) + "\n" + both[20][:50])
    main(args[:2] + ["--out", str(torn)] + args[4:] + ["--n", "40"])  # resumes (it raised RecordError)
    assert torn.read_text().splitlines() == both and "dropped a half-written last line" in capsys.readouterr().out
    stats = (tmp_path / "q.stats.md").read_text()
    assert "| A | 10 | 25.0% |" in stats and "low-degree" in stats
    with pytest.raises(SystemExit) as e:
        main(["--graph", str(gdir), "--check", str(out)])
    assert e.value.code == 0 and "0 fail" in capsys.readouterr().out
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:  # exit 1 before; now a usage error, one line
        main(["--graph", str(tmp_path / "nowhere"), "--out", str(out)])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "nodes.json: not found" in err and err.count("\n") == 1
    for flag, value, msg in (("--n", "-5", "--n: -5: must be >= 1"), ("--options", "1", "--options: 1: must be >= 2")):
        with pytest.raises(SystemExit) as e:  # --n -5 ran and wrote nothing useful; --options 1 was a traceback
            main(args + [flag, value])
        assert e.value.code == 2 and msg in capsys.readouterr().err


def test_question_i_does_not_depend_on_what_was_drawn_before(graph):
    """kg.sample's resume rests on this: question i is a function of (graph, seed, i), whatever the process drew
    before it (its caches of findings, pools and subjects). Drawn backwards on one QuestionSampler, after a warm-up
    on other indices, each question equals the one a fresh QuestionSampler draws."""
    g, _ = graph
    mix = parse_mix(DEFAULT_MIX, QuestionSampler.TEMPLATES)
    fresh = lambda i: generate_one(QuestionSampler(g), i, 7, mix, 5)
    warm = QuestionSampler(g)
    for i in range(60, 100):
        generate_one(warm, i, 8, mix, 5)
    idx = [3, 11, 17, 24, 38]
    back = {i: generate_one(warm, i, 7, mix, 5) for i in reversed(idx)}
    n = 0
    for i in idx:
        a, b = fresh(i), back[i]
        assert (a is None) == (b is None)
        if a:
            assert to_record(g, *a, i, 7) == to_record(g, *b, i, 7)
            n += 1
    assert n >= 3


def test_cli_resume_after_each_batch_equals_one_run(graph, tmp_path):
    """The kill -9 test of test_cli in small: a run stopped after k whole lines (or a torn one more) and rerun
    writes the uninterrupted output and stats byte for byte."""
    _, gdir = graph
    args = ["--graph", str(gdir), "--seed", "4", "--n", "24"]
    main(args + ["--out", str(tmp_path / "ref.jsonl")])
    want = (tmp_path / "ref.jsonl").read_bytes()
    lines = want.splitlines(keepends=True)
    for k, torn in ((5, False), (13, True)):
        out = tmp_path / f"r{k}.jsonl"
        out.write_bytes(b"".join(lines[:k]) + (lines[k][:40] if torn else b""))
        main(args + ["--out", str(out)])
        assert out.read_bytes() == want
        assert (tmp_path / f"r{k}.stats.md").read_bytes() == (tmp_path / "ref.stats.md").read_bytes()


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
    s = QuestionSampler(g, only=new)
    mix = parse_mix("diagnosis=1,diagnosis_treatment=1", QuestionSampler.TEMPLATES)
    got = [generate_one(s, i, 0, mix, 4) for i in range(10)]
    for x in got:
        assert x is None or Checker(g).check(*x) is None
    only_wd = [d for d in g.of_type("disease").tolist() if g.ids[d].startswith("WD:") and len(g.out(d, "has_phenotype"))]
    assert only_wd and all(not s.usable_findings(d) for d in only_wd)


def test_rare_disease_stem_opens_with_a_hallmark(graph, questions):
    """A diagnosis or gene question states a finding that most patients of its disease have (HPO frequency
    >= 80%) and few other diseases share; a disease without one is not asked about."""
    g, _ = graph
    s = QuestionSampler(g)
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
        assert d not in QuestionSampler(g).pool("diagnosis")[0]
    finally:
        g.freq[es] = old


def test_rare_disease_needs_a_gene_or_a_second_vocabulary(graph, monkeypatch):
    """An Orphanet-only disease without a gene (a clinical grouping such as radiation proctitis) is not asked."""
    g, _ = graph
    s = QuestionSampler(g)
    nodes = s.pool("diagnosis")[0].tolist()
    assert nodes and all(s.established(d) for d in nodes)
    d = nodes[0]
    old = g.ids[d]
    g.ids[d] = "ORPHA:0"  # known to Orphanet alone
    try:
        assert s.established(d) == bool(s.answers_of("diagnosis_gene", d))
        monkeypatch.setattr(QuestionSampler, "answers_of", lambda self, t, x: [])  # and without a gene
        assert not s.established(d) and d not in QuestionSampler(g).pool("diagnosis")[0]
    finally:
        g.ids[d] = old


def test_target_named_by_an_id_is_not_asked(graph, questions):
    g, _ = graph
    qs = [q for _, (q, _), _ in questions if q.template == "drug_for_disease_target"]
    assert qs and all(":" not in g.names[q.facts[1][2]] for q in qs)
    drug, t = qs[0].focus, qs[0].facts[1][2]
    s = QuestionSampler(g)
    assert any(g.dst[e] == t for e in s._targets(drug))
    old = g.names[t]
    g.names[t] = "NCBIGene:908646"
    try:  # a QuestionSampler caches what it computes from its graph: a changed graph needs a new one
        assert not any(g.dst[e] == t for e in QuestionSampler(g)._targets(drug))
    finally:
        g.names[t] = old


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
    drugs = ("drug_mechanism", "drug_for_disease_target", "side_effect", "shared_target")  # a drug focus, never rare
    rare = lambda rs: np.mean([r["meta"]["focus_rare"] for r in rs if r["meta"]["template"] not in drugs])
    assert rare(recs) - rare(list(read_jsonl(tmp_path / "u.jsonl"))) >= 0.15
