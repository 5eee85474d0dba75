"""data/distill.py: teacher distillation against a real loopback chat server (pass@k, refinement rounds,
every filter counted, kill and resume), the verifiable-signal filters (data.signals' arithmetic and units, applied
to real HuatuoGPT-o1 chains with planted faults; the optional LLM guideline check), the selection rule, templated
trajectories for real KG questions, and the HuatuoGPT-o1 converter on the real file with decontamination."""
import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from data.distill import (assistant, load_bench, convert_huatuogpt, main, pick, reference, repetition,
                          teacher_messages, templated, verdict)
from eval.answer import build_prompt, extract_answer, format_ok
from eval.records import make_record, read_jsonl, write_jsonl
from test_data_signals import BODY, BODY_ZH, CALC_FAULTS, CALC_RIGHT, UNIT_SWAPS, huatuo, planted  # noqa: F401
from test_eval_llm import ChatServer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ZH_OPTS = ["感染性心内膜炎", "风湿热", "心肌炎", "心包炎"]
EN_OPTS = ["Infective endocarditis", "Rheumatic fever", "Myocarditis", "Pericarditis"]
CALC_BODY = BODY + " Two major criteria and one minor criterion: 2 + 1 = 4 criteria in all."
UNITS_BODY = BODY + " His temperature of 38.9 mmHg fits the infection."
# tag -> gold letter; behaviour of the fake teacher below
TAGS = {"easy": "A", "leak": "B", "backtrack": "C", "selfcorrect": "D", "never": "A", "format": "B",
        "short": "C", "long": "D", "repeat": "A", "lang": "B", "zh": "C", "calc": "D", "unit": "A"}


def rec_for(tag, gold):
    zh = tag in ("lang", "zh")
    q = (f"[{tag}] 一名45岁男性，发热两周。最可能的诊断是什么？" if zh else
         f"[{tag}] A 45-year-old man has had fever for two weeks. Which of the following is the most likely diagnosis?")
    opts = list(ZH_OPTS if zh else EN_OPTS)
    i = "ABCD".index(gold)
    opts[0], opts[i] = opts[i], opts[0]  # the gold letter holds the right disease
    return make_record(f"q-{tag}", "test", "train", q, opts, gold)


def reply(think, letter):
    return f"<think>\n{think}\n</think>\n<answer>{letter}</answer>"


class Teacher:
    """Answers depend on the prompt: the item's tag, the gold letter it was shown, the strategy named."""

    def __init__(self):
        self.log = []  # (tag, round) per request

    def __call__(self, messages, i):
        first = messages[0]["content"]
        tag = re.search(r"\[(\w+)\]", first).group(1)
        gold = re.search(r"Correct answer: ([A-Z])\.", first).group(1)
        wrong = "A" if gold != "A" else "B"
        rnd = (len(messages) - 1) // 2
        m = re.search(r"This time use ([a-z ]+):", messages[-1]["content"]) if rnd else None
        strategy = m.group(1) if m else None
        if i == 0:
            self.log.append((tag, rnd))
        body = BODY_ZH if tag == "zh" or (tag == "lang" and rnd) else BODY
        if tag == "easy":  # 0 hedged, 1 long, 2 short: the rule takes 2
            return reply([f"Maybe so. {BODY} [c0]", f"{BODY} Blood cultures and an echocardiogram would confirm it. [c1]",
                          f"{BODY} [c2]"][i], gold)
        if tag == "leak":
            return [reply(f"The correct answer is given as {gold}, so: {BODY}", gold), reply(BODY, wrong),
                    reply(f"{BODY} So the correct answer is {gold}.", gold)][i]
        if tag in ("backtrack", "selfcorrect", "never"):
            right = {"backtrack": "backtracking", "selfcorrect": "self correction"}.get(tag, "-") == strategy
            return reply(body, gold if right else wrong)
        if rnd:
            return reply(body, gold)
        return {"format": f"{BODY}\n<answer>{gold}</answer>", "short": reply("Endocarditis.", gold),
                "calc": reply(CALC_BODY, gold), "unit": reply(UNITS_BODY, gold),
                "long": reply(" ".join(f"finding{j}" for j in range(300)), gold),
                "repeat": reply("the patient has fever " * 20, gold), "lang": reply(BODY, gold),
                "zh": reply(body, gold)}[tag]


