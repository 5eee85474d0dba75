"""eval.run and eval.report end to end against a loopback chat-completions server, on real items:
kill and resume, ranks, n > 1, and a report that says what the per-item files say."""
import json
import os
import re
import signal
import subprocess
import sys
import time
import zlib
from pathlib import Path

import pytest

from conftest import SHARED
from eval import report, run
from eval.answer import build_prompt
from eval.loaders import load_benchmark
from test_eval_llm import ChatServer

DATA = SHARED / "data"
ROOT = Path(__file__).resolve().parents[1]
LIMIT = 40


def items(bench, limit=LIMIT):
    return load_benchmark(bench, data_dir=str(DATA))[:limit]


def kind(rec):
    """What the fake model does with an item: stable per id, independent of the extractor."""
    return ["gold", "wrong", "garbage", "gold_text", "wrong", "gold", "think_gold"][zlib.crc32(rec["id"].encode()) % 7]


def respond_for(recs):
    by_prompt = {build_prompt(r)[-1]["content"]: r for r in recs}

    def respond(messages, i):
        r = by_prompt[messages[-1]["content"]]
        a = r["answer"]
        w = next(l for l in r["options"] if l != a)
        return {"gold": f"The findings point to ({a}).\n<answer>{a}</answer>",
                "wrong": f"Considering everything...\n<answer>{w.lower()}</answer>",
                "garbage": "I cannot decide between the options listed above.",
                "gold_text": f"<answer>{r['options'][a]}</answer>\nThat is my final choice.",
                "think_gold": f"<think>\nThe findings point to {a}.\n</think>\n<answer>{a}</answer>"}[kind(r)]
    return respond


def read_rows(run_dir, bench):
    rows = []
    for p in sorted(Path(run_dir).glob(f"{bench}.part*.jsonl")):
        for line in p.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except ValueError:
                pass  # a torn line from the kill
    return rows


def report_cells(run_dir, capsys):
    capsys.readouterr()
    report.main([str(run_dir), "--no-detail"])
    out = capsys.readouterr().out.splitlines()
    head = [c.strip() for c in out[0].strip("|").split("|")]
    row = [c.strip() for c in out[2].strip("|").split("|")]
    return dict(zip(head, row))


