"""The demo's world: a slice of the KG small enough for a tiny model to know, its facts as text, and questions
that compose those facts over 1-3 hops, split so that every held-out question is a new composition of known facts.

    python -m kg.world --graph runs/demo/kg --out runs/demo/world --diseases 100 --seed 0

The paper's base model knows medicine from pretraining; its training teaches it to compose what it knows. A
1M-parameter model knows nothing, so the demo gives it a world: `n` diseases of the graph that have a drug with
a class and a target, each with three findings, its drug and (where the graph has one) a gene. Every fact is
written in several phrasings (facts.jsonl: the knowledge phase that stands in for pretraining) and asked as a
one-hop question (the knowledge phase's questions, answered directly). Questions chain the facts:

    findings -dx-> disease -drug-> drug -class-> class          (and -target-> target, -gene-> gene, ...)

TEMPLATES lists every chain: an anchor (what the stem names) and the hops to the answer. The split's unit is the
composition (template, anchor): every one-hop question is in training (the knowledge phase asks it anyway); a
share of the 2- and 3-hop compositions is held out whole, so a held-out question asks facts the model saw in a
chain it was never asked (check_split proves it). Hard = 3 hops.
"""
import hashlib
import json
import os
import random
import re
from collections import Counter

from eval.records import ArgumentParser, UsageError, check_outputs, command, make_record, write_jsonl
from kg.readers import SourceError

# template -> (anchor kind, hops). hops name the functional relations of the world (RELATION); "finding" asks
# for one of the disease's findings that the stem does not state.
TEMPLATES = {
    "dx": ("findings", ["dx"]),
    "drug": ("disease", ["drug"]),
    "gene": ("disease", ["gene"]),
    "finding": ("disease", ["finding"]),
    "class": ("drug", ["class"]),
    "target": ("drug", ["target"]),
    "indication": ("drug", ["indication"]),
    "dx_drug": ("findings", ["dx", "drug"]),
    "dx_gene": ("findings", ["dx", "gene"]),
    "drug_class": ("disease", ["drug", "class"]),
    "drug_target": ("disease", ["drug", "target"]),
    "indication_gene": ("drug", ["indication", "gene"]),
    "indication_finding": ("drug", ["indication", "finding"]),
    "dx_drug_class": ("findings", ["dx", "drug", "class"]),
    "dx_drug_target": ("findings", ["dx", "drug", "target"]),
    "gene_drug_class": ("gene", ["carrier", "drug", "class"]),
}
ASK = {"dx": "which disease", "drug": "which drug treats", "gene": "which gene", "finding": "which finding",
       "class": "which class", "target": "which target", "indication": "which disease", "carrier": "which disease"}
# the CoT sentence of each hop: the same words as one phrasing of its fact (facts()), so reasoning is recall
STEP = {"dx": "{f} point to {o}.", "drug": "{s} is treated with {o}.", "gene": "{s} is caused by variants in {o}.",
        "finding": "{s} presents with {o}.", "class": "{s} is a {o}.", "target": "{s} acts on {o}.",
        "indication": "{s} is used for {o}.", "carrier": "Variants in {s} cause {o}."}
QUESTION = {
    "dx": "{stem} Which disease is most likely?",
    "drug": "Which drug is used to treat {a}?",
    "gene": "Variants in which gene cause {a}?",
    "finding": "Which finding is expected in {a}?",
    "class": "To which class does {a} belong?",
    "target": "On which target does {a} act?",
    "indication": "Which disease is {a} used for?",
    "dx_drug": "{stem} Which drug is used to treat the most likely disease?",
    "dx_gene": "{stem} Variants in which gene cause the most likely disease?",
    "drug_class": "To which class does the drug used to treat {a} belong?",
    "drug_target": "On which target does the drug used to treat {a} act?",
    "indication_gene": "{a} is used for a disease. Variants in which gene cause that disease?",
    "indication_finding": "{a} is used for a disease. Which finding is expected in that disease?",
    "dx_drug_class": "{stem} To which class does the drug used to treat the most likely disease belong?",
    "dx_drug_target": "{stem} On which target does the drug used to treat the most likely disease act?",
    "gene_drug_class": "Variants in {a} cause a disease. To which class does the drug used to treat it belong?",
}
GENERIC_CLASS = re.compile(r"agents?$|drugs?$|compounds?$|nutraceutical|cytochrome p450|p-glycoprotein|"
                           r"transport|hormones|antineoplastic", re.I)


def difficulty(hops):
    return "easy" if hops <= 1 else "moderate" if hops == 2 else "difficult"


# --------------------------------------------------------------------------------------------- the world

