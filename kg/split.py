"""Leak-free train / held-out split of KG questions.

    python -m kg.split --records out/kg_questions.jsonl --out out/split --held 0.2 --seed 0

The unit of the split is the answer: all questions of one template whose masked node is the same entity
(for the diagnosis template, the same disease) land on the same side, so no held-out question's answer
entity is a training answer in the same template (check_leak). The entity may still appear in training
in another role (a hidden hop of another template's path, a distractor): answering a held-out question
then takes what was learnt about that entity elsewhere, the multi-hop transfer the KG questions are for.

Groups are taken into held-out in a fixed pseudo-random order, a function of (seed, template, answer)
only, until the held-out share is reached; a group larger than `max_group` of all questions (an answer
such as "Autosomal recessive" shared by a tenth of a template) stays in training rather than swamp the
held-out set. Writes train.jsonl and held.jsonl (records unchanged but for "split").
"""
import hashlib
import os
from collections import defaultdict

from eval.records import ArgumentParser, RecordError, check_outputs, command, float_in, read_jsonl, write_jsonl


def split_key(rec):
    """(template, answer entity id): the unit that must not straddle the split."""
    meta = rec.get("meta") or {}
    if "template" not in meta or "answer_id" not in meta:
        raise RecordError(f"record {rec.get('id')!r}: meta has no template / answer_id (not a kg.sample question)")
    return meta["template"], meta["answer_id"]


def _order(seed, key):
    return hashlib.sha1(f"{seed}:{key[0]}:{key[1]}".encode()).hexdigest()


def split_records(recs, held=0.2, seed=0, max_group=0.02):
    """(train, held_out) lists of records (split set to "train" / "test")."""
    if not 0 < held < 1:
        raise ValueError(f"held={held}: a share strictly between 0 and 1")
    groups = defaultdict(list)
    for r in recs:
        groups[split_key(r)].append(r)
    want, out = held * len(recs), set()
    n = 0
    for key in sorted(groups, key=lambda k: _order(seed, k)):
        if n >= want:
            break
        if len(groups[key]) <= max(1, max_group * len(recs)):
            out.add(key)
            n += len(groups[key])
    train = [{**r, "split": "train"} for r in recs if split_key(r) not in out]
    test = [{**r, "split": "test"} for r in recs if split_key(r) in out]
    return train, test


def check_leak(train, held):
    """The held-out questions whose (template, answer) is also a training answer: [] when leak-free."""
    seen = {split_key(r) for r in train}
    return [r["id"] for r in held if split_key(r) in seen]


@command("kg.split")
def main(argv=None):
    ap = ArgumentParser(prog="python -m kg.split", description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", required=True, help="kg.sample questions (JSONL)")
    ap.add_argument("--out", required=True, help="folder for train.jsonl and held.jsonl")
    ap.add_argument("--held", type=float_in(0, 1, open_low=True, open_high=True), default=0.2,
                    help="share of questions held out")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-group", type=float_in(0, 1), default=0.02,
                    help="largest answer group that may be held out (share)")
    a = ap.parse_args(argv)
    check_outputs(folders=[a.out])
    recs = list(read_jsonl(a.records))
    try:
        train, held = split_records(recs, a.held, a.seed, a.max_group)
    except (RecordError, TypeError) as e:  # valid records, but not kg.sample questions (meta fields)
        raise RecordError(f"{a.records}: {e}") from None
    assert not check_leak(train, held)
    os.makedirs(a.out, exist_ok=True)
    write_jsonl(os.path.join(a.out, "train.jsonl"), train)
    write_jsonl(os.path.join(a.out, "held.jsonl"), held)
    print(f"{len(train)} training and {len(held)} held-out questions in {a.out}")


if __name__ == "__main__":
    main()
