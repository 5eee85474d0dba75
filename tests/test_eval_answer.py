"""The shared prompt builder, answer extractor and format check, on real items and on messy and
adversarial outputs: the extractor is the GRPO reward, so every way of committing to several options
must give None (module doc of eval/answer.py, rules 1-9)."""
import json
import random
import re

import pytest

from conftest import SHARED
from eval.answer import build_prompt, extract_answer, format_error, format_ok, parse_choice, score, strip_think
from eval.loaders import load_benchmark

DATA = SHARED / "data"


@pytest.fixture(scope="module")
def medqa():
    return load_benchmark("medqa", data_dir=str(DATA))


@pytest.fixture(scope="module")
def mmlu10():
    """A real MMLU-Pro item with ten options (A-J)."""
    return next(r for r in load_benchmark("mmlu_pro_health", data_dir=str(DATA)) if len(r["options"]) == 10)


@pytest.fixture(scope="module")
def cmexam():
    return load_benchmark("cmexam", data_dir=str(DATA), skip_bad=True, stats={})


def wrong_letter(rec):
    return next(l for l in rec["options"] if l != rec["answer"])


def answered(rec, outputs, multi=False):
    """The outputs that wrongly extract to something (empty when the extractor holds)."""
    return [(o, extract_answer(o, rec["options"], multi)) for o in outputs
            if extract_answer(o, rec["options"], multi) is not None]


# ----------------------------------------------------------------------------- prompt

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


def test_prompt_tells_multi_answer_items_to_give_all_letters(cmexam):
    rec = next(r for r in cmexam if r["meta"].get("multi_answer"))
    text = build_prompt(rec)[0]["content"]
    assert "more than one correct option" in text and "ALL" in text


# ----------------------------------------------------------------------------- legitimate single answers

def test_clean_and_decorated_letters(medqa):
    rec = medqa[0]
    a, t = rec["answer"], rec["options"][rec["answer"]]
    for out in [f"<answer>{a}</answer>", f"<answer>({a})</answer>", f"<answer>{a}.</answer>",
                f"<answer>{a.lower()}</answer>", f"<answer> **{a}** </answer>", f"<ANSWER>{a}</ANSWER>",
                f"<answer>\\boxed{{{a}}}</answer>", f"<answer>$\\boxed{{\\text{{{a}}}}}$</answer>",
                f"<answer>Answer: {a}</answer>", f"<answer>Option ({a})</answer>", f"<answer>{a}. {t}</answer>",
                f"<answer>{a}) {t}</answer>", f"<answer>({a}) {t}</answer>", f"<answer>{t} ({a})</answer>",
                f"<answer>\n{a}\n</answer>", f"<answer>{a}</answer><|im_end|>", f"The answer is ({a}) {t}.",
                f"Answer: {a}", f"<answer>Option {a}: {t}</answer>"]:
        assert score(rec, out) == (a, True), out


def test_full_width_letters_and_chinese_phrasing(medqa):
    rec = medqa[1]
    fw = chr(ord("Ａ") + ord(rec["answer"]) - ord("A"))
    assert extract_answer(f"<answer>{fw}</answer>", rec["options"]) == rec["answer"]
    assert extract_answer(f"<answer>（{fw}）</answer>", rec["options"]) == rec["answer"]
    assert extract_answer(f"＜answer＞{fw}＜/answer＞", rec["options"]) == rec["answer"]
    assert extract_answer(f"分析如下……\n答案：{fw}", rec["options"]) == rec["answer"]
    assert extract_answer(f"分析如下……\n答案是{rec['answer']}。", rec["options"]) == rec["answer"]


def test_whitespace_and_markdown(medqa):
    rec = medqa[11]
    o, a, w = rec["options"], rec["answer"], wrong_letter(rec)
    for out in [f"<answer>\n\n   {a}   \n\n</answer>", f"<answer>__{a}__</answer>", f"<answer>`{a}`</answer>",
                f"<answer> {a}. **{o[a]}** </answer>", f"**The answer is {a}.**", f"The answer is **({a})**",
                f"### Answer\n\n**{a}**", f"Answer:   \n\n  **{a}**", f"\t<answer>\t{a}\t</answer>\t\n"]:
        assert extract_answer(out, o) == a, out
    for out in [f"**Answer:** **{a}** or **{w}**", f"<answer>**{a}**\n**{w}**</answer>", f"**{a}**\n\n**{w}**",
                f"The answer is **{a}**\n\n**{w}.** {o[w]}"]:
        assert extract_answer(out, o) is None, out


