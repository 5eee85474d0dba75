"""Benchmark loaders: each benchmark's own published file format -> records (eval.records schema).

Every loader returns a list of records with stable ids, unique per source: the benchmark's own id
where it has one (MedBullets: its `link`), else the row's position among the data rows, which is the
same in every format a file ships in (CSV, XLSX, JSON, JSONL; MedQA and the CMExam CSV keep their
line numbers, as data/prepare.py does). A malformed item raises RecordError
naming the file and line (or, with skip_bad=True, is skipped and counted in stats["bad_lines"], the
first reason kept in stats["first_bad"]). BENCHMARKS maps a benchmark name to (loader, default path
under the shared data dir); `load_benchmark(name)` is what eval.run and data/ call.

The generic `load_mcq` reads any MCQ file (JSONL, JSON list, JSON keyed by id, column-oriented JSON,
CSV with multi-line fields, XLSX when openpyxl is installed) given the names of the question /
options / answer fields and the answer encoding, so a new benchmark is a table entry, not a module.
Cells are read the way the published files write them: lists as JSON or Python-list text ("['A']"),
options one level down in an object ({"options": {"A": ...}}), numbers as floats (CareQA's cop 2.0).

`shuffle_options` permutes an item's options (seeded per id; the gold letter follows its option) and
`answer_skew` finds a benchmark whose gold answers pile up on one letter.
"""
import ast
import csv
import io
import json
import math
import os
import random
import re
from collections import Counter
from functools import partial

