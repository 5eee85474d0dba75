"""CoT distillation: teacher trajectories for curated records, written as chat-format SFT records.

    python -m data.distill --records pool.jsonl --out runs/distill --endpoint URL --model-name gpt-oss-120b
    python -m data.distill --records kg_questions.jsonl --out runs/kg_sft --template     # no teacher (demo)
    python -m data.distill --huatuogpt demo_data.json --out runs/huatuo_sft             # existing trajectories

The teacher sees the question, its options and the gold answer, and writes a concise chain of thought
that reaches the answer without saying it was given (TEACHER below; the prompt is stored with each
trajectory). k candidates per item (pass@k). A candidate passes when it is in the student's format
(eval.answer.format_ok), the shared extractor reads the gold answer from it, and no filter rejects it: leakage ("the
correct answer is given as ..."), length bounds, repetition, language mismatch, and the paper's verifiable signals:
a stated calculation that is wrong, a unit that contradicts its quantity or an earlier mention (both
data/signals.py), and (optional, with --judge-endpoint) an LLM finding that the chain contradicts the item's
reference text. Among the passing ones --select explicit (the paper's rule) picks those that state their assumptions
and remaining uncertainty (data.signals.states_limits), then the shortest; --select fewest_hedges, the earlier rule,
the fewest hedges, then the shortest.
Items with no passing candidate go through the paper's refinement loop, up to R rounds: each round
shows the teacher its failed attempt and why it failed, and names one strategy (backtracking, path
exploration, self-correction, in turn). For KG questions the sampled path (meta.path) is given to the
teacher as the reasoning skeleton; --template writes a trajectory from the path with no teacher.

Output in --out: round<r>.jsonl (append-only teacher replies keyed by "<source>/<id>": a kill loses
only requests in flight, a rerun redoes no finished id), guideline.jsonl (the judge's answers, keyed by id, judge
and chain), sft.jsonl, failed.jsonl, stats.json, stats.md.
Verdicts are recomputed from the stored replies on every run, so filter flags may change between runs;
the flags that change what the teacher is asked (k, rounds, temperature, ...) may not (config.json).

An SFT record: {"id", "source", "messages": [{"role": "system"}?, {"role": "user", "content": <the user
message of eval.answer.build_prompt>}, {"role": "assistant", "content":
"<think>\\n...\\n</think>\\n<answer>X</answer>"}], "meta": {"teacher", "prompt", "round", "strategy",
"candidates", "passed", "guideline"}}.
"""
import hashlib
import json
import math
import os
import re
from collections import Counter

from data.decontam import BenchIndex, decontaminate
from data.dedup import dedup, tokens
from data.filter import check as format_filter
from data.prepare import convert_source
from data.signals import calculation_error, states_limits, unit_error
from data.verify import _keyed, add_llm_args, check_llm_args, client_from_args, load_results, uid
from eval.answer import build_prompt, extract_answer, format_error, format_ok, format_question
from eval.llm import LLMError, make_client, run_step
from eval.loaders import BENCHMARKS, DATA_DIR, load_benchmark
from eval.records import (ArgumentParser, RecordError, UsageError, check_outputs, command, fail, float_in, int_at_least,
                          read_json, read_jsonl, write_jsonl)
from kg.verbalize import join, lower_first

TEACHER = """You are writing a worked solution to a medical exam question, to teach a student how to reason.

{question}

Correct answer: {answer}
{skeleton}
Write a concise chain of thought that reaches this answer from the facts in the question, as if you were \
solving it yourself: pick out the key findings, reason from them to the answer, and say briefly why the \
other options do not fit. Never say or imply that the answer was given to you. Write in {language}.

Reply in exactly this format:
<think>
your reasoning
</think>
<answer>{letters}</answer>"""

SKELETON = """
Reasoning skeleton (facts from a medical knowledge graph; build your reasoning on them, but do not \
mention the graph or this list):
{facts}
"""

STRATEGIES = {  # refinement round r uses the ((r - 1) mod 3)-th
    "backtracking": "go back to the step where your attempt went wrong, say why it was wrong, and continue "
                    "correctly from there",
    "path_exploration": "weigh each option in turn against the key findings, then settle on the one they support",
    "self_correction": "check every claim of your attempt against the question, correct the faulty ones, and "
                       "reach the conclusion again",
}

REFINE = """Your attempt above was rejected: {why}. Write a new solution. This time use {name}: {how}. \
Reply in the same format: <think>...</think> then <answer>{letters}</answer>."""

