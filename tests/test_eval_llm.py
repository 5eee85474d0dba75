"""The shared LLM client against a real chat-completions server on loopback (started here)."""
import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import SHARED
from eval.llm import HTTPClient, LLMError, make_client, run_step
from eval.records import read_jsonl
from eval.answer import build_prompt, extract_answer
from eval.loaders import load_benchmark


class ChatServer:
    """A loopback OpenAI-compatible server. `responder(messages, i)` gives the i-th choice's text;
    `fail(key, attempt)` may return an HTTP status to fail that attempt with, "stall" to sleep past
    the client's timeout, "cut" to drop the connection mid-body, or None. `key` is the last user message; every request is logged."""

    def __init__(self, responder, fail=None, stall_s=2.0, delay_s=0.0, max_n=None):
        self.responder, self.fail, self.stall_s, self.delay_s, self.max_n = responder, fail, stall_s, delay_s, max_n
        self.log, self.attempts, self.auth = [], Counter(), []
        self.inflight = self.max_inflight = 0
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                self.left = False
                key = body["messages"][-1]["content"]
                with server.lock:
                    server.attempts[key] += 1
                    attempt = server.attempts[key]
                    server.auth.append(self.headers.get("Authorization"))
                    server.inflight += 1
                    server.max_inflight = max(server.max_inflight, server.inflight)
                try:
                    what = server.fail(key, attempt) if server.fail else None
                    server.log.append((key, what or 200))
                    if what == "cut":  # the connection drops in the middle of the body
                        self.send_response(200)
                        self.send_header("Content-Length", "1000")
                        self.end_headers()
                        self.wfile.write(b'{"choices": [')
                        self.close_connection = True
                        return
                    if what == "stall":
                        time.sleep(server.stall_s)
                        return self._send(200, {"choices": []})
                    if what:
                        return self._send(what, {"error": {"message": "injected failure"}})
                    time.sleep(server.delay_s)
                    if self.path != "/v1/chat/completions":
                        return self._send(404, {"error": {"message": f"no route {self.path}"}})
                    n = min(body.get("n", 1), server.max_n or 10**9)
                    choices = [{"index": i, "finish_reason": "stop",
                                "message": {"role": "assistant", "content": server.responder(body["messages"], i)}}
                               for i in range(n)]
                    self._send(200, {"id": "x", "object": "chat.completion", "model": body["model"], "choices": choices})
                finally:
                    self._leave()

            def _leave(self):  # before the reply goes out, or the client's next request may overlap
                with server.lock:
                    if not getattr(self, "left", False):
                        server.inflight -= 1
                        self.left = True

            def _send(self, code, obj):
                self._leave()
                data = json.dumps(obj).encode()
                try:
                    self.send_response(code)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client timed out and left
                    pass

        class Server(ThreadingHTTPServer):
            request_queue_size = 128  # the default 5 resets connections when many clients connect at once

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self):
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
        return self

    def __exit__(self, *a):
        self.httpd.shutdown()
        self.httpd.server_close()


def echo(messages, i):
    return f"{messages[-1]['content']}#{i}"


def fast_client(url, **kw):
    return HTTPClient(url, "test-model", **{"backoff": 0.001, "max_backoff": 0.01, "timeout": 5.0, **kw})


def test_batch_in_order_with_n_and_bounded_concurrency():
    with ChatServer(echo, delay_s=0.02) as srv:
        client = fast_client(srv.url, concurrency=4)
        batch = [[{"role": "user", "content": f"q{i}"}] for i in range(24)]
        out = client.complete(batch, n=3, temperature=0.7)
    assert out == [[f"q{i}#0", f"q{i}#1", f"q{i}#2"] for i in range(24)]
    assert len(srv.log) == 24 and 1 <= srv.max_inflight <= 4


def test_server_that_caps_n_is_asked_again():
    with ChatServer(echo, max_n=2) as srv:
        out = fast_client(srv.url).complete([[{"role": "user", "content": "q"}]], n=5)
    assert out == [["q#0", "q#1", "q#0", "q#1", "q#0"]] and srv.attempts["q"] == 3


