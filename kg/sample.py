"""Sample multi-hop questions from the graph: typed path templates weighted toward rare entities,
one node masked as the answer, relation-preserving distractors, kept only if kg/check.py's Checker passes them.

    python -m kg.sample --graph out/kg --n 10000 --out out/kg_questions.jsonl --seed 0
    python -m kg.sample --graph out/kg --check out/kg_questions.jsonl      # re-check a file against the graph
    python -m kg.sample --audit out/kg_questions.jsonl    # shortcut solvers and option-pair counts

Every question is a small conjunctive query over the graph: facts such as (?d has_phenotype Seizure),
(?drug indicated_for ?d), with one variable asked. Distractors come from competing entities (diseases that
share stated findings, and what they lead to) and from the answers of other questions; the Checker keeps a
question only if the answer fits every fact and each distractor is clearly wrong (see kg/check.py). A
rare-disease vignette opens with a hallmark: a finding most of the disease's patients have (HPO frequency)
that few other diseases share. kg/REVIEW.md is the manual review.
"""
import argparse
import hashlib
import math
import os
import random
import sys
from collections import Counter, defaultdict

import numpy as np
from tqdm import tqdm

from eval.records import (ArgumentParser, UsageError, append_jsonl, check_outputs, command, drop_torn_tail,
                          float_in, int_at_least, make_record, read_jsonl)
from kg.build import Graph
from kg.check import Checker, audit, check_file, print_audit
from kg.distractors import Distractors
from kg.pools import FocusPools
from kg.readers import SourceError
from kg.templates import DiseaseTemplates, DrugChainTemplates, DrugTemplates
from kg.vignette import Vignettes
from kg import verbalize


class QuestionSampler(FocusPools, Vignettes, DiseaseTemplates, DrugTemplates, DrugChainTemplates, Distractors):
    """Draws questions from a graph: the pools (kg/pools.py), the vignette (kg/vignette.py), the templates
    (kg/templates.py) and the distractors (kg/distractors.py)."""
    TEMPLATES = {"diagnosis": DiseaseTemplates.t_diagnosis, "diagnosis_gene": DiseaseTemplates.t_diagnosis_gene,
                 "diagnosis_inheritance": DiseaseTemplates.t_diagnosis_inheritance,
                 "diagnosis_treatment": DiseaseTemplates.t_diagnosis_treatment,
                 "diagnosis_cause": DiseaseTemplates.t_diagnosis_cause,
                 "treatment_class": DiseaseTemplates.t_treatment_class,
                 "diagnosis_test": DiseaseTemplates.t_diagnosis_test,
                 "diagnosis_drug_target": DiseaseTemplates.t_diagnosis_drug_target,
                 "drug_mechanism": DrugTemplates.t_drug_mechanism,
                 "drug_for_disease_target": DrugTemplates.t_drug_for_disease_target,
                 "side_effect": DrugTemplates.t_side_effect,
                 "drug_finding": DrugChainTemplates.t_drug_finding, "shared_target": DrugChainTemplates.t_shared_target}


# ---------------------------------------------------------------- generation

def parse_mix(s, available):
    mix = {}
    for part in s.split(","):
        name, _, w = part.partition("=")
        name = name.strip()
        if name not in available:
            raise UsageError(f"--mix: unknown template {name!r}; choose from {sorted(available)}")
        try:
            mix[name] = float_in(0, math.inf)(w) if w else 1.0
        except argparse.ArgumentTypeError as e:
            raise UsageError(f"--mix: {name}={w}: {e}") from None
    return mix


def parse_hops(text):
    """An argparse type: comma-separated hop counts, e.g. 2,3."""
    return {int_at_least(1)(h) for h in text.split(",")}


