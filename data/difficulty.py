"""Difficulty labels: an LLM rates each item Easy / Moderate / Difficult with the paper's rubric.
The label goes into record["difficulty"] (lower case); the verifier's pass rate, if the verify step
ran, is already in meta.pass_rate beside it. Stage 1 of GRPO trains on easy + moderate, stage 2
mines the difficult ones.

Results go to an append-only JSONL keyed by "<source>/<id>"; a rerun skips labelled items.
A reply without a readable label is stored as null (counted), not guessed.

    python -m data.difficulty pool.jsonl --results difficulty.jsonl --endpoint URL --model-name M \
        --apply labelled.jsonl
"""
import math
import re
from collections import Counter

from eval.llm import LLMError, run_step
from eval.records import (ArgumentParser, RecordError, check_outputs, command, fail, float_in, int_at_least, read_jsonl,
                          write_jsonl)
from data.verify import _keyed, add_llm_args, check_llm_args, client_from_args, load_results, uid
from eval.answer import format_question

LABELS = ("easy", "moderate", "difficult")

RUBRIC = """Rate how difficult this medical multiple-choice question is for a well-trained physician.

Easy: answerable with basic medical knowledge (a fact, a definition, a classic association).
Moderate: needs detailed understanding or intermediate reasoning (a few clinical findings put
together, a mechanism, a standard next step).
Difficult: needs advanced knowledge, multi-step inference, or concerns rare conditions (chains of
findings to a diagnosis to a treatment, subtle discriminating details, uncommon diseases or drugs).

{question}

Correct answer: {answer}

Reply with one word inside <difficulty></difficulty>: Easy, Moderate or Difficult."""


def difficulty_messages(rec):
    ans = ", ".join(f"{a}. {rec['options'][a]}" for a in rec["answer"])
    return [{"role": "user", "content": RUBRIC.format(question=format_question(rec), answer=ans)}]


def parse_difficulty(text):
    """The label in the last <difficulty> tag, else the only label word in the reply, else None."""
    if not isinstance(text, str):
        return None
    text = re.sub(r"<think>.*?</think>", "", text, flags=re.S | re.I)
    tags = re.findall(r"<difficulty>\s*\**\s*(\w+)\s*\**\s*</difficulty>", text, re.I)
    if tags:
        word = tags[-1].lower()
        return word if word in LABELS else None
    found = {w.lower() for w in re.findall(r"\b(easy|moderate|difficult)\b", text, re.I)}
    return found.pop() if len(found) == 1 else None


def difficulty_row(rec, completions):
    return {"source": rec["source"], "record_id": rec["id"].split("/", 1)[1],
            "difficulty": parse_difficulty(completions[0]), "reply": completions[0][-200:]}


def run_difficulty(client, records, results, temperature=0.0, max_tokens=1024):
    return run_step(client, _keyed(records), results, difficulty_messages, difficulty_row, n=1,
                    temperature=temperature, max_tokens=max_tokens, desc="difficulty")


def apply_difficulty(records, results, stats=None):
    """Records with difficulty set from the results (null where the reply had no label)."""
    stats = Counter() if stats is None else stats
    rows = load_results(results)
    out = []
    for rec in records:
        row = rows.get(uid(rec))
        if row is None:
            raise RecordError(f"{results}: no difficulty label for {uid(rec)}; run the difficulty step to the end")
        stats[f"difficulty:{row['difficulty'] or 'unparsed'}"] += 1
        out.append({**rec, "difficulty": row["difficulty"]})
    return out


@command("data.difficulty")
def main(argv=None):
    ap = ArgumentParser(prog="python -m data.difficulty",
                        description="Label each item Easy / Moderate / Difficult with an LLM (paper rubric).")
    ap.add_argument("inp", help="records JSONL")
    ap.add_argument("--results", required=True, help="append-only results JSONL (resumes from it)")
    ap.add_argument("--temperature", type=float_in(0, math.inf), default=0.0)
    ap.add_argument("--max-tokens", type=int_at_least(1), default=1024)
    ap.add_argument("--apply", metavar="OUT", help="write the labelled records here")
    ap.add_argument("--skip-bad", action="store_true", help="count and skip malformed input lines")
    add_llm_args(ap)
    a = ap.parse_args(argv)
    check_outputs(files=[a.results, a.apply])
    check_llm_args(ap, a)
    stats = Counter()
    records = list(read_jsonl(a.inp, skip_bad=a.skip_bad, stats=stats))
    try:
        new = run_difficulty(client_from_args(a), records, a.results, a.temperature, a.max_tokens)
        print(f"difficulty: {new} new labels in {a.results}")
        if a.apply:
            write_jsonl(a.apply, apply_difficulty(records, a.results, stats))
    except LLMError as e:  # a runtime failure, not a usage error: exit 1; finished rows are kept
        fail(f"{e}; finished items are saved in {a.results}: rerun the same command to resume", "data.difficulty")
    for k, v in sorted(stats.items()):
        print(f"{k}\t{v}")


if __name__ == "__main__":
    main()
