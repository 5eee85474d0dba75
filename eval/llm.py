"""The one LLM client: teacher CoT, label verification, difficulty labels and eval all call it.

    client = make_client(endpoint="http://host:8000/v1", model="gpt-oss-120b")
    outs = client.complete([messages, ...], n=5, temperature=0.7, max_tokens=1024)  # [[str] * n, ...]

Two backends behind the same `complete`: an OpenAI-compatible /v1/chat/completions endpoint over
plain HTTP (how vLLM / SGLang serve the teacher), and the local sampler (sample.py).
`run_step` drives an LLM step over records with an append-only JSONL keyed by id, so a crash, a kill
or a rate limit loses at most the requests in flight and a rerun skips what is done.
"""
import http.client
import json
import os
import random
import socket
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass

from eval.records import append_jsonl, done_ids


class LLMError(RuntimeError):
    """A request that failed for good (a 4xx, or a 5xx / timeout that outlived its retries)."""


class _Retryable(Exception):
    def __init__(self, msg, retry_after=None):
        super().__init__(msg)
        self.retry_after = retry_after


class Client:
    """What both backends share: `imap` yields (index, completions) as they finish; `complete` collects them."""

    def complete(self, messages_batch, n=1, temperature=0.0, max_tokens=1024, **kw):
        """For each conversation, a list of n completions (in input order)."""
        out = [None] * len(messages_batch)
        for i, comps in self.imap(messages_batch, n=n, temperature=temperature, max_tokens=max_tokens, **kw):
            out[i] = comps
        return out


def endpoint_error(url):
    """Why `url` cannot be an endpoint (None when it can): anything but an http(s) URL with a host would fail
    inside the first request, as a traceback."""
    try:
        parts = urllib.parse.urlsplit(url)
        ok = parts.scheme in ("http", "https") and bool(parts.hostname)
    except ValueError:  # "http://[x": a malformed host
        ok = False
    return None if ok else f"{url!r}: not an http:// or https:// URL"


