"""kg/world.py: the demo's world on the real graph (built once from ../shared/kg-sources): functional facts,
questions whose chain of thought is a chain of stated facts, options wrong by the whole graph, and the split rule
(held-out = 2-3 hop compositions never asked in training)."""
import random
from collections import Counter

import pytest

from eval.answer import extract_answer
from eval.records import shuffle_options
from kg import world as W
from kg.build import DEFAULT_SOURCES, Graph, build


@pytest.fixture(scope="module")
def graph(tmp_path_factory, shared):
    out = tmp_path_factory.mktemp("kg") / "kg"
    build(str(shared / "kg-sources"), DEFAULT_SOURCES.split(",")).save(str(out))
    return Graph.load(str(out))


@pytest.fixture(scope="module")
def world(graph):
    return W.build_world(graph, 40, seed=3)


def test_world_facts_are_functional_and_from_the_graph(graph, world):
    dis, drugs = world["diseases"], world["drugs"]
    assert 30 <= len(dis) <= 40
    assert len({w["drug"] for w in dis.values()}) == len(dis)  # a drug of its own: drug -> disease is a function
    genes = [w["gene"] for w in dis.values() if w["gene"]]
    assert len(set(genes)) == len(genes)
    for d, w in dis.items():
        node = graph.index[w["id"]]
        assert {graph.names[f] for f in graph.out(node, "has_phenotype")} >= set(w["findings"])
        drug = graph.index[drugs[w["drug"]]["id"]]
        assert node in graph.out(drug, "indicated_for").tolist()
        assert drugs[w["drug"]]["class"] in {graph.names[c] for c in graph.out(drug, "in_class")}
        assert drugs[w["drug"]]["target"] in {graph.names[t] for t in graph.out(drug, "targets")}
    for d, w in dis.items():  # the vignette's findings tell the disease apart within the world
        assert not any(o != d and set(w["findings"]) <= set(v["findings"]) for o, v in dis.items())


def test_every_cot_step_is_a_stated_fact_and_the_answer_is_the_gold_option(world):
    texts = {f["text"] for f in W.facts(world)}
    recs = W.questions(world, seed=3)
    assert {r["meta"]["hops"] for r in recs} == {1, 2, 3}
    for r in recs:
        steps = [s.strip() + "." for s in r["meta"]["cot"].split(".") if s.strip()]
        assert len(steps) == r["meta"]["hops"] and all(s in texts for s in steps), r["meta"]["cot"]
        assert r["options"][r["answer"]] == r["meta"]["answer_text"]
        assert len(set(r["options"].values())) == 5
        # the option's text alone in the tag is the answer (what the demo's CoT writes)
        assert extract_answer(f"<answer>{r['meta']['answer_text']}</answer>", r["options"]) == r["answer"]


def test_distractors_are_wrong_by_the_whole_graph(world):
    kg = world["kg"]
    for r in W.questions(world, seed=3):
        _, hops = W.TEMPLATES[r["meta"]["template"]]
        subj = r["meta"]["path"][-2]
        wrong = [v for k, v in r["options"].items() if k != r["answer"]]
        if hops[-1] == "class":
            assert not set(wrong) & set(kg[subj]["classes"])
        elif hops[-1] == "target":
            assert not set(wrong) & set(kg[subj]["targets"])
        elif hops[-1] == "drug":
            assert not set(wrong) & set(kg[subj]["drugs"])
        elif hops[-1] == "finding":
            assert not set(wrong) & set(kg[subj]["findings"])


def test_split_holds_out_whole_multi_hop_compositions(world):
    recs = W.questions(world, seed=3)
    train, held = W.split(recs, held=0.6, seed=3)
    assert len(train) + len(held) == len(recs)
    assert all(r["meta"]["hops"] > 1 for r in held)
    assert {r["id"] for r in recs if r["meta"]["hops"] == 1} <= {r["id"] for r in train}
    multi = sum(r["meta"]["hops"] > 1 for r in recs)
    assert abs(len(held) - 0.6 * multi) <= 1
    texts = [f["text"] for f in W.facts(world)]
    assert W.check_split(train, held, texts) == []
    # the rule catches a leak and a hop the knowledge phase never states
    assert W.check_split(train + held[:1], held, texts)[0].endswith("is also a training question")
    assert "no stated fact" in W.check_split(train, held, texts[: len(texts) // 3])[0]
    # the same seed splits the same way; another seed holds out other compositions
    assert [r["id"] for r in W.split(recs, 0.6, 3)[1]] == [r["id"] for r in held]
    assert {r["id"] for r in W.split(recs, 0.6, 4)[1]} != {r["id"] for r in held}


def test_write_and_cli(tmp_path, graph, world, capsys):
    fs, train, held = W.write(world, str(tmp_path / "w"), seed=3)
    for name in ("world.json", "facts.jsonl", "train.jsonl", "held.jsonl"):
        assert (tmp_path / "w" / name).exists()
    assert len(fs) > 10 * len(world["diseases"])
    for bad in ([], ["--options", "1"]):  # no graph there (exit 1 before); --options 1: one line, not the usage block
        with pytest.raises(SystemExit) as e:
            W.main(["--graph", str(tmp_path), "--out", str(tmp_path / "x")] + bad)
        err = capsys.readouterr().err
        assert e.value.code == 2 and err.count("\n") == 1 and err.startswith("kg.world: error: "), err


def test_shuffle_options_moves_the_answer_with_its_text():
    rec = {"id": "1", "options": {"A": "x", "B": "y", "C": "z", "D": "w"}, "answer": "B", "meta": {}}
    seen = Counter()
    for i in range(200):
        s = shuffle_options(rec, random.Random(i))
        assert s["options"][s["answer"]] == "y" and sorted(s["options"].values()) == ["w", "x", "y", "z"]
        assert list(s["options"]) == ["A", "B", "C", "D"]
        seen[s["answer"]] += 1
    assert set(seen) == {"A", "B", "C", "D"} and min(seen.values()) > 25  # every letter, roughly evenly
    multi = shuffle_options({**rec, "answer": "AC"}, random.Random(0))
    assert {multi["options"][a] for a in multi["answer"]} == {"x", "z"}
