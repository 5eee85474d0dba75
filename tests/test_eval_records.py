import json

import pytest

from eval.records import (ArgumentParser, RecordError, append_jsonl, command, done_ids, drop_torn_tail, float_in,
                          int_at_least, iter_jsonl, make_record, read_json, read_jsonl, read_text, validate_record)


def good():
    return make_record("q1", "medqa", "test", "What?", ["x", "y", "z"], "B")


def test_make_record_letters_options():
    rec = good()
    assert rec["options"] == {"A": "x", "B": "y", "C": "z"} and rec["difficulty"] is None


@pytest.mark.parametrize("mutate, msg", [
    (lambda r: r.pop("question"), "missing field"),
    (lambda r: r.update(answer="D"), "not among the options"),
    (lambda r: r["options"].update(B=" "), "option B is empty"),
    (lambda r: r.update(options={"A": "x", "C": "y"}), "in order"),
    (lambda r: r.update(answer="AB"), "multi_answer"),
    (lambda r: r.update(difficulty="hard"), "difficulty"),
])
def test_validate_rejects(mutate, msg):
    rec = good()
    mutate(rec)
    with pytest.raises(ValueError, match=msg):
        validate_record(rec)


def test_multi_answer_allowed_when_marked():
    rec = make_record("q2", "cmexam", "test", "?", ["a", "b", "c"], "AC", meta={"multi_answer": True})
    assert rec["answer"] == "AC"


def test_read_jsonl_names_file_and_line(tmp_path):
    p = tmp_path / "r.jsonl"
    p.write_text(json.dumps(good()) + "\n" + "{not json\n" + json.dumps(good()) + "\n")
    with pytest.raises(RecordError, match=rf"{p}:2:"):
        list(read_jsonl(p))
    stats = {}
    assert len(list(read_jsonl(p, skip_bad=True, stats=stats))) == 2 and stats["bad_lines"] == 1


def test_append_and_done_ids_ignore_torn_line(tmp_path):
    p = tmp_path / "out" / "o.jsonl"
    append_jsonl(p, [{"id": "a"}, {"id": "b"}])
    with open(p, "a") as f:
        f.write('{"id": "c"')  # killed mid-write
    assert done_ids(p) == {"a", "b"}
    append_jsonl(p, [{"id": "c"}])  # the resumed run's row is not glued onto the torn line
    assert done_ids(p) == {"a", "b", "c"}
    assert [r["id"] for _, r in iter_jsonl(p)] == ["a", "b", "c"]  # and the torn line is gone, not left mid-file


@pytest.mark.parametrize("torn", ['{"id": "x"', "x" * 200_000, ""])
def test_drop_torn_tail_cuts_only_the_half_written_line(tmp_path, torn):
    p = tmp_path / "o.jsonl"
    whole = '{"id": "a"}\n' + '{"id": "' + "b" * 100_000 + '"}\n'  # a long whole line before a long torn one
    p.write_text(whole + torn)
    assert drop_torn_tail(p) == len(torn) and p.read_text() == whole
    p.write_text(torn)  # nothing whole at all
    assert drop_torn_tail(p) == len(torn) and p.read_text() == ""
    assert drop_torn_tail(tmp_path / "missing.jsonl") == 0


def test_bad_bytes_and_folders_are_one_line_naming_the_file(tmp_path):
    """A non-UTF-8 byte was a UnicodeDecodeError traceback with no file or line, even with skip_bad; a folder an
    IsADirectoryError."""
    p = tmp_path / "d.jsonl"
    p.write_bytes(b'{"id": "a"}\n{"id": "caf\xe9"}\n{"id": "b"}\n')
    with pytest.raises(RecordError, match=r"d.jsonl:2: invalid UTF-8 at byte 11"):
        list(iter_jsonl(p))
    stats = {}
    assert [r["id"] for _, r in iter_jsonl(p, skip_bad=True, stats=stats)] == ["a", "b"] and stats["bad_lines"] == 1
    assert done_ids(p) == {"a", "caf\ufffd", "b"}  # resume bookkeeping never raises
    with pytest.raises(RecordError, match="a directory, not a JSONL file"):
        list(read_jsonl(tmp_path))


