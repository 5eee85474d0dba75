"""The one record schema every part of fleming reads and writes, and safe JSONL I/O for it.

A record is one multiple-choice item:
    {"id", "source", "split", "question", "options": {"A": ..., "B": ...}, "answer": "C",
     "difficulty": "easy|moderate|difficult|null", "meta": {...}}
`answer` is one letter, or several letters ("ACE") for multi-answer items (meta["multi_answer"] = True),
scored by exact set match. Option letters are consecutive from "A" and read from each item.
"""
import json
import os

DIFFICULTIES = ("easy", "moderate", "difficult", None)
FIELDS = ("id", "source", "split", "question", "options", "answer", "difficulty", "meta")


class RecordError(ValueError):
    """A malformed input record; the message names the file and line."""


def make_record(id, source, split, question, options, answer, difficulty=None, meta=None):
    """Build a record; options may be a list (lettered A, B, ...) or a letter -> text dict."""
    if isinstance(options, (list, tuple)):
        options = {chr(ord("A") + i): o for i, o in enumerate(options)}
    rec = {"id": str(id), "source": source, "split": split, "question": question,
           "options": dict(options), "answer": answer, "difficulty": difficulty, "meta": meta or {}}
    validate_record(rec)
    return rec


def shuffle_options(rec, rng):
    """A copy of rec with its option texts in the order of rng's permutation, the answer letter(s) following their
    text: a letter carries no meaning a policy could learn to prefer."""
    letters = list(rec["options"])
    order = rng.sample(letters, len(letters))
    new = {chr(ord("A") + i): rec["options"][old] for i, old in enumerate(order)}
    moved = {old: chr(ord("A") + i) for i, old in enumerate(order)}
    return {**rec, "options": new, "answer": "".join(sorted(moved[a] for a in rec["answer"]))}


def validate_record(rec):
    """Raise ValueError with the reason if `rec` breaks the schema; return it unchanged otherwise."""
    if not isinstance(rec, dict):
        raise ValueError(f"record is a {type(rec).__name__}, not an object")
    missing = [f for f in FIELDS if f not in rec]
    if missing:
        raise ValueError(f"missing field(s) {missing}")
    for f in ("id", "source", "split", "question"):
        if not isinstance(rec[f], str) or not rec[f].strip():
            raise ValueError(f"field {f!r} must be a non-empty string")
    opts = rec["options"]
    if not isinstance(opts, dict) or len(opts) < 2:
        raise ValueError("options must be an object with at least two letters")
    letters = list(opts)
    if letters != [chr(ord("A") + i) for i in range(len(letters))]:
        raise ValueError(f"option letters must run A, B, C, ... in order, got {letters}")
    for k, v in opts.items():
        if not isinstance(v, str) or not v.strip():
            raise ValueError(f"option {k} is empty")
    ans = rec["answer"]
    if not isinstance(ans, str) or not ans or len(set(ans)) != len(ans) or any(a not in opts for a in ans):
        raise ValueError(f"answer {ans!r} is not among the options {letters}")
    if not isinstance(rec["meta"], dict):
        raise ValueError("meta must be an object")
    if len(ans) > 1 and not rec["meta"].get("multi_answer"):
        raise ValueError(f"answer {ans!r} has several letters but meta.multi_answer is not set")
    if rec["difficulty"] not in DIFFICULTIES:
        raise ValueError(f"difficulty {rec['difficulty']!r} is not one of {DIFFICULTIES}")
    return rec


def iter_jsonl(path, skip_bad=False, stats=None):
    """(line number, parsed value) for each non-empty line of a JSONL file. Invalid JSON raises RecordError
    naming file:line, or with skip_bad=True is skipped and counted in stats["bad_lines"]."""
    if os.path.isdir(path):
        raise RecordError(f"{path}: a directory, not a JSONL file")
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                if not skip_bad:
                    raise RecordError(f"{path}:{lineno}: invalid UTF-8 at byte {e.start}") from None
                _count_bad(stats)
                continue
            try:
                value = json.loads(line)
            except ValueError as e:
                if not skip_bad:
                    raise RecordError(f"{path}:{lineno}: invalid JSON: {e}") from None
                _count_bad(stats)
                continue
            yield lineno, value


def read_jsonl(path, validate=True, skip_bad=False, stats=None):
    """Yield records from a JSONL file. A bad line raises RecordError naming file:line, or with
    skip_bad=True is skipped and counted in stats["bad_lines"]."""
    for lineno, rec in iter_jsonl(path, skip_bad, stats):
        if validate:
            try:
                validate_record(rec)
            except ValueError as e:
                if not skip_bad:
                    raise RecordError(f"{path}:{lineno}: {e}") from None
                _count_bad(stats)
                continue
        yield rec


def _count_bad(stats):
    if stats is not None:
        stats["bad_lines"] = stats.get("bad_lines", 0) + 1


def int_at_least(minimum):
    """An argparse type: an int >= minimum, else argparse's one-line usage error (exit 2) naming the option."""
    def parse(text):
        import argparse
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value}: must be >= {minimum}")
        return value
    return parse


def done_ids(path, key="id"):
    """Ids already written to an append-only JSONL output (a torn last line from a kill is ignored)."""
    ids = set()
    if not os.path.exists(path):
        return ids
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            try:
                ids.add(json.loads(line)[key])
            except (ValueError, KeyError, TypeError):
                continue
    return ids


def drop_torn_tail(path):
    """Cut a last line that a kill left half-written (every row is written whole, newline last, so a last line
    without its newline is torn). Returns the bytes dropped. Run before reading or appending to a resumed output."""
    if not os.path.exists(path):
        return 0
    with open(path, "r+b") as f:
        size = end = f.seek(0, os.SEEK_END)
        f.seek(size - 1 if size else 0)
        if size == 0 or f.read(1) == b"\n":
            return 0
        keep = 0
        while end > 0:  # back to the newline before the torn line, 64 KiB at a time
            start = max(0, end - (1 << 16))
            f.seek(start)
            at = f.read(end - start).rfind(b"\n")
            if at >= 0:
                keep = start + at + 1
                break
            end = start
        f.truncate(keep)
        return size - keep


def append_jsonl(path, rows):
    """Append rows and flush them to disk, so a kill loses at most the row being written."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    drop_torn_tail(path)  # else the first new row would continue the torn one
    with open(path, "a", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
        f.flush()
        os.fsync(f.fileno())


def write_jsonl(path, rows):
    """Write a whole JSONL file atomically (temp file, then rename)."""
    tmp = f"{path}.tmp{os.getpid()}"
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(tmp, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    os.replace(tmp, path)
