"""Benchmark loaders: each benchmark's own published file format -> records (eval.records schema).

Every loader returns a list of records with stable ids, unique per source. A malformed item raises
RecordError naming the file and line (or, with skip_bad=True, is skipped and counted in
stats["bad_lines"]). BENCHMARKS maps a benchmark name to (loader, default path under the shared data
dir); `load_benchmark(name)` is what eval.run and data/ call.

The generic `load_mcq` reads any MCQ file (JSONL, JSON list, JSON keyed by id, column-oriented JSON,
CSV with multi-line fields, XLSX when openpyxl is installed) given the names of the question /
options / answer fields and the answer encoding, so a new benchmark is a table entry, not a module.
"""
import csv
import json
import os
import re
from functools import partial

from eval.records import RecordError, iter_jsonl, make_record

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
# the shared data dir: $FLEMING_DATA, else $FLEMING_SHARED/data, else ../shared/data beside the checkout
DATA_DIR = os.environ.get("FLEMING_DATA") or os.path.join(os.environ.get("FLEMING_SHARED") or os.path.normpath(
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared")), "data")

# ----------------------------------------------------------------------------- file readers
# Each yields (line, row) where `line` is where the row starts in the file (1-based), so errors
# can point at it. Column-oriented JSON has no per-row line: it yields the row key instead.


def _bad(path, where, msg):
    return RecordError(f"{path}:{where}: {msg}")


def iter_json(path):
    """Top-level JSON list or object. Objects yield their values with the key stored as row["_key"]
    (PubMedQA, and files keyed by id); a column-oriented object ({"question": [...] or {...}, ...})
    is turned into rows. Parsed element by element so each row knows its line."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    dec = json.JSONDecoder()
    ws = re.compile(r"\s*")
    pos = ws.match(text, 0).end()
    if pos >= len(text) or text[pos] not in "[{":
        raise _bad(path, text.count("\n", 0, pos) + 1, "expected a JSON list or object")
    is_list = text[pos] == "["
    close = "]" if is_list else "}"
    pos = ws.match(text, pos + 1).end()
    line, lpos = 1, 0  # running line count, so finding lines stays linear in the file size

    def line_at(p):
        nonlocal line, lpos
        line += text.count("\n", lpos, p)
        lpos = p
        return line

    rows, index = [], 0
    try:
        while text[pos] != close:
            key = index
            if not is_list:
                key, pos = dec.raw_decode(text, pos)
                pos = ws.match(text, pos).end()
                if text[pos] != ":":
                    raise ValueError(f"expected ':' at char {pos}")
                pos = ws.match(text, pos + 1).end()
            start = line_at(pos)
            value, pos = dec.raw_decode(text, pos)
            rows.append((start, key, value))
            index += 1
            pos = ws.match(text, pos).end()
            if text[pos] == ",":
                pos = ws.match(text, pos + 1).end()
            elif text[pos] != close:
                raise ValueError(f"expected ',' or '{close}' at char {pos}")
    except (ValueError, IndexError) as e:
        raise _bad(path, line_at(min(pos, len(text))), f"invalid JSON: {e}") from None
    if not is_list and rows and all(isinstance(v, list) or _is_column(v) for _, _, v in rows):
        yield from _columns(path, rows)
        return
    for start, key, value in rows:
        if not is_list and isinstance(value, dict):
            value = dict(value, _key=key)
        yield start, value


def _is_column(v):
    # pandas' orient="columns" writes {"0": ..., "1": ...}: row index -> value
    return isinstance(v, dict) and v and all(isinstance(k, str) and k.isdigit() for k in v)


def _columns(path, cols):
    """{"question": [q0, q1, ...], "answer": [...]} or pandas {"question": {"0": q0, ...}} -> rows."""
    named = {k: (list(v.values()) if isinstance(v, dict) else v) for _, k, v in cols}
    lengths = {len(v) for v in named.values()}
    if len(lengths) != 1:
        raise _bad(path, 1, f"column-oriented JSON with columns of different lengths {sorted(lengths)}")
    for i in range(lengths.pop()):
        yield f"row {i}", {k: v[i] for k, v in named.items()}


def iter_csv(path, delimiter=","):
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f, delimiter=delimiter)
        start = 2  # line 1 is the header; a quoted field may span several lines
        try:
            for row in reader:
                if None in row:
                    raise _bad(path, start, f"row has more fields than the header ({len(reader.fieldnames)})")
                yield start, row
                start = reader.line_num + 1
        except csv.Error as e:
            raise _bad(path, start, f"bad CSV: {e}") from None


def iter_xlsx(path):
    try:
        import openpyxl  # optional: only needed for .xlsx files
    except ImportError:
        raise RecordError(f"{path}: reading .xlsx needs openpyxl (pip install openpyxl), or export it to CSV") from None
    ws = openpyxl.load_workbook(path, read_only=True).active
    rows = ws.iter_rows(values_only=True)
    header = [str(h) for h in next(rows)]
    for i, vals in enumerate(rows, 2):
        yield i, {h: ("" if v is None else v) for h, v in zip(header, vals)}


def iter_rows(path, fmt=None):
    """Rows of any supported file; fmt is jsonl|json|csv|tsv|xlsx, guessed from the extension."""
    if not os.path.exists(path):
        raise RecordError(f"{path}: file not found")
    fmt = fmt or os.path.splitext(path)[1].lstrip(".").lower()
    readers = {"jsonl": iter_jsonl, "json": iter_json, "csv": iter_csv,
               "tsv": partial(iter_csv, delimiter="\t"), "xlsx": iter_xlsx}
    if fmt not in readers:
        raise RecordError(f"{path}: unknown file format {fmt!r} (use one of {sorted(readers)})")
    return readers[fmt](path)


def _convert(path, rows, convert, skip_bad=False, stats=None):
    """Apply convert(row, where) -> record to every row, turning any failure into a file:line RecordError."""
    out, seen = [], set()
    for where, row in rows:
        try:
            rec = convert(row, where)
            if rec["id"] in seen:
                raise ValueError(f"duplicate id {rec['id']!r}")
            seen.add(rec["id"])
            out.append(rec)
        except (ValueError, KeyError, TypeError, AttributeError, IndexError) as e:
            msg = f"missing field {e}" if isinstance(e, KeyError) else str(e)
            if not skip_bad:
                raise _bad(path, where, msg) from None
            if stats is not None:
                stats["bad_lines"] = stats.get("bad_lines", 0) + 1
    return out


def _text(v, what):
    if not isinstance(v, str):
        raise ValueError(f"{what} is a {type(v).__name__}, not a string")
    v = v.strip()
    if not v:
        raise ValueError(f"{what} is empty")
    return v


def _letters_from_list(ans, n_options):
    """["a"] / ["a","c","e"] / "ACE" -> "A" / "ACE" (upper case, sorted, checked against the option count)."""
    if isinstance(ans, str):
        ans = list(ans.replace(",", "").replace(" ", ""))
    if not isinstance(ans, list) or not ans:
        raise ValueError(f"answer {ans!r} is not a non-empty list of letters")
    letters = sorted({str(a).strip().upper() for a in ans})
    if any(len(a) != 1 or a not in LETTERS[:n_options] for a in letters):
        raise ValueError(f"answer {ans!r} is not among the {n_options} options")
    return "".join(letters)


# ----------------------------------------------------------------------------- published formats


def load_medqa(path, source="medqa", split="test", skip_bad=False, stats=None):
    """MedQA (jind11/MedQA jsonl): options dict A.., label in `answer_idx`. The file has no ids, so the
    id is the line number in the published file (stable as long as the file is)."""
    def convert(row, line):
        opts = {k: _text(v, f"option {k}") for k, v in row["options"].items()}
        ans = row["answer_idx"]
        if ans not in opts:
            raise ValueError(f"answer_idx {ans!r} is not among the options {list(opts)}")
        if "answer" in row and row["answer"].strip() != opts[ans]:
            raise ValueError(f"answer text {row['answer']!r} is not option {ans} ({opts[ans]!r})")
        meta = {"meta_info": row["meta_info"]} if "meta_info" in row else {}
        return make_record(f"{source}-{split}-{line:05d}", source, split, _text(row["question"], "question"),
                           opts, ans, meta=meta)
    return _convert(path, iter_rows(path, "jsonl"), convert, skip_bad, stats)


def load_medmcqa(path, source="medmcqa", split="dev", skip_bad=False, stats=None, cop_base=1):
    """MedMCQA in either layout: the list-style copy (problem_id, problem_text, choices, answer ["a"])
    or the authors' own (id, question, opa..opd, cop; cop is 1-4 in their files, 0-3 on HF: cop_base=0)."""
    def convert(row, where):
        if "problem_text" in row:
            opts = [_text(c, f"choice {i + 1}") for i, c in enumerate(row["choices"])]
            return make_record(row["problem_id"], source, split, _text(row["problem_text"], "problem_text"),
                               opts, _letters_from_list(row["answer"], len(opts)))
        opts = [_text(row[k], k) for k in ("opa", "opb", "opc", "opd")]
        cop = int(row["cop"]) - cop_base
        if not 0 <= cop < 4:
            raise ValueError(f"cop {row['cop']!r} is out of range for cop_base={cop_base}")
        meta = {k: row[k] for k in ("subject_name", "topic_name", "choice_type") if row.get(k)}
        return make_record(row["id"], source, split, _text(row["question"], "question"), opts, LETTERS[cop],
                           meta=meta)
    return _convert(path, iter_rows(path), convert, skip_bad, stats)


PUBMEDQA_OPTIONS = {"A": "yes", "B": "no", "C": "maybe"}


def pubmedqa_question(q, contexts, labels=None):
    """The abstract's sections, then the question: PubMedQA is reading comprehension."""
    parts = []
    for i, c in enumerate(contexts):
        lab = labels[i] if labels and i < len(labels) else None
        parts.append(f"{lab.capitalize()}: {c.strip()}" if lab else c.strip())
    return "Context:\n" + "\n".join(parts) + f"\n\nQuestion: {q.strip()}"


def load_pubmedqa(path, source="pubmedqa", split="test", test_ids=None, skip_bad=False, stats=None):
    """PubMedQA ori_pqal.json (PMID -> QUESTION, CONTEXTS, LABELS, final_decision): A yes / B no / C maybe.
    `test_ids` (a path to test_ground_truth.json) keeps only the official 500 test PMIDs and checks
    that their labels agree."""
    truth = None
    if test_ids:
        with open(test_ids, encoding="utf-8") as f:
            truth = json.load(f)  # PMID -> label
    letter = {v: k for k, v in PUBMEDQA_OPTIONS.items()}

    def convert(row, where):
        pmid, dec = row["_key"], row["final_decision"]
        if dec not in letter:
            raise ValueError(f"final_decision {dec!r} is not yes/no/maybe")
        if truth is not None and truth[pmid] != dec:
            raise ValueError(f"final_decision {dec!r} disagrees with {test_ids} ({truth[pmid]!r})")
        contexts = [_text(c, "context") for c in row["CONTEXTS"]]
        q = pubmedqa_question(_text(row["QUESTION"], "QUESTION"), contexts, row.get("LABELS"))
        meta = {"pmid": pmid, "year": row.get("YEAR")}
        return make_record(pmid, source, split, q, PUBMEDQA_OPTIONS, letter[dec], meta=meta)

    rows = iter_rows(path, "json")
    if truth is not None:
        rows = [(w, r) for w, r in rows if isinstance(r, dict) and r.get("_key") in truth]
        if len(rows) != len(truth):
            raise RecordError(f"{path}: has {len(rows)} of the {len(truth)} test ids in {test_ids}")
    return _convert(path, rows, convert, skip_bad, stats)


def load_mmlu_pro(path, source="mmlu_pro", split="test", skip_bad=False, stats=None):
    """MMLU-Pro (TIGER-Lab jsonl): options list of 3-10, `answer` letter, `answer_index` 0-based."""
    def convert(row, where):
        opts = [_text(o, f"option {LETTERS[i]}") for i, o in enumerate(row["options"])]
        ans = row["answer"]
        if "answer_index" in row and LETTERS[int(row["answer_index"])] != ans:
            raise ValueError(f"answer {ans!r} disagrees with answer_index {row['answer_index']}")
        meta = {k: row[k] for k in ("category", "src") if k in row}
        return make_record(row["question_id"], source, split, _text(row["question"], "question"), opts, ans,
                           meta=meta)
    return _convert(path, iter_rows(path, "jsonl"), convert, skip_bad, stats)


def load_cmexam(path, source="cmexam", split="test", skip_bad=False, stats=None):
    """CMExam in the list-style copy (problem_id, problem_text, choices, answer ["a","c"]) or the
    authors' CSV (Question, Options "A text\\nB text...", Answer "AC"). Multi-answer items are kept
    with meta.multi_answer = True."""
    def convert(row, line):
        if "problem_text" in row:
            q, opts = row["problem_text"], [_text(c, f"choice {i + 1}") for i, c in enumerate(row["choices"])]
            ans, rid = _letters_from_list(row["answer"], len(opts)), row["problem_id"]
        else:
            q, opts = row["Question"], _split_cmexam_options(row["Options"])
            ans, rid = _letters_from_list(row["Answer"].strip(), len(opts)), f"{split}-{line}"
        meta = {"multi_answer": True} if len(ans) > 1 else {}
        return make_record(rid, source, split, _text(q, "question"), opts, ans, meta=meta)

    return _convert(path, iter_rows(path), convert, skip_bad, stats)  # the CSV has no ids: line numbers


def _split_cmexam_options(s):
    opts = []
    for i, line in enumerate(l for l in s.strip().split("\n") if l.strip()):
        m = re.match(r"\s*([A-Z])\s*[.、:：]?\s*(.*)", line)
        if not m or m.group(1) != LETTERS[i]:
            raise ValueError(f"option line {line!r} does not start with {LETTERS[i]}")
        opts.append(_text(m.group(2), f"option {LETTERS[i]}"))
    return opts


# ----------------------------------------------------------------------------- any MCQ file


def load_mcq(path, source, split="test", question="question", options="options", answer="answer",
             answer_format="letter", id_field=None, fmt=None, question_cut=None, meta_fields=(),
             skip_bad=False, stats=None):
    """Any multiple-choice file. `options` is one field holding a list or a letter->text dict, or a
    comma-separated list of fields ("opa,opb,opc,opd"); trailing empty options are dropped (files
    padding 4-option items into 5 columns). `answer_format`: letter ("B", "b", "(B)", "AC" for
    multi-answer), index0, index1, or text (the option's text). `id_field` names the id column;
    without it the id is the row's line. `question_cut` drops everything from that marker on (e.g.
    MedXpertQA repeats the options after "Answer Choices:")."""
    if answer_format not in ("letter", "index0", "index1", "text"):
        raise ValueError(f"answer_format must be letter, index0, index1 or text, not {answer_format!r}")
    option_fields = [f.strip() for f in options.split(",")] if "," in options else None

    def convert(row, where):
        q = _text(row[question], question)
        if question_cut and question_cut in q:
            q = _text(q[:q.index(question_cut)], question)
        raw = [row[f] for f in option_fields] if option_fields else row[options]
        if isinstance(raw, str):  # a list stored as JSON text inside a CSV cell
            raw = json.loads(raw)
        if isinstance(raw, dict):
            raw = [raw[k] for k in sorted(raw)]
        raw = [("" if o is None else str(o)) for o in raw]
        while raw and not raw[-1].strip():
            raw.pop()
        opts = [_text(o, f"option {LETTERS[i]}") for i, o in enumerate(raw)]
        ans = _decode_answer(row[answer], answer_format, opts)
        rid = row[id_field] if id_field else row.get("_key", f"{split}-{where}".replace(" ", ""))
        meta = {f: row[f] for f in meta_fields if f in row}
        if len(ans) > 1:
            meta["multi_answer"] = True
        return make_record(rid, source, split, q, opts, ans, meta=meta)

    return _convert(path, iter_rows(path, fmt), convert, skip_bad, stats)


def _decode_answer(a, how, opts):
    if how == "text":
        hits = [LETTERS[i] for i, o in enumerate(opts) if o == str(a).strip()]
        if len(hits) != 1:
            raise ValueError(f"answer text {a!r} matches {len(hits)} options")
        return hits[0]
    if how in ("index0", "index1"):
        i = int(a) - (how == "index1")
        if not 0 <= i < len(opts):
            raise ValueError(f"answer index {a!r} is out of range for {len(opts)} options ({how})")
        return LETTERS[i]
    s = re.sub(r"[\s,()（）.、]", "", str(a)).upper()
    return _letters_from_list(list(s), len(opts))


# ----------------------------------------------------------------------------- the benchmark table

# name -> (loader, default path relative to the data dir). The holdout benchmarks (MedXpertQA,
# CareQA, JMED, MedBullets) are not in shared/data: pass their path (eval.run --path NAME=FILE).
# Their entries follow the layouts their authors publish; check the fields against your copy.
BENCHMARKS = {
    "medxpertqa": (partial(load_mcq, source="medxpertqa", options="options", answer="label", id_field="id",
                           question_cut="Answer Choices:", meta_fields=("medical_task", "body_system")),
                   "medxpertqa/test.jsonl"),
    "medqa": (load_medqa, "medqa/phrases_no_exclude_test.jsonl"),
    "medmcqa": (load_medmcqa, "medmcqa/medmcqa.jsonl"),
    "pubmedqa": (load_pubmedqa, "pubmedqa/ori_pqal.json"),
    "pubmedqa_test500": (partial(load_pubmedqa, source="pubmedqa"), "pubmedqa/ori_pqal.json"),
    "mmlu_pro_biology": (partial(load_mmlu_pro, source="mmlu_pro_biology"), "mmlu_pro/mmlu-pro_biology.jsonl"),
    "mmlu_pro_health": (partial(load_mmlu_pro, source="mmlu_pro_health"), "mmlu_pro/mmlu-pro_health.jsonl"),
    "careqa": (partial(load_mcq, source="careqa", options="op1,op2,op3,op4", answer="cop",
                       answer_format="index1", id_field="unique_id", meta_fields=("category", "year")),
               "careqa/CareQA_en.json"),
    "jmed": (partial(load_mcq, source="jmed"), "jmed/test.jsonl"),
    "medbullets": (partial(load_mcq, source="medbullets", options="opa,opb,opc,opd,ope", answer="answer_idx"),
                   "medbullets/medbullets_op5.csv"),
    "cmexam": (load_cmexam, "cmexam/cmexam.jsonl"),
}
# The paper's Table 3 suite, in its order (CMExam is training data, not a paper benchmark).
PAPER_SUITE = ("medxpertqa", "medqa", "medmcqa", "pubmedqa", "mmlu_pro_biology", "mmlu_pro_health",
               "careqa", "jmed", "medbullets")


def load_benchmark(name, path=None, data_dir=None, **kw):
    """Records of a known benchmark, from `path` or its default file under the data dir."""
    if name not in BENCHMARKS:
        raise KeyError(f"unknown benchmark {name!r}; known: {', '.join(BENCHMARKS)}")
    loader, default = BENCHMARKS[name]
    data_dir = data_dir or DATA_DIR
    if name == "pubmedqa_test500" and "test_ids" not in kw:
        kw["test_ids"] = os.path.join(data_dir, "pubmedqa/test_ground_truth.json")
    return loader(path or os.path.join(data_dir, default), **kw)