# "the correct answer is given as C", "the provided answer", "we are told the answer": the teacher
# leaning on the gold label instead of reasoning to it. "The correct answer is C" alone is a conclusion.
LEAK = re.compile("|".join([
    r"\b(?:correct|right|gold|expected|reference|true|final)\s+(?:answer|option|choice)\s+(?:is|was|has been)\s+"
    r"(?:already\s+)?(?:given|provided|stated|marked|listed|indicated|supplied|shown)\b",
    r"\b(?:given|provided|stated|supplied|marked|reference)\s+(?:correct\s+)?answer\b(?!\s+(?:choices?|options?))",
    r"\banswer\s+(?:provided|supplied|given)\s+(?:is|was|as|here|above)\b",
    r"\banswer\s+key\b",
    r"\b(?:we|i)\s+(?:are|were|am|was|have\s+been|had\s+been)\s+(?:told|given|provided)\s+(?:that\s+)?"
    r"(?:the\s+)?(?:correct\s+)?(?:answer|option)\b",
    r"^\W*correct\s+answer\s*:",                      # the prompt's line echoed
    r"\b(?:reasoning\s+skeleton|knowledge\s+graph)\b",  # a KG item's privileged facts cited as such
    r"(?:已知|给定|给出|提供)的?(?:正确)?答案|标准答案|答案已(?:给出|知)"]), re.I | re.M)
HEDGE = re.compile(r"\b(?:maybe|perhaps|possibly|might|not sure|unsure|hmm+|i guess|i think|unclear|wait)\b",
                   re.I)
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_LATIN = re.compile(r"[A-Za-z]")
_THINK = re.compile(r"\s*(?:<think>)?(.*?)</think>", re.S | re.I)  # the chat template may open <think>


# ----------------------------------------------------------------------------- checks


def language(text):
    """"zh" when CJK characters are at least 30% of the letters (Chinese prose keeps English drug names
    and abbreviations), else "en"."""
    cjk, latin = len(_CJK.findall(text)), len(_LATIN.findall(text))
    return "zh" if cjk and cjk >= 0.3 * (cjk + latin) else "en"


def repetition(text, n=6):
    """Share of word n-grams (CJK: character n-grams) already seen earlier in the text. Natural CoT stays
    under 0.03 (HuatuoGPT-o1's 198 demo trajectories: at most 0.023); a looping generation nears 1."""
    toks = tokens(text)
    grams = [tuple(toks[i:i + n]) for i in range(len(toks) - n + 1)]
    return 1 - len(set(grams)) / len(grams) if grams else 0.0


def think_text(output):
    m = _THINK.match(output or "")
    return m.group(1).strip() if m else ""


def verdict(output, rec, min_words=20, max_words=1024, max_repeat=0.25):
    """None if `output` is a usable trajectory for `rec`, else the first reason it is not, in this order:
    format, wrong_answer, leakage, too_short, too_long, repetition, language, calculation, units (the last two are
    data.signals' checks of the paper's verifiable signals). The LLM check
    against reference text (reason "guideline") is separate: see `judged_verdicts`."""
    multi = bool(rec["meta"].get("multi_answer"))
    if not format_ok(output, rec["options"], multi):
        return "format"
    got = extract_answer(output, rec["options"], multi)  # format_ok passed: its answer tag parses
    if got is None or set(got) != set(rec["answer"]):
        return "wrong_answer"
    think = think_text(output)
    if LEAK.search(think):
        return "leakage"
    words = len(tokens(think))
    if words < min_words:
        return "too_short"
    if words > max_words:
        return "too_long"
    if repetition(think) > max_repeat:
        return "repetition"
    if language(think) != language(rec["question"]):
        return "language"
    if calculation_error(think):
        return "calculation"
    if unit_error(think, rec["question"]):
        return "units"
    return None


SELECT = {  # candidate -> sort key, smallest first; ties go to the earlier candidate
    "explicit": lambda think: (-states_limits(think), len(tokens(think))),  # the paper's brevity/locality rule
    "fewest_hedges": lambda think: (len(HEDGE.findall(think)), len(tokens(think))),  # the rule before issue 25
}


def pick(outputs, verdicts, rule="explicit"):
    """Index of the chosen passing candidate under `rule` (see SELECT), then first; None if none pass.
    "explicit": those that state their assumptions and remaining uncertainty first, then the shortest.
    "fewest_hedges": fewest "maybe"/"perhaps"/..., then the shortest."""
    ok = [i for i, v in enumerate(verdicts) if v is None]
    if not ok:
        return None
    return min(ok, key=lambda i: (*SELECT[rule](think_text(outputs[i])), i))


def assistant(think, rec):
    return f"<think>\n{think.strip()}\n</think>\n<answer>{rec['answer']}</answer>"


