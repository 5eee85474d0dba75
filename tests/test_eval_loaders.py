"""Benchmark loaders on the real shared files: published counts, valid records, file:line errors."""
import ast
import csv
import json
from pathlib import Path

import pytest

from conftest import SHARED
from eval.records import RecordError, validate_record
from eval.loaders import BENCHMARKS, LETTERS, answer_skew, load_benchmark, load_cmexam, load_mcq, load_medmcqa, \
    load_medqa, load_mmlu_pro, load_pubmedqa, shuffle_options

DATA = SHARED / "data"

PUBLISHED = {"medqa": 1273, "medmcqa": 4183, "pubmedqa": 1000, "pubmedqa_test500": 500,
             "mmlu_pro_biology": 717, "mmlu_pro_health": 818}


def lines(path):
    return path.read_text(encoding="utf-8").splitlines()


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_published_counts_and_valid_records(shared, name):
    recs = load_benchmark(name, data_dir=str(DATA))
    assert len(recs) == PUBLISHED[name]
    assert len({r["id"] for r in recs}) == len(recs)
    for r in recs:
        validate_record(r)
        assert all(v.strip() for v in r["options"].values())
        assert set(r["answer"]) <= set(r["options"])
    assert [r["id"] for r in load_benchmark(name, data_dir=str(DATA))] == [r["id"] for r in recs]  # stable


def test_answers_agree_with_the_raw_files(shared):
    raw = [json.loads(l) for l in lines(DATA / "medqa/phrases_no_exclude_test.jsonl")]
    recs = load_benchmark("medqa", data_dir=str(DATA))
    assert all(r["options"][r["answer"]] == x["answer"].strip() for r, x in zip(recs, raw))
    raw = [json.loads(l) for l in lines(DATA / "medmcqa/medmcqa.jsonl")]
    recs = load_benchmark("medmcqa", data_dir=str(DATA))
    assert [r["id"] for r in recs] == [x["problem_id"] for x in raw]
    assert all(r["options"][r["answer"]] == x["choices"]["abcd".index(x["answer"][0])] for r, x in zip(recs, raw))
    bio = load_benchmark("mmlu_pro_biology", data_dir=str(DATA))
    counts = {n: sum(len(r["options"]) == n for r in bio) for n in (3, 10)}
    assert counts == {3: 1, 10: 617}  # MANIFEST: 617 ten-option rows, the rest 3-9


def test_pubmedqa_yes_no_maybe_with_context(shared):
    recs = load_benchmark("pubmedqa", data_dir=str(DATA))
    by = {l: sum(r["answer"] == l for r in recs) for l in "ABC"}
    assert by == {"A": 552, "B": 338, "C": 110}  # yes / no / maybe
    raw = json.loads((DATA / "pubmedqa/ori_pqal.json").read_text())
    r = recs[0]
    assert r["id"] in raw and raw[r["id"]]["QUESTION"] in r["question"]
    assert raw[r["id"]]["CONTEXTS"][0] in r["question"]  # the abstract is part of the question
    test = load_benchmark("pubmedqa_test500", data_dir=str(DATA))
    truth = json.loads((DATA / "pubmedqa/test_ground_truth.json").read_text())
    assert {r["id"] for r in test} == set(truth)
    assert all(r["options"][r["answer"]] == truth[r["id"]] for r in test)


def test_cmexam_keeps_multi_answer_items_and_names_the_broken_row(shared):
    # The shared copy has 6,811 rows (the published test size); one of them (problem_id 5331, line
    # 5332) gives answer "bce" for a 4-choice item, so it cannot become a valid record.
    path = DATA / "cmexam/cmexam.jsonl"
    assert len(lines(path)) == 6811
    with pytest.raises(RecordError, match=r"cmexam\.jsonl:5332: .*not among the 4 options"):
        load_benchmark("cmexam", data_dir=str(DATA))
    stats = {}
    recs = load_benchmark("cmexam", data_dir=str(DATA), skip_bad=True, stats=stats)
    assert len(recs) == 6810 and stats["bad_lines"] == 1
    assert stats["first_bad"].endswith("cmexam.jsonl:5332: answer ['b', 'c', 'e'] is not among the 4 options")
    multi = [r for r in recs if r["meta"].get("multi_answer")]
    assert len(multi) == 203  # MANIFEST: 204 multi-answer rows, less the broken one
    raw = {json.loads(l)["problem_id"]: json.loads(l) for l in lines(path)}
    for r in multi:
        assert r["answer"] == "".join(sorted(raw[int(r["id"])]["answer"])).upper()
        validate_record(r)