def test_killed_run_resumes_without_redoing_items_and_report_matches(shared, tmp_path, capsys):
    benches = ["medqa", "mmlu_pro_health"]
    recs = {b: items(b) for b in benches}
    allrecs = [r for b in benches for r in recs[b]]
    out = tmp_path / "run"
    fail = lambda key, attempt: 503 if attempt == 1 and zlib.crc32(key.encode()) % 4 == 0 else None
    cmd = [sys.executable, "-m", "eval.run", "--benchmarks", ",".join(benches), "--model-name", "fake",
           "--out", str(out), "--limit", str(LIMIT), "--data-dir", str(DATA), "--concurrency", "2",
           "--backoff", "0.001"]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    with ChatServer(respond_for(allrecs), fail=fail, delay_s=0.03) as srv:
        proc = subprocess.Popen(cmd + ["--endpoint", srv.url], cwd=ROOT, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        part = out / "medqa.part0.jsonl"
        deadline = time.time() + 60
        while time.time() < deadline and (not part.exists() or len(part.read_text().splitlines()) < 12):
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    done_before = {r["id"] for b in benches for r in read_rows(out, b)}
    assert 12 <= len(done_before) < 2 * LIMIT, "the kill must land mid-run"
    assert not (out / "summary.json").exists()  # killed, not finished

    with ChatServer(respond_for(allrecs), fail=fail) as srv2:
        done = subprocess.run(cmd + ["--endpoint", srv2.url], cwd=ROOT, env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-2000:]
    redone = {r["id"] for r in allrecs if build_prompt(r)[-1]["content"] in {k for k, _ in srv2.log}}
    assert not redone & done_before  # finished items were not asked again
    assert any(s == 503 for _, s in srv2.log)  # and the flaky server was retried through

    for b in benches:
        rows = read_rows(out, b)
        assert sorted(r["id"] for r in rows) == sorted(r["id"] for r in recs[b])  # each item exactly once
        want = {r["id"]: kind(r) in ("gold", "gold_text", "think_gold") for r in recs[b]}
        assert {r["id"]: r["correct"] for r in rows} == want
        assert {r["id"] for r in rows if r["extracted"] is None} == {r["id"] for r in recs[b] if kind(r) == "garbage"}
        assert all(r["gold"] == next(x["answer"] for x in recs[b] if x["id"] == r["id"]) for r in rows)
        assert all(r["prompt"][-1]["role"] == "user" and r["benchmark"] == b for r in rows)
        # only <think>...</think><answer>X</answer> passes the reward's format check
        assert {r["id"] for r in rows if r["format_ok"]} == {r["id"] for r in recs[b] if kind(r) == "think_gold"}

    cells = report_cells(out, capsys)
    accs = []
    for b, col in (("medqa", "MedQA"), ("mmlu_pro_health", "MMLU-Pro Health")):
        rows = read_rows(out, b)
        acc = 100 * sum(r["correct"] for r in rows) / len(rows)
        accs.append(acc)
        assert cells[col] == f"{acc:.2f}"
    assert cells["Avg"] == f"{sum(accs) / 2:.2f}"
    rows = read_rows(out, "medqa") + read_rows(out, "mmlu_pro_health")
    assert cells["Extraction fail %"] == f"{100 * sum(r['extracted'] is None for r in rows) / len(rows):.2f}"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["complete"] and summary["benchmarks"]["medqa"]["n_done"] == LIMIT
    rows = read_rows(out, "medqa")
    assert summary["benchmarks"]["medqa"]["format_rate"] == sum(kind(r) == "think_gold" for r in recs["medqa"]) / LIMIT
    assert summary["benchmarks"]["medqa"]["mean_output_chars"] == sum(len(r["output"]) for r in rows) / LIMIT


def test_ranks_split_the_items_and_the_summary_merges(shared, tmp_path, monkeypatch, capsys):
    recs = items("pubmedqa", 30)
    out = tmp_path / "run"
    args = ["--benchmarks", "pubmedqa", "--model-name", "fake", "--out", str(out), "--limit", "30",
            "--data-dir", str(DATA), "--backoff", "0.001"]
    with ChatServer(respond_for(recs)) as srv:
        monkeypatch.setenv("WORLD_SIZE", "3")
        for rank in (0, 2):  # rank 1 has not run yet
            monkeypatch.setenv("RANK", str(rank))
            run.main(args + ["--endpoint", srv.url])
        s = json.loads((out / "summary.json").read_text())
        assert s["benchmarks"]["pubmedqa"]["n_done"] == 20 and not s["complete"]
        assert "†" in report_cells(out, capsys)["PubMedQA"]
        monkeypatch.setenv("RANK", "1")
        run.main(args + ["--endpoint", srv.url])
        assert len(srv.log) == 30
        for rank in range(3):
            ids = [json.loads(l)["id"] for l in (out / f"pubmedqa.part{rank}.jsonl").read_text().splitlines()]
            assert sorted(ids) == sorted(r["id"] for i, r in enumerate(recs) if i % 3 == rank)
        # a rerun on one process finds everything done and asks nothing
        monkeypatch.setenv("RANK", "0")
        monkeypatch.setenv("WORLD_SIZE", "1")
        run.main(args + ["--endpoint", srv.url])
        assert len(srv.log) == 30
    s = json.loads((out / "summary.json").read_text())
    want = sum(kind(r) in ("gold", "gold_text", "think_gold") for r in recs) / 30
    assert s["complete"] and s["benchmarks"]["pubmedqa"]["accuracy"] == pytest.approx(want)


def test_n_samples_majority_vote_and_pass_at_k(shared, tmp_path, capsys):
    recs = items("mmlu_pro_biology", 12)
    by_prompt = {build_prompt(r)[-1]["content"]: r for r in recs}

    def respond(messages, i):  # 4 samples: the item's number of gold answers is its index % 5
        r = by_prompt[messages[-1]["content"]]
        k = recs.index(r) % 5
        a, w = r["answer"], next(l for l in r["options"] if l != r["answer"])
        return f"<answer>{a}</answer>" if i < k else ("no answer" if i % 2 else f"<answer>{w}</answer>")

    out = tmp_path / "run"
    with ChatServer(respond) as srv:
        run.main(["--benchmarks", "mmlu_pro_biology", "--endpoint", srv.url, "--model-name", "fake", "--out",
                  str(out), "--limit", "12", "--data-dir", str(DATA), "--n", "4", "--temperature", "0.8"])
    rows = {r["id"]: r for r in read_rows(out, "mmlu_pro_biology")}
    ks = [recs.index(r) % 5 for r in recs]
    for r, k in zip(recs, ks):
        row = rows[r["id"]]
        assert len(row["output"]) == 4 and sum(row["correct"]) == k
        # votes: k gold, and the wrong letter at sample indices >= k that are even
        wrong = sum(1 for i in range(k, 4) if i % 2 == 0)
        assert row["majority_correct"] == (k > wrong)
    s = json.loads((out / "summary.json").read_text())["benchmarks"]["mmlu_pro_biology"]
    assert s["accuracy"] == pytest.approx(sum(k / 4 for k in ks) / 12)
    assert s["pass_at_k"]["1"] == pytest.approx(s["accuracy"])
    assert s["pass_at_k"]["4"] == pytest.approx(sum(k > 0 for k in ks) / 12)
    # pass@2 from 4 samples with c correct: 1 - C(4-c, 2) / C(4, 2)
    assert s["pass_at_k"]["2"] == pytest.approx(sum(1 - {0: 6, 1: 3, 2: 1}.get(k, 0) / 6 for k in ks) / 12)
    report.main([str(out)])
    assert re.search(r"\| fake \| MMLU-Pro Bio \| 12/12 \| 4 \|", capsys.readouterr().out)


def stops(capsys, argv, code=2):
    """run.main(argv) must stop with `code` (2: a usage error, 1: a runtime failure) and one line on stderr,
    "eval.run: error: ..."; returns that line. (These were SystemExit(message): exit code 1 for both kinds.)"""
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        run.main(argv)
    err = capsys.readouterr().err.splitlines()[-1:] or [""]
    assert e.value.code == code and err[0].startswith("eval.run: error: "), (e.value.code, err)
    return err[0]


def test_cli_errors_are_one_clear_line(shared, tmp_path, capsys):
    err = stops(capsys, ["--benchmarks", "medqa", "--model", str(tmp_path), "--out", str(tmp_path / "r")])
    assert f"eval.run: error: {tmp_path}: no tokenizer" in err  # not a checkpoint dir
    assert not (tmp_path / "r").exists()
    assert re.search(r"cmexam\.jsonl:5332: .*--skip-bad", stops(capsys, [
        "--benchmarks", "cmexam", "--endpoint", "http://127.0.0.1:9", "--model-name", "m",
        "--out", str(tmp_path / "r"), "--data-dir", str(DATA)]))
    assert "unknown benchmark" in stops(capsys, ["--benchmarks", "nope", "--endpoint", "http://x", "--model-name", "m",
                                                 "--out", str(tmp_path)])
    recs = items("medqa", 3)
    with ChatServer(respond_for(recs)) as srv:
        base = ["--benchmarks", "medqa", "--endpoint", srv.url, "--model-name", "m", "--out", str(tmp_path / "r"),
                "--limit", "3", "--data-dir", str(DATA)]
        run.main(base)
        assert "different settings (temperature: 0.0 vs 0.7)" in stops(capsys, base + ["--temperature", "0.7"])
    with ChatServer(respond_for(recs), fail=lambda k, a: 401) as srv:  # a runtime failure: exit 1, still one line
        assert re.search(r"HTTP 401.*rerun the same command to resume", stops(capsys, [
            "--benchmarks", "medqa", "--endpoint", srv.url, "--model-name", "m", "--out", str(tmp_path / "r2"),
            "--limit", "3", "--data-dir", str(DATA), "--backoff", "0.001"], code=1))


@pytest.mark.slow
def test_local_model_run_resumes_and_reports(shared, tmp_path, capsys):
    """--model DIR: the local sampler end to end over two real benchmarks; a rerun redoes nothing."""
    from test_eval_llm import tiny_local_model
    ckpt = tiny_local_model(tmp_path / "m", shared)
    out = tmp_path / "run"
    argv = ["--benchmarks", "medqa,pubmedqa", "--model", str(ckpt), "--out", str(out), "--limit", "3",
            "--max-tokens", "5", "--data-dir", str(DATA)]
    run.main(argv)
    rows = {b: read_rows(out, b) for b in ("medqa", "pubmedqa")}
    assert [len(r) for r in rows.values()] == [3, 3] and all(isinstance(r["output"], str) for r in rows["medqa"])
    before = {b: (out / f"{b}.part0.jsonl").read_text() for b in rows}
    run.main(argv)
    assert {b: (out / f"{b}.part0.jsonl").read_text() for b in rows} == before
    cells = report_cells(out, capsys)
    acc = 100 * sum(r["correct"] for r in rows["medqa"]) / 3
    assert cells["MedQA"] == f"{acc:.2f}"


FIX = Path(__file__).resolve().parent / "fixtures" / "loaders"


def test_skip_bad_refuses_a_mostly_malformed_benchmark_and_is_suggested_only_where_it_helps(shared, tmp_path,
                                                                                           capsys):
    src = (DATA / "medqa/phrases_no_exclude_test.jsonl").read_text().splitlines()[:5]
    recs = items("medqa", 5)

    def write(n_bad):  # the first n_bad of 5 real items get an answer_idx that is not an option
        rows = [json.loads(l) for l in src]
        for r in rows[:n_bad]:
            r["answer_idx"] = "Q"
        path = tmp_path / f"medqa_{n_bad}.jsonl"
        path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
        return path

    def argv(path, out, *extra, bench="medqa"):
        return ["--benchmarks", bench, "--path", f"{bench}={path}", "--endpoint", srv.url, "--model-name", "m",
                "--out", str(tmp_path / out), "--backoff", "0.001", *extra]

    with ChatServer(respond_for(recs)) as srv:
        for n_bad in (3, 5):  # most or all items malformed: an error, even with --skip-bad, and nothing is asked
            path = write(n_bad)
            assert re.fullmatch(rf"eval\.run: error: medqa: {re.escape(str(path))}: {n_bad} of its 5 items are "
                                rf"malformed \(first: {re.escape(str(path))}:1: answer_idx 'Q' is not among the "
                                r"options .*\); not scoring what is left: .*",
                                stops(capsys, argv(path, f"r{n_bad}", "--skip-bad")))
            err = stops(capsys, argv(path, f"r{n_bad}"))  # without --skip-bad: the first bad line, no false hope
            assert err.startswith(f"eval.run: error: medqa: {path}:1: answer_idx 'Q'") and "skip-bad" not in err
        assert not srv.log and not (tmp_path / "r3").exists()
        path = write(2)
        assert re.search(r"medqa_2\.jsonl:1: .*\(--skip-bad would skip 2 of 5 items\)$",
                         stops(capsys, argv(path, "r2")))
        capsys.readouterr()
        run.main(argv(path, "r2", "--skip-bad"))  # 2 of 5 dropped: scored on the 3 left, and said so
        assert re.search(rf"medqa: skipped 2 malformed item\(s\) of 5; first: {re.escape(str(path))}:1: ",
                         capsys.readouterr().err)
        summary = json.loads((tmp_path / "r2/summary.json").read_text())
        assert len(srv.log) == 3 and summary["benchmarks"]["medqa"]["n_expected"] == 3
        # a whole file that does not parse, or is missing: skipping items cannot help, so it is not offered
        cut = tmp_path / "ori_pqal.json"
        cut.write_text((DATA / "pubmedqa/ori_pqal.json").read_text()[:5000])
        for bench, path in (("pubmedqa", cut), ("medqa", tmp_path / "nope.jsonl")):
            err = stops(capsys, argv(path, "r9", bench=bench))
            assert str(path) in err and "skip-bad" not in err


def test_shuffle_options_moves_gold_with_its_option_and_warns_on_skew(tmp_path, capsys):
    """JMED's spreadsheet: 3 of 4 golds are "A". A model that always says A scores 75% until the options
    are shuffled; a model that names the gold *text* scores 100% either way."""
    from eval.loaders import load_jmed, shuffle_options
    recs = load_jmed(str(FIX / "jmed_sheet.xlsx"))
    gold_text = {r["question"]: r["options"][r["answer"]] for r in recs}
    def by_text(messages, i):
        return next(f"<answer>{t}</answer>" for q, t in gold_text.items() if q in messages[-1]["content"])

    def go(out, respond, *extra):
        with ChatServer(respond) as srv:
            run.main(["--benchmarks", "jmed", "--path", f"jmed={FIX / 'jmed_sheet.xlsx'}", "--endpoint", srv.url,
                      "--model-name", "m", "--out", str(tmp_path / out), *extra])
        return {r["id"]: r for r in read_rows(tmp_path / out, "jmed")}, len(srv.log)

    capsys.readouterr()
    rows, _ = go("plain", lambda m, i: "<answer>A</answer>")
    assert sum(r["correct"] for r in rows.values()) == 3
    assert "jmed: A is the gold answer of 75.0% of the items" in capsys.readouterr().err
    shuffled = {r["id"]: shuffle_options(r, 5) for r in recs}
    rows, _ = go("shuffled", lambda m, i: "<answer>A</answer>", "--shuffle-options", "5")
    assert {i: r["gold"] for i, r in rows.items()} == {i: r["answer"] for i, r in shuffled.items()}
    assert sum(r["correct"] for r in rows.values()) == sum(r["answer"] == "A" for r in shuffled.values())
    assert any(r["gold"] != "A" for r in rows.values())
    for i, r in rows.items():  # the prompt lists the shuffled options
        prompt = r["prompt"][-1]["content"]
        assert all(prompt.index(shuffled[i]["options"][a]) < prompt.index(shuffled[i]["options"][b])
                   for a, b in zip("ABCDEF", "BCDEF"[:len(shuffled[i]["options"]) - 1]))
    rows, _ = go("by_text", by_text, "--shuffle-options", "5")
    assert all(r["correct"] for r in rows.values())
    _, asked = go("by_text", by_text, "--shuffle-options", "5")  # same seed: a resume, nothing asked again
    assert asked == 0
    with pytest.raises(SystemExit) as e:
        go("by_text", by_text, "--shuffle-options", "6")
    assert e.value.code == 2 and "different settings (shuffle_options: 5 vs 6)" in capsys.readouterr().err


def test_limit_zero_is_a_usage_error(tmp_path, capsys):
    """--limit 0 ran every item (a falsy limit meant none)."""
    from eval.run import main
    with pytest.raises(SystemExit) as e:
        main(["--bench", "medqa", "--model", str(tmp_path), "--out", str(tmp_path / "o"), "--limit", "0"])
    assert e.value.code == 2 and "argument --limit: 0: must be >= 1" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
