"""data/anonymize.py on real questions: identifying spans planted into real vignettes are scrubbed,
the clinical content (ages, doses, lab values, vitals, durations) is left byte-for-byte intact."""
import re
from collections import Counter

import pytest

from data.anonymize import anonymize_record, scrub
from data.prepare import convert_source

CLINICAL = [r"\d+-year-old", r"\d+(?:\.\d+)? ?mg\b", r"\d+/\d+ ?mm ?Hg", r"\d+(?:\.\d+)?°[FC]", r"\d+/min",
            r"\d{1,3},\d{3}/mm", r"\d+ (?:days?|weeks?|months?|years?)", r"\d+(?:\.\d+)? ?(?:mEq|mg|g)/(?:L|dL)"]


@pytest.fixture(scope="module")
def real(shared):
    d = str(shared / "data")
    return (convert_source("medqa:test=medqa/phrases_no_exclude_test.jsonl", d)
            + convert_source("medmcqa:dev=medmcqa/medmcqa.jsonl", d)
            + convert_source("cmexam:test=cmexam/cmexam.jsonl", d)
            + convert_source("pubmedqa:pqal=pubmedqa/ori_pqal.json", d))


def test_real_exam_items_are_left_alone(real):
    """Exam items carry no identifiers: nothing may change, even though they are full of numbers,
    dates of regulations and study periods ("between January 1, 1992, and August 31, 1994")."""
    counts = Counter()
    changed = [r for r in real if anonymize_record(r, counts) is not r]
    assert changed == [], [(r["id"], counts) for r in changed[:3]]
    n_clinical = sum(bool(re.search(p, r["question"])) for r in real for p in CLINICAL)
    assert n_clinical > 3000  # the numbers really are there


PII = {
    "EMAIL": ["Contact: j.smith@stanford-hospital.org.", "邮箱 wang.li@163.com"],
    "PHONE": ["Call (415) 555-0132 for results.", "reach her at 415-555-0132.", "phone: +44 20 7946 0958",
              "手机13812345678联系"],
    "ID": ["MRN: 00482913.", "medical record number 4482-913", "病历号：20190311", "SSN 078-05-1120",
           "MRN 448 2913 on file.", "patient ID: AB 123 456."],
    "DOB": ["DOB: 03/14/1975.", "born on March 14, 1975,", "date of birth 1975-03-14", "出生日期：1975年3月14日",
            "DOB 03/14/75.", "born on 3/4/75,"],
    "ADDRESS": ["lives at 1427 Maple Avenue, Apt 3B with her son", "from 221B Baker Street.", "住在中山路128号"],
    "NAME": ["Mr. Smith asks about it.", "Dr Jane Doe saw her.", "Mrs. O'Brien agrees.", "Ms. Mary-Jane Watson calls."],
}


def test_planted_identifiers_scrubbed_and_clinical_text_unchanged(real):
    vignettes = [r for r in real if r["source"] == "medqa"][:40]
    for i, (tag, pii) in enumerate((t, p) for t in PII for p in PII[t]):
        r = vignettes[i % len(vignettes)]
        rec = {**r, "question": r["question"] + " " + pii}
        counts = Counter()
        out = anonymize_record(rec, counts)
        assert out["question"].startswith(r["question"]), "the vignette itself must not change"
        assert f"[{tag}]" in out["question"], (pii, out["question"][-80:])
        digits = re.findall(r"\d{3,}|\d+/\d+/\d+|@|Smith|Doe|O'Brien|Watson", pii)
        assert not any(d in out["question"][len(r["question"]):] for d in digits), out["question"][-80:]
        assert counts[f"anon:{tag}"] >= 1 and out["meta"]["anonymized"] == [tag]


@pytest.mark.parametrize("text", [
    "A 45-year-old man has a blood pressure of 122/77 mmHg and pulse 80/min.",
    "Platelet count 197,000/mm3; Na+ 139 mEq/L; HbA1c 7.2%; INR 1.1.",
    "She took 500 mg twice daily for 3 days; symptoms began 2 weeks ago, on day 5 of illness.",
    "Temperature 37.8°C (100°F); FEV1/FVC 0.65; PaO2 130 mm Hg; 2.5-5.0 mg/dL.",
    "The study ran between January 1, 1992, and August 31, 1994 in 3 centers.",
    "COPRA came into action on 15th April 1987.",
    "The doctor prescribed 0.9% NaCl 1000 mL over 8 h; ECG at 10:30 showed 120 beats/min.",
    # eponyms after a title, names given scientific credit, and courts are content, not people to hide
    "Down syndrome and Dr. Down's syndrome are the same; Dr. Jekyll and Mr. Hyde syndrome is not a diagnosis.",
    "Dr Bernhard Giesenhagen gave the classification of dental implants.",
    "In the 1973 Supreme Court decision the 1990 Federal Court agreed.",
    "Do screening programs Miss Cancers Following Updated guidelines? ID 12 weeks later.",
    "女，38岁。血压120/80mmHg，心率110次/分，血WBC16×10⁹/L，服药2周。",
    "Phone numbers such as 100-200-300 and ratios like 1:1000 stay.",
])
def test_clinical_and_dated_text_untouched(text):
    assert scrub(text) == text


def test_title_name_scrubbed_but_the_rest_of_the_sentence_kept():
    assert scrub("Dr. House prescribed 0.9% NaCl 1000 mL over 8 h.") == "Dr. [NAME] prescribed 0.9% NaCl 1000 mL over 8 h."
    assert scrub("MRN 448 2913 was seen 5 days ago.") == "MRN [ID] was seen 5 days ago."