def test_int_at_least_is_a_one_line_usage_error(capsys):
    import argparse
    ap = argparse.ArgumentParser(prog="x")
    ap.add_argument("--n", type=int_at_least(1))
    assert ap.parse_args(["--n", "3"]).n == 3
    for bad, msg in (("0", "argument --n: 0: must be >= 1"), ("-5", "argument --n: -5: must be >= 1"),
                     ("many", "argument --n: 'many' is not an integer")):
        with pytest.raises(SystemExit) as e:
            ap.parse_args(["--n", bad])
        assert e.value.code == 2 and msg in capsys.readouterr().err


def test_read_json_names_file_and_line_for_every_kind_of_bad_file(tmp_path):
    """Whole-file JSON was read with open() + json.load in three places (eval.loaders' PubMedQA test ids,
    data.decontam, eval.run's config): a non-UTF-8 byte was a UnicodeDecodeError traceback and a folder an
    IsADirectoryError; now each is one RecordError line naming the file (and the line)."""
    p = tmp_path / "x.json"
    p.write_bytes(b'{"a": 1,\n "b": "caf\xe9"}\n')
    with pytest.raises(RecordError, match=r"x\.json:2: invalid UTF-8 at byte 10"):
        read_json(p)
    cases = [(b'{"a": 1}\n{"a": 2}\n', r"x\.json:2: data after the end of the JSON value \(JSON Lines\?"),
             (b'{"a": [1, 2', r"x\.json:1: invalid JSON"), (b"  \n", r"x\.json: empty file, not JSON")]
    for raw, msg in cases:
        p.write_bytes(raw)
        with pytest.raises(RecordError, match=msg):
            read_json(p)
    p.write_bytes(b'\xef\xbb\xbf{"a": 1}')  # a BOM, as spreadsheet exports write
    assert read_json(p) == {"a": 1}
    with pytest.raises(RecordError, match="a directory, not a JSON file"):
        read_json(tmp_path)
    with pytest.raises(RecordError, match="nope.json: file not found"):
        read_text(tmp_path / "nope.json")
    with pytest.raises(RecordError, match="nope.jsonl: file not found"):  # was a FileNotFoundError traceback
        list(iter_jsonl(tmp_path / "nope.jsonl"))


def test_command_turns_user_mistakes_into_one_line_and_exit_2(tmp_path, capsys):
    """The shared contract of every data/kg/eval entry point: bad input or a path that cannot be written is exit 2
    and one line 'PROG: error: ...'; another OSError is exit 1, one line; argparse's errors lose the usage
    block (several lines before)."""
    @command("x.tool")
    def main(argv=None):
        ap = ArgumentParser(prog="python -m x.tool")
        ap.add_argument("--share", type=float_in(0, 1, open_low=True))
        ap.add_argument("--raise", dest="what")
        a = ap.parse_args(argv)
        if a.what == "record":
            raise RecordError("in.jsonl:3: invalid JSON\nsecond line")
        if a.what == "folder":
            open(tmp_path, "w")
        raise OSError(28, "No space left on device", str(tmp_path / "out"))

    for argv, code, msg in ((["--raise", "record"], 2, "x.tool: error: in.jsonl:3: invalid JSON; second line"),
                            (["--raise", "folder"], 2, f"x.tool: error: {tmp_path}: Is a directory"),
                            (["--raise", "disk"], 1, f"x.tool: error: {tmp_path / 'out'}: No space left on device"),
                            (["--share", "0"], 2, "x.tool: error: argument --share: 0: must be in (0, 1] (see --help)"),
                            (["--share", "nan"], 2, "argument --share: nan: must be in (0, 1]"),
                            (["--bogus"], 2, "x.tool: error: unrecognized arguments: --bogus")):
        with pytest.raises(SystemExit) as e:
            main(argv)
        err = capsys.readouterr().err
        assert e.value.code == code and err.count("\n") == 1 and msg in err, (argv, err)