def build_world(g, n, seed=0, n_findings=3):
    """{"diseases": {name: {"findings", "drug", "gene"}}, "drugs": {name: {"class", "target"}}, "kg": ...}: n
    diseases of graph g, each with a drug of its own (a class and a target gene), n_findings findings that no
    other world disease has all of, and a gene of its own where the graph names one. `kg` keeps, per entity,
    everything the graph says (all classes, targets, phenotypes, genes, indications), so distractors are wrong
    by the whole graph, not only by the world's slice of it."""
    rng = random.Random(seed)
    cands = g.of_type("disease").tolist()
    rng.shuffle(cands)
    pheno_n = Counter(int(f) for d in cands for f in g.out(d, "has_phenotype").tolist())
    names = lambda xs: sorted({g.names[int(x)] for x in xs})
    world, drugs, used_genes, kg = {}, {}, set(), {}
    for d in cands:
        if n and len(world) >= n:
            break
        dname = g.names[d]
        drug = _pick_drug(g, d, drugs)
        feats = sorted(g.out(d, "has_phenotype").tolist(), key=lambda f: (pheno_n[f], g.names[f]))
        feats = [f for f in feats if pheno_n[f] >= 2 and len(g.names[f]) <= 40 and "," not in g.names[f]
                 and not set(g.names[f].lower().split()) & set(dname.lower().split())]
        if drug is None or len(feats) < n_findings or len(dname) > 40 or "," in dname or dname in world:
            continue
        drug_node, cls, target = drug
        genes = [x for x in sorted(g.out(d, "associated_gene").tolist(), key=lambda x: g.names[x])
                 if g.names[x] not in used_genes and not g.names[x].startswith("NCBIGene")]
        world[dname] = {"id": g.ids[d], "findings": [g.names[f] for f in feats[:n_findings]],
                        "drug": g.names[drug_node], "gene": g.names[genes[0]] if genes else None}
        if genes:
            used_genes.add(g.names[genes[0]])
        drugs[g.names[drug_node]] = {"id": g.ids[drug_node], "class": cls, "target": target}
        kg[dname] = {"findings": names(g.out(d, "has_phenotype")), "drugs": names(g.inn(d, "indicated_for")),
                     "genes": names(g.out(d, "associated_gene"))}
        kg[g.names[drug_node]] = {"classes": names(g.out(drug_node, "in_class")),
                                  "targets": names(g.out(drug_node, "targets")),
                                  "indications": names(g.out(drug_node, "indicated_for"))}
    _drop_ambiguous(world)
    return {"diseases": world, "drugs": {k: v for k, v in drugs.items()
                                         if any(w["drug"] == k for w in world.values())}, "kg": kg}


def _pick_drug(g, d, taken):
    """(drug node, class, target) for disease d: a drug indicated for it that no world disease has yet, with a
    specific class (not "Antineoplastic Agents") and a target gene symbol, or None."""
    for x in sorted(g.inn(d, "indicated_for").tolist(), key=lambda x: g.names[x]):
        if g.names[x] in taken or len(g.names[x]) > 30 or "," in g.names[x]:
            continue
        classes = sorted((c for c in g.out(x, "in_class").tolist() if not GENERIC_CLASS.search(g.names[c])
                          and len(g.names[c]) <= 40 and "," not in g.names[c]), key=lambda c: (len(g.inn(c, "in_class")), g.names[c]))
        targets = sorted(g.names[t] for t in g.out(x, "targets").tolist() if re.fullmatch(r"[A-Z0-9]{2,8}", g.names[t]))
        if classes and targets:
            return x, g.names[classes[0]], targets[0]
    return None


def _drop_ambiguous(world):
    """Remove diseases whose finding set another world disease also holds in full (the vignette would not tell
    them apart)."""
    for d in list(world):
        fs = set(world[d]["findings"])
        if any(o != d and fs <= set(w["findings"]) for o, w in world.items()):
            del world[d]


def relation(world, s, rel):
    """The object of one hop from subject s (a disease, drug or gene name)."""
    dis, drugs = world["diseases"], world["drugs"]
    if rel in ("dx", "indication", "carrier"):
        key = {"dx": lambda w: w["findings"] == list(s), "indication": lambda w: w["drug"] == s,
               "carrier": lambda w: w["gene"] == s}[rel]
        return next(d for d, w in dis.items() if key(w))
    if rel in ("drug", "gene"):
        return dis[s][rel]
    return drugs[s][rel]