def sft_record(rec, think, system, meta):
    msgs = build_prompt(rec, system) + [{"role": "assistant", "content": assistant(think, rec)}]
    return {"id": rec["id"], "source": rec["source"], "messages": msgs, "meta": meta}


# ----------------------------------------------------------------------------- prompts


REL_TEXT = {"has_phenotype": "{s} features {o}", "onset": "{s} has {o}", "inheritance": "{s} shows {o}",
            "associated_gene": "{s} is associated with pathogenic variants in {o}",
            "indicated_for": "{s} is indicated for {o}", "in_class": "{s} is classified as: {o}",
            "targets": "{s} acts on {o}", "side_effect": "{s} can cause {o}", "caused_by": "{s} is caused by {o}",
            "located_in": "{s} affects the {o}", "transmitted_by": "{s} is transmitted by {o}",
            "subclass_of": "{s} is a kind of {o}"}
_LOWER = {"has_phenotype", "onset", "side_effect", "located_in", "indicated_for"}  # objects read as common nouns


def fact_text(edge):
    """One KG path edge as an English sentence."""
    s, r, o = edge["subject_name"], edge["relation"], edge["object_name"]
    o = lower_first(o) if r in _LOWER else o
    return REL_TEXT.get(r, "{s} " + r.replace("_", " ") + " {o}").format(s=s[:1].upper() + s[1:], o=o) + "."


def teacher_messages(rec):
    multi = bool(rec["meta"].get("multi_answer"))
    answer = "; ".join(f"{a}. {rec['options'][a]}" for a in rec["answer"])
    path = rec["meta"].get("path")
    skeleton = SKELETON.format(facts="\n".join("- " + fact_text(e) for e in path)) if path else ""
    lang = "Chinese" if language(rec["question"]) == "zh" else "English"
    text = TEACHER.format(question=format_question(rec), answer=answer + (" (all of these)" if multi else ""),
                          skeleton=skeleton, language=lang, letters=rec["answer"])
    return [{"role": "user", "content": text}]


def why_text(reason, output, rec, limits, judge_reply=None):
    """The feedback a refinement round gives for a failed attempt."""
    opts, multi = rec["options"], bool(rec["meta"].get("multi_answer"))
    if reason == "wrong_answer":
        return f"it concluded {extract_answer(output, opts, multi)}, but the correct answer is {rec['answer']}"
    if reason == "format":
        return (f"its format was wrong ({format_error(output, opts, multi)}); "
                "write <think>...</think> then <answer>X</answer>")
    think = think_text(output)
    if reason == "calculation":
        return f"a calculation in it is wrong: {calculation_error(think)}"
    if reason == "units":
        return f"it gives a quantity in the wrong unit: {unit_error(think, rec['question'])}"
    if reason == "guideline":
        return "it contradicts the reference facts" + (f" ({judge_reply.strip()[:300]})" if judge_reply else "")
    lang = "Chinese" if language(rec["question"]) == "zh" else "English"
    return {"leakage": "it leaned on the answer being given instead of reasoning to it",
            "too_short": f"its reasoning was too short (under {limits['min_words']} words)",
            "too_long": f"its reasoning was too long (over {limits['max_words']} words)",
            "repetition": "it repeated itself", "language": f"it was not written in {lang}"}[reason]


def strategy_of(r):
    return None if r == 0 else list(STRATEGIES)[(r - 1) % len(STRATEGIES)]


def refine_messages(rec, prev, r, limits, reason, judge_reply=None):
    """Round r >= 1: the original prompt, the previous round's first attempt and why it failed (`reason`, its
    verdict), and the round's strategy."""
    name = strategy_of(r)
    failed = prev["candidates"][0]
    why = why_text(reason, failed, rec, limits, judge_reply)
    follow = REFINE.format(why=why, name=name.replace("_", " "), how=STRATEGIES[name], letters=rec["answer"])
    return teacher_messages(rec) + [{"role": "assistant", "content": failed}, {"role": "user", "content": follow}]


# ----------------------------------------------------------------------------- guideline check (optional LLM judge)


JUDGE = """Below are reference statements for a medical exam question, and a worked solution to it. Does the \
solution state anything that contradicts a reference statement? Wording differences, omissions and facts the \
references do not cover are not contradictions.

Reference statements:
{reference}

Solution:
{think}

Reply with one line: CONTRADICTS: <the solution's claim and the statement it contradicts>, or CONSISTENT."""
_JUDGED = re.compile(r"\b(CONTRADICTS|CONSISTENT)\b")