def test_5xx_and_stalls_are_retried_and_nothing_is_lost(capsys):
    def fail(key, attempt):
        i = int(key[1:])
        if i % 3 == 0 and attempt <= 2:
            return 503 if attempt == 1 else 500
        if i % 5 == 1 and attempt == 1:
            return "stall"
        if i % 7 == 2 and attempt == 1:
            return 429
        if i % 11 == 4 and attempt == 1:
            return "cut"
        return None

    with ChatServer(echo, fail=fail, stall_s=1.5) as srv:
        client = fast_client(srv.url, timeout=0.3, concurrency=8)
        out = client.complete([[{"role": "user", "content": f"q{i}"}] for i in range(30)])
    assert out == [[f"q{i}#0"] for i in range(30)]
    want = Counter()  # what the server must have seen: every injected failure, then one success each
    for i in range(30):
        a = 1
        while fail(f"q{i}", a):
            want[fail(f"q{i}", a)] += 1
            a += 1
        want[200] += 1
    assert want[503] and want[500] and want["stall"] and want[429] and want["cut"]
    assert Counter(s for _, s in srv.log) == want
    assert "retry" in capsys.readouterr().err


def test_gives_up_after_max_retries_and_4xx_is_not_retried():
    with ChatServer(echo, fail=lambda k, a: 502) as srv:
        with pytest.raises(LLMError, match=r"gave up after 3 tries: HTTP 502"):
            fast_client(srv.url, max_retries=2).complete([[{"role": "user", "content": "q"}]])
        assert srv.attempts["q"] == 3
    with ChatServer(echo, fail=lambda k, a: 400) as srv:
        with pytest.raises(LLMError, match="HTTP 400"):
            fast_client(srv.url).complete([[{"role": "user", "content": "q"}]])
        assert srv.attempts["q"] == 1


def test_nobody_listening_fails_at_once_in_one_line(capsys):
    """A server that is not running was retried: 54 s and 95 retry lines before the right message."""
    import socket
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.time()
    with pytest.raises(LLMError, match=r"connection refused \(is the server running"):
        HTTPClient(f"http://127.0.0.1:{port}", "m", max_retries=6, backoff=1.0).complete(
            [[{"role": "user", "content": f"q{i}"}] for i in range(20)])
    assert time.time() - t0 < 5 and "retry" not in capsys.readouterr().err


def test_api_key_from_the_named_env_var_and_never_printed(monkeypatch, capsys):
    monkeypatch.setenv("FLEMING_TEST_KEY", "sk-secret-123")
    with ChatServer(echo, fail=lambda k, a: 503 if a == 1 else None) as srv:
        client = fast_client(srv.url, api_key_env="FLEMING_TEST_KEY")
        assert client.complete([[{"role": "user", "content": "q"}]]) == [["q#0"]]
        assert "sk-secret" not in repr(client)
    assert srv.auth == ["Bearer sk-secret-123"] * 2
    assert "sk-secret" not in capsys.readouterr().err
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with ChatServer(echo) as srv:
        fast_client(srv.url).complete([[{"role": "user", "content": "q"}]])
    assert srv.auth == [None]  # local servers need no key


def test_endpoint_forms_and_bad_local_dir():
    for ep in ("http://h:1", "http://h:1/", "http://h:1/v1", "http://h:1/v1/chat/completions"):
        assert HTTPClient(ep, "m").url == "http://h:1/v1/chat/completions"
    with pytest.raises(ValueError, match="/some/model"):
        make_client(model_dir="/some/model")
    with pytest.raises(ValueError):
        make_client(endpoint="http://h:1")


def tiny_local_model(path, shared_dir):
    """A random tiny Qwen3 checkpoint with the real Qwen tokenizer files beside it."""
    import torch

    import model as M
    cfg = M.ModelConfig(model_type="qwen3", vocab_size=151936, hidden_size=32, intermediate_size=32,
                        num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1, head_dim=16,
                        qk_norm=True, tie_word_embeddings=True)
    torch.manual_seed(0)
    M.Transformer.from_config(cfg).save_pretrained(path, tokenizer_dir=shared_dir / "data" / "qwen_tokenizer")
    return path