@pytest.mark.parametrize("loader,rel,field", [
    (load_medqa, "medqa/phrases_no_exclude_test.jsonl", "answer_idx"),
    (load_medmcqa, "medmcqa/medmcqa.jsonl", "answer"),
    (load_mmlu_pro, "mmlu_pro/mmlu-pro_health.jsonl", "answer"),
])
def test_corrupted_copies_name_file_and_line(shared, tmp_path, loader, rel, field):
    src = lines(DATA / rel)
    bad = tmp_path / rel.split("/")[-1]
    row = json.loads(src[99])
    row[field] = ["z"] if isinstance(row[field], list) else "Z"
    bad.write_text("\n".join(src[:99] + [json.dumps(row)] + src[100:200]) + "\n")
    with pytest.raises(RecordError, match=rf"{bad.name}:100: "):
        loader(str(bad))
    stats = {}
    assert len(loader(str(bad), skip_bad=True, stats=stats)) == 199 and stats["bad_lines"] == 1
    truncated = tmp_path / ("t_" + bad.name)
    truncated.write_text("\n".join(src[:40] + [src[40][:57]]) + "\n")  # a torn JSON line
    with pytest.raises(RecordError, match=rf"{truncated.name}:41: invalid JSON"):
        loader(str(truncated))


def test_corrupted_pubmedqa_names_the_line(shared, tmp_path):
    text = (DATA / "pubmedqa/ori_pqal.json").read_text()
    raw = json.loads(text)
    pmids = list(raw)[:30]
    small = {p: raw[p] for p in pmids}
    small[pmids[20]]["final_decision"] = "probably"
    bad = tmp_path / "ori_pqal.json"
    bad.write_text(json.dumps(small, indent=4))
    want = next(i for i, l in enumerate(bad.read_text().splitlines(), 1) if l.strip().startswith(f'"{pmids[20]}"'))
    with pytest.raises(RecordError, match=rf"ori_pqal\.json:{want}: final_decision 'probably'"):
        load_pubmedqa(str(bad))
    small[pmids[20]]["final_decision"] = "yes"
    small[pmids[25]]["CONTEXTS"] = []
    bad.write_text(json.dumps(small, indent=4)[:-30])  # and a file cut short
    with pytest.raises(RecordError, match=r"ori_pqal\.json:\d+: invalid JSON"):
        load_pubmedqa(str(bad))


def test_medmcqa_authors_layout_matches_the_list_copy(shared, tmp_path):
    """The authors publish opa..opd with cop 1-4 (HF: 0-3); both must give the same records."""
    raw = [json.loads(l) for l in lines(DATA / "medmcqa/medmcqa.jsonl")][:300]
    ref = load_medmcqa(str(DATA / "medmcqa/medmcqa.jsonl"))[:300]
    for base in (1, 0):
        path = tmp_path / f"dev{base}.json"
        path.write_text("\n".join(json.dumps({
            "id": x["problem_id"], "question": x["problem_text"], "opa": x["choices"][0], "opb": x["choices"][1],
            "opc": x["choices"][2], "opd": x["choices"][3], "cop": "abcd".index(x["answer"][0]) + base,
            "subject_name": "Physiology"}) for x in raw))
        path = path.rename(tmp_path / f"dev{base}.jsonl")
        recs = load_medmcqa(str(path), cop_base=base)
        assert [(r["id"], r["options"], r["answer"]) for r in recs] == \
            [(r["id"], r["options"], r["answer"]) for r in ref]
    first_d = 1 + next(i for i, x in enumerate(raw) if x["answer"] == ["d"])
    with pytest.raises(RecordError, match=rf"dev1\.jsonl:{first_d}: cop 4 is out of range"):
        load_medmcqa(str(tmp_path / "dev1.jsonl"), cop_base=0)  # the wrong base is caught, not shifted