def test_chinese_single_answers_and_hedges(cmexam):
    rec = next(r for r in cmexam if not r["meta"].get("multi_answer"))
    o, a, w = rec["options"], rec["answer"], wrong_letter(rec)
    for out in [f"解析……故选{a}。", f"答案：{a}", f"答案是（{a}）", f"正确答案为{a}。", f"<answer>{o[a]}</answer>",
                f"<answer>选项{a}</answer>", f"答案：**{a}**\n其他选项均不符合。"]:
        assert extract_answer(out, o) == a, out
    assert answered(rec, [f"答案：{a}或{o[w]}", f"答案：{a}，{w}也可能", f"答案：{a}/{w}", f"故选{a}{w}",
                          f"答案：{a}\n{w}. {o[w]}", f"<answer>{a}</answer>或{w}", f"答案：{a}。\n答案：{w}"]) == []


def test_option_text_instead_of_letter(medqa):
    rec = medqa[2]
    a, w = rec["answer"], wrong_letter(rec)
    text = rec["options"][a]
    assert extract_answer(f"<answer>{text}</answer>", rec["options"]) == a
    assert extract_answer(f"<answer>{text.upper()}.</answer>", rec["options"]) == a
    # a tag cut off inside its own option's text still names one option ...
    assert extract_answer(f"<think>r</think><answer>{a}. {text[:8]}", rec["options"]) == a
    # ... but a letter with another option's text, or with more than its text, names none
    assert extract_answer(f"<answer>{a}. {rec['options'][w]}</answer>", rec["options"]) is None
    assert extract_answer(f"<answer>{rec['options'][w]} ({a})</answer>", rec["options"]) is None
    assert extract_answer(f"<answer>{a}. {text}, because of the rash</answer>", rec["options"]) is None


# ----------------------------------------------------------------------------- several options committed to

@pytest.mark.parametrize("bench", ["medqa", "mmlu_pro_biology", "mmlu_pro_health", "medmcqa", "pubmedqa"])
def test_legitimate_single_answers_on_real_items(bench):
    """The first 200 items of each real benchmark (option texts that start with the article "A", differ from
    another only in case - "Bb Bb" vs "bb Bb" -, carry curly quotes or periods): the usual ways of
    giving the gold answer all extract it. Items whose options are ambiguous by construction (two
    options with the same text, an option whose text is another option's letter) are left out."""
    recs = load_benchmark(bench, data_dir=str(DATA), skip_bad=True, stats={})[:200]
    checked = 0
    for rec in recs:
        o, a = rec["options"], rec["answer"]
        if len(set(o.values())) < len(o) or any(v.strip() in o for v in o.values()):
            continue
        checked += 1
        for out in [f"Reasoning...\n<answer>{a}</answer>", f"<answer>{a}. {o[a]}</answer>",
                    f"<answer>{o[a]}</answer>\nThat is my final choice.", f"The answer is ({a}) {o[a]}.",
                    f"**Answer:** {a}. {o[a]}", f"Answer: {a}",
                    f"<think>r</think>\n<answer>{a}</answer>"]:
            assert extract_answer(out, o) == a, (out, o)
        if not re.fullmatch(r"[A-Za-z]", o[a].strip()):
            assert extract_answer(f"So the answer is {o[a]}.", o) == a, o
    assert checked > 0.9 * len(recs)