def entity_names(world):
    """Every name the world's facts mention (diseases, drugs, genes, findings, classes, targets)."""
    names = {n for d, w in world["diseases"].items() for n in [d, w["drug"], w["gene"], *w["findings"]] if n}
    return sorted(names | {x[k] for x in world["drugs"].values() for k in ("class", "target")})


# --------------------------------------------------------------------------------------------- facts

def facts(world):
    """Every fact of the world in several phrasings: [{"id", "text"}] (the knowledge phase's documents). One
    phrasing of each is the CoT sentence of its hop (STEP), so a chain of thought is a chain of recalled facts."""
    out = []
    for d, w in world["diseases"].items():
        f = _join(w["findings"])
        out += [f"{d} presents with {f}.", f"{f} point to {d}.", f"A patient with {f} most likely has {d}.",
                f"The findings of {d} are {f}."]
        out += [f"{d} presents with {x}." for x in w["findings"]]
        out += [f"{d} is treated with {w['drug']}.", f"{w['drug']} is used for {d}.",
                f"The drug for {d} is {w['drug']}."]
        if w["gene"]:
            out += [f"{d} is caused by variants in {w['gene']}.", f"Variants in {w['gene']} cause {d}.",
                    f"The gene of {d} is {w['gene']}."]
    for x, v in world["drugs"].items():
        out += [f"{x} is a {v['class']}.", f"The class of {x} is {v['class']}.",
                f"{x} acts on {v['target']}.", f"The target of {x} is {v['target']}."]
    return [{"id": f"fact{i}", "text": t} for i, t in enumerate(out)]


def _join(items):
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


# --------------------------------------------------------------------------------------------- questions

def anchors(world, kind):
    dis = world["diseases"]
    if kind in ("findings", "disease"):
        return list(dis)
    if kind == "drug":
        return [w["drug"] for w in dis.values()]
    return [w["gene"] for w in dis.values() if w["gene"]]


def chain(world, template, anchor):
    """The path of entity names from the anchor to the answer (a findings anchor is given as its disease, and
    its node is the tuple of findings); None where the world lacks a hop (no gene)."""
    kind, hops = TEMPLATES[template]
    node = tuple(world["diseases"][anchor]["findings"]) if kind == "findings" else anchor
    path = [node]
    for rel in hops:
        if rel == "finding":  # the one finding the question asks: the last one; the stem states none
            node = world["diseases"][node]["findings"][-1]
        else:
            node = relation(world, node, rel)
            if node is None:
                return None
        path.append(node)
    return path


def cot(world, template, path):
    """The chain of thought: one STEP sentence per hop."""
    _, hops = TEMPLATES[template]
    out = []
    for rel, s, o in zip(hops, path, path[1:]):
        out.append(STEP[rel].format(s=s, o=o, f=_join(list(s)) if rel == "dx" else ""))
    return " ".join(out)


def distractors(world, template, path, rng, k):
    """k wrong options of the answer's kind: wrong by everything the graph says (kg), not only by the world."""
    _, hops = TEMPLATES[template]
    rel, subj, answer = hops[-1], path[-2], path[-1]
    dis, drugs, kg = world["diseases"], world["drugs"], world["kg"]
    if rel in ("dx", "indication", "carrier"):
        pool = list(dis)
        if rel == "dx":
            bad = {d for d in pool if set(subj) <= set(kg[d]["findings"])}
        elif rel == "indication":
            bad = set(kg[subj]["indications"])
        else:
            bad = {d for d in pool if subj in kg[d]["genes"]}
    elif rel == "drug":
        pool, bad = list(drugs), set(kg[subj]["drugs"])
    elif rel == "gene":
        pool, bad = [w["gene"] for w in dis.values() if w["gene"]], set(kg[subj]["genes"])
    elif rel == "finding":
        pool, bad = sorted({f for w in dis.values() for f in w["findings"]}), set(kg[subj]["findings"])
    else:
        pool = sorted({v[rel] for v in drugs.values()})
        bad = set(kg[subj]["classes" if rel == "class" else "targets"])
    pool = sorted(set(pool) - bad - {answer})
    return rng.sample(pool, k) if len(pool) >= k else None