def _write_all_formats(tmp_path, recs):
    """The same real items in every layout the generic loader reads, each with its own answer encoding."""
    rows = [{"qid": r["id"], "question": r["question"], "options": list(r["options"].values()),
             "label": r["answer"]} for r in recs]
    jl = tmp_path / "items.jsonl"
    jl.write_text("\n".join(json.dumps(x) for x in rows))
    js = tmp_path / "items.json"
    js.write_text(json.dumps([dict(x, label=LETTERS.index(x["label"])) for x in rows], indent=2))
    cols = tmp_path / "cols.json"  # pandas DataFrame.to_json() default: column -> {row index -> value}
    cols.write_text(json.dumps({"qid": {str(i): x["qid"] for i, x in enumerate(rows)},
                                "question": {str(i): x["question"] for i, x in enumerate(rows)},
                                "options": {str(i): x["options"] for i, x in enumerate(rows)},
                                "label": {str(i): x["options"][LETTERS.index(x["label"])] for i, x in enumerate(rows)}}))
    cv = tmp_path / "items.csv"  # MedBullets / CareQA style: one column per option, 1-based index answer
    with open(cv, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["qid", "question", "op1", "op2", "op3", "op4", "op5", "cop"])
        for x in rows:
            opts = x["options"] + [""] * (5 - len(x["options"]))
            w.writerow([x["qid"], x["question"] + "\nLab results:\n  Na 140 mEq/L", *opts, LETTERS.index(x["label"]) + 1])
    return jl, js, cols, cv


def test_generic_loader_reads_every_layout(shared, tmp_path):
    recs = load_benchmark("medqa", data_dir=str(DATA))[:50]
    jl, js, cols, cv = _write_all_formats(tmp_path, recs)
    want = [(r["id"], r["options"], r["answer"]) for r in recs]
    for path, fmt in [(jl, "letter"), (js, "index0"), (cols, "text")]:
        got = load_mcq(str(path), source="x", options="options", answer="label", answer_format=fmt, id_field="qid")
        assert [(r["id"], r["options"], r["answer"]) for r in got] == want, path.name
        assert [r["question"] for r in got] == [r["question"] for r in recs]
    got = load_mcq(str(cv), source="x", options="op1,op2,op3,op4,op5", answer="cop", answer_format="index1",
                   id_field="qid")
    assert [(r["id"], r["options"], r["answer"]) for r in got] == want  # empty 5th column dropped
    assert got[0]["question"].endswith("Lab results:\n  Na 140 mEq/L")  # multi-line CSV field kept whole
    # without an id field the id is the row's position: the same in every format although a CSV row
    # spans 3 physical lines and a column-oriented JSON has no lines at all
    ids = [r["id"] for r in load_mcq(str(cv), source="x", options="op1,op2,op3,op4,op5", answer="cop",
                                     answer_format="index1")]
    assert ids == [f"x-{i:05d}" for i in range(50)]
    for path, fmt in [(jl, "letter"), (js, "index0"), (cols, "text")]:
        assert [r["id"] for r in load_mcq(str(path), source="x", answer="label", answer_format=fmt)] == ids


