"""data/filter.py on real shared items: each drop reason fires on a real or minimally broken item,
and clean real items pass."""
import json
from collections import Counter

import pytest

from data.filter import check, filter_records, has_mojibake
from data.prepare import convert_source


@pytest.fixture(scope="module")
def medqa(shared):
    return convert_source("medqa:test=medqa/phrases_no_exclude_test.jsonl", str(shared / "data"))


@pytest.fixture(scope="module")
def cmexam(shared):
    return convert_source("cmexam:test=cmexam/cmexam.jsonl", str(shared / "data"))


def edited(rec, **kw):
    return {**rec, **kw, "meta": dict(rec["meta"])}


def test_real_medqa_counts_and_figure_items(medqa):
    st, dropped = Counter(), []
    kept = filter_records(medqa, st, dropped)
    assert st["in:medqa"] == 1273 == len(kept) + len(dropped)
    # MedQA-USMLE test has ~100 image items ("A photograph of the rash is shown.") with no image in the text
    assert 80 <= st["drop:missing_figure"] <= 130, st
    assert st["drop:missing_passage"] == 3  # "Please refer to the summary above" with no summary
    figs = [d["question"] for d in dropped if d["meta"]["drop_reason"] == "missing_figure"]
    assert any("photograph" in q.lower() and "is shown" in q for q in figs)
    # lab tables written out in the text are NOT missing figures
    labs = [r for r in kept if "shown below" in r["question"] and "mEq/L" in r["question"]]
    assert labs, "items with inline lab tables must be kept"


def test_real_cmexam_answer_outside_options_and_duplicates(cmexam):
    st, dropped = Counter(), []
    filter_records(cmexam, st, dropped)
    bad = [d for d in dropped if d["meta"]["drop_reason"] == "answer_not_in_options"]
    assert [d["id"] for d in bad] == ["5331"]  # answer ["b","c","e"] on a 4-option item
    dups = [d for d in dropped if d["meta"]["drop_reason"] == "duplicate_options"]
    assert any(list(d["options"].values()).count("异丙嗪") == 2 for d in dups)
    # a chart question whose chart is missing; "心电图示" (the ECG shows) in text is not a figure
    assert st["drop:missing_figure"] >= 5
    ecg_all = [r for r in cmexam if "心电图示" in r["question"]]
    ecg_dropped = [d for d in dropped if "心电图示" in d["question"] and d["meta"]["drop_reason"] == "missing_figure"]
    assert len(ecg_all) >= 10 and len(ecg_dropped) <= 1


def test_each_reason_on_a_broken_copy_of_a_real_item(medqa):
    rec = next(r for r in medqa if check(r) is None)
    o = rec["options"]
    cases = {
        "empty_question": edited(rec, question="  "),
        "empty_option": edited(rec, options={**o, "B": " "}),
        "too_few_options": edited(rec, options={"A": o["A"], "B": o["B"]}, answer="A"),
        "duplicate_options": edited(rec, options={**o, "C": o["A"].upper() if o["A"].upper() == o["A"] else o["A"] + " "}),
        "answer_not_in_options": edited(rec, answer="E"),
        "bad_option_letters": edited(rec, options={"A": o["A"], "C": o["B"], "D": o["C"]}, answer="A"),
        "mojibake": edited(rec, question=rec["question"].replace("°", "Â°", 1) if "°" in rec["question"]
                           else rec["question"] + " cafÃ©"),
        "replacement_char": edited(rec, question=rec["question"] + " \ufffd"),
        "control_chars": edited(rec, question=rec["question"].replace(" ", "\x07", 1)),
        "html_entity": edited(rec, options={**o, "A": o["A"] + " &amp; more"}),
        "html_markup": edited(rec, question=rec["question"] + "<br/>"),
        "missing_figure": edited(rec, question=rec["question"] + " The structure marked with an arrow is which?"),
        "missing_table": edited(rec, question="Results are given in the following table. " + rec["question"][:0]
                                + "Which test is more specific?"),
        "image_only": {**rec, "meta": {"text_only": False}},
    }
    for reason, bad in cases.items():
        assert check(bad) == reason, (reason, check(bad))


