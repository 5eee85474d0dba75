"""data/difficulty.py against a real chat-completions server on 127.0.0.1 (see test_data_verify.ChatServer):
rubric prompt, label parsing, 5xx / timeouts, and a SIGKILL mid-run that a rerun finishes."""
import json
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest

from data.difficulty import apply_difficulty, difficulty_messages, parse_difficulty, run_difficulty
from eval.llm import HTTPClient
from eval.records import write_jsonl
from data.verify import load_results, uid
from eval.loaders import load_medmcqa
from test_data_verify import ROOT, ChatServer, wait_lines

REPLIES = ["<difficulty>Easy</difficulty>", "Step by step... so <difficulty>**Moderate**</difficulty>",
           "This needs multi-step inference: Difficult.", "Could be easy or moderate."]  # last: no label
WANT = ["easy", "moderate", "difficult", None]


@pytest.fixture(scope="module")
def items(shared):
    return load_medmcqa(str(shared / "data/medmcqa/medmcqa.jsonl"))[:40]  # real MedMCQA dev items


def responder(items):
    idx = {r["question"]: i for i, r in enumerate(items)}
    return lambda q, n: [REPLIES[idx[q] % 4]] * n


def test_parse_difficulty():
    assert [parse_difficulty(t) for t in REPLIES] == WANT
    assert parse_difficulty("<think>easy? no</think><difficulty>difficult</difficulty>") == "difficult"
    assert parse_difficulty("<difficulty>Hard</difficulty>") is None  # not a rubric label
    assert parse_difficulty(None) is None


def test_prompt_carries_rubric_question_and_gold(items):
    msg = difficulty_messages(items[0])[0]["content"]
    assert items[0]["question"] in msg
    assert f"Correct answer: {items[0]['answer']}. {items[0]['options'][items[0]['answer']]}" in msg
    for word in ("basic medical knowledge", "intermediate reasoning", "multi-step inference", "rare conditions"):
        assert word in msg


def test_labels_with_faults_and_resume(items, tmp_path):
    srv = ChatServer([r["question"] for r in items], responder(items))
    try:
        for r in items[:4]:
            srv.fail_first[r["question"]] = 1   # one 503-like failure each
        for r in items[4:6]:
            srv.slow_first[r["question"]] = 1   # first try times out
        client = HTTPClient(srv.url, "judge", timeout=0.4, max_retries=3, backoff=0.01, concurrency=4)
        out = str(tmp_path / "difficulty.jsonl")
        assert run_difficulty(client, items, out) == len(items)
        assert all(srv.seen[r["question"]] == 2 for r in items[:6])
        labelled = apply_difficulty(items, out, stats=(st := Counter()))
        assert [r["difficulty"] for r in labelled] == [WANT[i % 4] for i in range(len(items))]
        assert st["difficulty:unparsed"] == 10 and st["difficulty:easy"] == 10
        assert run_difficulty(client, items, out) == 0  # nothing left to do
    finally:
        srv.close()


def test_killed_subprocess_resumes(items, tmp_path):
    srv = ChatServer([r["question"] for r in items], responder(items), delay=0.05)
    try:
        inp, out = str(tmp_path / "pool.jsonl"), str(tmp_path / "difficulty.jsonl")
        write_jsonl(inp, items)
        cmd = [sys.executable, "-m", "data.difficulty", inp, "--results", out, "--endpoint", srv.url,
               "--model-name", "judge", "--concurrency", "2", "--timeout", "5", "--backoff", "0.01"]
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_lines(out, 8, proc)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        time.sleep(0.2)
        done = set(load_results(out))
        assert 8 <= len(done) < len(items), "the kill should land mid-run"
        srv.log.clear()
        r = subprocess.run(cmd + ["--apply", str(tmp_path / "labelled.jsonl")], cwd=ROOT, capture_output=True,
                           text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        asked = Counter(srv.log)
        assert all(asked[x["question"]] == 0 for x in items if uid(x) in done)
        ids = [json.loads(l)["id"] for l in open(out)]
        assert sorted(ids) == sorted(uid(x) for x in items)
        got = [json.loads(l)["difficulty"] for l in open(tmp_path / "labelled.jsonl")]
        assert got == [WANT[i % 4] for i in range(len(items))]
    finally:
        srv.close()