def questions(world, seed=0, n_options=5):
    """Every (template, anchor) composition the world holds, as one record with shuffled options."""
    recs = []
    for t, (kind, hops) in TEMPLATES.items():
        for a in anchors(world, kind):
            path = chain(world, t, a)
            if path is None:
                continue
            rng = random.Random(f"{seed}:{t}:{a}")
            wrong = distractors(world, t, path, rng, n_options - 1)
            if wrong is None:
                continue
            opts = wrong + [path[-1]]
            rng.shuffle(opts)
            stem = f"A patient presents with {_join(list(path[0]))}." if kind == "findings" else ""
            q = QUESTION[t].format(stem=stem, a=a)
            key = f"{t}:{_node_key(path[0])}"
            letter = chr(ord("A") + opts.index(path[-1]))
            recs.append(make_record(
                hashlib.sha1(f"{seed}:{key}".encode()).hexdigest()[:12], "kg_world", "train", q, opts, letter,
                difficulty(len(hops)),
                {"template": t, "hops": len(hops), "path": [_node_key(p) for p in path], "composition": key,
                 "cot": cot(world, t, path), "answer_text": path[-1]}))
    return recs


def _node_key(node):
    return " + ".join(node) if isinstance(node, tuple) else node


# --------------------------------------------------------------------------------------------- split

def split(recs, held=0.6, seed=0):
    """(train, held_out): a `held` share of the multi-hop compositions, picked by a hash of (seed, composition),
    is held out; one-hop questions always train (the knowledge phase asks every one of them)."""
    order = lambda r: hashlib.sha1(f"{seed}:{r['meta']['composition']}".encode()).hexdigest()
    multi = sorted((r for r in recs if r["meta"]["hops"] > 1), key=order)
    out = {r["meta"]["composition"] for r in multi[:round(held * len(multi))]}
    train = [{**r, "split": "train"} for r in recs if r["meta"]["composition"] not in out]
    test = [{**r, "split": "test"} for r in recs if r["meta"]["composition"] in out]
    return train, test


def check_split(train, held, fact_texts):
    """The split rule, as reasons (empty when it holds): no held-out composition (template + path) is asked in
    training, and every hop of every held-out chain is a fact the knowledge phase states in the CoT's words."""
    problems = []
    seen = {r["meta"]["composition"] for r in train}
    text = set(fact_texts)
    for r in held:
        if r["meta"]["composition"] in seen:
            problems.append(f"{r['id']}: composition {r['meta']['composition']} is also a training question")
        for sent in re.findall(r"[^.]+\.", r["meta"]["cot"]):
            if sent.strip() not in text:
                problems.append(f"{r['id']}: the step {sent.strip()!r} is no stated fact")
    return problems


# --------------------------------------------------------------------------------------------- files

def write(world, out, seed=0, held=0.6, n_options=5):
    """world.json, facts.jsonl, train.jsonl, held.jsonl in `out`; returns (facts, train, held)."""
    os.makedirs(out, exist_ok=True)
    fs = facts(world)
    train, test = split(questions(world, seed, n_options), held, seed)
    bad = check_split(train, test, [f["text"] for f in fs])
    if bad:
        raise AssertionError("kg.world split rule broken: " + "; ".join(bad[:5]))
    with open(os.path.join(out, "world.json"), "w") as f:
        json.dump(world, f, indent=1)
    write_jsonl(os.path.join(out, "facts.jsonl"), fs)
    write_jsonl(os.path.join(out, "train.jsonl"), train)
    write_jsonl(os.path.join(out, "held.jsonl"), test)
    return fs, train, test


@command("kg.world", usage=(SourceError,))
def main(argv=None):
    from kg.build import Graph

    ap = ArgumentParser(prog="python -m kg.world", description=__doc__.split("\n\n")[0])
    ap.add_argument("--graph", required=True, help="a kg.build folder")
    ap.add_argument("--out", required=True, help="folder for world.json, facts.jsonl, train.jsonl, held.jsonl")
    ap.add_argument("--diseases", type=int, default=100, help="diseases in the world (0: every one that qualifies)")
    ap.add_argument("--held", type=float, default=0.6, help="share of the 2-3 hop compositions held out")
    ap.add_argument("--options", type=int, default=5, help="options per question (>= 2)")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    check_outputs(folders=[a.out])
    if a.diseases == 1 or a.diseases < 0 or a.options < 2 or not 0 < a.held < 1:
        ap.error("--diseases must be 0 (all) or >= 2, --options >= 2, --held strictly between 0 and 1")
    if not os.path.exists(os.path.join(a.graph, "meta.json")):
        raise UsageError(f"--graph {a.graph}: no kg.build graph there (meta.json missing)")
    world = build_world(Graph.load(a.graph), a.diseases, a.seed)
    fs, train, test = write(world, a.out, a.seed, a.held, a.options)
    hops = Counter(r["meta"]["hops"] for r in test)
    print(f"{len(world['diseases'])} diseases, {len(fs)} fact sentences, {len(train)} training and {len(test)} "
          f"held-out questions (held-out by hops: {dict(sorted(hops.items()))}) in {a.out}")


if __name__ == "__main__":
    main()
