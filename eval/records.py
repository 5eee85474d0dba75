"""The one record schema every part of fleming reads and writes, and safe JSONL I/O for it.

A record is one multiple-choice item:
    {"id", "source", "split", "question", "options": {"A": ..., "B": ...}, "answer": "C",
     "difficulty": "easy|moderate|difficult|null", "meta": {...}}
`answer` is one letter, or several letters ("ACE") for multi-answer items (meta["multi_answer"] = True),
scored by exact set match. Option letters are consecutive from "A" and read from each item.
"""
import argparse
import errno
import functools
import json
import os
import sys

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


def _open_input(path, kind):
    """path opened for reading in binary, or RecordError naming it: missing, a folder, not readable."""
    if os.path.isdir(path):
        raise RecordError(f"{path}: a directory, not a {kind} file")
    try:
        return open(path, "rb")
    except FileNotFoundError:
        raise RecordError(f"{path}: file not found") from None
    except OSError as e:
        raise RecordError(f"{path}: cannot read ({e.strerror or type(e).__name__})") from None


def read_text(path, kind="text"):
    """A whole input file as text, or RecordError naming it: missing, a folder, unreadable, or file:line for
    a byte that is not UTF-8 (a leading BOM is dropped)."""
    with _open_input(path, kind) as f:
        raw = f.read()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line, start = raw.count(b"\n", 0, e.start) + 1, raw.rfind(b"\n", 0, e.start) + 1
        raise RecordError(f"{path}:{line}: invalid UTF-8 at byte {e.start - start}") from None  # within the line


def read_json(path):
    """The one JSON value a whole-file .json holds, or RecordError naming file:line: invalid UTF-8, invalid
    JSON, an empty file, or data after the value (JSON Lines in a .json is named as such)."""
    text = read_text(path, "JSON")
    if not text.strip():
        raise RecordError(f"{path}: empty file, not JSON")
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        if e.msg.startswith("Extra data"):
            raise RecordError(f"{path}:{e.lineno}: data after the end of the JSON value (JSON Lines? "
                              "then one object per line, named .jsonl)") from None
        raise RecordError(f"{path}:{e.lineno}: invalid JSON: {e.msg}") from None


def iter_jsonl(path, skip_bad=False, stats=None, torn_tail=False):
    """(line number, parsed value) for each non-empty line of a JSONL file. Invalid UTF-8 or JSON raises
    RecordError naming file:line, or with skip_bad=True is skipped and counted in stats["bad_lines"]. A
    missing, unreadable or folder path is a RecordError naming it. torn_tail=True (an append-only output about
    to be resumed) leaves out a last line without its newline, which a kill cut: drop_torn_tail removes it."""
    with _open_input(path, "JSONL") as f:
        for lineno, raw in enumerate(f, 1):
            if not raw.strip() or torn_tail and not raw.endswith(b"\n"):
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


def read_jsonl(path, validate=True, skip_bad=False, stats=None, torn_tail=False):
    """Yield records from a JSONL file. A bad line raises RecordError naming file:line, or with
    skip_bad=True is skipped and counted in stats["bad_lines"]. Without validate, a line must still hold a JSON
    object (the schema is checked later, by the caller)."""
    for lineno, rec in iter_jsonl(path, skip_bad, stats, torn_tail):
        if validate or not isinstance(rec, dict):
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


# ----------------------------------------------------------------------------- command-line contract
# Every entry point (python -m data.X, kg.X, eval.X) stops a user mistake the same way: one line on
# stderr, "PROG: error: REASON", and exit code 2 (argparse's own code for a usage error). A usage error is
# a bad argument, an input file that is missing, unreadable, a folder, or malformed (a RecordError), or an
# output path that cannot be written (a folder, a missing parent, no permission). Anything else (a
# server that keeps failing, a full disk) is a runtime failure: exit 1, also without a traceback where
# the command knows it.

class UsageError(RecordError):
    """A mistake in how a command was called, found after argument parsing (exit 2 via command())."""


