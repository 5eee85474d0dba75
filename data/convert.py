"""Published QA files -> records: one converter per format (FORMAT[:SPLIT]=PATH specs, see data.prepare), with
no content validation (that is the format filter's business). Used by data.prepare's convert step and by
data.decontam's --measure (its clean pools), so neither imports the other for it.
"""
import os
from collections import Counter

from eval.loaders import LETTERS, PUBMEDQA_OPTIONS, _is_json_lines, _split_cmexam_options, iter_rows, pubmedqa_question
from eval.records import RecordError, UsageError, iter_jsonl, read_json, read_text

DEFAULT_SOURCES = [  # relative to the shared data dir; all but the first two are eval splits
    "medqa:train=medqa/medqa_train_small.jsonl",
    "huatuo:train=huatuogpt_o1_demo/demo_data.json",
    "medmcqa:dev=medmcqa/medmcqa.jsonl",
    "cmexam:test=cmexam/cmexam.jsonl",
    "pubmedqa:pqal=pubmedqa/ori_pqal.json",
]

def check_json_file(path):
    """A .json file must hold one JSON value (or be JSON Lines): data after it is an error, not ignored."""
    if path.endswith(".json") and not _is_json_lines(read_text(path, "JSON")):
        read_json(path)


# --- converters: published row -> record dict (content not validated) ---------------------------

def _str(v, what):
    if not isinstance(v, str):
        raise ValueError(f"{what} is a {type(v).__name__}, not a string")
    return v.strip()


def _opts(v, what="options"):
    if isinstance(v, dict):
        return {str(k): _str(o, f"option {k}") for k, o in v.items()}
    if isinstance(v, list):
        return {LETTERS[i]: _str(o, f"option {LETTERS[i]}") for i, o in enumerate(v)}
    raise ValueError(f"{what} is a {type(v).__name__}, not a list or object")


def _letters(ans):
    """["a", "c"] / "AC" / "a" -> "AC" (upper, sorted); membership is the filter's business."""
    if isinstance(ans, str):
        ans = list(ans.replace(",", "").replace(" ", ""))
    if not isinstance(ans, list):
        raise ValueError(f"answer {ans!r} is not a letter list")
    return "".join(sorted({str(a).strip().upper() for a in ans}))


def _rec(id, source, split, question, options, answer, meta=None):
    meta = dict(meta or {})
    if len(answer) > 1:
        meta["multi_answer"] = True
    return {"id": str(id), "source": source, "split": split, "question": question, "options": options,
            "answer": answer, "difficulty": None, "meta": meta}


def conv_medqa(row, where, split, index=None, source="medqa"):
    meta = {"meta_info": row["meta_info"]} if "meta_info" in row else {}
    return _rec(f"{source}-{split}-{where:05d}", source, split, _str(row["question"], "question"),
                _opts(row["options"]), _str(row["answer_idx"], "answer_idx").upper(), meta)


def conv_huatuo(row, where, split, index):
    # a JSON list without ids: the position in the published list
    meta = {k: row[k] for k in ("Open-ended Verifiable Question", "Ground-True Answer") if k in row}
    return _rec(f"huatuo-{split}-{index:05d}", "huatuo", split, _str(row["question"], "question"),
                _opts(row["options"]), _str(row["answer_idx"], "answer_idx").upper(), meta)


def conv_medmcqa(row, where, split, index=None):
    if "problem_text" in row:
        return _rec(row["problem_id"], "medmcqa", split, _str(row["problem_text"], "problem_text"),
                    _opts(row["choices"], "choices"), _letters(row["answer"]))
    cop = int(row["cop"]) - 1  # the authors' files: cop 1-4
    opts = {LETTERS[i]: _str(row[k], k) for i, k in enumerate(("opa", "opb", "opc", "opd"))}
    meta = {k: row[k] for k in ("subject_name", "topic_name", "choice_type") if row.get(k)}
    return _rec(row["id"], "medmcqa", split, _str(row["question"], "question"), opts,
                LETTERS[cop] if 0 <= cop < 4 else f"?{row['cop']}", meta)


def conv_pubmedqa(row, where, split, index=None):
    dec = _str(row["final_decision"], "final_decision")
    letter = {v: k for k, v in PUBMEDQA_OPTIONS.items()}.get(dec, f"?{dec}")
    q = pubmedqa_question(_str(row["QUESTION"], "QUESTION"), [_str(c, "context") for c in row["CONTEXTS"]],
                          row.get("LABELS"))
    return _rec(row["_key"], "pubmedqa", split, q, dict(PUBMEDQA_OPTIONS), letter,
                {"pmid": row["_key"], "year": row.get("YEAR")})