def test_several_options_inside_one_tag(medqa):
    rec = medqa[7]
    o, a, w = rec["options"], rec["answer"], wrong_letter(rec)
    listed = "\n".join(f"{l}. {t}" for l, t in o.items())
    outs = [f"<answer>{a}. {o[a]} or {w}. {o[w]}</answer>", f"<answer>{a} or {w}</answer>",
            f"<answer>{a.lower()} or {w.lower()}</answer>", f"<answer>{a}/{w}</answer>",
            f"<answer>{a} (or {w})</answer>", f"<answer>{a}, {w}</answer>", f"<answer>{a}{w}</answer>",
            f"<answer>{a} and {w}</answer>", f"<answer>{a} & {w}</answer>", f"<answer>({a}) or ({w})</answer>",
            f"<answer>{listed}</answer>", f"<answer>\n{listed}\n</answer>",
            f"<answer>{listed[:len(listed) * 2 // 3]}",  # an option list after an unclosed tag, cut off
            "<answer>" + "\n".join(o),  # letters one per line, unclosed
            f"<answer>{o[a]} or {o[w]}</answer>", f"<answer>Either {a} or {w}</answer>"]
    assert answered(rec, outs) == []


def test_several_tags_must_agree(medqa):
    rec = medqa[3]
    o, a, w = rec["options"], rec["answer"], wrong_letter(rec)
    # two tags that disagree: no answer, whichever comes last (the README: several answers are wrong)
    assert extract_answer(f"First I thought <answer>{w}</answer>, but no.\n<answer>{a}</answer>", o) is None
    assert extract_answer(f"<answer>{a}</answer>\n<answer>{w}</answer>", o) is None
    assert extract_answer(f"<answer>{a}</answer> or maybe <answer>{a} or {w}</answer>", o) is None
    assert extract_answer("".join(f"<answer>{l}</answer>" for l in o), o) is None
    # agreeing tags count once; an empty echo of the format instruction is not an answer
    assert extract_answer(f"So <answer>{a}</answer>.\nFinal: <answer>{o[a]}</answer>", o) == a
    assert extract_answer(f"I will answer in <answer></answer> tags.\n<answer>{a}</answer>", o) == a
    # a tag that holds no choice is not skipped in favour of another
    assert extract_answer(f"<answer>not sure</answer>\n<answer>{a}</answer>", o) is None


def test_nested_and_garbled_tags(medqa):
    rec = medqa[8]
    o, a, w = rec["options"], rec["answer"], wrong_letter(rec)
    assert answered(rec, [f"<answer><answer>{a}</answer></answer>", f"<answer>{a}<answer>{w}</answer>",
                         f"<answer>{a}</answer", f"<answer>{w}<answer>{a}</answer>"]) == []
    # everything before a lone </think> is reasoning (rule 1), tags included
    assert extract_answer(f"<answer>{a}</think><answer>{w}</answer>", o) == w
    assert extract_answer(f"< Answer >{a}< /answer >", o) == a


def test_text_after_the_tag_is_part_of_the_answer(medqa):
    rec = medqa[4]
    o, a, w = rec["options"], rec["answer"], wrong_letter(rec)
    # another answer after the tag: a second answer
    assert answered(rec, [f"<answer>{a}</answer>\n\nOn reflection, the answer is ({w}).",
                         f"<answer>{a}</answer>\nFinal answer: {w}", f"<answer>{a}</answer>\n\\boxed{{{w}}}",
                         f"<answer>{a}</answer>\n\n{w}", f"<answer>{a}</answer> or {w}",
                         f"<answer>{a}</answer> (or ({w}) {o[w]})",
                         f"<answer>{a}</answer>\n{w}. {o[w]}",  # the tag, then another option restated
                         f"<answer>{a}</answer>\nThe answer is {a} or {w}."]) == []
    # the same answer again, or explanation that commits to nothing else: the tag stands
    assert extract_answer(f"<answer>{a}</answer>\nThe answer is ({a}) {o[a]}.", o) == a
    assert extract_answer(f"<answer>{a}</answer>\n\nExplanation: {w}. is wrong because of the rash.", o) == a
    assert extract_answer(f"<answer>{o[a]}</answer>\nThat is my final choice.", o) == a
    # prose BEFORE the first tag is reasoning and is not read
    assert extract_answer(f"The answer is ({w})? No: the lab values rule it out.\n<answer>{a}</answer>", o) == a