# ----------------------------------------------------------------------------- checks


def test_verdict_names_each_reason():
    en, zh = rec_for("x", "A"), rec_for("zh", "A")
    assert verdict(reply(BODY, "A"), en) is None
    assert verdict(reply(BODY, "B"), en) == "wrong_answer"
    assert verdict(f"{BODY}\n<answer>A</answer>", en) == "format"                  # no </think>
    assert verdict(f"{BODY}</think>\n<answer>A</answer>", en) is None              # template-opened <think>
    assert verdict(reply(BODY, "A or B"), en) == "format"                          # no single choice
    for leak in ("The correct answer is given as A.", "Since the provided answer is A,", "Checking the answer key,",
                 "We are told the answer is A.", "Correct answer: A. Infective endocarditis",
                 "The answer provided is A.", "The reasoning skeleton says so.", "Per the knowledge graph,"):
        assert verdict(reply(f"{leak} {BODY}", "A"), en) == "leakage", leak
    assert verdict(reply(f"{BODY} Hence the correct answer is A.", "A"), en) is None  # a conclusion, not a leak
    assert verdict(reply(f"Among the given answer choices, one fits. {BODY}", "A"), en) is None
    assert verdict(reply(f"已知正确答案为A。{BODY_ZH}", "A"), zh) == "leakage"
    assert verdict(reply("Endocarditis.", "A"), en) == "too_short"
    assert verdict(reply(" ".join(f"w{j}" for j in range(120)), "A"), en, max_words=100) == "too_long"
    assert verdict(reply("the patient has fever " * 20, "A"), en) == "repetition"
    assert verdict(reply(BODY, "A"), zh) == "language"
    assert verdict(reply(BODY_ZH, "A"), en) == "language"
    assert verdict(reply(BODY_ZH + " Streptococcus viridans, HACEK, Duke criteria.", "A"), zh) is None
    assert repetition(BODY) == 0 and repetition("a b c d e f " * 10) > 0.8
    assert verdict(reply(CALC_BODY, "A"), en) == "calculation"
    assert verdict(reply(CALC_BODY.replace("= 4", "= 3"), "A"), en) is None
    assert verdict(reply(UNITS_BODY, "A"), en) == "units"
    assert verdict(reply(UNITS_BODY.replace("mmHg", "°C"), "A"), en) is None


def test_pick_old_rule_fewest_hedges_then_shortest():
    outs = [reply(f"Perhaps. {BODY}", "A"), reply(f"{BODY} {BODY}", "A"), reply(BODY, "A"), reply(BODY, "A")]
    assert pick(outs, [None, None, None, None], "fewest_hedges") == 2
    assert pick(outs, [None, None, "wrong_answer", None], "fewest_hedges") == 3
    assert pick(outs, [None, "leakage", "format", "format"], "fewest_hedges") == 0
    assert pick(outs, ["format"] * 4, "fewest_hedges") is None


# ----------------------------------------------------------------------------- verifiable signals, real chains
# data.signals' checks are tested in test_data_signals; here, that verdict() applies them to whole replies.


def test_verdict_rejects_planted_signal_faults_in_real_chains(huatuo):
    for i, old, new in CALC_FAULTS:
        think, rec = planted(huatuo, i, old, new)
        assert verdict(assistant(think, rec), rec) == "calculation", (i, new)
    think, rec = planted(huatuo, *CALC_RIGHT)
    assert verdict(assistant(think, rec), rec) is None
    for i, old, new in UNIT_SWAPS:
        think, rec = planted(huatuo, i, old, new)
        assert verdict(assistant(think, rec), rec) == "units", (i, new)