USER_ERRNOS = {errno.ENOENT, errno.EISDIR, errno.ENOTDIR, errno.EACCES, errno.EPERM, errno.EEXIST,
               errno.ENAMETOOLONG, errno.EROFS, errno.ELOOP}


def one_line(msg):
    """msg with its lines joined by '; ' (a message that needs several lines is several messages)."""
    return "; ".join(line.strip() for line in str(msg).splitlines() if line.strip())


def usage_error(msg, prog=None):
    """Stop the command for a user mistake: 'PROG: error: msg' as one line on stderr, exit code 2."""
    fail(msg, prog, 2)


def fail(msg, prog=None, code=1):
    """Stop the command: 'PROG: error: msg' as one line on stderr, exit `code` (1: a runtime failure)."""
    print(f"{prog or _prog()}: error: {one_line(msg)}", file=sys.stderr)
    raise SystemExit(code)


def _prog():
    return os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "fleming"


def os_error_line(e):
    """An OSError as 'path: reason' (the path first, as every other error names its file)."""
    where = f"{e.filename}: " if getattr(e, "filename", None) else ""
    return f"{where}{e.strerror or type(e).__name__}"


def command(prog, usage=()):
    """Decorator for an entry point's main(argv=None): its usage errors (RecordError, UsageError, the exception
    types in `usage`, an OSError on a path the user gave) become usage_error (one line, exit 2); another
    OSError is one line and exit 1."""
    def wrap(main):
        @functools.wraps(main)
        def run(*args, **kw):
            try:
                return main(*args, **kw)
            except (RecordError, *usage) as e:
                usage_error(e, prog)
            except OSError as e:
                fail(os_error_line(e), prog, 2 if e.errno in USER_ERRNOS else 1)
        return run
    return wrap


def check_outputs(files=(), folders=()):
    """Before any work: each output file path must not be a folder, each output folder not a file, and the
    nearest existing folder above each must be a writable folder; else a UsageError naming the path (a run
    that fails on its second output after writing its first would leave a mix of old and new files)."""
    for path, folder in [(p, False) for p in files if p] + [(p, True) for p in folders if p]:
        path = os.path.abspath(path)
        if os.path.exists(path) and os.path.isdir(path) != folder:
            raise UsageError(f"{path}: a {'file' if folder else 'directory'}, not a {'folder' if folder else 'file'}"
                             " to write")
        above = os.path.dirname(path)
        while not os.path.exists(above):
            above = os.path.dirname(above)
        if not os.path.isdir(above):
            raise UsageError(f"{path}: {above} is a file, not a folder")
        if not os.access(above, os.W_OK | os.X_OK):
            raise UsageError(f"{path}: {above} is not writable")


class ArgumentParser(argparse.ArgumentParser):
    """argparse with its usage errors on one line (argparse prints the whole usage block first): 'PROG: error:
    REASON (see --help)', exit code 2, PROG without a leading 'python -m '. --help is unchanged."""

    def error(self, message):
        usage_error(f"{message} (see --help)", self.prog.removeprefix("python -m "))


def int_at_least(minimum):
    """An argparse type: an int >= minimum, else argparse's one-line usage error (exit 2) naming the option."""
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value}: must be >= {minimum}")
        return value
    return parse


def float_in(low, high, open_low=False, open_high=False):
    """An argparse type: a finite float within [low, high] (an end excluded with open_low / open_high), else
    a one-line usage error (exit 2) naming the option."""
    def parse(text):
        import math
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not math.isfinite(value) or value < low or value > high or (open_low and value == low) or (
                open_high and value == high):
            raise argparse.ArgumentTypeError(f"{text}: must be in {'(' if open_low else '['}{low}, {high}"
                                             f"{')' if open_high else ']'}")
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
    """Write a whole JSONL file atomically (temp file, then rename); on any failure the temp file is removed and
    an existing file at path is left as it was."""
    if os.path.isdir(path):
        raise IsADirectoryError(errno.EISDIR, "a directory, not a file to write", str(path))
    tmp = f"{path}.tmp{os.getpid()}"
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