def conv_cmexam(row, where, split, index=None):
    if "problem_text" in row:
        return _rec(row["problem_id"], "cmexam", split, _str(row["problem_text"], "problem_text"),
                    _opts(row["choices"], "choices"), _letters(row["answer"]))
    meta = {k: row[k] for k in ("Explanation", "Disease Group", "Clinical Department", "Competency", "Difficulty")
            if row.get(k)}
    return _rec(f"{split}-{where}", "cmexam", split, _str(row["Question"], "Question"),
                _opts(_split_cmexam_options(_str(row["Options"], "Options"))), _letters(row["Answer"].strip()), meta)


def parse_source(spec, data_dir):
    """(format, split, path) of a FORMAT[:SPLIT]=PATH spec, PATH joined to data_dir unless absolute; a spec
    without =PATH or with an unknown FORMAT is a UsageError (there is no default PATH per format)."""
    fmt_split, _, path = spec.partition("=")
    fmt, _, split = fmt_split.partition(":")
    if not path.strip() or fmt not in CONVERTERS and fmt != "records":
        why = "no =PATH" if fmt in CONVERTERS or fmt == "records" else f"unknown FORMAT {fmt!r}"
        raise UsageError(f"--source {spec}: {why}; use FORMAT[:SPLIT]=PATH with FORMAT one of "
                         f"{', '.join(sorted(CONVERTERS))} or records, e.g. {DEFAULT_SOURCES[0]}")
    return fmt, split, path if os.path.isabs(path) else os.path.join(data_dir, path)


def check_source(spec, data_dir):
    """The path of a source spec that names a readable file, else a UsageError / RecordError naming it."""
    path = parse_source(spec, data_dir)[2]
    if os.path.isdir(path):
        raise RecordError(f"{path}: a directory, not a data file (source {spec})")
    if not os.path.exists(path):
        raise RecordError(f"{path}: file not found (source {spec})")
    return path


def convert_source(spec, data_dir, skip_bad=False, stats=None):
    """Records from one FORMAT[:SPLIT]=PATH spec (PATH relative to data_dir unless absolute)."""
    stats = Counter() if stats is None else stats
    fmt, split, _ = parse_source(spec, data_dir)
    path = check_source(spec, data_dir)
    if fmt == "records":
        return _records(path, skip_bad, stats)
    split = split or "train"
    bad = {}  # invalid JSON lines skipped by iter_jsonl (with skip_bad)
    check_json_file(path)
    rows = iter_jsonl(path, skip_bad, bad) if path.endswith(".jsonl") else iter_rows(path)
    out = []
    for index, (where, row) in enumerate(rows):
        try:
            if not isinstance(row, dict):
                raise ValueError(f"a {type(row).__name__}, not an object")
            rec = CONVERTERS[fmt](row, where, split, index)
        except (ValueError, KeyError, TypeError, IndexError, AttributeError) as e:
            msg = f"missing field {e}" if isinstance(e, KeyError) else str(e)
            if not skip_bad:
                raise RecordError(f"{path}:{where}: {msg}") from None
            stats["bad_lines:convert"] += 1
            continue
        out.append(rec)
    stats["bad_lines:convert"] += bad.get("bad_lines", 0)
    return out


def _records(path, skip_bad, stats):
    """Our own records JSONL: content is the filter's business, but without a string id and source a
    line cannot even be counted or deduplicated."""
    bad, out = {}, []
    for lineno, rec in iter_jsonl(path, skip_bad, bad):
        missing = [f for f in ("id", "source") if not isinstance(rec, dict) or not isinstance(rec.get(f), str)
                   or not rec[f].strip()] if isinstance(rec, dict) else ["an object"]
        if missing:
            if not skip_bad:
                raise RecordError(f"{path}:{lineno}: no {' or '.join(missing)} (records need a string id and source)")
            stats["bad_lines:convert"] += 1
            continue
        out.append(rec)
    stats["bad_lines:convert"] += bad.get("bad_lines", 0)
    return out


CONVERTERS = {"medqa": conv_medqa, "medmcqa": conv_medmcqa, "pubmedqa": conv_pubmedqa, "cmexam": conv_cmexam,
              "huatuo": conv_huatuo}
