"""kg/verbalize.py: stems say what the facts say (findings, age from onset) and never the answer."""
import pytest

from kg.build import build
from kg.check import Question
from kg.sample import QuestionSampler, generate_one, parse_mix
from kg.verbalize import ONSET, join, llm_rewrite, lower_first, stem


@pytest.fixture(scope="module")
def g(shared):
    return build(str(shared / "kg-sources"), ["hpo", "do", "drugcentral"], hpo_diseases={"OMIM:275000", "ORPHA:558"})


def test_small_helpers():
    assert lower_first("Global developmental delay") == "global developmental delay"
    assert lower_first("EEG abnormality") == "EEG abnormality"
    assert join(["a", "b", "c"]) == "a, b and c" and join(["a"]) == "a"


def test_vignette_from_real_graves_facts(g):
    d = g.index["OMIM:275000"]
    lab = g.index["HP:0034490"] if "HP:0034490" in g.index else None  # Increased circulating free T3, when present
    tremor, goiter = g.index["HP:0001337"], g.index["HP:0000853"]
    facts = [("?d", "has_phenotype", tremor), ("?d", "has_phenotype", goiter)]
    if lab is not None and g.find_edge(d, "has_phenotype", lab) is not None:
        facts.append(("?d", "has_phenotype", lab))
    onset = g.out(d, "onset").tolist()
    facts += [("?d", "onset", o) for o in onset[:1]]
    q = Question("diagnosis", 1, facts, {"?d": ("disease",)}, "?d", d, d, [])
    text = stem(g, q)
    assert "tremor" in text and "goiter" in text and text.endswith("most likely diagnosis?")
    assert "graves" not in text.lower()
    if onset:
        assert text.startswith(ONSET.get(g.names[onset[0]], "A patient").split(" ")[0])
    if len(facts) > 2 and lab is not None:
        assert "Laboratory" in text or "Investigations" in text or "Testing" in text


def test_generated_stems_do_not_name_the_answer(g):
    s = QuestionSampler(g)
    mix = parse_mix("diagnosis=1,diagnosis_treatment=1,drug_for_disease_target=1,drug_mechanism=1",
                    QuestionSampler.TEMPLATES)
    n = 0
    for i in range(40):
        got = generate_one(s, i, 0, mix, 4)
        if got is None:
            continue
        q, options = got
        text = stem(g, q)
        assert g.names[q.answer].lower() not in text.lower(), text
        assert text.endswith("?")
        n += 1
    assert n >= 35


def test_llm_rewrite_keeps_or_rejects():
    rec = {"id": "x", "source": "kg", "split": "train", "question": "A patient presents with tremor. Which drug?",
           "options": {"A": "Methimazole", "B": "Aspirin"}, "answer": "A", "difficulty": None, "meta": {}}
    out = llm_rewrite(rec, lambda msgs: "A 30-year-old woman has a fine tremor. Which drug is indicated?")
    assert out["question"].startswith("A 30-year-old") and out["meta"]["template_question"] == rec["question"]
    assert llm_rewrite(rec, lambda msgs: "Tremor; give methimazole. Which drug?") is rec  # leaks the answer
    assert llm_rewrite(rec, lambda msgs: "  ") is rec