def test_several_options_in_prose_without_tags(medqa, mmlu10):
    rec = medqa[5]
    o, a, w = rec["options"], rec["answer"], wrong_letter(rec)
    z = next(l for l in o if l not in (a, w))
    outs = [f"The answer is ({a}) {o[a]} or ({w}) {o[w]}", f"The answer is {a}. {o[a]} or {w}. {o[w]}.",
            f"The answer is {a} or {w}.", f"The answer is {a}, {z} or {w}.", f"Answer: {a}/{w}",
            f"The answer is {a}. {o[a]} {w}. {o[w]}", f"The answer is ({a}) {o[a]} ({w}) {o[w]}",
            f"The answer is {a}. {o[a]}, or {o[w]}", f"The answer is:\n{a}. {o[a]}\n{w}. {o[w]}",
            f"Final answer:\n{a}\n{w}", f"\\boxed{{{a}}} or \\boxed{{{w}}}", f"\\boxed{{{a}, {w}}}",
            f"\\boxed{{{a}}} or {w}", f"答案：{a}或{w}", f"答案：{a}、{w}", f"故选{a}{w}",
            f"The answer is ({a}).\n\n{w}",  # a phrase and a final letter line that disagree
            f"The answer is ({a}). Wait, the answer is ({w}).", f"Option {a} is correct, and option {w} is correct.",
            f"Reasoning.\n\n{w}\n{a}",  # two bare letter lines
            f"The answer is {a}.{w}.", f"The answer is {a}. {w}.", f"The answer is {a}|{w}",
            f"The answer is {a} (or) {w}",
            f"The answer is {a} - {o[w]}", f"The answer is {a} Option {w}", f"The answer is {a} OR {w}",
            f"The answer is {a}:{w}", f"The answer is {a}\nOption {w}", f"The answer is {a}\n{w.lower()}.",
            f"The answer is {o[a]} ({a}) {w}", f"The answer is ({a}) {o[w]}", f"The answer is {a}, \"{w}\"",
            f"The answer is {a}, {w.lower()}.", f"The answer is {a} then {w}",
            f"The answer is **{a}** or **{w}**", f"The correct option is ({a}), or perhaps ({w})"]
    assert answered(rec, outs) == []
    o10 = mmlu10["options"]
    assert extract_answer("The answer is A, B, C, D, E, F, G, H, I or J.", o10) is None
    assert extract_answer("The answer is (J) or (I).", o10) is None


def test_english_letters_and_hedge_words_around_a_choice():
    """Letters that are English or medicine, not options, after a committed choice; hedge words that
    keep a second option in the answer."""
    o = {k: f"option {k.lower()}" for k in "ABCDEFGHIJ"}
    for out in ["The answer is (B), and E. coli is excluded.", "The answer is B, and I think so.",
                "The answer is (B), e.g. because of the rash.", "The answer is (B), i.e. the second one.",
                "The answer is B. A 45-year-old needs no more.", "The answer is (B) - a classic picture.",
                "The answer is (B), since D-dimer is normal.", "The answer is B: T cells are spared.",
                "The answer is B and B cells are spared.", "The answer is B, I could be wrong.",
                "The answer is B; a patient like this needs follow-up."]:
        assert extract_answer(out, o) == "B", out
    for out in ["The answer is B; D is also possible.", "The answer is B, or maybe D.", "The answer is B or option D.",
                "The answer is B, or perhaps C.", "The answer is B, D could also be right."]:
        assert extract_answer(out, o) is None, out
    # a letter whose text is another letter, though that letter starts its own option's text
    d = {"A": "Doxycycline", "B": "Bronchitis", "C": "Croup", "D": "Pneumonia"}
    assert extract_answer("<answer>A (D)</answer>", d) is None and extract_answer("<answer>A. D</answer>", d) is None
    assert extract_answer("<answer>A. Doxy</answer>", d) == "A"


def test_option_text_answers_in_prose():
    o = {"A": "0.08", "B": "Blood groups A. B. ABO", "C": "yes", "D": "no"}
    assert extract_answer("So the answer is 0.08.", o) == "A"
    assert extract_answer("So the answer is Blood groups A. B. ABO.\nThat settles it.", o) == "B"
    assert extract_answer("The answer is yes, because the trial was randomized.", o) == "C"
    assert extract_answer("The answer is no longer in doubt.", o) is None  # "no" is a word here, not option D
    assert extract_answer("The answer is yes, or perhaps no.", o) is None
    assert extract_answer("Answer: no (D)", o) == "D" and extract_answer("Answer: no (C)", o) is None
    assert extract_answer("The answer is:\nyes\nno", o) is None  # the next line restates another option
    # texts that start with the article "A", differ only in case, or carry curly quotes
    o = {"A": "bb Bb", "B": "Bb Bb", "C": "A white woman", "D": "“I cannot help you.”", "E": "P/D1 cells"}
    assert extract_answer("So the answer is Bb Bb.", o) == "B" and extract_answer("<answer>bb Bb</answer>", o) == "A"
    assert extract_answer("So the answer is A white woman.", o) == "C"
    assert extract_answer("<answer>“I cannot help you.”</answer>", o) == "D"
    assert extract_answer("The answer is P/D1 cells.", o) == "E"
    assert extract_answer("Answer: A", {"A": "b", "B": "a"}) == "A"  # a lone letter is a letter, not B's text


