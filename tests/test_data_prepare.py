"""data/prepare.py: converters (ids and layouts shared with eval), the driver end to end on real files,
resume, malformed input (file:line or --skip-bad) and the LLM steps against a loopback server."""
import csv
import json
import os
import subprocess
import sys

import pytest

from data.prepare import convert_source, main
from eval.records import read_jsonl, validate_record
from eval.loaders import load_benchmark
from test_data_verify import ROOT, ChatServer


def usage_error(capsys, argv):
    """main(argv) must stop with exit code 2 and one line on stderr; returns that line. (These exits were code 1
    with the message as the exit status.)"""
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.startswith("data.prepare: error: ") and err.count("\n") == 1, err
    return err


def test_help():
    r = subprocess.run([sys.executable, "-m", "data.prepare", "--help"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0 and "--skip-bad" in r.stdout and "FORMAT[:SPLIT]=PATH" in r.stdout


def test_ids_and_content_match_eval_loaders(shared):
    d = str(shared / "data")
    for fmt, name in (("medqa:test=medqa/phrases_no_exclude_test.jsonl", "medqa"),
                      ("medmcqa:dev=medmcqa/medmcqa.jsonl", "medmcqa"), ("pubmedqa:test=pubmedqa/ori_pqal.json", "pubmedqa")):
        ours, theirs = convert_source(fmt, d), load_benchmark(name, data_dir=d)
        assert [(r["id"], r["question"], r["options"], r["answer"]) for r in ours] == \
               [(r["id"], r["question"], r["options"], r["answer"]) for r in theirs]
    # CMExam: eval's loader refuses the one broken item (answer e on 4 options); we keep it for the filter
    ours = convert_source("cmexam:test=cmexam/cmexam.jsonl", d)
    theirs = load_benchmark("cmexam", data_dir=d, skip_bad=True)
    assert len(ours) == 6811 and len(theirs) == 6810
    assert sum(r["meta"].get("multi_answer", False) for r in ours) == 204


def test_published_layouts_cmexam_csv_and_medmcqa_authors(shared, tmp_path):
    d = str(shared / "data")
    cm = convert_source("cmexam:test=cmexam/cmexam.jsonl", d)[:30]
    with open(tmp_path / "cmexam.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["Question", "Options", "Answer", "Explanation", "Difficulty"])
        for r in cm:
            w.writerow([r["question"], "\n".join(f"{k} {v}" for k, v in r["options"].items()), r["answer"], "解析", "1"])
    got = convert_source(f"cmexam:train={tmp_path / 'cmexam.csv'}", d)
    assert [(g["question"], g["options"], g["answer"]) for g in got] == [(r["question"], r["options"], r["answer"]) for r in cm]
    assert got[0]["id"] == "train-2" and got[0]["meta"]["Explanation"] == "解析"
    mc = convert_source("medmcqa:dev=medmcqa/medmcqa.jsonl", d)[:30]
    with open(tmp_path / "medmcqa_train.jsonl", "w") as f:
        for r in mc:
            o = list(r["options"].values())
            f.write(json.dumps({"id": r["id"], "question": r["question"], "opa": o[0], "opb": o[1], "opc": o[2],
                                "opd": o[3], "cop": "ABCD".index(r["answer"]) + 1, "subject_name": "Anatomy"}) + "\n")
    got = convert_source(f"medmcqa:train={tmp_path / 'medmcqa_train.jsonl'}", d)
    assert [(g["id"], g["options"], g["answer"]) for g in got] == [(r["id"], r["options"], r["answer"]) for r in mc]


def run(tmp_path, *extra, out="out"):
    o = str(tmp_path / out)
    main(["--out", o, "--source", "medqa:train=medqa/medqa_train_small.jsonl",
          "--source", "huatuo:train=huatuogpt_o1_demo/demo_data.json",
          "--bench", "medqa", "--bench", "medmcqa", "--bench-only", *extra])
    return o


def test_end_to_end_real_files_and_resume(shared, tmp_path, capsys):
    o = run(tmp_path, "--data-dir", str(shared / "data"))
    pools = {k: list(read_jsonl(os.path.join(o, f"{k}.jsonl"))) for k in ("sft", "rl", "val")}  # validates
    total = sum(map(len, pools.values()))
    md = open(os.path.join(o, "report.md")).read()
    # 50 MedQA train + 198 HuatuoGPT demo in; figures, duplicate options, "all of the above" options out,
    # then 4 MedMCQA dev items (3 verbatim, 1 reworded)
    assert "| medqa | 50 | 45 | 45 | 45 | 45 |" in md
    assert "| huatuo | 198 | 187 | 187 | 187 | 183 |" in md
    assert total == 45 + 183 and "WARNING" not in md
    dropped = list(read_jsonl(os.path.join(o, "dropped", "decontam.jsonl"), validate=False))
    assert {d["meta"]["contaminated_by"][0] for d in dropped} == {"medmcqa"} and len(dropped) == 4
    first = {k: open(os.path.join(o, f"{k}.jsonl")).read() for k in ("sft", "rl", "val")}
    capsys.readouterr()
    for stale in ("04_dedup.jsonl.tmp4242", "report.md.tmp", os.path.join("dropped", "dedup.jsonl.tmp7")):
        open(os.path.join(o, stale), "w").write('{"half": ')  # what a kill -9 mid-write leaves
    run(tmp_path, "--data-dir", str(shared / "data"))  # resumes: every step already done
    log = capsys.readouterr().out
    assert log.count("done before") == 5
    assert not [n for d in (o, os.path.join(o, "dropped")) for n in os.listdir(d) if ".tmp" in n]
    assert first == {k: open(os.path.join(o, f"{k}.jsonl")).read() for k in ("sft", "rl", "val")}


def test_malformed_line_stops_with_file_line_or_is_skipped(shared, tmp_path, capsys):
    src = tmp_path / "medqa_bad.jsonl"
    lines = open(shared / "data/medqa/medqa_train_small.jsonl").read().splitlines()[:6]
    lines[2] = lines[2][:40]  # truncated JSON on line 3
    lines[4] = json.dumps({"question": "Q?", "answer_idx": "A"})  # line 5: no options
    src.write_text("\n".join(lines) + "\n")
    args = ["--out", str(tmp_path / "o"), "--source", f"medqa:train={src}", "--bench", "medqa",
            "--data-dir", str(shared / "data"), "--steps", "convert,filter"]
    err = usage_error(capsys, args)
    assert f"{src}:3: invalid JSON" in err
    main(args + ["--skip-bad"])
    st = json.load(open(tmp_path / "o" / "01_convert.jsonl.stats.json"))["stats"]
    assert st["bad_lines:convert"] == 2 and st["count:convert:medqa"] == 4


def test_llm_steps_through_the_driver(shared, tmp_path):
    items = convert_source("medqa:train=medqa/medqa_train_small.jsonl", str(shared / "data"))
    by_q = {r["question"]: r for r in items}

    def respond(q, n):
        r = by_q[q]
        if n > 1:  # verifier: wrong on every 4th item
            i = items.index(r)
            letter = r["answer"] if i % 4 else ("B" if r["answer"] == "A" else "A")
            return [f"<answer>{letter}</answer>"] * n
        return [f"<difficulty>{('Easy', 'Moderate', 'Difficult')[items.index(r) % 3]}</difficulty>"]

    srv = ChatServer(list(by_q), respond)
    try:
        srv.fail_first[items[0]["question"]] = 1
        o = str(tmp_path / "llm")
        main(["--out", o, "--source", "medqa:train=medqa/medqa_train_small.jsonl", "--bench", "medqa",
              "--bench-only", "--data-dir", str(shared / "data"), "--endpoint", srv.url, "--model-name", "judge",
              "--backoff", "0.01", "--concurrency", "4", "--val-frac", "0"])
    finally:
        srv.close()
    kept = {r["id"] for r in read_jsonl(os.path.join(o, "06_verify.jsonl"))}
    review = list(read_jsonl(os.path.join(o, "dropped", "verify.jsonl")))
    reached = {r["id"] for r in read_jsonl(os.path.join(o, "05_decontam.jsonl"))}  # after filter and dedup
    assert {r["id"] for r in review} == {items[i]["id"] for i in range(0, 50, 4)} & reached
    assert len(review) >= 10
    assert not kept & {r["id"] for r in review}
    pools = [r for k in ("sft", "rl") for r in read_jsonl(os.path.join(o, f"{k}.jsonl"))]
    assert pools and all(r["difficulty"] in ("easy", "moderate", "difficult") for r in pools)
    assert all(r["meta"]["pass_rate"] == 1.0 for r in pools)
    for r in pools:
        validate_record(r)


# ----------------------------------------------------------------------------- benchmarks and the step cache

def records_file(path, recs):
    with open(path, "w", encoding="utf-8") as f:
        for r in recs:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    return str(path)


def copies(shared, n_each=2):
    """Training records that copy real MedQA test and MedMCQA dev items, plus clean MedQA train items."""
    d = str(shared / "data")
    mq, mm = load_benchmark("medqa", data_dir=d)[:n_each], load_benchmark("medmcqa", data_dir=d)[100:100 + n_each]
    clean = convert_source("medqa:train=medqa/medqa_train_small.jsonl", d)[:10]
    return [{**r, "id": f"copy-{r['id']}", "source": "web", "split": "train"} for r in mq + mm] + \
           [{**r, "source": "web"} for r in clean]


def test_named_benchmarks_add_to_defaults_missing_ones_fail(shared, tmp_path, capsys):
    d = str(shared / "data")
    own_item = {"id": "o1", "source": "own", "split": "test", "question": "Which enzyme is deficient in the "
                "fictional Zorblat storage disease of the left earlobe?", "options": {"A": "Zorbase", "B": "Kinase Q",
                "C": "Lyase R"}, "answer": "A", "difficulty": None, "meta": {}}
    own = records_file(tmp_path / "own_bench.jsonl", [own_item])
    train = copies(shared) + [{**own_item, "id": "leak", "source": "web", "split": "train"}]
    src = records_file(tmp_path / "train.jsonl", train)
    args = ["--out", str(tmp_path / "o"), "--source", f"records={src}", "--data-dir", d, "--bench", f"own={own}",
            "--val-frac", "0"]
    err = usage_error(capsys, args)  # the held-out benchmarks are not in shared/data
    assert "medxpertqa" in err and "--allow-missing-bench" in err
    main(args + ["--allow-missing-bench"])
    md = open(tmp_path / "o" / "report.md").read()
    first = md.splitlines()[0]
    assert first.startswith("> **WARNING") and all(b in first for b in ("medxpertqa", "careqa", "jmed", "medbullets"))
    st = json.load(open(tmp_path / "o" / "05_decontam.jsonl.stats.json"))["stats"]
    assert {"bench:items:medqa", "bench:items:medmcqa", "bench:items:pubmedqa", "bench:items:cmexam",
            "bench:items:own"} <= set(st)
    kept = {r["id"] for k in ("sft", "rl") for r in read_jsonl(tmp_path / "o" / f"{k}.jsonl")}
    formatted = {r["id"] for r in read_jsonl(tmp_path / "o" / "02_filter.jsonl")}
    assert kept == {r["id"] for r in train[:-1] if not r["id"].startswith("copy-")} & formatted and len(kept) >= 8
    # an empty benchmark file is an error too
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    err = usage_error(capsys, ["--out", str(tmp_path / "o2"), "--source", f"records={src}", "--data-dir", d,
              "--bench", f"own={empty}", "--bench-only"])
    assert "empty.jsonl" in err and "no item" in err


def test_rerun_with_changed_arguments_reruns_the_step(shared, tmp_path, capsys):
    d = str(shared / "data")
    src = records_file(tmp_path / "train.jsonl", copies(shared))
    o = tmp_path / "o"
    base = ["--out", str(o), "--data-dir", d, "--source", f"records={src}", "--bench-only", "--val-frac", "0"]
    main(base + ["--bench", "medqa"])
    pool = lambda: {r["id"] for k in ("sft", "rl") for r in read_jsonl(o / f"{k}.jsonl")}
    assert sum(i.startswith("copy-medqa") for i in pool()) == 0 and sum(i.startswith("copy-") for i in pool()) == 2
    capsys.readouterr()
    main(base + ["--bench", "medqa", "--bench", "medmcqa"])  # the natural fix: name the other benchmark too
    log = capsys.readouterr().out
    assert "[decontam] arguments or inputs changed" in log and log.count("done before") == 4
    assert not any(i.startswith("copy-") for i in pool())
    # another source: convert reruns, and every step after it
    src2 = records_file(tmp_path / "train2.jsonl", copies(shared)[:-3])
    main(["--out", str(o), "--data-dir", d, "--source", f"records={src2}", "--bench-only", "--bench", "medqa",
          "--bench", "medmcqa", "--val-frac", "0"])
    assert "done before" not in capsys.readouterr().out and len(pool()) == 7
    # the same file edited in place is another input too
    records_file(tmp_path / "train2.jsonl", copies(shared)[:-4])
    main(["--out", str(o), "--data-dir", d, "--source", f"records={src2}", "--bench-only", "--bench", "medqa",
          "--bench", "medmcqa", "--val-frac", "0"])
    assert len(pool()) == 6
    # a torn stats file (a kill while writing) means "not done", not a crash
    (o / "02_filter.jsonl.stats.json").write_text('{"key": "abc", "sta')
    capsys.readouterr()
    main(["--out", str(o), "--data-dir", d, "--source", f"records={src2}", "--bench-only", "--bench", "medqa",
          "--bench", "medmcqa", "--val-frac", "0"])
    log = capsys.readouterr().out
    assert "[filter] done before" not in log and "[convert] done before" in log and len(pool()) == 6


def test_records_without_id_or_source_and_json_with_trailing_data(shared, tmp_path, capsys):
    d = str(shared / "data")
    recs = copies(shared)[:4]
    recs[1] = {k: v for k, v in recs[1].items() if k != "id"}
    recs[2] = {**recs[2], "source": ""}
    src = records_file(tmp_path / "r.jsonl", recs)
    args = ["--out", str(tmp_path / "o"), "--data-dir", d, "--source", f"records={src}", "--steps", "convert"]
    err = usage_error(capsys, args)
    assert f"{src}:2: no id" in err
    main(args + ["--skip-bad"])
    st = json.load(open(tmp_path / "o" / "01_convert.jsonl.stats.json"))["stats"]
    assert st["bad_lines:convert"] == 2 and st["count:convert:web"] == 2
    raw = json.loads((shared / "data/huatuogpt_o1_demo/demo_data.json").read_text())[:3]
    bad = tmp_path / "demo.json"
    bad.write_text(json.dumps(raw, indent=1) + "\n" + json.dumps(raw[:1]) + "\n")
    err = usage_error(capsys, ["--out", str(tmp_path / "o3"), "--data-dir", d, "--source", f"huatuo:train={bad}",
                               "--steps", "convert"])
    assert f"{bad}:" in err and "JSON Lines?" in err


def test_source_without_path_or_on_a_folder_is_one_line(shared, tmp_path, capsys):
    """--source medqa (no =PATH) was an IsADirectoryError traceback (the data dir itself was opened, as was a
    folder given as PATH); an unknown FORMAT exited 1. All stop before anything is written under --out."""
    d, o = str(shared / "data"), tmp_path / "o"
    base = ["--out", str(o), "--data-dir", d, "--steps", "convert"]
    assert "--source medqa: no =PATH; use FORMAT[:SPLIT]=PATH" in usage_error(capsys, base + ["--source", "medqa"])
    assert f"{tmp_path}: a directory, not a data file" in usage_error(capsys, base + ["--source", f"medqa={tmp_path}"])
    assert "unknown FORMAT 'medqb'" in usage_error(capsys, base + ["--source", "medqb=medqa/medqa_train_small.jsonl"])
    assert "argument --min-options: 1: must be >= 2" in usage_error(capsys, base + ["--min-options", "1"])
    assert not o.exists()