def test_mojibake_detector_spares_real_text(medqa, cmexam):
    assert has_mojibake("Ã©tude") and has_mojibake("donâ€™t") and has_mojibake("37.8Â°C")
    assert not has_mojibake("café, 97.7°F, ±2 µg, naïve, Sjögren")
    assert not any(has_mojibake(r["question"] + "".join(r["options"].values())) for r in medqa + cmexam)


def test_dropped_records_carry_reason_and_kept_are_valid(medqa):
    from eval.records import validate_record
    dropped = []
    kept = filter_records(medqa[:300], Counter(), dropped)
    assert all(d["meta"]["drop_reason"] for d in dropped)
    for r in kept:
        validate_record(r)
    json.dumps(kept)  # JSON-serializable


# ----------------------------------------------------------------------------- one rule, what it drops, what it keeps

@pytest.mark.parametrize("text", [
    "The figure shows a cross-section of the kidney. Which structure is labelled?",
    "Based on the image, which nerve is injured?",
    "Which cell type does the arrow point to?",
    "The accompanying photomicrograph is from a lymph node biopsy. What is the diagnosis?",
    "What is the most likely value of x in the graph?",
    "The photomicrograph reveals which of the following inclusions?",
])
def test_figure_phrasings_dropped(medqa, text):
    rec = next(r for r in medqa if check(r) is None)
    assert check(edited(rec, question=text)) == "missing_figure"


@pytest.mark.parametrize("text", [
    "The patient's chart shows two prior admissions. Which drug is most appropriate?",
    "She rolled off the table during the exam and hit her head. What is the next step?",
    "He adds table salt to every meal. Which electrolyte disturbance is most likely?",
    "An arrowhead-shaped lesion is not described; which enzyme is deficient in this disorder?",
    "Which of the following radiographs should be taken first?",
])
def test_plain_text_lookalikes_kept(medqa, text):
    rec = next(r for r in medqa if check(r) is None)
    assert check(edited(rec, question=text)) is None


@pytest.mark.parametrize("text,reason", [
    ("Which drug is most effective according to the table?", "missing_table"),
    ("The table below lists four drugs. Which is safest?", "missing_table"),
    ("Use the following table to answer: which is safest?", "missing_table"),
    ("She fell and rolled off the table. Which bone is most likely fractured?", None),
    ("Results are shown in the table below:\nNa 139\nK 4.1\nCl 101\nHCO3 24", None),  # the table is there
])
def test_table_only_when_a_table_is_referred_to(medqa, text, reason):
    rec = next(r for r in medqa if check(r) is None)
    assert check(edited(rec, question=text)) == reason


@pytest.mark.parametrize("opt,drop", [
    ("All of the above", True), ("None of the above", True), ("Both A and B", True), ("A and C", True),
    ("a, b and c", True), ("All of these", True), ("以上都是", True), ("A和B", True),
    ("Vitamin A and B12", False), ("Hepatitis A", False), ("Type A and type B", False), ("Both kidneys", False),
])
def test_options_that_refer_to_other_options(medqa, opt, drop):
    rec = next(r for r in medqa if check(r) is None and r["answer"] != "D")
    got = check(edited(rec, options={**rec["options"], "D": opt}))
    assert got == ("option_refers_to_options" if drop else None)


def test_real_option_references_counted(shared):
    mm = convert_source("medmcqa:dev=medmcqa/medmcqa.jsonl", str(shared / "data"))
    st = Counter()
    filter_records(mm, st)
    assert 150 <= st["drop:option_refers_to_options"] <= 300  # MedMCQA's "All of the above" items


@pytest.mark.parametrize("q,drop", [
    ("Gingivitis", True), ("Pickling:", True), ("FDP", True), ("大肠", True),
    ("Skeletal muscles:", False), ("Ceramide is:", False), ("AB型血", False), ("女，38岁。", False),
])
def test_questions_too_short_to_be_questions(medqa, q, drop):
    rec = next(r for r in medqa if check(r) is None)
    assert (check(edited(rec, question=q)) == "question_too_short") == drop


def test_mojibake_spares_german_and_french_quotes():
    for ok in ("Er sagte „Straße“ und ging.", "Le « café » est prêt.", "Il dit «\u00a0été\u00a0» hier.",
               "l'été » fini", "Müller’s sign", "„Größe“"):
        assert not has_mojibake(ok), ok
    for bad in ("Ã«", "Â\u00a0mg", "â€œquotedâ€\u009d", "StraÃŸe"):
        assert has_mojibake(bad), bad