def test_fallback_phrases_without_tags(medqa):
    rec = medqa[5]
    a = rec["answer"]
    for out in [f"Considering the findings, the answer is ({a}).", f"The correct answer is: **{a}**",
                f"Reasoning...\n\nFinal answer: {a}", f"\\boxed{{{a}}}", f"Long reasoning.\n\n{a}",
                f"Option {a} is correct because of the timeline.", f"**Answer:** {a}",
                f"The answer is: **({a})**", f"Final Answer: The final answer is $\\boxed{{{a}}}$",
                f"So the answer is {rec['options'][a].lower()}.", f"The answer is ({a}).\n\n**{a}**",
                f"Answer: {a}\n\n({wrong_letter(rec)}) is incorrect because it ignores the timeline.",
                f"The answer is {a}, I think.", f"The answer is\n\n{a}",
                f"The answer is {a}. {wrong_letter(rec)} is wrong because it ignores the timeline.",
                f"**Answer: {a}. {rec['options'][a]}**\n\n**Explanation:**\n"  # a chat model's usual layout
                + "\n".join(f"- **{l}. {t}**: {'correct' if l == a else 'does not fit'} because ..."
                            for l, t in rec["options"].items())]:
        assert extract_answer(out, rec["options"]) == a, out


def test_lower_case_letters_in_prose_are_english(medqa):
    rec = medqa[6]
    o, a = rec["options"], rec["answer"]
    assert extract_answer("The answer is a drug that lowers blood pressure.", o) is None
    assert extract_answer("So the answer is b.", o) is None
    assert extract_answer(f"So the answer is ({a.lower()}).", o) == a  # bracketed: a letter
    assert extract_answer(f"The answer is {a}, and a patient like this needs follow-up.", o) == a
    # inside a tag a lone lower-case letter is the choice
    assert extract_answer(f"<answer>{a.lower()}</answer>", o) == a


def test_qwen3_thinking_is_ignored(medqa):
    rec = medqa[4]
    a, w = rec["answer"], wrong_letter(rec)
    out = f"<think>\nMaybe <answer>{w}</answer>? No...\n</think>\n\n<answer>{a}</answer>"
    assert extract_answer(out, rec["options"]) == a
    # answer tags inside the reasoning are not an answer, even all of them
    listed = "".join(f"<answer>{l}</answer>" for l in rec["options"])
    assert extract_answer(f"<think>{listed}</think>\n<answer>{a}</answer>", rec["options"]) == a
    assert extract_answer(f"<think>{listed}</think>\nI cannot decide.", rec["options"]) is None
    # the template opened <think> in the prompt: only the closing tag is in the output
    assert extract_answer(f"so it is {w}...\n</think>\nThe answer is ({a}).", rec["options"]) == a
    # cut off while still thinking: no answer, even though a letter appears in the thoughts
    assert extract_answer(f"<think>The answer is ({a}), let me verify each option", rec["options"]) is None
    assert strip_think("<think>x</think>y") == "y"