# diagnosis_gene, diagnosis_inheritance and diagnosis_cause are left out by default: in kg/REVIEW.md 14 of 35, 1 of 8
# and 0 of 3 were acceptable (the gene or mode of a syndrome few can identify; an organism behind fever, cough and
# headache). Ask for them with --mix.
# diagnosis_test is out too: 9 of 25 acceptable in two reviews (kg/REVIEW.md, issue 22), against 70-90% for the others.
# The two-hop drug chains (drug_finding, shared_target) carry most of the multi-hop share: the disease chains rest on
# the few diseases with a trusted drug and a vignette (issue 22).
DEFAULT_MIX = ("diagnosis=1.4,diagnosis_treatment=1.5,treatment_class=2,diagnosis_drug_target=2,"
               "drug_mechanism=0.5,drug_for_disease_target=0.5,side_effect=0.5,drug_finding=0.8,shared_target=2.2")


def letter_slot(seed, i, n_opt):
    """Answer position for question i: a fresh permutation of the n_opt slots in each block of n_opt
    questions, so letters are exactly balanced on every full block (and resumable by index)."""
    block = random.Random(f"{seed}-block-{i // n_opt}").sample(range(n_opt), n_opt)
    return block[i % n_opt]


def generate_one(s, i, seed, mix, n_opt, hops=None, tries=30, salt=0):
    """Question i: deterministic in (seed, i, salt); returns (Question, options) or None."""
    names = [t for t in mix if hops is None or TEMPLATE_HOPS[t] in hops]
    ws = [mix[t] for t in names]
    # the template is drawn once and kept for most attempts: redrawing it on each failure let the templates that
    # fail often (the 3-hop chains) fall far below their weight (4% of questions for 29% of the weight)
    fixed = random.Random(f"{seed}-{i}-{salt}-template").choices(names, ws)[0]
    for attempt in range(tries):
        rng = random.Random(f"{seed}-{i}-{salt}-{attempt}")
        t = rng.choices(names, ws)[0]
        t = fixed if attempt < tries - 10 else t
        nodes, w = s.pool(t)
        if not len(nodes):
            continue
        focus = int(nodes[np.searchsorted(np.cumsum(w), rng.random() * w.sum())]) if len(nodes) > 1 else int(nodes[0])
        q = QuestionSampler.TEMPLATES[t](s, focus, rng)
        if q is None:
            continue
        ds = s.distractors(q, n_opt - 1, rng)
        if ds is None:
            continue
        if verbalize.lint(verbalize.stem(s.g, q)):
            continue  # a stem that reads wrong is redrawn
        slot = letter_slot(seed, i, n_opt)
        rng.shuffle(ds)
        options = ds[:slot] + [q.answer] + ds[slot:]
        if s.ck.check(q, options) is None:
            return q, options
    return None


TEMPLATE_HOPS = {"diagnosis": 1, "diagnosis_gene": 2, "diagnosis_inheritance": 2, "diagnosis_treatment": 2,
                 "diagnosis_cause": 2, "diagnosis_test": 2, "treatment_class": 3, "diagnosis_drug_target": 3, "drug_mechanism": 1, "drug_for_disease_target": 1,
                 "side_effect": 1, "drug_finding": 2, "shared_target": 2}


def _ref(g, x):
    return x if isinstance(x, str) else g.ids[x]


def _system_names(g, systems):
    return sorted(g.names[x].replace("Abnormality of the ", "").replace("Abnormality of ", "") for x in systems)


def to_record(g, q, options, i, seed, split="train", ck=None):
    """The shared record; meta keeps the walked path, the stated facts and each edge's provenance."""
    ck = ck or _checker(g)
    letters = [chr(ord("A") + k) for k in range(len(options))]
    question = verbalize.stem(g, q)
    evidence = []
    for s, r, o in q.path:
        e = g.find_edge(s, r, o)
        evidence.append({"subject": g.ids[s], "subject_name": g.names[s], "relation": r, "object": g.ids[o],
                         "object_name": g.names[o], "sources": g.provenance(e) if e is not None else [],
                         "frequency": None if e is None or np.isnan(g.freq[e]) else round(float(g.freq[e]), 3)})
    key = hashlib.sha1(repr((q.template, sorted(tuple(map(str, f)) for f in q.facts), q.answer)).encode()).hexdigest()[:12]
    meta = {"template": q.template, "hops": q.hops, "masked": q.ask,
            "facts": [[_ref(g, s), r, _ref(g, o)] for s, r, o in q.facts],
            "var_types": {k: list(v) for k, v in q.var_types.items()},
            "path": evidence, "answer_id": g.ids[q.answer], "focus_id": g.ids[q.focus],
            "focus_rare": bool(g.rare[q.focus]), "focus_degree": int(g.degree[q.focus]),
            "option_ids": {l: g.ids[o] for l, o in zip(letters, options)}, "content_key": key,
            # organ systems (HPO categories) of the stem and of each option: the audit's category shortcut
            "systems": {"stem": _system_names(g, ck.stem_systems(q)),
                        "options": {l: _system_names(g, ck.systems(o)) for l, o in zip(letters, options)}},
            "graph_sources": g.info.get("sources", [])}
    return make_record(f"kg-{seed}-{i:06d}", "kg", split, question, [verbalize.option_text(g, o) for o in options],
                       letters[options.index(q.answer)], None, meta)