def reference(rec):
    """The text a chain must not contradict: meta.reference (a guideline sentence, or a list of them), else a KG
    item's path facts; [] when the item has none."""
    ref = rec["meta"].get("reference")
    if ref:
        return [ref] if isinstance(ref, str) else [str(x) for x in ref]
    return [fact_text(e) for e in rec["meta"].get("path") or []]


def judge_key(rec, think, judge):
    return f"{uid(rec)}#{judge.model}#{hashlib.sha1(think.encode()).hexdigest()[:16]}"


def judge_messages(x):
    facts = "\n".join("- " + r for r in x["reference"])
    return [{"role": "user", "content": JUDGE.format(reference=facts, think=x["think"])}]


def judge_row(x, comps):
    said = _JUDGED.findall(comps[0].split("</think>")[-1])  # a reasoning judge's verdict follows its thinking
    return {"contradicts": None if not said else said[-1] == "CONTRADICTS", "reply": comps[0][-1000:]}


def run_judge(judge, pairs, path):
    """Ask the judge about each (record, chain) with reference text that `path` does not hold yet; returns key ->
    row for all judged so far. Append-only and keyed like the teacher's replies, so a rerun asks nothing twice."""
    todo = {judge_key(rec, think, judge): {"id": judge_key(rec, think, judge), "reference": reference(rec),
                                           "think": think} for rec, think in pairs if reference(rec)}
    if todo:
        run_step(judge, list(todo.values()), path, judge_messages, judge_row, n=1, temperature=0.0, max_tokens=2048,
                 desc="guideline check")
    return load_results(path) if os.path.exists(path) else {}


def guideline(rec, think, judge, judged):
    """no_reference, skipped (no judge: never counted as passed), consistent, contradicts, or unclear (a reply
    that says neither)."""
    if not reference(rec):
        return "no_reference"
    row = judged.get(judge_key(rec, think, judge)) if judge is not None else None
    if row is None:
        return "skipped"
    return {True: "contradicts", False: "consistent", None: "unclear"}[row["contradicts"]]


def judged_verdicts(outputs, rec, limits, judge, judged):
    """verdict() of each candidate, with "guideline" for a passing one the judge found contradicting its reference."""
    return [v or ("guideline" if guideline(rec, think_text(o), judge, judged) == "contradicts" else None)
            for o, v in ((o, verdict(o, rec, **limits)) for o in outputs)]


# ----------------------------------------------------------------------------- the teacher loop


def history(rec, seen, rate):
    """Verdict lists of the rounds an item went through (seen[r]: uid -> stored row; rate(rec, candidates) ->
    verdicts), up to its first round with a passing candidate."""
    out = []
    for rows in seen:
        row = rows.get(uid(rec))
        if row is None:
            break
        out.append(rate(rec, row["candidates"]))
        if None in out[-1]:
            break
    return out


def run_teacher(client, records, out, k=4, rounds=3, temperature=0.7, max_tokens=2048, limits=None, teacher=None,
                system=None, judge=None, select="explicit"):
    """Round 0 over all records, then refinement rounds over the items whose every round so far failed. With a
    `judge` client, each round's passing candidates of items with reference text are checked against it
    (guideline.jsonl) before the next round is chosen. Returns (sft records, failed records, stats)."""
    limits = {"min_words": 20, "max_words": 1024, "max_repeat": 0.25, **(limits or {})}
    twice = [u for u, c in Counter(map(uid, records)).items() if c > 1]
    if twice:
        raise RecordError(f"{len(twice)} ids occur more than once in the input, e.g. {twice[0]}; dedup it first")
    judged, judge_path = {}, os.path.join(out, "guideline.jsonl")
    rate = lambda rec, outputs: judged_verdicts(outputs, rec, limits, judge, judged)  # noqa: E731
    seen = []
    for r in range(rounds + 1):
        if r == 0:
            msgs = {uid(x): teacher_messages(x) for x in records}
        else:
            msgs = {}
            for x in records:
                if len(h := history(x, seen, rate)) == r and None not in h[-1]:
                    failed = think_text(seen[-1][uid(x)]["candidates"][0])
                    reply = judged.get(judge_key(x, failed, judge), {}).get("reply") if judge else None
                    msgs[uid(x)] = refine_messages(x, seen[-1][uid(x)], r, limits, h[-1][0], reply)
        todo = [x for x in records if uid(x) in msgs]
        path = os.path.join(out, f"round{r}.jsonl")
        if todo:
            run_step(client, _keyed(todo), path, lambda x: msgs[x["id"]],
                     lambda x, comps, r=r: {"round": r, "strategy": strategy_of(r), "prompt": msgs[x["id"]],
                                            "candidates": comps},
                     n=k, temperature=temperature, max_tokens=max_tokens,
                     desc=f"round {r}" + (f" ({strategy_of(r)})" if r else ""))
        seen.append(load_results(path) if os.path.exists(path) else {})
        if judge is not None:
            pairs = [(x, think_text(c)) for x in records if uid(x) in seen[-1]
                     for c in seen[-1][uid(x)]["candidates"] if verdict(c, x, **limits) is None]
            judged.update(run_judge(judge, pairs, judge_path))
    return collect(records, seen, rate, teacher, system,
                   lambda rec, think: guideline(rec, think, judge, judged), select)