def test_never_guesses(medqa, mmlu10):
    rec = medqa[6]
    opts, a, w = rec["options"], rec["answer"], wrong_letter(rec)
    assert extract_answer("", opts) is None
    assert extract_answer("I am not sure. This is a difficult question about physiology.", opts) is None
    assert extract_answer("<answer>A, B, C, D</answer>", opts) is None
    assert extract_answer("<answer>ABCD</answer>", opts) is None
    assert extract_answer("<answer>E</answer>", opts) is None  # not an option of a 4-option item
    assert extract_answer("<answer>the one with the best prognosis</answer>", opts) is None
    assert extract_answer(f"The answer is ({a}), which lacks the features of ({w}).", opts) is None  # strict
    assert extract_answer(None, opts) is None
    # J exists for a ten-option item, not for a four-option one
    assert extract_answer("<answer>J</answer>", mmlu10["options"]) == "J"
    assert extract_answer("<answer>J</answer>", opts) is None
    assert parse_choice("B or D", {"B": "x", "D": "y"}) is None and parse_choice("(d)", {"D": "y"}) == "D"


def test_pubmedqa_yes_no_maybe(shared):
    rec = load_benchmark("pubmedqa", data_dir=str(DATA))[0]
    assert rec["options"] == {"A": "yes", "B": "no", "C": "maybe"}
    gold_text = rec["options"][rec["answer"]]
    assert score(rec, f"<answer>{gold_text.capitalize()}</answer>") == (rec["answer"], True)
    assert score(rec, "<answer>D</answer>") == (None, False)
    wrong = next(l for l in "ABC" if l != rec["answer"])
    assert extract_answer(f"<answer>{rec['answer']} ({gold_text})</answer>", rec["options"]) == rec["answer"]
    assert extract_answer(f"<answer>{rec['answer']} ({rec['options'][wrong]})</answer>", rec["options"]) is None
    said = f"Based on the abstract, the answer is {gold_text.capitalize()}."
    assert extract_answer(said, rec["options"]) == rec["answer"]
    assert extract_answer("The answer is no, or perhaps maybe.", rec["options"]) is None
    assert extract_answer("<answer>yes or no</answer>", rec["options"]) is None
    assert extract_answer("The answer is (A) yes, or (B) no.", rec["options"]) is None


def test_multi_answer_exact_set_match(cmexam):
    rec = next(r for r in cmexam if r["meta"].get("multi_answer") and len(r["answer"]) == 3)
    gold = rec["answer"]
    shuffled = ", ".join(reversed(gold))
    assert score(rec, f"<answer>{shuffled}</answer>") == (gold, True)
    assert score(rec, f"<answer>{','.join(gold.lower())}</answer>") == (gold, True)
    assert score(rec, f"<answer>{' and '.join(gold)}</answer>") == (gold, True)
    assert score(rec, f"解析……故选{gold}")[1] is True
    assert score(rec, f"解析……答案：{'、'.join(gold)}")[1] is True
    assert score(rec, f"<answer>{gold}</answer>\n故选{gold}") == (gold, True)
    assert score(rec, f"<answer>{gold[:2]}</answer>") == (gold[:2], False)  # a subset is wrong
    single = next(r for r in cmexam if not r["meta"].get("multi_answer"))
    assert score(single, f"<answer>{single['answer']}{wrong_letter(single)}</answer>") == (None, False)


def test_multi_answer_distractor_sets_are_a_second_answer(cmexam):
    rec = next(r for r in cmexam if r["meta"].get("multi_answer") and len(r["answer"]) == 3)
    o, gold = rec["options"], rec["answer"]
    other = "".join(sorted(set(gold[:2]) | {next(l for l in o if l not in gold)}))  # shares two letters
    outs = [f"<answer>{gold} or {other}</answer>", f"<answer>{', '.join(gold)} or {', '.join(other)}</answer>",
            f"<answer>{gold}</answer>\n<answer>{other}</answer>", f"<answer>{gold}</answer>\n故选{other}",
            f"答案：{gold}或{other}", f"解析……故选{gold}。\n答案：{other}",
            f"<answer>{gold}</answer> 或 {other}",
            f"<answer>{' '.join(f'{l}. {o[l]}' for l in gold)}</answer>"]  # letters with texts: letters only
    assert answered(rec, outs, multi=True) == []
    assert extract_answer(f"<answer>{gold}</answer>", o, multi=True) == gold