from eval.records import RecordError, iter_jsonl, make_record, read_json, read_text

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
# the shared data dir: $FLEMING_DATA, else $FLEMING_SHARED/data, else ../shared/data beside the checkout
DATA_DIR = os.environ.get("FLEMING_DATA") or os.path.join(os.environ.get("FLEMING_SHARED") or os.path.normpath(
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared")), "data")

# ----------------------------------------------------------------------------- file readers
# Each yields (line, row) where `line` is where the row starts in the file (1-based), so errors
# can point at it. Column-oriented JSON has no per-row line: it yields the row key instead.


def _bad(path, where, msg):
    return RecordError(f"{path}:{where}: {msg}")


def iter_json(path, skip_bad=False, stats=None):
    """Top-level JSON list or object. Objects yield their values with the key stored as row["_key"]
    (PubMedQA, and files keyed by id); a column-oriented object ({"question": [...] or {...}, ...})
    is turned into rows. Parsed element by element so each row knows its line."""
    text = read_text(path, "JSON")  # missing, a folder, invalid UTF-8: one line naming the file (and line)
    if _is_json_lines(text):  # Hugging Face dataset repos often store JSON Lines as .json (CareQA_en.json)
        yield from iter_jsonl(path, skip_bad, stats)
        return
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


def _is_json_lines(text):
    """Several one-line JSON objects, one per line (a JSON document that starts with a one-line object is
    not valid JSON unless nothing follows it)."""
    first, _, rest = text.lstrip().partition("\n")
    if not rest.strip() or not first.startswith("{"):
        return False
    try:
        return isinstance(json.loads(first), dict)
    except ValueError:
        return False


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
    with io.StringIO(read_text(path, "CSV"), newline="") as f:  # invalid UTF-8 is file:line, a BOM dropped
        reader = csv.DictReader(f, delimiter=delimiter)
        start = 2  # line 1 is the header; a quoted field may span several lines
        try:
            for row in reader:
                extra = row.pop(None, None)  # fields past the header: a trailing ",,,," is harmless
                if extra and any(x.strip() for x in extra):
                    raise _bad(path, start, f"row has more fields than the header ({len(reader.fieldnames)})")
                yield start, row
                start = reader.line_num + 1
        except csv.Error as e:
            raise _bad(path, start, f"bad CSV: {e}") from None


def iter_xlsx(path):
    """The first sheet; row 1 is the header. Empty cells read as "", blank rows are skipped."""
    try:
        import openpyxl  # optional: only needed for .xlsx files
    except ImportError:
        raise RecordError(f"{path}: reading .xlsx needs openpyxl (pip install openpyxl==3.1.5), "
                          "or export the sheet to CSV") from None
    try:
        wb = openpyxl.load_workbook(path, read_only=True)
    except Exception as e:  # zipfile.BadZipFile, KeyError, ...: not a workbook
        raise RecordError(f"{path}: not a readable .xlsx workbook ({type(e).__name__}: {e})") from None
    try:
        rows = wb.active.iter_rows(values_only=True)
        header = [None if h is None else str(h).strip() for h in next(rows, ())]
        for i, vals in enumerate(rows, 2):
            if all(v is None or str(v).strip() == "" for v in vals):
                continue
            yield i, {h: ("" if v is None else v) for h, v in zip(header, vals) if h}
    finally:
        wb.close()


def iter_rows(path, fmt=None, skip_bad=False, stats=None):
    """Rows of any supported file; fmt is jsonl|json|csv|tsv|xlsx, guessed from the extension. With
    skip_bad, lines of JSON Lines that do not parse are skipped and counted in stats["bad_lines"]."""
    if not os.path.exists(path):
        raise RecordError(f"{path}: file not found")
    fmt = fmt or os.path.splitext(path)[1].lstrip(".").lower()
    if fmt in ("jsonl", "json"):
        return (iter_jsonl if fmt == "jsonl" else iter_json)(path, skip_bad, stats)
    readers = {"csv": iter_csv, "tsv": partial(iter_csv, delimiter="\t"), "xlsx": iter_xlsx}
    if fmt not in readers:
        raise RecordError(f"{path}: unknown file format {fmt!r} (use one of jsonl, json, {', '.join(readers)})")
    return readers[fmt](path)


def _convert(path, rows, convert, skip_bad=False, stats=None):
    """Apply convert(row, where, index) -> record to every row (index: the row's 0-based position among the
    data rows), turning any failure into a file:line RecordError."""
    out, seen = [], set()
    for index, (where, row) in enumerate(rows):
        try:
            if not isinstance(row, dict):
                raise ValueError(f"row is a {type(row).__name__}, not an object")
            rec = convert(row, where, index)
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
                stats.setdefault("first_bad", f"{path}:{where}: {msg}")
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
    def convert(row, line, index):
        opts = {k: _text(v, f"option {k}") for k, v in row["options"].items()}
        ans = row["answer_idx"]
        if ans not in opts:
            raise ValueError(f"answer_idx {ans!r} is not among the options {list(opts)}")
        if "answer" in row and row["answer"].strip() != opts[ans]:
            raise ValueError(f"answer text {row['answer']!r} is not option {ans} ({opts[ans]!r})")
        meta = {"meta_info": row["meta_info"]} if "meta_info" in row else {}
        return make_record(f"{source}-{split}-{line:05d}", source, split, _text(row["question"], "question"),
                           opts, ans, meta=meta)
    return _convert(path, iter_rows(path, "jsonl", skip_bad, stats), convert, skip_bad, stats)


def load_medmcqa(path, source="medmcqa", split="dev", skip_bad=False, stats=None, cop_base=1):
    """MedMCQA in either layout: the list-style copy (problem_id, problem_text, choices, answer ["a"])
    or the authors' own (id, question, opa..opd, cop; cop is 1-4 in their files, 0-3 on HF: cop_base=0)."""
    def convert(row, where, index):
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
    return _convert(path, iter_rows(path, None, skip_bad, stats), convert, skip_bad, stats)


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
        truth = read_json(test_ids)  # PMID -> label
        if not isinstance(truth, dict):
            raise RecordError(f"{test_ids}: expected a JSON object of PMID -> label, got a {type(truth).__name__}")
    letter = {v: k for k, v in PUBMEDQA_OPTIONS.items()}

    def convert(row, where, index):
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
    def convert(row, where, index):
        opts = [_text(o, f"option {LETTERS[i]}") for i, o in enumerate(row["options"])]
        ans = row["answer"]
        if "answer_index" in row and LETTERS[int(row["answer_index"])] != ans:
            raise ValueError(f"answer {ans!r} disagrees with answer_index {row['answer_index']}")
        meta = {k: row[k] for k in ("category", "src") if k in row}
        return make_record(row["question_id"], source, split, _text(row["question"], "question"), opts, ans,
                           meta=meta)
    return _convert(path, iter_rows(path, "jsonl", skip_bad, stats), convert, skip_bad, stats)


def load_cmexam(path, source="cmexam", split="test", skip_bad=False, stats=None):
    """CMExam in the list-style copy (problem_id, problem_text, choices, answer ["a","c"]) or the
    authors' CSV (Question, Options "A text\\nB text...", Answer "AC"). Multi-answer items are kept
    with meta.multi_answer = True."""
    def convert(row, line, index):
        if "problem_text" in row:
            q, opts = row["problem_text"], [_text(c, f"choice {i + 1}") for i, c in enumerate(row["choices"])]
            ans, rid = _letters_from_list(row["answer"], len(opts)), row["problem_id"]
        else:
            q, opts = row["Question"], _split_cmexam_options(row["Options"])
            ans, rid = _letters_from_list(row["Answer"].strip(), len(opts)), f"{split}-{line}"
        meta = {"multi_answer": True} if len(ans) > 1 else {}
        return make_record(rid, source, split, _text(q, "question"), opts, ans, meta=meta)

    # the CSV has no ids: line numbers (data/prepare.py gives its items the same ids)
    return _convert(path, iter_rows(path, None, skip_bad, stats), convert, skip_bad, stats)


def _split_cmexam_options(s):
    opts = []
    for i, line in enumerate(l for l in s.strip().split("\n") if l.strip()):
        m = re.match(r"\s*([A-Z])\s*[.、:：]?\s*(.*)", line)
        if not m or m.group(1) != LETTERS[i]:
            raise ValueError(f"option line {line!r} does not start with {LETTERS[i]}")
        opts.append(_text(m.group(2), f"option {LETTERS[i]}"))
    return opts


def load_medbullets(path, source="medbullets", split="test", skip_bad=False, stats=None):
    """MedBullets (HanjieChen/ChallengeClinicalQA): medbullets_op4 / medbullets_op5 as CSV or as pandas'
    column-oriented JSON; columns link, question, opa..opd (op5 adds ope), answer_idx (letter), answer,
    explanation. The id is the item's `link`, tagged op4/op5 by the file's columns: both variants hold
    the same questions (op4 drops one distractor), so their ids must differ."""
    def convert(row, where, index):
        variant = "op5" if "ope" in row else "op4"
        opts = _options([row.get(k) for k in ("opa", "opb", "opc", "opd", "ope")])
        return make_record(f"{variant}-{_text(_cell(row['link']), 'link')}", source, split,
                           _text(row["question"], "question"), opts, _decode_answer(row["answer_idx"], "letter", opts))
    return _convert(path, iter_rows(path, None, skip_bad, stats), convert, skip_bad, stats)


def load_jmed(path, source="jmed", split="test", skip_bad=False, stats=None):
    """JMED (jdh-algo) in either published layout, told apart row by row:
    - the release (JMED.jsonl): question, options {"A": ..., "U": ...} (21), answer a list such as ["A"];
      it has no id field, so the id is jmed-NNNNN, the row's position;
    - the authors' earlier spreadsheet (.xlsx, or that sheet exported to .csv): diagId, patient_age,
      patient_sex, final_question, final_options (JSON text {"options": {"A": ...}}), final_correct_answer
      (Python-list text "['A']"); the id is <diagId>-<row position> (the authors' scripts add a suffix).
    The two layouts are different item sets; their ids cannot collide (jmed- prefix vs a numeric diagId)."""
    def convert(row, where, index):
        if "final_question" not in row:
            opts = _options(row["options"])
            return make_record(f"jmed-{index:05d}", source, split, _text(row["question"], "question"), opts,
                               _decode_answer(row["answer"], "letter", opts))
        q = _text(_cell(row["final_question"]), "final_question")
        # the age and sex live in their own columns; the authors' scripts put them before the case
        facts = [(label, _cell(row.get(k, "")))
                 for k, label in (("patient_age", "患者年龄"), ("patient_sex", "患者性别"))]
        q = "".join(f"{label}：{v}\n" for label, v in facts if v) + q
        opts = _options(row["final_options"])
        rid = _cell(row.get("diagId", ""))
        return make_record(f"{rid}-{index}" if rid else f"sheet-{index:05d}", source, split, q, opts,
                           _decode_answer(row["final_correct_answer"], "letter", opts))
    return _convert(path, iter_rows(path, None, skip_bad, stats), convert, skip_bad, stats)


# ----------------------------------------------------------------------------- any MCQ file


def load_mcq(path, source, split="test", question="question", options="options", answer="answer",
             answer_format="letter", id_field=None, fmt=None, question_cut=None, meta_fields=(),
             skip_bad=False, stats=None):
    """Any multiple-choice file. `options` is one field holding a list or a letter->text dict (also as
    JSON text, and one level down in an object: {"options": {...}}), or a comma-separated list of
    fields ("opa,opb,opc,opd"; a field the file lacks is no option); trailing empty options are
    dropped (files padding 4-option items into 5 columns). `answer_format`: letter ("B", "b", "(B)",
    "AC" for multi-answer, ["B"], "['B']"), index0, index1 (2 or 2.0), or text (the option's text).
    `id_field` names the id column; without it the id is {source}-{position of the row}, the same in
    every format of the file. `question_cut` drops everything from that marker on (e.g. MedXpertQA
    repeats the options after "Answer Choices:")."""
    if answer_format not in ("letter", "index0", "index1", "text"):
        raise ValueError(f"answer_format must be letter, index0, index1 or text, not {answer_format!r}")
    option_fields = [f.strip() for f in options.split(",")] if "," in options else None

    def convert(row, where, index):
        q = _text(row[question], question)
        if question_cut and question_cut in q:
            q = _text(q[:q.index(question_cut)], question)
        opts = _options([row.get(f) for f in option_fields] if option_fields else row[options])
        ans = _decode_answer(row[answer], answer_format, opts)
        rid = _cell(row[id_field]) if id_field else row.get("_key", f"{source}-{index:05d}")
        meta = {f: _plain(row[f]) for f in meta_fields if f in row}
        if len(ans) > 1:
            meta["multi_answer"] = True
        return make_record(_text(rid, "id"), source, split, q, opts, ans, meta=meta)

    return _convert(path, iter_rows(path, fmt, skip_bad, stats), convert, skip_bad, stats)


def _plain(v):
    """A float that is a whole number (pandas and Excel write 2024 as 2024.0) -> int; NaN -> None."""
    if isinstance(v, float):
        return None if math.isnan(v) else int(v) if v.is_integer() else v
    return v


def _cell(v):
    """A cell as text: None / NaN -> "", 2.0 -> "2"."""
    v = _plain(v)
    return "" if v is None else str(v).strip() if not isinstance(v, str) else v.strip()


def _parsed(v):
    """A list or object stored as text in a cell: JSON, or Python literal syntax ("['A']"). Never eval."""
    if isinstance(v, str) and v.strip()[:1] in ("[", "{"):
        try:
            return json.loads(v)
        except ValueError:
            try:
                return ast.literal_eval(v.strip())
            except (ValueError, SyntaxError, MemoryError, RecursionError) as e:
                raise ValueError(f"{v[:60]!r} is neither JSON nor a Python literal ({type(e).__name__})") from None
    return v


def _options(raw):
    """A list, a letter -> text dict, or either as JSON text, possibly one level down in an object
    ({"options": {...}}) -> list of option texts in letter order. Trailing empty options are dropped
    (a 4-option item in 5 columns, an absent column); a gap is an error."""
    raw = _parsed(raw)
    if isinstance(raw, dict) and len(raw) == 1:
        (key, inner), = raw.items()
        inner = _parsed(inner)
        if str(key).strip().upper() not in LETTERS and isinstance(inner, (dict, list)):
            raw = inner
    if isinstance(raw, dict):
        keys = {str(k).strip().upper(): k for k in raw}
        odd = [k for k in keys if len(k) != 1 or k not in LETTERS]
        if odd:
            raise ValueError(f"option keys {sorted(keys)} are not letters")
        n = max(LETTERS.index(k) for k in keys) + 1 if keys else 0
        raw = [raw[keys[k]] if k in keys else None for k in LETTERS[:n]]
    if not isinstance(raw, list):
        raise ValueError(f"options are a {type(raw).__name__}, not a list or a letter -> text object")
    texts = [_cell(o) for o in raw]
    while texts and not texts[-1]:
        texts.pop()
    if len(texts) < 2:
        raise ValueError(f"{len(texts)} option(s); a multiple-choice item needs at least 2")
    if len(texts) > len(LETTERS):
        raise ValueError(f"{len(texts)} options; at most {len(LETTERS)} letters")
    return [_text(o, f"option {LETTERS[i]}") for i, o in enumerate(texts)]


def _decode_answer(a, how, opts):
    if how == "text":
        hits = [LETTERS[i] for i, o in enumerate(opts) if o == _cell(a)]
        if len(hits) != 1:
            raise ValueError(f"answer text {a!r} matches {len(hits)} options")
        return hits[0]
    if how in ("index0", "index1"):
        v = _plain(a)
        i = int(v) - (how == "index1") if isinstance(v, int) or str(v).strip().isdigit() else None
        if i is None or not 0 <= i < len(opts):
            raise ValueError(f"answer index {a!r} is out of range for {len(opts)} options ({how})")
        return LETTERS[i]
    a = _parsed(a)
    items = a if isinstance(a, list) else [a]
    s = "".join(re.sub(r"[\s,()（）.、'\"]", "", str(x)) for x in items).upper()
    return _letters_from_list(list(s), len(opts))


# ----------------------------------------------------------------------------- option order


def shuffle_options(rec, seed):
    """The item with its options in a random order fixed by (seed, source, id); the gold letter(s) follow
    their option. meta.option_order records where each new letter came from ("CAB": new A was old C)."""
    old = list(rec["options"])
    order = old[:]
    random.Random(f"{seed}/{rec['source']}/{rec['id']}").shuffle(order)  # str seed: same on every machine
    new = {LETTERS[i]: rec["options"][k] for i, k in enumerate(order)}
    answer = "".join(sorted(LETTERS[order.index(a)] for a in rec["answer"]))
    return dict(rec, options=new, answer=answer, meta=dict(rec["meta"], option_order="".join(order)))


def answer_skew(recs, share=0.5):
    """(letter, fraction) when one letter is the gold answer of more than `share` of the items, else None:
    a model that always answers that letter would score that fraction."""
    counts = Counter(a for r in recs for a in r["answer"])
    if not recs or not counts:
        return None
    letter, n = counts.most_common(1)[0]
    return (letter, n / len(recs)) if n / len(recs) > share else None


# ----------------------------------------------------------------------------- the benchmark table

# name -> (loader, default path relative to the data dir). The holdout benchmarks (MedXpertQA,
# CareQA, JMED, MedBullets) are not in shared/data: pass their path (eval.run --path NAME=FILE).
# Their entries follow the files their authors publish (checked against public copies):
#   MedXpertQA  TsinghuaC3I/MedXpertQA Text test.jsonl: id, question (options repeated after
#               "Answer Choices:"), options A-J, label, medical_task, body_system, question_type
#   CareQA      HPAI-BSC/CareQA CareQA_en.json (JSON Lines): exam_id, question, op1-op4, cop 1-4 (as 2.0),
#               year, category, unique_id
#   JMED        jdh-algo/JMED JMED.jsonl, or the authors' spreadsheet (see load_jmed)
#   MedBullets  HanjieChen/ChallengeClinicalQA medbullets/medbullets_op{4,5}.{csv,json}
BENCHMARKS = {
    "medxpertqa": (partial(load_mcq, source="medxpertqa", options="options", answer="label", id_field="id",
                           question_cut="Answer Choices:",
                           meta_fields=("medical_task", "body_system", "question_type")),
                   "medxpertqa/test.jsonl"),
    "medqa": (load_medqa, "medqa/phrases_no_exclude_test.jsonl"),
    "medmcqa": (load_medmcqa, "medmcqa/medmcqa.jsonl"),
    "pubmedqa": (load_pubmedqa, "pubmedqa/ori_pqal.json"),
    "pubmedqa_test500": (partial(load_pubmedqa, source="pubmedqa"), "pubmedqa/ori_pqal.json"),
    "mmlu_pro_biology": (partial(load_mmlu_pro, source="mmlu_pro_biology"), "mmlu_pro/mmlu-pro_biology.jsonl"),
    "mmlu_pro_health": (partial(load_mmlu_pro, source="mmlu_pro_health"), "mmlu_pro/mmlu-pro_health.jsonl"),
    "careqa": (partial(load_mcq, source="careqa", options="op1,op2,op3,op4", answer="cop",
                       answer_format="index1", id_field="unique_id", meta_fields=("category", "year", "exam_id")),
               "careqa/CareQA_en.json"),
    "jmed": (load_jmed, "jmed/JMED.jsonl"),
    "medbullets": (load_medbullets, "medbullets/medbullets_op5.csv"),
    "medbullets_op4": (load_medbullets, "medbullets/medbullets_op4.csv"),
    "cmexam": (load_cmexam, "cmexam/cmexam.jsonl"),
}
# The paper's Table 3 suite, in its order (CMExam is training data, not a paper benchmark).
PAPER_SUITE = ("medxpertqa", "medqa", "medmcqa", "pubmedqa", "mmlu_pro_biology", "mmlu_pro_health",
               "careqa", "jmed", "medbullets")


def benchmark_path(name, path=None, data_dir=None):
    """The file a benchmark is read from: `path`, else its default under the data dir."""
    return path or os.path.join(data_dir or DATA_DIR, BENCHMARKS[name][1])


def load_benchmark(name, path=None, data_dir=None, **kw):
    """Records of a known benchmark, from `path` or its default file under the data dir."""
    if name not in BENCHMARKS:
        raise KeyError(f"unknown benchmark {name!r}; known: {', '.join(BENCHMARKS)}")
    data_dir = data_dir or DATA_DIR
    if name == "pubmedqa_test500" and "test_ids" not in kw:
        kw["test_ids"] = os.path.join(data_dir, "pubmedqa/test_ground_truth.json")
    return BENCHMARKS[name][0](benchmark_path(name, path, data_dir), **kw)
