"""data/verify.py against a real chat-completions server on 127.0.0.1 (stdlib http.server in a thread)
with a deterministic responder, 5xx errors, timeouts, a client error mid-run and a SIGKILL mid-run."""
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from eval.llm import HTTPClient, LLMError
from eval.records import write_jsonl
from data.verify import apply_verify, load_results, run_verify, uid
from eval.loaders import load_medqa

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class ChatServer:
    """POST /v1/chat/completions -> {"choices": [{"message": {"content": ...}}] * n}.
    Each request is mapped to an item by key(user_text) (the item's question); respond(key, n)
    gives the n contents. Faults, per key: fail_first[key] = k answers
    the first k requests with HTTP 500; slow_first[text] = k sleeps past the client timeout on the
    first k; reject[text] answers HTTP 400 (not retryable) while it is set. Every request is logged."""

    def __init__(self, questions, respond, delay=0.0, slow_s=1.0):
        self.respond, self.delay, self.slow_s = respond, delay, slow_s
        qs = sorted(questions, key=len, reverse=True)
        self.key = lambda text: next(q for q in qs if q in text)
        self.fail_first, self.slow_first, self.reject = {}, {}, set()
        self.log, self.lock, self.seen = [], threading.Lock(), Counter()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                text = server.key(body["messages"][-1]["content"])
                with server.lock:
                    server.seen[text] += 1
                    k = server.seen[text]
                    server.log.append(text)
                if text in server.reject:
                    return self._send(400, {"error": "bad request"})
                if k <= server.fail_first.get(text, 0):
                    return self._send(500, {"error": "overloaded"})
                if k <= server.slow_first.get(text, 0):
                    time.sleep(server.slow_s)
                time.sleep(server.delay)
                outs = server.respond(text, body.get("n", 1))
                self._send(200, {"choices": [{"index": i, "message": {"role": "assistant", "content": c}}
                                             for i, c in enumerate(outs)]})

            def _send(self, code, obj):
                data = json.dumps(obj).encode()
                try:
                    self.send_response(code)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up on a slow request

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def wait_lines(path, k, proc, timeout=30):
    t0 = time.time()
    while time.time() - t0 < timeout and proc.poll() is None:
        if os.path.exists(path) and sum(1 for _ in open(path)) >= k:
            return
        time.sleep(0.02)


@pytest.fixture(scope="module")
def items(shared):
    return load_medqa(str(shared / "data/medqa/medqa_train_small.jsonl"), split="train")  # 50 real items


def plan(recs):
    """How many of 5 answers the fake verifier gets right, per item: 0 for every 5th item."""
    return {r["question"]: (i % 5 if i % 5 else 0) for i, r in enumerate(recs)}


def make_responder(recs):
    right = plan(recs)
    by_q = {r["question"]: r for r in recs}

    def respond(q, n):
        rec, k = by_q[q], right[q]
        letters = list(rec["options"])
        wrong = letters[(letters.index(rec["answer"]) + 1) % len(letters)]
        # right answers in assorted real-world shapes; one wrong answer has no tag at all
        good = [f"Reasoning...\n<answer>{rec['answer']}</answer>", f"The answer is ({rec['answer']}).",
                f"<answer>{rec['options'][rec['answer']]}</answer>"]
        outs = [good[j % 3] if j < k else f"I think <answer>{wrong}</answer>" for j in range(n)]
        if k == 0:
            outs[-1] = "I am not sure."  # unparseable: counts as wrong
        return outs
    return respond