def test_real_free_text_responses_are_never_guessed(shared):
    """198 real HuatuoGPT-o1 responses: long clinical prose that names options but commits to no
    letter. Nothing may be extracted from them; with a final tag appended, exactly that tag counts."""
    demo = json.loads((DATA / "huatuogpt_o1_demo/demo_data.json").read_text())
    assert len(demo) == 198
    for x in demo:
        opts, gold = x["options"], x["answer_idx"]
        assert extract_answer(x["Response"], opts) is None
        assert extract_answer(f"{x['Response']}\n\n<answer>{gold}</answer>", opts) == gold
        assert extract_answer(f"<think>{x['Complex_CoT']}</think>\n{x['Response']}\n<answer>{opts[gold]}</answer>",
                              opts) == gold


def _listing(rec, letters, rng):
    """One output that names all of `letters` (options of `rec`), in a random list style."""
    o = rec["options"]
    sep = rng.choice([", ", " or ", "/", " and ", "、", "; ", "\n", " ", " vs ", "或", " and/or "])
    item = rng.choice([lambda l: l, lambda l: f"({l})", lambda l: f"{l}. {o[l]}", lambda l: f"**{l}**",
                       lambda l: f"({l}) {o[l]}", lambda l: f"{l}) {o[l]}", lambda l: f"- {l}: {o[l]}",
                       lambda l: f"**{l}. {o[l]}**", lambda l: f"{o[l]} ({l})"])
    body = sep.join(item(l) for l in letters)
    second = len(item(letters[0]) + sep + item(letters[1]))
    cut = body[:rng.randint(second, len(body))]  # cut off inside the list, after its second item
    return rng.choice([
        f"<answer>{body}</answer>", f"<think>r</think>\n<answer>{body}</answer>", f"<answer>{cut}",
        f"<answer>\n{body}\n</answer>", f"The answer is {body}.", f"The answer is:\n{body}",
        f"**Final answer:** {body}", f"Answer: {body}", f"答案：{body}", f"\\boxed{{{body}}}",
        "".join(f"<answer>{l}</answer>" for l in letters), " ".join(f"\\boxed{{{l}}}" for l in letters),
        "Reasoning.\n\n" + "\n".join(letters), f"<answer>{letters[0]}</answer>{sep}" + sep.join(letters[1:]),
        f"<answer>{letters[0]}</answer>\n" + "\n".join(f"{l}. {o[l]}" for l in letters[1:]),
        f"The answer is ({letters[0]}).\n\n{letters[-1]}", f"<answer>{letters[0]}</answer>\nAnswer: {letters[-1]}",
    ])


@pytest.mark.parametrize("every", [True, False], ids=["all options", "some options"])
def test_listing_several_options_never_extracts_a_letter(medqa, mmlu10, cmexam, every):
    """Property: for random real items, an output that names several options - all of them, or a
    random two or more - in any list style, never extracts to a letter on a single-answer item;
    on a multi-answer item it gives no answer or exactly that letter set (a set like any other,
    scored by exact match)."""
    rng = random.Random(0 if every else 1)
    pubmed = load_benchmark("pubmedqa", data_dir=str(DATA))
    mmlu = load_benchmark("mmlu_pro_health", data_dir=str(DATA))
    pool = medqa[:50] + mmlu[:50] + [mmlu10] + pubmed[:20] + cmexam[:200]
    for _ in range(400):
        rec = rng.choice(pool)
        multi = bool(rec["meta"].get("multi_answer"))
        letters = rng.sample(list(rec["options"]), len(rec["options"]) if every
                             else rng.randint(2, len(rec["options"])))
        out = _listing(rec, letters, rng)
        got = extract_answer(out, rec["options"], multi)
        assert got is None or (multi and got == "".join(sorted(letters))), (out, got)
        assert not format_ok(out, rec["options"], multi) or multi, out


# ----------------------------------------------------------------------------- format

def test_format_accepts_the_target_shapes(medqa, cmexam):
    rec = medqa[9]
    o, a = rec["options"], rec["answer"]
    for out in [f"<think>reasoning</think>\n<answer>{a}</answer>",  # our SFT data, every model
                f"<think>\nstep 1\nstep 2\n</think>\n\n<answer>{a}</answer>\n",
                f"reasoning opened by the Qwen3 template\n</think>\n\n<answer>{a}</answer>",  # lone </think>
                f"<think>r</think><answer>{a}</answer><|im_end|>", f"<think>r</think><answer>{a}</answer></s>",
                f"  <think>r</think> <answer> {a} </answer>", f"<think>r</think><answer>{a}. {o[a]}</answer>",
                f"<think>r</think><answer>{o[a]}</answer>"]:
        assert format_error(out, o) is None, out
        assert format_ok(out, o) and extract_answer(out, o) == a, out
    multi = next(r for r in cmexam if r["meta"].get("multi_answer"))
    assert format_ok(f"<think>分析</think>\n<answer>{multi['answer']}</answer>", multi["options"], multi=True)
    assert not format_ok(f"<think>分析</think>\n<answer>{multi['answer']}</answer>", multi["options"])