def collect(records, seen, rate, teacher, system, status, select="explicit"):
    """SFT records, failed records and per-round stats from the stored teacher replies; status(rec, think) is the
    guideline check's outcome, counted over the candidates that passed every other filter."""
    rounds = [{"round": r, "strategy": strategy_of(r), "items": 0, "candidates": 0, "passed_candidates": 0,
               "items_passed": 0, "reasons": Counter()} for r in range(len(seen))]
    checks = Counter()
    sft, failed = [], []
    for rec in records:
        h = history(rec, seen, rate)
        for r, (st, vs) in enumerate(zip(rounds, h)):
            st["items"] += 1
            st["candidates"] += len(vs)
            st["passed_candidates"] += vs.count(None)
            st["items_passed"] += None in vs
            st["reasons"].update(v for v in vs if v)
            checks.update(status(rec, think_text(c)) for c, v in zip(seen[r][uid(rec)]["candidates"], vs)
                          if v in (None, "guideline"))
        if not h or None not in h[-1]:
            failed.append({**rec, "meta": {**rec["meta"], "distill_rounds": len(h),
                                           "distill_reasons": h[-1] if h else None}})
            continue
        r = len(h) - 1
        row = seen[r][uid(rec)]
        think = think_text(row["candidates"][pick(row["candidates"], h[-1], select)])
        meta = {"teacher": teacher, "prompt": row["prompt"], "round": r, "strategy": row["strategy"],
                "candidates": len(h[-1]), "passed": h[-1].count(None), "guideline": status(rec, think)}
        sft.append(sft_record(rec, think, system, meta))
    for st in rounds:
        st["reasons"] = dict(st["reasons"])
    stats = {"items": len(records), "kept": len(sft), "failed": len(failed), "rounds": rounds,
             "kept_by_round": dict(Counter(s["meta"]["round"] for s in sft)), "guideline": dict(checks)}
    return sft, failed, stats


# ----------------------------------------------------------------------------- no teacher: the KG path


# Phrasings of the templated trajectory, one picked per question id. A single fixed opening ("The key findings
# are A, B, C, ...") over 400 examples taught SmolLM2-135M to open every MedQA answer by copying the stem's
# findings into one list, and 12 of its 13 extraction failures were greedy loops inside that list. So the
# opening names at most two findings and stops, and every sentence comes in several forms.
OPENINGS = ("The most telling findings are {a}.", "Two findings stand out: {a}.", "What matters most here: {a}.",
            "The clues to start from are {a}.")
DIAGNOSES = ("{D} explains them{also}, so it is the most likely diagnosis.",
             "{D} accounts for them{also}; it is the most likely diagnosis.",
             "With{also_} these, the picture points to {d}.")
CLOSINGS = ("Of the options, only {x} fits every stated fact, so the answer is {L}.",
            "Each of the other options fails at least one of these facts, which leaves {x}: the answer is {L}.",
            "None of the other options fits all of these facts, so the best answer is {L}, {x}.",
            "Checking each option against these facts leaves only {x}, so the answer is option {L}.")


def _pick(forms, rec, salt):
    """One of `forms`, chosen by a stable hash of the record id (reruns write the same trajectory)."""
    return forms[sum(map(ord, f"{salt}:{rec['id']}")) % len(forms)]