def test_verify_counts_flags_and_survives_5xx_and_timeouts(items, tmp_path):
    srv = ChatServer([r["question"] for r in items], make_responder(items))
    try:
        for r in items[:6]:
            srv.fail_first[r["question"]] = 2   # two 500s, then fine
        for r in items[6:9]:
            srv.slow_first[r["question"]] = 1   # first try times out
        client = HTTPClient(srv.url, "verifier", timeout=0.4, max_retries=3, backoff=0.01, concurrency=4)
        out = tmp_path / "verify.jsonl"
        assert run_verify(client, items, str(out), n=5) == len(items)
        rows = load_results(str(out))
        assert len(rows) == len(items) == sum(1 for _ in open(out))
        want = plan(items)
        for r in items:
            row = rows[uid(r)]
            assert row["right"] == want[r["question"]], row
            assert row["pass_rate"] == want[r["question"]] / 5
            assert row["flagged"] == (want[r["question"]] == 0)
        # the faults really happened and were retried
        assert all(srv.seen[r["question"]] == 3 for r in items[:6])
        assert all(srv.seen[r["question"]] >= 2 for r in items[6:9])
        # flagged items go to review and out of the pool; pass rate stored on the rest
        review = []
        kept = apply_verify(items, str(out), review=review)
        assert len(review) == 10 and len(kept) == 40
        assert {r["id"] for r in review} == {r["id"] for i, r in enumerate(items) if i % 5 == 0}
        assert all(0 < r["meta"]["pass_rate"] <= 0.8 for r in kept)
        assert len(apply_verify(items, str(out), keep_flagged=True)) == 50
        # a second run has nothing to do and sends nothing
        before = len(srv.log)
        assert run_verify(client, items, str(out), n=5) == 0 and len(srv.log) == before
    finally:
        srv.close()


def test_verify_error_mid_run_then_resume(items, tmp_path):
    srv = ChatServer([r["question"] for r in items], make_responder(items))
    try:
        bad = items[20]["question"]
        srv.reject.add(bad)  # HTTP 400: not retried, the step stops
        client = HTTPClient(srv.url, "verifier", timeout=5, max_retries=2, backoff=0.01, concurrency=2)
        out = str(tmp_path / "verify.jsonl")
        with pytest.raises(LLMError):
            run_verify(client, items, out, n=5)
        done = set(load_results(out))
        assert 0 < len(done) < len(items) and uid(items[20]) not in done
        srv.reject.clear()
        srv.log.clear()
        run_verify(client, items, out, n=5)
        asked = Counter(srv.log)
        assert all(asked[r["question"]] == 0 for r in items if uid(r) in done)  # finished ids not redone
        ids = [json.loads(l)["id"] for l in open(out)]
        assert sorted(ids) == sorted(uid(r) for r in items)  # none lost, none twice
    finally:
        srv.close()


def test_verify_killed_subprocess_resumes(items, tmp_path):
    srv = ChatServer([r["question"] for r in items], make_responder(items), delay=0.05)
    try:
        inp, out = str(tmp_path / "pool.jsonl"), str(tmp_path / "verify.jsonl")
        write_jsonl(inp, items)
        cmd = [sys.executable, "-m", "data.verify", inp, "--results", out, "--endpoint", srv.url,
               "--model-name", "verifier", "--concurrency", "2", "--timeout", "5", "--backoff", "0.01"]
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_lines(out, 10, proc)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        time.sleep(0.2)  # let the server finish logging requests the dead client had in flight
        done = set(load_results(out))
        assert 10 <= len(done) < len(items), "the kill should land mid-run"
        srv.log.clear()
        r = subprocess.run(cmd + ["--apply", str(tmp_path / "kept.jsonl"), "--review", str(tmp_path / "rev.jsonl")],
                           cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        asked = Counter(srv.log)
        assert all(asked[x["question"]] == 0 for x in items if uid(x) in done)
        # each unfinished item asked again (a request in flight at the kill may land twice)
        assert {x["question"] for x in items if uid(x) not in done} <= set(asked)
        ids = [json.loads(l)["id"] for l in open(out)]
        assert sorted(ids) == sorted(uid(x) for x in items)
        assert sum(1 for _ in open(tmp_path / "kept.jsonl")) == 40
        assert sum(1 for _ in open(tmp_path / "rev.jsonl")) == 10
    finally:
        srv.close()


def test_verify_with_the_local_sampler(items, shared, tmp_path):
    """The same step on a local checkpoint (make_client(model_dir=...)): n answers per item, resumable."""
    from eval.llm import make_client
    from test_eval_llm import tiny_local_model
    client = make_client(model_dir=str(tiny_local_model(tmp_path / "m", shared)))
    recs, results = items[:3], tmp_path / "verify.jsonl"
    assert run_verify(client, recs, results, n=5, max_tokens=4) == 3
    rows = load_results(results)
    assert len(rows) == 3 and all(r["n"] == 5 and 0 <= r["pass_rate"] <= 1 for r in rows.values())
    assert run_verify(client, recs, results, n=5, max_tokens=4) == 0  # nothing redone