def test_pick_prefers_stated_assumptions_and_uncertainty_then_shortest(huatuo):
    chains = {i: t for i, (_, t) in enumerate(huatuo)}
    # real chains (test_data_signals): 155 and 172 state one limit, 133 both, 3 neither, with no hedge at all
    outs = [reply(chains[i], "A") for i in (3, 155, 172, 133)]
    assert pick(outs[:2], [None, None]) == 1 and pick(outs[:2], [None, None], "fewest_hedges") == 0
    assert pick(outs[:3], [None] * 3) == 2                      # both state one: the shorter (289 vs 313 words)
    assert pick(outs, [None] * 4) == 3                          # states both
    assert pick(outs, [None, None, None, "units"]) == 2


# ----------------------------------------------------------------------------- teacher, end to end


def test_teacher_pass_at_k_refinement_filters_and_kill_resume(tmp_path):
    recs = [rec_for(t, g) for t, g in TAGS.items()]
    write_jsonl(tmp_path / "in.jsonl", recs)
    out = tmp_path / "out"
    teacher = Teacher()
    with ChatServer(teacher, delay_s=0.15) as srv:
        args = ["--records", str(tmp_path / "in.jsonl"), "--out", str(out), "--endpoint", srv.url, "--model-name",
                "teacher", "--k", "3", "--rounds", "3", "--max-words", "200", "--concurrency", "1",
                "--backoff", "0.01"]
        proc = subprocess.Popen([sys.executable, "-m", "data.distill", *args], cwd=ROOT,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        round0, deadline = out / "round0.jsonl", time.time() + 60
        while time.time() < deadline and proc.poll() is None:
            if round0.exists() and round0.read_text().count("\n") >= 3:
                break
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        finished = {r["id"].split("/")[1][2:] for r in read_jsonl(round0, validate=False, skip_bad=True)}
        assert 3 <= len(finished) < len(TAGS)  # killed in the middle of round 0
        while srv.inflight:  # the killed client's last request still reaches the teacher after its delay
            time.sleep(0.01)
        teacher.log.clear()
        srv.delay_s = 0
        main(args)  # resume
        redone = [t for t, rnd in teacher.log if rnd == 0 and t in finished]
        assert redone == [], "the resume asked again for items already written"
        stats = json.loads((out / "stats.json").read_text())
        teacher.log.clear()
        main(args)  # a third run has nothing left to ask
        assert teacher.log == []
    assert stats["items"] == 13 and stats["kept"] == 12 and stats["failed"] == 1
    assert stats["kept_by_round"] == {"0": 3, "1": 8, "3": 1}
    r0, r1, r2, r3 = stats["rounds"]
    assert (r0["items"], r0["candidates"], r0["passed_candidates"], r0["items_passed"]) == (13, 39, 7, 3)
    assert r0["reasons"] == {"wrong_answer": 10, "leakage": 1, "format": 3, "too_short": 3, "too_long": 3,
                             "repetition": 3, "language": 3, "calculation": 3, "units": 3}
    assert stats["guideline"] == {"no_reference": 7 + 24 + 3}  # passing candidates; none has reference text
    assert (r1["strategy"], r1["items"], r1["items_passed"]) == ("backtracking", 10, 8)
    assert r1["reasons"] == {"wrong_answer": 6}
    assert (r2["strategy"], r2["items"], r2["items_passed"]) == ("path_exploration", 2, 0)
    assert (r3["strategy"], r3["items"], r3["items_passed"]) == ("self_correction", 2, 1)
    for r in range(4):  # every round file holds each of its items once
        ids = [x["id"] for x in read_jsonl(out / f"round{r}.jsonl", validate=False)]
        assert len(ids) == len(set(ids)) == [13, 10, 2, 2][r]

    sft = {s["id"]: s for s in read_jsonl(out / "sft.jsonl", validate=False)}
    by_id = {r["id"]: r for r in recs}
    assert set(sft) == {f"q-{t}" for t in TAGS if t != "never"}
    assert [r["id"] for r in read_jsonl(out / "failed.jsonl")] == ["q-never"]
    for sid, s in sft.items():
        rec = by_id[sid]
        assert s["source"] == "test"
        assert set(s["meta"]) == {"teacher", "prompt", "round", "strategy", "candidates", "passed", "guideline"}
        user, asst = s["messages"]
        assert user == build_prompt(rec)[0]  # exactly what eval and GRPO show the model
        assert re.fullmatch(r"<think>\n.+\n</think>\n<answer>[A-D]</answer>", asst["content"], re.S)
        assert format_ok(asst["content"], rec["options"])
        assert extract_answer(asst["content"], rec["options"]) == rec["answer"]
        assert s["meta"]["teacher"] == "teacher" and s["meta"]["candidates"] == 3
        assert "Correct answer: " + rec["answer"] in s["meta"]["prompt"][0]["content"]
    assert sft["q-easy"]["messages"][1]["content"].endswith("[c2]\n</think>\n<answer>A</answer>")
    assert sft["q-easy"]["meta"]["passed"] == 3 and sft["q-leak"]["meta"]["passed"] == 1
    assert "given as" not in sft["q-leak"]["messages"][1]["content"]
    bt = sft["q-backtrack"]["meta"]
    assert (bt["round"], bt["strategy"], len(bt["prompt"])) == (1, "backtracking", 3)
    assert bt["prompt"][1]["content"] == reply(BODY, "A")  # the failed attempt, shown back
    assert "it concluded A, but the correct answer is C" in bt["prompt"][2]["content"]
    assert "its format was wrong" in sft["q-format"]["meta"]["prompt"][2]["content"]
    assert "not written in Chinese" in sft["q-lang"]["meta"]["prompt"][2]["content"]
    assert "a calculation in it is wrong: " in sft["q-calc"]["meta"]["prompt"][2]["content"]
    assert "wrong: 2 + 1 = 4 (it is 3)" in sft["q-calc"]["meta"]["prompt"][2]["content"]
    assert "wrong unit: temperature given as '38.9 mmHg'" in sft["q-unit"]["meta"]["prompt"][2]["content"]
    assert sft["q-lang"]["messages"][1]["content"].startswith("<think>\n" + BODY_ZH)
    assert (sft["q-selfcorrect"]["meta"]["round"], sft["q-selfcorrect"]["meta"]["strategy"]) == (3, "self_correction")
    md = (out / "stats.md").read_text()
    assert "| 1 | backtracking | 10 | 30 | 24 | 8 | wrong_answer 6 |" in md
    assert "candidates rejected over all rounds: calculation 3, units 3, guideline 0" in md
    assert "consistent 0, contradicts 0, unclear 0, skipped 0, no_reference 34" in md


def test_resume_with_other_teacher_settings_is_refused(tmp_path, capsys):
    write_jsonl(tmp_path / "in.jsonl", [rec_for("easy", "A")])
    with ChatServer(Teacher()) as srv:
        args = ["--records", str(tmp_path / "in.jsonl"), "--out", str(tmp_path / "o"), "--endpoint", srv.url,
                "--model-name", "t", "--k", "3"]
        main(args)
        capsys.readouterr()
        with pytest.raises(SystemExit) as e:
            main(args[:-1] + ["5"])
        err = capsys.readouterr().err
        assert e.value.code == 2 and err.count("\n") == 1 and err.startswith("data.distill: error: "), err
        assert "--k 3 -> 5" in err
        main(args + ["--max-words", "10"])  # filter flags may change: verdicts are recomputed
    stats = json.loads((tmp_path / "o" / "stats.json").read_text())
    assert stats["kept"] == 0 and stats["rounds"][0]["reasons"] == {"too_long": 3}


def test_bad_input_is_one_clear_error(tmp_path, capsys):
    """A user mistake is exit 2 and one stderr line "data.distill: error: ..." naming it."""
    def error_of(argv):
        capsys.readouterr()
        with pytest.raises(SystemExit) as e:
            main(argv)
        err = capsys.readouterr().err
        assert e.value.code == 2 and err.count("\n") == 1 and err.startswith("data.distill: error: "), err
        return err

    (tmp_path / "in.jsonl").write_text(json.dumps(rec_for("easy", "A")) + "\n{broken\n")
    assert re.search(r"in\.jsonl:2: invalid JSON",
                     error_of(["--records", str(tmp_path / "in.jsonl"), "--out", str(tmp_path / "o"), "--template"]))
    write_jsonl(tmp_path / "twice.jsonl", [rec_for("easy", "A")] * 2)
    assert re.search(r"ids occur more than once.*test/q-easy",
                     error_of(["--records", str(tmp_path / "twice.jsonl"), "--out", str(tmp_path / "o"),
                               "--endpoint", "http://x", "--model-name", "t"]))
    assert "nope.json: file not found" in error_of(["--huatuogpt", str(tmp_path / "nope.json"), "--out",
                                                    str(tmp_path / "o")])
    (tmp_path / "list.json").write_text("{}")
    assert "expected a JSON list of items, got a dict" in error_of(["--huatuogpt", str(tmp_path / "list.json"),
                                                                    "--out", str(tmp_path / "o")])
    assert "unknown benchmark 'nope'" in error_of(["--huatuogpt", str(tmp_path / "list.json"), "--out",
                                                   str(tmp_path / "o"), "--bench", "nope=x.jsonl"])
    assert "--endpoint 'localhost:8000': not an http" in error_of(
        ["--records", str(tmp_path / "twice.jsonl"), "--out", str(tmp_path / "o2"), "--endpoint", "localhost:8000",
         "--model-name", "t"])
    assert "give a teacher" in error_of(["--records", str(tmp_path / "twice.jsonl"), "--out", str(tmp_path / "o2")])
    assert not (tmp_path / "o2").exists()  # nothing made for a run that never started


# ----------------------------------------------------------------------------- KG: the path as skeleton


@pytest.fixture(scope="module")
def kg_records(shared):
    from kg.build import build
    from kg.sample import QuestionSampler, generate_one, parse_mix, to_record
    from test_kg_sample import DISEASES
    g = build(str(shared / "kg-sources"), ["hpo", "do", "drugcentral"], hpo_diseases=DISEASES)
    s = QuestionSampler(g)
    # every template but side_effect, equally: on this small graph the default mix's drug chains find no trusted
    # indication, and the test wants trajectories of several templates
    names = QuestionSampler.TEMPLATES
    mix = parse_mix(",".join(f"{t}=1" for t in names if t != "side_effect"), names)
    return [to_record(g, *got, i, 0) for i in range(40) if (got := generate_one(s, i, 0, mix, 5))]


def test_templated_kg_trajectories_and_teacher_skeleton(kg_records, tmp_path):
    assert len({r["meta"]["template"] for r in kg_records}) >= 4
    for rec in kg_records:
        out = templated(rec)
        assert verdict(out, rec) is None, (out, verdict(out, rec))
        assert extract_answer(out, rec["options"]) == rec["answer"]
        think = out.lower()
        for e in rec["meta"]["path"]:  # every hop of the sampled path is in the reasoning
            assert e["subject_name"].lower() in think and e["object_name"].lower() in think
        assert rec["options"][rec["answer"]].lower() in think
        prompt = teacher_messages(rec)[0]["content"]
        assert "Reasoning skeleton" in prompt and prompt.count("\n- ") == len(rec["meta"]["path"])
    assert "Reasoning skeleton" not in teacher_messages(rec_for("x", "A"))[0]["content"]
    write_jsonl(tmp_path / "kg.jsonl", kg_records + [rec_for("x", "A")])
    main(["--records", str(tmp_path / "kg.jsonl"), "--out", str(tmp_path / "o"), "--template"])
    stats = json.loads((tmp_path / "o" / "stats.json").read_text())
    assert stats == {"items": len(kg_records) + 1, "kept": len(kg_records), "skip:no_kg_path": 1}
    sft = list(read_jsonl(tmp_path / "o" / "sft.jsonl", validate=False))
    assert [s["id"] for s in sft] == [r["id"] for r in kg_records]
    assert sft[0]["meta"] == {"teacher": "template", "prompt": None, "round": 0, "strategy": None,
                              "candidates": 1, "passed": 1}


def test_guideline_check_judge_optional_skipped_without(kg_records, tmp_path):
    """Real KG questions (their path facts are the reference text) and one item without reference. Candidate 0
    contradicts a path fact and is the shorter; candidate 1 is consistent. Item 0's round-0 candidates both
    contradict, so only the judge sends it to refinement."""
    recs = kg_records[:3] + [rec_for("x", "A")]
    by_question = {r["question"]: r for r in recs}
    facts = {r["id"]: reference(r) for r in recs}
    assert all(facts[r["id"]] for r in recs[:3]) and facts["q-x"] == []
    judge_prompts = []

    def serve(messages, i):
        first = messages[0]["content"]
        if first.startswith("Below are reference statements"):
            judge_prompts.append(first)
            body = first.split("Solution:")[1]
            return "CONTRADICTS: it denies a stated fact" if "NOT linked" in body else "CONSISTENT"
        rec = next(r for q, r in by_question.items() if q in first)
        if rec["id"] == "q-x":
            return reply(BODY, "A")
        think = templated(rec).split("</think>")[0].removeprefix("<think>\n").strip()
        e = rec["meta"]["path"][-1]
        lie = f"Note that {e['subject_name']} is NOT linked to {e['object_name']}. {think}"
        rnd = (len(messages) - 1) // 2
        if rec is recs[0] and rnd == 0:
            return reply(lie + (" Every finding fits." if i else ""), rec["answer"])
        return reply([lie, think + " Each finding above was checked against the stem once more, and every one "
                                   "of them fits."][i % 2], rec["answer"])

    write_jsonl(tmp_path / "in.jsonl", recs)
    out = tmp_path / "o"
    with ChatServer(serve) as srv:
        args = ["--records", str(tmp_path / "in.jsonl"), "--out", str(out), "--endpoint", srv.url,
                "--model-name", "t", "--k", "2", "--rounds", "1"]
        main(args)  # no judge: the check is skipped and counted so, and the contradicting chain wins on length
        stats = json.loads((out / "stats.json").read_text())
        assert stats["guideline"] == {"skipped": 6, "no_reference": 2} and stats["kept_by_round"] == {"0": 4}
        sft = {s["id"]: s for s in read_jsonl(out / "sft.jsonl", validate=False)}
        assert "NOT linked" in sft[recs[1]["id"]]["messages"][1]["content"]
        assert sft[recs[1]["id"]]["meta"]["guideline"] == "skipped"
        assert sft["q-x"]["meta"]["guideline"] == "no_reference"
        assert judge_prompts == []
        asked = len(srv.log)
        main(args + ["--judge-endpoint", srv.url, "--judge-model-name", "judge"])  # same replies, now judged
        assert len(srv.log) - asked == 6 + 1 + 1  # 6 chains judged, item 0 refined, its one new chain judged
        for f in facts[recs[1]["id"]]:
            assert any(f in p for p in judge_prompts)
        stats = json.loads((out / "stats.json").read_text())
        sft = {s["id"]: s for s in read_jsonl(out / "sft.jsonl", validate=False)}
        assert stats["rounds"][0]["reasons"] == {"guideline": 4} and stats["kept_by_round"] == {"0": 3, "1": 1}
        assert stats["guideline"] == {"contradicts": 5, "consistent": 3, "no_reference": 2}
        for r in recs[:3]:
            assert "NOT linked" not in sft[r["id"]]["messages"][1]["content"]
            assert sft[r["id"]]["meta"]["guideline"] == "consistent"
        assert "it contradicts the reference facts (CONTRADICTS: it denies" in \
            sft[recs[0]["id"]]["meta"]["prompt"][2]["content"]
        asked = len(srv.log)
        main(args + ["--judge-endpoint", srv.url, "--judge-model-name", "judge"])
        assert len(srv.log) == asked  # a rerun asks neither teacher nor judge again
    md = (out / "stats.md").read_text()
    assert "guideline check of the candidates that passed the other filters: consistent 3, contradicts 5" in md
    with pytest.raises(SystemExit) as e:
        main(args[:4] + ["--template", "--judge-endpoint", "http://x", "--judge-model-name", "j"])
    assert e.value.code == 2
    with pytest.raises(SystemExit) as e:
        main(args + ["--judge-endpoint", "http://x"])
    assert e.value.code == 2


# ----------------------------------------------------------------------------- HuatuoGPT-o1 demo


def test_huatuogpt_real_file_filtered_and_decontaminated(shared, tmp_path):
    path = shared / "data" / "huatuogpt_o1_demo" / "demo_data.json"
    bench = load_bench([], str(shared / "data"))
    limits = {"min_words": 20, "max_words": 1024, "max_repeat": 0.25}
    sft, dropped, stats = convert_huatuogpt(str(path), bench, limits)
    assert stats == {"items": 198, "kept": 183, "drop:item_missing_figure": 7, "drop:item_duplicate_options": 2,
                     "drop:item_option_refers_to_options": 2, "drop:calculation": 0, "drop:units": 0,
                     "drop:guideline": 0, "guideline:no_reference": 187,
                     "decontam:huatuo:medqa": 0, "decontam:huatuo:medmcqa": 4, "decontam:huatuo:pubmedqa": 0,
                     "decontam:huatuo:mmlu_pro_biology": 0, "decontam:huatuo:mmlu_pro_health": 0}
    assert len(dropped) == 15
    raw = json.loads(path.read_text())
    first = sft[0]
    i = int(first["id"].rsplit("-", 1)[1])
    rec = make_record("x", "huatuo", "train", raw[i]["question"], raw[i]["options"], raw[i]["answer_idx"])
    assert first["messages"][0] == build_prompt(rec)[0]
    cot, gold = raw[i]["Complex_CoT"].strip(), raw[i]["answer_idx"]
    assert first["messages"][1]["content"] == f"<think>\n{cot}\n</think>\n<answer>{gold}</answer>"
    # the same file with a contradicting Response, a leaking CoT and a looping CoT among the kept items
    kept = [int(s["id"].rsplit("-", 1)[1]) for s in sft[:3]]
    gold = raw[kept[0]]["answer_idx"]
    raw[kept[0]]["Response"] += f"\n\nThe answer is ({'A' if gold != 'A' else 'B'})."
    raw[kept[1]]["Complex_CoT"] = "The correct answer is given as the gold option. " + raw[kept[1]]["Complex_CoT"]
    raw[kept[2]]["Complex_CoT"] = "Let me think again. " * 80
    raw[45]["Complex_CoT"] = raw[45]["Complex_CoT"].replace("which equals 8,000", "which equals 7,000")
    raw[106]["Complex_CoT"] = raw[106]["Complex_CoT"].replace("25 grams of salt", "25 milligrams of salt")
    (tmp_path / "demo.json").write_text(json.dumps(raw))
    sft2, _, stats2 = convert_huatuogpt(str(tmp_path / "demo.json"), {"medqa": bench["medqa"]}, limits)
    assert len(sft2) == 178 + 4  # the 4 MedMCQA copies stay: only MedQA this time
    assert (stats2["drop:response_contradicts"], stats2["drop:leakage"], stats2["drop:repetition"]) == (1, 1, 1)
    assert (stats2["drop:calculation"], stats2["drop:units"]) == (1, 1)