def templated(rec):
    """A trajectory written from a KG question's sampled path (meta.path): two telling findings, the entity
    the findings point to, the other findings, each further hop, the answer. None for a record without a path."""
    path = rec["meta"].get("path")
    if not path:
        return None
    ans_text = rec["options"][rec["answer"]]
    findings = [e for e in path if e["relation"] in ("has_phenotype", "onset")]
    lines = []
    if findings:  # a vignette: the findings point to a disease first
        d = findings[0]["subject_name"]
        shown = [lower_first(e["object_name"]) for e in findings if e["relation"] == "has_phenotype"]
        onset = [lower_first(e["object_name"]) for e in findings if e["relation"] == "onset"]
        lead, more = shown[:2], shown[2:] + [f"{o} onset" if "onset" not in o else o for o in onset]
        lines.append(_pick(OPENINGS, rec, "open").format(a=join(lead)))
        also = f" and also {join(more)}" if more else ""
        also_ = f" {join(more)} beside" if more else ""
        lines.append(_pick(DIAGNOSES, rec, "dx").format(D=d[:1].upper() + d[1:], d=d, also=also, also_=also_))
        rest = [e for e in path if e not in findings]
    else:
        rest = list(path)
    letter = rec["answer"]
    # hops that do not mention the answer first, then the ones that reach it
    rest.sort(key=lambda e: ans_text.lower() in (e["subject_name"].lower(), e["object_name"].lower()))
    lines += [fact_text(e) for e in rest]
    lines.append(_pick(CLOSINGS, rec, "close").format(x=ans_text, L=letter))
    return "<think>\n" + "\n".join(lines) + f"\n</think>\n<answer>{letter}</answer>"


def run_template(records, limits, system=None):
    stats = Counter()
    sft, failed = [], []
    for rec in records:
        out = templated(rec)
        if out is None:
            stats["skip:no_kg_path"] += 1
            continue
        why = verdict(out, rec, **limits)
        if why:
            stats[f"drop:{why}"] += 1
            failed.append({**rec, "meta": {**rec["meta"], "distill_reasons": [why]}})
            continue
        meta = {"teacher": "template", "prompt": None, "round": 0, "strategy": None, "candidates": 1, "passed": 1}
        sft.append(sft_record(rec, think_text(out), system, meta))
    stats.update(items=len(records), kept=len(sft))
    return sft, failed, dict(stats)


# ----------------------------------------------------------------------------- HuatuoGPT-o1 trajectories


DEFAULT_BENCH = ("medqa", "medmcqa", "pubmedqa", "mmlu_pro_biology", "mmlu_pro_health")


def load_bench(specs, data_dir=None):
    """name -> records; the defaults plus NAME=FILE extras. A missing or malformed file is a RecordError naming
    it, an unknown name a UsageError."""
    out = {}
    for spec in list(DEFAULT_BENCH) + list(specs or []):
        name, _, path = spec.partition("=")
        try:
            out[name] = load_benchmark(name, path or None, data_dir=data_dir)
        except KeyError as e:  # an unknown name; load_benchmark raises RecordError for a missing file
            raise UsageError(f"--bench {spec}: {e.args[0]}") from None
    return out


def convert_huatuogpt(path, bench, limits, system=None, judge=None, judge_path=None):
    """HuatuoGPT-o1 demo items -> SFT records: think = Complex_CoT, answer = answer_idx. Dropped, by reason:
    the format filter on the item, a Response whose extracted letter contradicts answer_idx, the trajectory
    checks of the teacher path (leakage, length, repetition, language, calculation, units), the guideline check
    where an item has reference text and a `judge` is given (results in `judge_path`), duplicates (data.dedup),
    overlap with an eval benchmark (data.decontam.decontaminate)."""
    stats = Counter()
    raw = read_json(path)
    if not isinstance(raw, list):
        raise RecordError(f"{path}: expected a JSON list of items, got a {type(raw).__name__}")
    recs = convert_source(f"huatuo:train={path}", "")
    stats["items"] = len(recs)
    keep, dropped = [], []
    for i, (rec, row) in enumerate(zip(recs, raw)):
        for f in ("Complex_CoT", "Response"):
            if not isinstance(row.get(f), str) or not row[f].strip():
                raise RecordError(f"{path}: item {i}: missing or empty {f!r}")
        said = extract_answer(row["Response"], rec["options"])  # free prose mostly: None, no letter named
        why = format_filter(rec)
        if why:
            why = f"item_{why}"
        elif said is not None and said != rec["answer"]:
            why = "response_contradicts"
        else:
            why = verdict(assistant(row["Complex_CoT"], rec), rec, **limits)
        if why:
            stats[f"drop:{why}"] += 1
            dropped.append({**rec, "meta": {**rec["meta"], "drop_reason": why}})
            continue
        keep.append((rec, row["Complex_CoT"].strip()))
    judged = run_judge(judge, keep, judge_path) if judge is not None else {}
    checked = [(rec, think, guideline(rec, think, judge, judged)) for rec, think in keep]
    stats.update(f"guideline:{g}" for _, _, g in checked)
    for rec, _, g in checked:
        if g == "contradicts":
            dropped.append({**rec, "meta": {**rec["meta"], "drop_reason": "guideline"}})
    keep = [(rec, think) for rec, think, g in checked if g != "contradicts"]
    for why in ("calculation", "units", "guideline"):
        stats[f"drop:{why}"] += 0  # the verifiable-signal filters: a zero is a result too
    stats["drop:guideline"] += len(checked) - len(keep)
    for name in bench:
        stats[f"decontam:huatuo:{name}"] += 0  # a zero is a result too
    unique = dedup([r for r, _ in keep], stats=stats, dropped=dropped)  # one item twice, options shuffled
    clean = decontaminate(unique, BenchIndex(bench), stats=stats, dropped=dropped)
    ids = {r["id"] for r in clean}
    meta = {"teacher": "huatuogpt-o1-demo (GPT-4o)", "prompt": None, "round": 0, "strategy": None,
            "candidates": 1, "passed": 1}
    sft = [sft_record(r, t, system, dict(meta)) for r, t in keep if r["id"] in ids]
    stats["kept"] = len(sft)
    return sft, dropped, {k: v for k, v in sorted(stats.items())}


