"""The shared prompt builder and answer extractor, on real items and realistic messy outputs."""
import pytest

from conftest import SHARED
from eval.answer import build_prompt, extract_answer, score, strip_think
from eval.loaders import load_benchmark

DATA = SHARED / "data"


@pytest.fixture(scope="module")
def medqa():
    return load_benchmark("medqa", data_dir=str(DATA))


@pytest.fixture(scope="module")
def mmlu10():
    """A real MMLU-Pro item with ten options (A-J)."""
    return next(r for r in load_benchmark("mmlu_pro_health", data_dir=str(DATA)) if len(r["options"]) == 10)


def wrong_letter(rec):
    return next(l for l in rec["options"] if l != rec["answer"])


def test_prompt_lists_the_items_own_letters(medqa, mmlu10, shared):
    msgs = build_prompt(mmlu10)
    assert [m["role"] for m in msgs] == ["user"]
    text = msgs[0]["content"]
    assert mmlu10["question"].strip() in text
    for k, v in mmlu10["options"].items():
        assert f"\n{k}. {v}" in text
    assert "A, B, C, D, E, F, G, H, I or J" in text and "<answer></answer>" in text
    four = build_prompt(medqa[0], system="You are a doctor.")
    assert four[0] == {"role": "system", "content": "You are a doctor."}
    assert "(A, B, C or D)" in four[1]["content"] and "E." not in four[1]["content"]


def test_prompt_tells_multi_answer_items_to_give_all_letters(shared):
    s = {}
    rec = next(r for r in load_benchmark("cmexam", data_dir=str(DATA), skip_bad=True, stats=s)
               if r["meta"].get("multi_answer"))
    text = build_prompt(rec)[0]["content"]
    assert "more than one correct option" in text and "ALL" in text


def test_clean_and_decorated_letters(medqa):
    rec = medqa[0]
    a = rec["answer"]
    for out in [f"<answer>{a}</answer>", f"<answer>({a})</answer>", f"<answer>{a}.</answer>",
                f"<answer>{a.lower()}</answer>", f"<answer> **{a}** </answer>", f"<ANSWER>{a}</ANSWER>",
                f"<answer>\\boxed{{{a}}}</answer>", f"<answer>$\\boxed{{\\text{{{a}}}}}$</answer>",
                f"<answer>Answer: {a}</answer>", f"<answer>Option ({a})</answer>",
                f"<answer>{a}) {rec['options'][a]}</answer>", f"<answer>({a}) {rec['options'][a]}</answer>"]:
        assert score(rec, out) == (a, True), out


def test_full_width_letters_and_chinese_phrasing(medqa):
    rec = medqa[1]
    fw = chr(ord("Ａ") + ord(rec["answer"]) - ord("A"))
    assert extract_answer(f"<answer>{fw}</answer>", rec["options"]) == rec["answer"]
    assert extract_answer(f"<answer>（{fw}）</answer>", rec["options"]) == rec["answer"]
    assert extract_answer(f"分析如下……\n答案：{fw}", rec["options"]) == rec["answer"]


def test_option_text_instead_of_letter(medqa):
    rec = medqa[2]
    a = rec["answer"]
    text = rec["options"][a]
    assert extract_answer(f"<answer>{text}</answer>", rec["options"]) == a
    assert extract_answer(f"<answer>{text.upper()}.</answer>", rec["options"]) == a


def test_last_tag_wins_and_trailing_reasoning_is_ignored(medqa):
    rec = medqa[3]
    a, w = rec["answer"], wrong_letter(rec)
    out = (f"First I thought <answer>{w}</answer>, but the lab values rule that out.\n"
           f"<answer>{a}</answer>\n\nTo double-check: option {w} would explain the rash, "
           f"but the answer is ({w}) only if the patient were febrile, which he is not.")
    assert extract_answer(out, rec["options"]) == a
    # an empty echo of the format instruction is not an answer; the real one after it is
    assert extract_answer(f"I will answer in <answer></answer> tags.\n<answer>{a}</answer>", rec["options"]) == a


def test_qwen3_thinking_is_ignored(medqa):
    rec = medqa[4]
    a, w = rec["answer"], wrong_letter(rec)
    out = f"<think>\nMaybe <answer>{w}</answer>? No...\n</think>\n\n<answer>{a}</answer>"
    assert extract_answer(out, rec["options"]) == a
    # the template opened <think> in the prompt: only the closing tag is in the output
    assert extract_answer(f"so it is {w}...\n</think>\nThe answer is ({a}).", rec["options"]) == a
    # cut off while still thinking: no answer, even though a letter appears in the thoughts
    assert extract_answer(f"<think>The answer is ({a}), let me verify each option", rec["options"]) is None
    assert strip_think("<think>x</think>y") == "y"