def test_generic_loader_errors_name_the_line(shared, tmp_path):
    recs = load_benchmark("medqa", data_dir=str(DATA))[:20]
    _, _, _, cv = _write_all_formats(tmp_path, recs)
    text = open(cv, newline="").read().split("\r\n")
    text[8] = text[8].rsplit(",", 1)[0] + ",9"  # data row 8: answer 9 of 4 options
    open(cv, "w", newline="").write("\r\n".join(text))
    start = 1 + sum(t.count("\n") + 1 for t in text[:8])  # real questions hold line breaks (lab tables)
    assert start > 2 + 3 * 7
    with pytest.raises(RecordError, match=rf"items\.csv:{start}: answer index '9' is out of range"):
        load_mcq(str(cv), source="x", options="op1,op2,op3,op4,op5", answer="cop", answer_format="index1")
    gap = tmp_path / "gap.jsonl"
    gap.write_text(json.dumps({"question": "q?", "options": ["a", "", "c"], "answer": "A"}) + "\n")
    with pytest.raises(RecordError, match=r"gap\.jsonl:1: option B is empty"):
        load_mcq(str(gap), source="x")
    multi = tmp_path / "multi.jsonl"
    multi.write_text(json.dumps({"question": "q?", "options": ["a", "b", "c"], "answer": "A,C"}) + "\n")
    (r,) = load_mcq(str(multi), source="x")
    assert r["answer"] == "AC" and r["meta"]["multi_answer"] is True


def test_benchmark_table_and_missing_holdout_files(shared, tmp_path):
    assert {"medqa", "medmcqa", "pubmedqa", "mmlu_pro_biology", "mmlu_pro_health", "cmexam", "medxpertqa",
            "careqa", "jmed", "medbullets"} <= set(BENCHMARKS)
    with pytest.raises(RecordError, match="file not found"):
        load_benchmark("medxpertqa", data_dir=str(tmp_path))
    # MedXpertQA's published layout: options dict A-J, label letter, options repeated in the question
    mx = tmp_path / "medxpertqa/test.jsonl"
    mx.parent.mkdir()
    item = load_benchmark("mmlu_pro_health", data_dir=str(DATA))[0]
    choices = " ".join(f"({k}) {v}" for k, v in item["options"].items())
    mx.write_text(json.dumps({"id": "Text-0", "question": f"{item['question']}\nAnswer Choices: {choices}",
                              "options": item["options"], "label": item["answer"], "medical_task": "Diagnosis",
                              "body_system": "Other", "question_type": "Reasoning"}) + "\n")
    (r,) = load_benchmark("medxpertqa", data_dir=str(tmp_path))
    assert r["question"] == item["question"].strip() and r["answer"] == item["answer"] and r["id"] == "Text-0"
    with pytest.raises(KeyError, match="unknown benchmark"):
        load_benchmark("nope")


# ----------------------------------------------------------------------------- published layouts (fixtures)
# tests/fixtures/loaders holds a few items of our own in each published layout of the holdout
# benchmarks (their files are not in shared/): same columns, encodings and quirks, not their content.

FIX = Path(__file__).resolve().parent / "fixtures" / "loaders"