def test_local_backend_equals_the_sampler(shared, tmp_path):
    from sample import SamplingParams
    client = make_client(model_dir=str(tiny_local_model(tmp_path / "m", shared)), batch_size=2)
    convs = [[{"role": "user", "content": q}] for q in ("What causes scurvy?", "Dose of aspirin?", "Hi")]
    outs = client.complete(convs, n=2, temperature=1.0, max_tokens=6, seed=3)
    assert [len(o) for o in outs] == [2, 2, 2] and all(isinstance(t, str) for o in outs for t in o)
    assert client.complete(convs, n=2, temperature=1.0, max_tokens=6, seed=3) == outs  # reproducible
    tok, sampler = client.tokenizer, client.sampler
    direct = sampler.generate([tok.apply_chat_template(c) for c in convs[:2]],
                              SamplingParams(max_new_tokens=6, temperature=0, stop_token_ids=client.stop_ids))
    greedy = client.complete(convs[:2], max_tokens=6)
    assert greedy == [[tok.decode(g[0].token_ids, skip_special_tokens=True)] for g in direct]


def test_run_step_resumes_without_redoing_or_losing_ids(shared, tmp_path):
    """A label-verification-like step over real MedQA items: the server answers from the gold label,
    one item fails for good on the first run (the step stops); the rerun does only what is left."""
    recs = load_benchmark("medqa", data_dir=str(SHARED / "data"))[:40]
    gold = {build_prompt(r)[-1]["content"]: r["answer"] for r in recs}
    broken = build_prompt(recs[17])[-1]["content"]
    out = tmp_path / "verify.jsonl"

    def make_row(rec, comps):
        got = [extract_answer(c, rec["options"]) for c in comps]
        return {"pass_rate": sum(g == rec["answer"] for g in got) / len(got)}

    def respond(messages, i):
        return f"Reasoning...\n<answer>{gold[messages[-1]['content']]}</answer>"

    first = lambda k, a: 400 if k == broken else (503 if a == 1 and len(k) % 2 else None)
    with ChatServer(respond, fail=first) as srv:
        with pytest.raises(LLMError, match="HTTP 400"):
            run_step(fast_client(srv.url, concurrency=4), recs, str(out), build_prompt, make_row, n=5,
                     temperature=0.7)
    done_first = [r["id"] for r in read_jsonl(out, validate=False)]
    assert recs[17]["id"] not in done_first and 0 < len(done_first) < 40
    with ChatServer(respond) as srv2:
        added = run_step(fast_client(srv2.url), recs, str(out), build_prompt, make_row, n=5)
    rows = list(read_jsonl(out, validate=False))
    assert added == 40 - len(done_first)
    assert sorted(r["id"] for r in rows) == sorted(r["id"] for r in recs)  # each id exactly once
    assert len(srv2.log) == added and {k for k, _ in srv2.log}.isdisjoint(
        build_prompt(r)[-1]["content"] for r in recs if r["id"] in done_first)
    assert all(r["pass_rate"] == 1.0 for r in rows)
    assert run_step(fast_client(srv2.url), recs, str(out), build_prompt, make_row) == 0


def test_run_step_after_a_torn_last_line(tmp_path):
    """A kill while writing leaves half a row without its newline: the rerun must not glue the next
    row onto it (that row would be unreadable, i.e. lost), must drop the half row and must redo it."""
    recs = [{"id": f"r{i}"} for i in range(6)]
    out = tmp_path / "step.jsonl"
    out.write_text('{"id": "r0", "text": "q0#0"}\n{"id": "r1", "te')
    msgs = lambda r: [{"role": "user", "content": r["id"]}]
    with ChatServer(echo) as srv:
        assert run_step(fast_client(srv.url), recs, str(out), msgs, lambda r, c: {"text": c[0]}) == 5
    assert sorted(k for k, _ in srv.log) == ["r1", "r2", "r3", "r4", "r5"]
    rows = [json.loads(l) for l in out.read_text().splitlines()]  # every line parses: the torn half-row is gone
    assert [r["id"] for r in rows[:1]] == ["r0"] and sorted(r["id"] for r in rows[1:]) == ["r1", "r2", "r3", "r4", "r5"]
    assert all(r["text"] == f"{r['id']}#0" for r in rows[1:])