def test_fallback_phrases_without_tags(medqa):
    rec = medqa[5]
    a = rec["answer"]
    for out in [f"Considering the findings, the answer is ({a}).", f"The correct answer is: **{a}**",
                f"Reasoning...\n\nFinal answer: {a}", f"\\boxed{{{a}}}", f"Long reasoning.\n\n{a}",
                f"Option {a} is correct because of the timeline.", f"**Answer:** {a}",
                f"The answer is: **({a})**", f"Final Answer: The final answer is $\\boxed{{{a}}}$",
                f"So the answer is {rec['options'][a].lower()}."]:
        assert extract_answer(out, rec["options"]) == a, out


def test_never_guesses(medqa, mmlu10):
    rec = medqa[6]
    opts, a, w = rec["options"], rec["answer"], wrong_letter(rec)
    assert extract_answer("", opts) is None
    assert extract_answer("I am not sure. This is a difficult question about physiology.", opts) is None
    assert extract_answer("The answer is a drug that lowers blood pressure.", opts) is None  # "a" is English
    assert extract_answer("<answer>A, B, C, D</answer>", opts) is None  # lists every option
    assert extract_answer("<answer>ABCD</answer>", opts) is None
    assert extract_answer(f"<answer>{a}</answer> or maybe <answer>{a} or {w}</answer>", opts) is None
    assert extract_answer(f"The answer is {a} or {w}.", opts) is None
    assert extract_answer(f"The answer is ({a}). On reflection the answer is ({w}).", opts) is None
    assert extract_answer(f"<answer>{a}) {opts[w]}</answer>", opts) is None  # letter with another option's text
    assert extract_answer("<answer>E</answer>", opts) is None  # not an option of a 4-option item
    assert extract_answer("<answer>the one with the best prognosis</answer>", opts) is None
    assert extract_answer(None, opts) is None
    # J exists for a ten-option item, not for a four-option one
    assert extract_answer("<answer>J</answer>", mmlu10["options"]) == "J"
    assert extract_answer("<answer>J</answer>", opts) is None


def test_pubmedqa_yes_no_maybe(shared):
    rec = load_benchmark("pubmedqa", data_dir=str(DATA))[0]
    assert rec["options"] == {"A": "yes", "B": "no", "C": "maybe"}
    gold_text = rec["options"][rec["answer"]]
    assert score(rec, f"<answer>{gold_text.capitalize()}</answer>") == (rec["answer"], True)
    assert score(rec, "<answer>D</answer>") == (None, False)
    wrong = next(l for l in "ABC" if l != rec["answer"])
    assert extract_answer(f"<answer>{rec['answer']} ({gold_text})</answer>", rec["options"]) == rec["answer"]
    assert extract_answer(f"<answer>{rec['answer']} ({rec['options'][wrong]})</answer>", rec["options"]) is None
    assert extract_answer(f"Based on the abstract, the answer is {gold_text.capitalize()}.", rec["options"]) == rec["answer"]
    assert extract_answer("The answer is no, or perhaps maybe.", rec["options"]) is None


def test_multi_answer_exact_set_match(shared):
    recs = load_benchmark("cmexam", data_dir=str(DATA), skip_bad=True, stats={})
    rec = next(r for r in recs if r["meta"].get("multi_answer") and len(r["answer"]) == 3)
    gold = rec["answer"]
    shuffled = ", ".join(reversed(gold))
    assert score(rec, f"<answer>{shuffled}</answer>") == (gold, True)
    assert score(rec, f"<answer>{','.join(gold.lower())}</answer>") == (gold, True)
    assert score(rec, f"<answer>{' and '.join(gold)}</answer>") == (gold, True)
    assert score(rec, f"解析……故选{gold}")[1] is True
    assert score(rec, f"<answer>{gold[:2]}</answer>") == (gold[:2], False)  # a subset is wrong
    single = next(r for r in recs if not r["meta"].get("multi_answer"))
    assert score(single, f"<answer>{single['answer']}{wrong_letter(single)}</answer>") == (None, False)


def test_real_free_text_responses_are_never_guessed(shared):
    """198 real HuatuoGPT-o1 responses: long clinical prose that names options but commits to no
    letter. Nothing may be extracted from them; with a final tag appended, exactly that tag counts."""
    import json
    demo = json.loads((DATA / "huatuogpt_o1_demo/demo_data.json").read_text())
    assert len(demo) == 198
    for x in demo:
        opts, gold = x["options"], x["answer_idx"]
        assert extract_answer(x["Response"], opts) is None
        assert extract_answer(f"{x['Response']}\n\n<answer>{gold}</answer>", opts) == gold
        assert extract_answer(f"<think>{x['Complex_CoT']}</think>\n{x['Response']}\n<answer>{opts[gold]}</answer>",
                              opts) == gold