# ----------------------------------------------------------------------------- reports and CLI


def stats_markdown(stats, title):
    lines = [f"# {title}", "", f"items {stats['items']}, kept {stats['kept']}"
             + (f", failed {stats['failed']}" if "failed" in stats else ""), ""]
    if "rounds" in stats:
        lines += ["| round | strategy | items | candidates | passing candidates | items passed | rejections |",
                  "|---:|---|---:|---:|---:|---:|---|"]
        for st in stats["rounds"]:
            rej = ", ".join(f"{k} {v}" for k, v in sorted(st["reasons"].items(), key=lambda kv: -kv[1]))
            lines.append(f"| {st['round']} | {st['strategy'] or '-'} | {st['items']} | {st['candidates']} | "
                         f"{st['passed_candidates']} | {st['items_passed']} | {rej or '-'} |")
        signals = Counter()
        for st in stats["rounds"]:
            signals.update({k: st["reasons"].get(k, 0) for k in ("calculation", "units", "guideline")})
        checks = ", ".join(f"{k} {stats['guideline'].get(k, 0)}"
                           for k in ("consistent", "contradicts", "unclear", "skipped", "no_reference"))
        lines += ["", "verifiable signals, candidates rejected over all rounds: "
                  + ", ".join(f"{k} {v}" for k, v in signals.items()),
                  f"guideline check of the candidates that passed the other filters: {checks}"]
    else:
        lines += ["| count | n |", "|---|---:|"] + [f"| {k} | {v} |" for k, v in stats.items()
                                                    if k not in ("items", "kept")]
    return "\n".join(lines) + "\n"


TEACHER_ARGS = ("k", "rounds", "temperature", "max_tokens", "endpoint", "model_name", "model", "records")