@dataclass
class HTTPClient(Client):
    """OpenAI-compatible chat completions. `endpoint` is the server's base URL ("http://h:8000" or
    ".../v1") or the full ".../chat/completions" URL. The API key is read from the environment
    variable named by `api_key_env` at request time; it is never stored on the object or logged."""
    endpoint: str
    model: str
    api_key_env: str = "OPENAI_API_KEY"
    timeout: float = 600.0       # seconds per request; long CoT at low throughput is slow
    max_retries: int = 6         # after the first try, on 5xx / 408 / 429 / timeouts / dropped connections
    backoff: float = 1.0         # first wait; doubles each retry, with jitter, capped at max_backoff
    max_backoff: float = 60.0
    concurrency: int = 16        # requests in flight at once

    def __post_init__(self):
        url = self.endpoint.rstrip("/")
        if not url.endswith("/chat/completions"):
            url = url + ("/chat/completions" if url.endswith("/v1") else "/v1/chat/completions")
        self.url = url

    # -- one request -------------------------------------------------------------------------

    def _post(self, body):
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self.api_key_env)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        req = urllib.request.Request(self.url, data=json.dumps(body).encode(), headers=headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return json.loads(resp.read().decode("utf-8"))
        except urllib.error.HTTPError as e:
            detail = e.read()[:300].decode("utf-8", "replace")
            if e.code >= 500 or e.code in (408, 429):
                ra = e.headers.get("Retry-After") if e.headers else None
                raise _Retryable(f"HTTP {e.code}: {detail}",
                                 float(ra) if ra and ra.replace(".", "", 1).isdigit() else None) from None
            raise LLMError(f"{self.url}: HTTP {e.code}: {detail}") from None
        except (urllib.error.URLError, http.client.HTTPException, TimeoutError, OSError) as e:
            reason = getattr(e, "reason", e)
            if isinstance(reason, (ConnectionRefusedError, socket.gaierror)):  # nothing there: retrying cannot help
                what = "connection refused" if isinstance(reason, ConnectionRefusedError) else "unknown host"
                raise LLMError(f"{self.url}: {what} (is the server running, and is --endpoint right?)") from None
            raise _Retryable(f"{type(e).__name__}: {getattr(e, 'reason', e)}") from None
        except ValueError as e:  # a 200 whose body is not JSON: a proxy or a server in trouble
            raise _Retryable(f"bad JSON in response: {e}") from None

    def _request(self, body):
        for attempt in range(self.max_retries + 1):
            try:
                return self._post(body)
            except _Retryable as e:
                if attempt == self.max_retries:
                    raise LLMError(f"{self.url}: gave up after {attempt + 1} tries: {e}") from None
                wait_s = min(self.max_backoff, self.backoff * 2 ** attempt) * (0.5 + random.random() / 2)
                if e.retry_after is not None:
                    wait_s = min(self.max_backoff, max(wait_s, e.retry_after))
                print(f"llm: {e}; retry {attempt + 1}/{self.max_retries} in {wait_s:.2f}s", file=sys.stderr)
                time.sleep(wait_s)

    def complete_one(self, messages, n=1, temperature=0.0, max_tokens=1024, top_p=None, stop=None, seed=None,
                     extra=None):
        """n completions of one conversation. Servers that ignore `n` (or cap it) are asked again
        for the rest."""
        outs = []
        while len(outs) < n:
            body = {"model": self.model, "messages": messages, "n": n - len(outs), "temperature": temperature,
                    "max_tokens": max_tokens}
            for k, v in (("top_p", top_p), ("stop", stop), ("seed", seed)):
                if v is not None:
                    body[k] = v
            body.update(extra or {})
            resp = self._request(body)
            try:
                got = [c["message"]["content"] or "" for c in resp["choices"]]
            except (KeyError, TypeError, IndexError):
                raise LLMError(f"{self.url}: response without choices[].message.content: {str(resp)[:300]}") from None
            if not got:
                raise LLMError(f"{self.url}: response with no choices")
            outs += got[: n - len(outs)]
        return outs

    # -- many requests -----------------------------------------------------------------------

    def imap(self, messages_batch, **kw):
        """Yield (index, completions) as requests finish, at most `concurrency` in flight. On a
        request that fails for good, the ones in flight are still yielded, then LLMError is raised."""
        items = iter(enumerate(messages_batch))
        error, running = None, {}
        pool = ThreadPoolExecutor(self.concurrency)
        try:
            while True:
                while error is None and len(running) < self.concurrency:
                    nxt = next(items, None)
                    if nxt is None:
                        break
                    running[pool.submit(self.complete_one, nxt[1], **kw)] = nxt[0]
                if not running:
                    break
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for fut in finished:
                    i = running.pop(fut)
                    try:
                        yield i, fut.result()
                    except LLMError as e:
                        error = error or e
        finally:  # on Ctrl-C or an abandoned generator: start nothing new, do not wait
            pool.shutdown(wait=False, cancel_futures=True)
        if error is not None:
            raise error



# ----------------------------------------------------------------------------- local sampler


class LocalClient(Client):
    """The local sampler behind the same interface: chat template from model.py's tokenizer, generation
    through sample.py, completions decoded to text. Conversations go through in chunks of `batch_size`
    (the sampler shares prompt blocks across the n samples and batches the rest); each chunk's results
    are yielded as soon as it is done. Under torchrun each rank uses cuda:LOCAL_RANK."""

    def __init__(self, model_dir, batch_size=256, device=None, dtype=None):
        import torch

        from model import Tokenizer, Transformer
        from sample import Sampler

        if device is None:
            device = f"cuda:{os.environ.get('LOCAL_RANK', 0)}" if torch.cuda.is_available() else "cpu"
        dtype = getattr(torch, dtype) if dtype else (torch.bfloat16 if str(device).startswith("cuda") else torch.float32)
        self.tokenizer = Tokenizer.from_pretrained(model_dir)
        model = Transformer.from_pretrained(model_dir, dtype=dtype, device=device)
        self.sampler = Sampler(model, self.tokenizer)
        self.stop_ids = self.tokenizer.stop_ids(model.config.eos_token_id)
        self.batch_size = batch_size

    def imap(self, messages_batch, n=1, temperature=0.0, max_tokens=1024, top_p=None, stop=None, seed=None,
             extra=None):
        from sample import SamplingParams

        stop = (stop,) if isinstance(stop, str) else tuple(stop or ())
        for start in range(0, len(messages_batch), self.batch_size):
            chunk = messages_batch[start:start + self.batch_size]
            prompts = [self.tokenizer.apply_chat_template(m) for m in chunk]
            params = SamplingParams(n=n, max_new_tokens=max_tokens, temperature=temperature, top_p=top_p or 1.0,
                                    stop_token_ids=self.stop_ids, stop_strings=stop,
                                    seed=(seed or 0) * 1_000_003 + start)  # chunks draw different streams
            for i, group in enumerate(self.sampler.generate(prompts, params, progress=True)):
                yield start + i, [self._text(c, stop) for c in group]

    def _text(self, completion, stop):
        text = self.tokenizer.decode(completion.token_ids, skip_special_tokens=True)
        if completion.finish_reason == "stop":  # as OpenAI servers do: the stop string is not returned
            cut = [text.find(x) for x in stop if x in text]
            text = text[:min(cut)] if cut else text
        return text


def make_client(endpoint=None, model=None, model_dir=None, **kw):
    """An HTTP client for `endpoint` (model = the served model's name), or the local sampler for `model_dir`."""
    if (endpoint is None) == (model_dir is None):
        raise ValueError("give exactly one of endpoint (with model) or model_dir")
    if model_dir is not None:
        return LocalClient(model_dir, **kw)
    if not model:
        raise ValueError("an endpoint needs the served model's name (model=..., --model-name)")
    return HTTPClient(endpoint, model, **kw)


# ----------------------------------------------------------------------------- resumable steps


def run_step(client, records, out_path, make_messages, make_row, n=1, temperature=0.0, max_tokens=1024,
             desc=None, **kw):
    """Run one LLM-driven step over records: for each record whose id is not yet in out_path,
    messages = make_messages(rec), completions = client(messages, n), row = make_row(rec, completions)
    (a dict; "id" is set to the record's id), appended to out_path as each request finishes.
    Returns the number of new rows. A request failing for good raises LLMError after the rows
    already finished are written; rerunning resumes."""
    from tqdm import tqdm

    done = done_ids(out_path)
    todo = [r for r in records if r["id"] not in done]
    if not todo:
        return 0
    written = 0
    bar = tqdm(total=len(todo), desc=desc or os.path.basename(out_path), disable=None)
    try:
        stream = client.imap([make_messages(r) for r in todo], n=n, temperature=temperature,
                             max_tokens=max_tokens, **kw)
        for i, comps in stream:
            row = dict(make_row(todo[i], comps))
            row["id"] = todo[i]["id"]
            append_jsonl(out_path, [row])
            written += 1
            bar.update()
    finally:
        bar.close()
    return written
