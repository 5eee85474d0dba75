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