def write_text(path, text):
    """Write a whole file atomically (temp file, then rename): a kill leaves the old file or the new one."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def check_config(out, a):
    """The teacher-side flags of a resumed run must match the ones its stored replies were made with."""
    path = os.path.join(out, "config.json")
    cfg = {k: getattr(a, k) for k in TEACHER_ARGS}
    if os.path.exists(path):
        old = read_json(path)
        if not isinstance(old, dict):
            raise RecordError(f"{path}: a JSON {type(old).__name__}, not a run's settings; use a new --out")
        diff = [f"--{k.replace('_', '-')} {old.get(k)} -> {cfg[k]}" for k in cfg if old.get(k) != cfg[k]]
        if diff:
            raise UsageError(f"{out} holds replies made with other settings ({'; '.join(diff)}); use a new --out")
    else:
        write_text(path, json.dumps(cfg, indent=1))


@command("data.distill")
def main(argv=None):
    ap = ArgumentParser(prog="python -m data.distill",
                        description="Teacher CoT trajectories (pass@k + refinement) as SFT chat records.")
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--records", help="input records JSONL (curated pool or KG questions)")
    src.add_argument("--huatuogpt", metavar="FILE", help="convert HuatuoGPT-o1 demo_data.json instead")
    ap.add_argument("--out", required=True, help="output folder (resumes from what is there)")
    teacher = add_llm_args(ap, required=False)  # --endpoint / --model, the teacher's client flags
    teacher.add_argument("--template", action="store_true",
                         help="no teacher: write KG questions' trajectories from their sampled path")
    ap.add_argument("--k", type=int_at_least(1), default=4, help="candidates per item and round (pass@k)")
    ap.add_argument("--rounds", type=int_at_least(0), default=3,
                    help="refinement rounds R for items with no passing candidate")
    ap.add_argument("--temperature", type=float_in(0, math.inf), default=0.7)
    ap.add_argument("--max-tokens", type=int_at_least(1), default=2048, help="teacher reply budget")
    ap.add_argument("--min-words", type=int_at_least(0), default=20,
                    help="shortest reasoning kept (words; CJK characters)")
    ap.add_argument("--max-words", type=int_at_least(1), default=1024, help="longest reasoning kept")
    ap.add_argument("--max-repeat", type=float_in(0, 1), default=0.25, help="largest share of repeated word 6-grams")
    ap.add_argument("--select", choices=list(SELECT), default="explicit",
                    help="rule among passing candidates: 'explicit' prefers those that state their assumptions and "
                         "remaining uncertainty, then the shortest (the paper's); 'fewest_hedges', then the shortest")
    ap.add_argument("--judge-endpoint", metavar="URL",
                    help="OpenAI-compatible endpoint for the guideline check: does a chain contradict its item's "
                         "reference text (meta.reference, or a KG item's path facts)? Without it the check is skipped "
                         "and counted as skipped. Not with --template")
    ap.add_argument("--judge-model-name", metavar="NAME", help="the judge's served model name")
    ap.add_argument("--system", default=None, help="system message to put in each SFT record")
    ap.add_argument("--bench", action="append", default=[], metavar="NAME[=FILE]",
                    help=f"--huatuogpt: benchmark to decontaminate against, besides {', '.join(DEFAULT_BENCH)}")
    ap.add_argument("--data-dir", default=DATA_DIR, help="where the benchmark files are")
    ap.add_argument("--skip-bad", action="store_true", help="count and skip malformed input lines")
    a = ap.parse_args(argv)
    check_llm_args(ap, a)
    if a.judge_endpoint is not None and not a.judge_model_name:
        ap.error("--judge-endpoint needs --judge-model-name")
    if a.judge_endpoint is not None and a.template:
        ap.error("--judge-endpoint: not with --template (its chains are written from the reference facts)")
    if a.records and not (a.template or a.endpoint or a.model):
        ap.error("give a teacher: --endpoint URL --model-name NAME, --model DIR, or --template")
    for spec in a.bench:
        if spec.partition("=")[0] not in BENCHMARKS:
            ap.error(f"--bench {spec}: unknown benchmark {spec.partition('=')[0]!r}; known: {', '.join(BENCHMARKS)}")
    check_outputs(folders=[a.out])  # the folder itself is made by the first file written into it
    limits = {"min_words": a.min_words, "max_words": a.max_words, "max_repeat": a.max_repeat}
    judge = make_client(endpoint=a.judge_endpoint, model=a.judge_model_name, api_key_env=a.api_key_env,
                        timeout=a.timeout, max_retries=a.retries, backoff=a.backoff,
                        concurrency=a.concurrency) if a.judge_endpoint else None
    judge_path = os.path.join(a.out, "guideline.jsonl")
    try:
        if a.huatuogpt:
            sft, failed, stats = convert_huatuogpt(a.huatuogpt, load_bench(a.bench, a.data_dir), limits, a.system,
                                                   judge, judge_path)
            title = f"HuatuoGPT-o1 trajectories from {a.huatuogpt}"
        else:
            bad = Counter()
            records = list(read_jsonl(a.records, skip_bad=a.skip_bad, stats=bad))
            if a.template:
                sft, failed, stats = run_template(records, limits, a.system)
                title = f"templated KG trajectories for {a.records}"
            else:
                check_config(a.out, a)
                teacher = a.model_name or a.model
                sft, failed, stats = run_teacher(client_from_args(a), records, a.out, a.k, a.rounds, a.temperature,
                                                 a.max_tokens, limits, teacher, a.system, judge, a.select)
                title = f"teacher {teacher} on {a.records}"
            if bad:
                stats["bad_lines"] = bad["bad_lines"]
    except LLMError as e:  # a runtime failure, not a usage error: exit 1; finished replies are kept
        fail(f"{e}; finished replies are saved in {a.out}: rerun the same command to resume", "data.distill")
    write_jsonl(os.path.join(a.out, "sft.jsonl"), sft)
    write_jsonl(os.path.join(a.out, "failed.jsonl"), failed)
    write_text(os.path.join(a.out, "stats.json"), json.dumps(stats, indent=1))
    write_text(os.path.join(a.out, "stats.md"), stats_markdown(stats, title))
    print(f"{len(sft)} SFT records in {os.path.join(a.out, 'sft.jsonl')}, {len(failed)} dropped; "
          f"stats -> {os.path.join(a.out, 'stats.md')}")


if __name__ == "__main__":
    main()
