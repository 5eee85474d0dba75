"""Label verification: a strong model answers every item k times (5 in the paper); an item it never
gets right is flagged (the gold label may be wrong, or the item broken), written to a review file
and left out of training by default. The empirical pass rate (right / k) is stored for every item;
difficulty labelling and stage-2 mining read it.

The verifier sees exactly the prompt the policy will see (eval.answer.build_prompt) and its
answers are read by the shared strict extractor, so an unparseable answer counts as wrong.

Results go to an append-only JSONL keyed by "<source>/<id>" (ids are unique per source only), one
row per item as each request finishes: a kill loses only the requests in flight, and a rerun
skips the items already written.

    python -m data.verify pool.jsonl --results verify.jsonl --endpoint http://host:8000/v1 --model-name M \
        --apply verified.jsonl --review review.jsonl
"""
import math
from collections import Counter

from eval.llm import LLMError, endpoint_error, make_client, run_step
from eval.records import (ArgumentParser, RecordError, UsageError, check_outputs, command, fail, float_in, int_at_least,
                          read_jsonl, write_jsonl)
from eval.answer import build_prompt, extract_answer


def uid(rec):
    return f"{rec['source']}/{rec['id']}"


def _keyed(records):
    # run_step keys its output by "id": hand it records whose id is the source-qualified one
    return [{**r, "id": uid(r)} for r in records]


def verify_row(rec, completions):
    multi = bool(rec["meta"].get("multi_answer"))
    preds = [extract_answer(c, rec["options"], multi) for c in completions]
    right = sum(p is not None and set(p) == set(rec["answer"]) for p in preds)
    return {"source": rec["source"], "record_id": rec["id"].split("/", 1)[1], "answer": rec["answer"],
            "preds": preds, "right": right, "n": len(preds), "pass_rate": right / len(preds),
            "flagged": right == 0}


def run_verify(client, records, results, n=5, temperature=0.7, max_tokens=2048, system=None):
    """Ask the verifier about every record not yet in `results`; returns the number of new rows."""
    return run_step(client, _keyed(records), results, lambda r: build_prompt(r, system), verify_row, n=n,
                    temperature=temperature, max_tokens=max_tokens, desc="verify")


def load_results(path):
    """uid -> result row; the last row wins if an id was ever written twice."""
    rows = {}
    for r in read_jsonl(path, validate=False, skip_bad=True):  # a torn last line from a kill is skipped
        rows[r["id"]] = r
    return rows


def apply_verify(records, results, keep_flagged=False, review=None, stats=None):
    """Records with meta.pass_rate / meta.verify_n set; flagged ones go to the `review` list and are
    dropped unless keep_flagged. A record without a result is an error: run the step first."""
    stats = Counter() if stats is None else stats
    rows = load_results(results)
    out = []
    for rec in records:
        row = rows.get(uid(rec))
        if row is None:
            raise RecordError(f"{results}: no verification result for {uid(rec)}; run the verify step to the end")
        rec = {**rec, "meta": {**rec["meta"], "pass_rate": row["pass_rate"], "verify_n": row["n"]}}
        if row["flagged"]:
            stats[f"verify:flagged:{rec['source']}"] += 1
            if review is not None:
                review.append({**rec, "meta": {**rec["meta"], "verifier_preds": row["preds"],
                                               "drop_reason": "verifier_never_right"}})
            if not keep_flagged:
                continue
        stats[f"verify:kept:{rec['source']}"] += 1
        out.append(rec)
    return out


def add_llm_args(ap, required=True):
    """The client flags every LLM step takes; returns the endpoint/model group (a step may add a third way)."""
    src = ap.add_mutually_exclusive_group(required=required)
    src.add_argument("--endpoint", help="OpenAI-compatible base URL, e.g. http://host:8000/v1")
    src.add_argument("--model", help="local checkpoint dir, generated with sample.py instead of an endpoint")
    ap.add_argument("--model-name", help="the served model's name (with --endpoint)")
    ap.add_argument("--api-key-env", default="OPENAI_API_KEY", help="environment variable holding the API key")
    ap.add_argument("--timeout", type=float_in(0, math.inf, open_low=True), default=600.0, help="seconds per request")
    ap.add_argument("--retries", type=int_at_least(0), default=6, help="retries on 5xx, 429, timeouts")
    ap.add_argument("--backoff", type=float_in(0, math.inf), default=1.0, help="first retry wait in seconds (doubles)")
    ap.add_argument("--concurrency", type=int_at_least(1), default=16, help="requests in flight")
    return src


def check_llm_args(ap, a):
    """Right after parsing: --endpoint without --model-name is a usage error before any input is read."""
    if getattr(a, "endpoint", None) and not a.model_name:
        ap.error("--endpoint needs --model-name")
    for flag in ("endpoint", "judge_endpoint"):
        if getattr(a, flag, None) and (why := endpoint_error(getattr(a, flag))):
            ap.error(f"--{flag.replace('_', '-')} {why}")


def client_from_args(a):
    """The client the LLM flags name; a bad --model folder or a missing --model-name is a UsageError."""
    if not getattr(a, "model", None) and not a.model_name:
        raise UsageError("--endpoint needs --model-name")
    try:
        if getattr(a, "model", None):
            return make_client(model_dir=a.model)
        return make_client(endpoint=a.endpoint, model=a.model_name, api_key_env=a.api_key_env, timeout=a.timeout,
                           max_retries=a.retries, backoff=a.backoff, concurrency=a.concurrency)
    except ValueError as e:  # model.CheckpointError: not a checkpoint folder, named in the message
        raise UsageError(str(e)) from None


@command("data.verify")
def main(argv=None):
    ap = ArgumentParser(prog="python -m data.verify",
                        description="Verify labels: a model answers each item n times; items it never "
                                    "gets right are flagged for review and excluded by default.")
    ap.add_argument("inp", help="records JSONL")
    ap.add_argument("--results", required=True, help="append-only results JSONL (resumes from it)")
    ap.add_argument("--n", type=int_at_least(1), default=5, help="answers per item")
    ap.add_argument("--temperature", type=float_in(0, math.inf), default=0.7)
    ap.add_argument("--max-tokens", type=int_at_least(1), default=2048)
    ap.add_argument("--apply", metavar="OUT", help="write records with meta.pass_rate here (flagged ones left out)")
    ap.add_argument("--review", help="write flagged records here")
    ap.add_argument("--keep-flagged", action="store_true", help="keep flagged items in --apply output")
    ap.add_argument("--skip-bad", action="store_true", help="count and skip malformed input lines")
    add_llm_args(ap)
    a = ap.parse_args(argv)
    check_outputs(files=[a.results, a.apply, a.review])
    check_llm_args(ap, a)
    stats = Counter()
    records = list(read_jsonl(a.inp, skip_bad=a.skip_bad, stats=stats))
    try:
        new = run_verify(client_from_args(a), records, a.results, a.n, a.temperature, a.max_tokens)
        print(f"verify: {new} new results in {a.results}")
        if a.apply:
            review = []
            write_jsonl(a.apply, apply_verify(records, a.results, a.keep_flagged, review, stats))
            if a.review:
                write_jsonl(a.review, review)
    except LLMError as e:  # a runtime failure, not a usage error: exit 1; finished rows are kept
        fail(f"{e}; finished items are saved in {a.results}: rerun the same command to resume", "data.verify")
    for k, v in sorted(stats.items()):
        print(f"{k}\t{v}")


if __name__ == "__main__":
    main()