def raw_csv(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def triples(recs):
    return [(r["id"], r["question"], r["options"], r["answer"]) for r in recs]


def test_medbullets_op4_and_op5_in_csv_and_json(tmp_path):
    op4 = load_benchmark("medbullets_op4", str(FIX / "medbullets_op4.csv"))
    op5 = load_benchmark("medbullets", str(FIX / "medbullets_op5.csv"))
    assert [len(r["options"]) for r in op4] == [4, 4, 4] and [len(r["options"]) for r in op5] == [5, 5, 5]
    for recs, path in ((op4, "medbullets_op4.csv"), (op5, "medbullets_op5.csv")):
        raw = raw_csv(FIX / path)
        assert [r["options"][r["answer"]] for r in recs] == [x["answer"] for x in raw]  # the answer text column
        assert [r["id"].split("-", 1)[1] for r in recs] == [x["link"] for x in raw]
        for r in recs:
            validate_record(r)
    # the JSON variant (pandas' column-oriented to_json) gives the same records, ids included
    assert triples(load_benchmark("medbullets_op4", str(FIX / "medbullets_op4.json"))) == triples(op4)
    assert not {r["id"] for r in op4} & {r["id"] for r in op5}  # same links, two variants, no shared id
    # an earlier published copy ends every row with ",,,,": harmless; a real extra value is not
    with open(FIX / "medbullets_op4.csv", newline="", encoding="utf-8") as f:
        header, *rows = list(csv.reader(f))
    (tmp_path / "medbullets").mkdir()
    padded = tmp_path / "medbullets/medbullets_op4.csv"
    for extra in (["", "", "", ""], ["", "x"]):
        with open(padded, "w", newline="", encoding="utf-8") as f:
            pad = [row + (extra if i == 1 else ["", "", "", ""]) for i, row in enumerate(rows)]
            csv.writer(f).writerows([header] + pad)
        if "x" not in extra:
            assert triples(load_benchmark("medbullets_op4", data_dir=str(tmp_path))) == triples(op4)
    line = 2 + sum(field.count("\n") for field in rows[0]) + 1  # item 2 starts after item 1's multi-line explanation
    with pytest.raises(RecordError, match=rf"medbullets_op4\.csv:{line}: row has more fields than the header"):
        load_benchmark("medbullets_op4", data_dir=str(tmp_path))


def test_jmed_release_and_spreadsheet_layouts(tmp_path):
    rel = load_benchmark("jmed", str(FIX / "jmed_release.jsonl"))
    raw = [json.loads(l) for l in lines(FIX / "jmed_release.jsonl")]
    assert [len(r["options"]) for r in rel] == [21] * 3
    assert [r["answer"] for r in rel] == [x["answer"][0] for x in raw]  # ["B"] -> "B"
    assert [r["id"] for r in rel] == ["jmed-00000", "jmed-00001", "jmed-00002"]
    sheet = load_benchmark("jmed", str(FIX / "jmed_sheet.csv"))
    assert triples(load_benchmark("jmed", str(FIX / "jmed_sheet.xlsx"))) == triples(sheet)  # .xlsx == its CSV
    raw = raw_csv(FIX / "jmed_sheet.csv")
    assert [r["id"] for r in sheet] == [f"{x['diagId']}-{i}" for i, x in enumerate(raw)]
    for r, x in zip(sheet, raw):
        validate_record(r)
        opts = json.loads(x["final_options"])["options"]  # nested one level: {"options": {"A": ...}}
        assert r["options"] == opts and [r["answer"]] == ast.literal_eval(x["final_correct_answer"])
        assert r["question"].endswith(x["final_question"]) and x["patient_age"] in r["question"]
    assert not {r["id"] for r in rel} & {r["id"] for r in sheet}
    assert answer_skew(sheet) == ("A", 0.75) and answer_skew(rel) is None
    fake = tmp_path / "sheet.xlsx"
    fake.write_text("diagId,final_question\n")
    with pytest.raises(RecordError, match=r"sheet\.xlsx: not a readable \.xlsx workbook"):
        load_benchmark("jmed", str(fake))


def test_medxpertqa_mmlu_pro_and_careqa_layouts(tmp_path):
    mx = load_benchmark("medxpertqa", str(FIX / "medxpertqa_text.jsonl"))
    raw = [json.loads(l) for l in lines(FIX / "medxpertqa_text.jsonl")]
    assert [r["id"] for r in mx] == ["Text-0", "Text-1"] and all(len(r["options"]) == 10 for r in mx)
    assert [r["meta"]["question_type"] for r in mx] == ["Reasoning", "Understanding"]
    assert all("Answer Choices" not in r["question"] and r["question"] in x["question"] for r, x in zip(mx, raw))
    mp = load_mmlu_pro(str(FIX / "mmlu_pro.jsonl"))
    assert [len(r["options"]) for r in mp] == [3, 5, 10] and [r["answer"] for r in mp] == ["B", "C", "E"]
    # CareQA_en.json is JSON Lines despite its name; cop, exam_id and year are floats; an option may be a number
    cq = load_benchmark("careqa", str(FIX / "careqa_en.json"))
    raw = [json.loads(l) for l in lines(FIX / "careqa_en.json")]
    assert [r["id"] for r in cq] == [x["unique_id"] for x in raw]
    assert [r["answer"] for r in cq] == [LETTERS[int(x["cop"]) - 1] for x in raw]
    assert cq[1]["options"]["C"] == "7.28" and cq[0]["meta"] == {"category": "Medicine", "year": 2024, "exam_id": 1}
    as_list = tmp_path / "careqa_list.json"  # the same rows as one JSON list: the same records
    as_list.write_text(json.dumps(raw, indent=1))
    assert triples(load_benchmark("careqa", str(as_list))) == triples(cq)


@pytest.mark.parametrize("answer,options,want,n", [
    (["A"], {"A": "x", "B": "y"}, "A", 2),
    ("['B']", '{"options": {"A": "x", "B": "y"}}', "B", 2),  # JMED's spreadsheet cells
    ('["a", "c"]', ["x", "y", "z"], "AC", 3),
    ("(C)", {"options": ["x", "y", "z"]}, "C", 3),
    ("B", {"A": "x", "B": "y", "C": "", "D": None}, "B", 2),  # trailing empty options dropped
])
def test_answer_and_option_cells(tmp_path, answer, options, want, n):
    path = tmp_path / "items.jsonl"
    path.write_text(json.dumps({"question": "q?", "options": options, "answer": answer}) + "\n")
    (r,) = load_mcq(str(path), source="x")
    assert r["answer"] == want and list(r["options"]) == list(LETTERS[:n])


@pytest.mark.parametrize("options,error", [
    ({"A": "x", "C": "z"}, "option B is empty"),
    ({"A": "x", "second": "y"}, r"option keys \['A', 'SECOND'\] are not letters"),
    (["only one"], "1 option"),
])
def test_bad_option_cells_name_the_line(tmp_path, options, error):
    path = tmp_path / "items.jsonl"
    path.write_text(json.dumps({"question": "q?", "options": ["a", "b"], "answer": "A"}) + "\n" +
                    json.dumps({"question": "q?", "options": options, "answer": "A"}) + "\n")
    with pytest.raises(RecordError, match=rf"items\.jsonl:2: {error}"):
        load_mcq(str(path), source="x")


def test_absent_option_column_is_no_option(tmp_path):
    path = tmp_path / "items.csv"
    path.write_text("question,op1,op2,op3,cop\nq?,a,b,c,3\n")
    (r,) = load_mcq(str(path), source="x", options="op1,op2,op3,op4,op5", answer="cop", answer_format="index1")
    assert r["options"] == {"A": "a", "B": "b", "C": "c"} and r["answer"] == "C"


def test_shuffle_options_moves_the_gold_with_its_option(shared):
    recs = load_benchmark("medqa", data_dir=str(DATA))[:300]
    a, b = [shuffle_options(r, 7) for r in recs], [shuffle_options(r, 7) for r in recs]
    assert a == b  # deterministic per (seed, id)
    assert [r["options"] for r in a] != [r["options"] for r in (shuffle_options(r, 8) for r in recs)]
    for old, new in zip(recs, a):
        validate_record(new)
        assert new["options"][new["answer"]] == old["options"][old["answer"]]
        assert sorted(new["options"].values()) == sorted(old["options"].values())
        assert all(new["options"][LETTERS[i]] == old["options"][k] for i, k in enumerate(new["meta"]["option_order"]))
    assert sum(n["answer"] != o["answer"] for o, n in zip(recs, a)) > 150  # about 3/4 of the golds move
    multi = [r for r in load_benchmark("cmexam", data_dir=str(DATA), skip_bad=True) if r["meta"].get("multi_answer")]
    for old in multi[:50]:
        new = shuffle_options(old, 1)
        assert {new["options"][l] for l in new["answer"]} == {old["options"][l] for l in old["answer"]}
        assert new["meta"]["multi_answer"] and list(new["answer"]) == sorted(new["answer"])
    # PubMedQA's golds are 55% "yes" = A; shuffled, no letter holds half of them
    pq = load_benchmark("pubmedqa", data_dir=str(DATA))
    assert answer_skew(pq) == ("A", 0.552)
    assert answer_skew([shuffle_options(r, 0) for r in pq]) is None