@command("kg.sample", usage=(SourceError,))
def main(argv=None):
    ap = ArgumentParser(prog="python -m kg.sample",
                        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--graph", help="folder written by python -m kg.build (not needed for --audit)")
    ap.add_argument("--out", help="output JSONL (appended to; ids already there are skipped, so a rerun resumes)")
    ap.add_argument("--n", type=int_at_least(1), default=1000, help="number of questions (an index that yields none is skipped)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--options", type=int_at_least(2), default=5, help="options per question (answer + distractors)")
    ap.add_argument("--mix", default=DEFAULT_MIX, help=f"template=weight list (default {DEFAULT_MIX})")
    ap.add_argument("--hops", type=parse_hops, default=None, help="keep only templates with these hop counts, e.g. 2,3")
    ap.add_argument("--alpha", type=float_in(-math.inf, math.inf), default=1.0,
                    help="rarity weight: focus drawn with prob ~ (degree+1)^-alpha")
    ap.add_argument("--rare-boost", type=float_in(0, math.inf, open_low=True), default=8.0,
                    help="extra weight for rare diseases (DO rare slim, Orphanet); --alpha 0 --rare-boost 1 draws "
                         "uniformly")
    ap.add_argument("--split", default="train")
    ap.add_argument("--stats", default=None, help="Markdown stats report (default: OUT with .stats.md)")
    ap.add_argument("--check", default=None, help="instead of generating, re-check this JSONL against the graph")
    ap.add_argument("--audit", default=None, help="instead of generating, run the shortcut solvers on this JSONL")
    args = ap.parse_args(argv)
    if args.audit:
        print_audit(audit(list(read_jsonl(args.audit)), args.seed))
        return
    if not args.graph:
        ap.error("--graph is required unless --audit is given")
    g = Graph.load(args.graph)
    if args.check:
        n, bad = check_file(g, args.check)
        print(f"{n} questions checked, {sum(bad.values())} fail" + "".join(f"\n  {k}: {v}" for k, v in bad.items()))
        sys.exit(1 if bad else 0)
    if not args.out:
        ap.error("--out is required when generating")
    stats = args.stats or os.path.splitext(args.out)[0] + ".stats.md"
    check_outputs(files=[args.out, stats])
    mix = parse_mix(args.mix, QuestionSampler.TEMPLATES)
    s = QuestionSampler(g, alpha=args.alpha, rare_boost=args.rare_boost)
    if "sider" not in g.info.get("sources", []):
        mix.pop("side_effect", None)  # no side-effect edges without the (opt-in) SIDER source
    hops = args.hops
    have_before = list(read_jsonl(args.out, torn_tail=True)) if os.path.exists(args.out) else []  # checked first:
    seen = {content_key(r, args.out) for r in have_before}  # a wrong --out is refused before it is touched
    done = {r["id"] for r in have_before}
    if drop_torn_tail(args.out):
        print(f"{args.out}: dropped a half-written last line (a killed run); resuming")
    failed, batch, have = 0, [], len(done)
    bar = tqdm(total=args.n, initial=min(have, args.n), desc="questions")
    for i in range(2 * args.n):  # index i gives question i or nothing; go on until n questions exist
        if have >= args.n:
            break
        rid = f"kg-{args.seed}-{i:06d}"
        if rid in done:
            continue
        rec = None
        for extra in range(5):  # a content duplicate of an earlier question is redrawn
            got = generate_one(s, i, args.seed, mix, args.options, hops, salt=extra)
            if got is None:
                break
            r = to_record(g, *got, i, args.seed, args.split, s.ck)
            if r["meta"]["content_key"] not in seen:
                rec = r
                break
        if rec is None:
            failed += 1
            continue
        seen.add(rec["meta"]["content_key"])
        have += 1
        bar.update()
        batch.append(rec)
        if len(batch) >= 100:  # a kill loses at most this batch; a rerun regenerates it identically
            append_jsonl(args.out, batch)
            batch = []
    append_jsonl(args.out, batch)
    bar.close()
    recs = list(read_jsonl(args.out))
    with open(stats + ".tmp", "w") as f:  # replaced whole: a kill leaves the old report or the new one
        f.write(stats_markdown(g, s, recs, mix))
    os.replace(stats + ".tmp", stats)
    print(f"{len(recs)} questions in {args.out} ({failed} indices gave no question); stats -> {stats}")
    if have < args.n:
        print(f"warning: only {have} of {args.n} questions could be drawn with this mix", file=sys.stderr)


_CHECKERS = {}


def _checker(g):
    """One Checker per graph for to_record's categories (its caches make the second call cheap)."""
    if id(g) not in _CHECKERS:
        _CHECKERS.clear()
        _CHECKERS[id(g)] = Checker(g)
    return _CHECKERS[id(g)]


def content_key(rec, path):
    """The content key of a question already in --out; a record without one means --out is another file."""
    key = rec["meta"].get("content_key")
    if not isinstance(key, str):
        raise UsageError(f"{path}: record {rec['id']!r} has no meta.content_key: not a kg.sample output "
                         "(give --out a new file, or the one this command wrote)")
    return key


def stats_markdown(g, s, recs, mix):
    """Questions by template and hops, rare share vs uniform sampling of the same pools, letter balance."""
    by_t = Counter(r["meta"]["template"] for r in recs)
    by_h = Counter(r["meta"]["hops"] for r in recs)
    letters = Counter(r["answer"] for r in recs)
    lines = [f"# KG questions: {len(recs):,}", "", "| template | hops | questions | rare-flagged focus | uniform | "
             "low-degree focus | uniform |", "|---|---:|---:|---:|---:|---:|---:|"]
    tot = defaultdict(float)
    for t in mix:
        nodes, _ = s.pool(t)
        rs = [r for r in recs if r["meta"]["template"] == t]
        if not len(nodes) or not rs:
            continue
        deg = g.degree[nodes]
        q1 = np.quantile(deg, 0.25)
        uni_rare, uni_low = float(g.rare[nodes].mean()), float((deg <= q1).mean())
        got_rare = np.mean([r["meta"]["focus_rare"] for r in rs])
        got_low = np.mean([r["meta"]["focus_degree"] <= q1 for r in rs])
        for k, v in (("rare", got_rare), ("urare", uni_rare), ("low", got_low), ("ulow", uni_low)):
            tot[k] += v * len(rs)
        lines.append(f"| {t} | {TEMPLATE_HOPS[t]} | {len(rs):,} | {got_rare:.1%} | {uni_rare:.1%} | {got_low:.1%} | {uni_low:.1%} |")
    n = max(len(recs), 1)
    lines.append(f"| all | | {len(recs):,} | {tot['rare'] / n:.1%} | {tot['urare'] / n:.1%} | {tot['low'] / n:.1%} | "
                 f"{tot['ulow'] / n:.1%} |")
    lines += ["", "Rare-flagged: a disease in DO's rare slim, or (without a DOID) an Orphanet disease. Low-degree: "
              "focus degree at or below the 25th percentile of its template's pool. 'uniform' is the same share "
              "when the focus is drawn uniformly from the pool.", "",
              "Questions by hops: " + ", ".join(f"{h} hops {c:,}" for h, c in sorted(by_h.items())), "",
              "| answer letter | count | share |", "|---|---:|---:|"]
    for l in sorted(letters):
        lines.append(f"| {l} | {letters[l]:,} | {letters[l] / n:.1%} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