@pytest.mark.parametrize("out, reason", [
    ("<answer>B</answer>", "no </think>"),  # plain reasoning without a think block
    ("Reasoning first.\n<answer>B</answer>", "no </think>"),
    ("<think>I keep thinking and am cut off here", "no </think>"),  # truncated inside the reasoning
    ("<think>a</think><think>b</think><answer>B</answer>", "several think blocks"),
    ("a</think>b</think><answer>B</answer>", "several think blocks"),
    ("Sure!\n<think>r</think><answer>B</answer>", "text before <think>"),
    ("<think> \n</think><answer>B</answer>", "empty reasoning"),
    ("</think><answer>B</answer>", "empty reasoning"),
    ("<think>r</think>\nThe answer is B.", "no answer tag"),
    ("<think>r</think><answer>B</answer><answer>B</answer>", "several answer tags"),  # even agreeing
    ("<think>r <answer>C</answer></think><answer>B</answer>", "several answer tags"),
    ("<think>r</think><answer><answer>B</answer></answer>", "several answer tags"),
    ("<answer>B</answer><think>r</think>", "text before <think>"),
    ("<think>r <answer>B</answer></think>", "answer tag inside the reasoning"),
    ("<think>r</think><answer>B", "unclosed answer tag"),  # truncated inside the tag
    ("<think>r</think></answer>B<answer>", "unclosed answer tag"),
    ("<think>r</think>\nSo B.\n<answer>B</answer>", "text between </think> and <answer>"),
    ("<think>r</think><answer>B</answer>\nBecause of the rash.", "text after </answer>"),
    ("<think>r</think><answer>B</answer> or D", "text after </answer>"),
    ("<think>r</think><answer>E</answer>", "no valid choice in the answer tag"),
    ("<think>r</think><answer>B or D</answer>", "no valid choice in the answer tag"),
    ("<think>r</think><answer>A. Asthma\nB. Bronchitis\nC. Croup\nD. Pneumonia</answer>",
     "no valid choice in the answer tag"),
    ("<think>r</think><answer></answer>", "no valid choice in the answer tag"),
    (None, "not text"),
])
def test_format_errors(out, reason):
    o = {"A": "Asthma", "B": "Bronchitis", "C": "Croup", "D": "Pneumonia"}
    assert format_error(out, o) == reason
    assert not format_ok(out, o)


def test_format_ok_implies_the_extractor_agrees(medqa):
    """Random mutations of a well-formed completion (slots dropped, doubled or swapped for a stray
    piece): whenever format_ok holds, the extractor returns exactly the tag's choice (the reward's
    two halves never disagree), and a mutation that breaks the shape is caught."""
    rng = random.Random(1)
    o = medqa[10]["options"]
    a, w = medqa[10]["answer"], wrong_letter(medqa[10])
    slots = ["<think>", "reasoning", "</think>", "\n", "<answer>", a, "</answer>", "<|im_end|>"]
    stray = ["<think>", "</think>", "<answer>", "</answer>", w, f" or {w}", f"The answer is ({w}).", "", "\n"]
    ok = 0
    for _ in range(2000):
        out = ""
        for piece in slots:
            r = rng.random()
            out += piece if r < 0.8 else "" if r < 0.85 else piece * 2 if r < 0.9 else rng.choice(stray)
        if format_ok(out, o):
            ok += 1
            tag = out.split("<answer>")[1].split("</answer>")[0]
            assert extract_answer(out, o) == parse_choice(tag, o) is not None, out
            assert out.count("<answer>") == 1 and re.sub(r"(<\|im_end\|>|\s)*$", "", out).endswith("</answer>"), out
    assert 100 < ok < 2000
