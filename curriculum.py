"""The paper's two-stage RL curriculum (Fleming-R1, section 3.3): which prompts each GRPO stage trains on, and when
it is done. grpo.py's loop is the same for every stage; it asks the stage object:

    CURRICULUM[n]             the stage --stage=n runs: 1 EasyModerate, 2 HardMining (a stage 3 is one more entry)
    .configure(cfg)           its defaults for the options left at 0;  .start_from(cfg): its default --model
    .start(score)             before the first step (score(recs, tag, path) -> {key: pass rate}: grpo.pass_rates)
    .prompts(step, score)     the step's record indices (over all ranks), re-mining first when due
    .candidates()             where drop_zero_signal draws replacement prompts from
    .after_step(step, row)    the reason to stop after this step (stage 1's plateau: THE STAGE SWITCH), or None
    .state_dict() / .load_state_dict()   what a checkpoint keeps to resume the stage exactly

Stage 2 starts from <out_dir>/stage1/hf and labels records that have no difficulty by stage 1's labels.jsonl.
"""
import dataclasses
import os
import random
from functools import lru_cache

from eval.records import RecordError, read_jsonl


def key(rec):
    """A record's identity in pass rates, labels and mining: ids are unique only within a source."""
    return rec["source"], rec["id"]


def read_rates(path):
    """{key: pass rate} from a pass_rates() file (stage 1's labels.jsonl, a mining round)."""
    return {key(row): row["pass_rate"] for row in read_jsonl(path, validate=False)}


def difficulty_from_pass_rate(p):
    """The policy's own difficulty label for a record without one: pass rate over k samples."""
    return "easy" if p >= 0.75 else "moderate" if p >= 0.25 else "difficult"


class Stage:
    """What every stage shares: its number, its defaults for the options left at 0, no stop rule."""
    n = 0
    defaults = {}
    scratch = ()  # prefixes of the files it writes in its folder: a fresh start of the stage removes them

    def __init__(self, cfg, recs, stage_dir, log):
        self.cfg, self.recs, self.dir, self.log = cfg, recs, stage_dir, log

    @classmethod
    def configure(cls, cfg):
        return dataclasses.replace(cfg, **{k: getattr(cfg, k) or v for k, v in cls.defaults.items()})

    def after_step(self, step, row):
        return None


# ------------------------------------------------------------------------------- stage 1: Easy + Moderate

class EasyModerate(Stage):
    """Stage 1: Easy and Moderate items blended (easy_share from Easy) until the reward plateaus. Records without a
    difficulty are labelled first by the starting policy's pass rate over k samples (labels.jsonl)."""
    n = 1
    defaults = dict(batch_size=32, k=8, max_steps=1000)
    scratch = ("labels.jsonl",)

    @staticmethod
    def start_from(cfg):
        return "out/sft/hf", "stage 1 starts from sft.py's output: run sft.py first, or pass --model"

    def __init__(self, cfg, recs, stage_dir, log):
        super().__init__(cfg, recs, stage_dir, log)
        self.drawn = 0  # prompts drawn so far: the position in both endless streams
        self.plateau = Plateau(cfg.plateau_window, cfg.plateau_delta, cfg.plateau_zero_frac)

    def start(self, score):
        cfg, recs = self.cfg, self.recs
        labels = {key(r): r["difficulty"] for r in recs}
        todo = [r for r in recs if r["difficulty"] is None]
        if todo:
            self.log(f"stage 1: {len(todo)} of {len(recs)} records have no difficulty label: labelling them by the "
                     f"policy's pass rate over k={cfg.k} samples (easy >= 0.75 > moderate >= 0.25 > difficult)")
            rates = score(todo, "labels", os.path.join(self.dir, "labels.jsonl"))
            labels.update((i, difficulty_from_pass_rate(p)) for i, p in rates.items())
        self.pools = {lab: [i for i, r in enumerate(recs) if labels[key(r)] == lab] for lab in ("easy", "moderate")}
        if not self.candidates():
            raise RecordError(f"{cfg.data}: no Easy or Moderate record for stage 1")
        self.split = blend(self.pools, cfg.easy_share, cfg.batch_size)  # prompts per step from each pool
        self.log(f"stage 1: {len(self.pools['easy'])} Easy + {len(self.pools['moderate'])} Moderate records of "
                 f"{len(recs)}, drawn {self.split[0]}:{self.split[1]} per step")

    def prompts(self, step, score):
        (n_easy, n_mod), at = self.split, self.drawn // self.cfg.batch_size
        self.drawn += self.cfg.batch_size
        return draw(self.pools["easy"], at * n_easy, n_easy, self.cfg.seed) + \
            draw(self.pools["moderate"], at * n_mod, n_mod, self.cfg.seed + 1)

    def candidates(self):
        return self.pools["easy"] + self.pools["moderate"]

    def after_step(self, step, row):
        """THE STAGE SWITCH: stage 1 ends when Plateau says so (then stage 2 starts from its hf/)."""
        reason = self.plateau.update(row["reward"], row["zero_signal_frac"])
        if reason:
            self.log(f"stage 1 ends at step {step}: {reason}")
        return reason

    def state_dict(self):
        return {"drawn": self.drawn, "plateau": self.plateau.state_dict()}

    def load_state_dict(self, state):
        self.drawn = state["drawn"]
        self.plateau.load_state_dict(state["plateau"])


class Plateau:
    """Stage 1's stop rule, on moving means over `window` steps: the mean reward gained less than `delta` over the
    window before, or the mean zero-signal fraction reached `zero_frac`."""

    def __init__(self, window, delta, zero_frac):
        self.window, self.delta, self.zero_frac = window, delta, zero_frac
        self.rewards, self.zero = [], []

    def update(self, reward, zero_frac):
        self.rewards.append(reward)
        self.zero.append(zero_frac)
        w = self.window
        if len(self.zero) >= w and sum(self.zero[-w:]) / w >= self.zero_frac:
            return f"zero-signal fraction {sum(self.zero[-w:]) / w:.2f} >= {self.zero_frac} over {w} steps"
        if len(self.rewards) >= 2 * w:
            before, now = sum(self.rewards[-2 * w:-w]) / w, sum(self.rewards[-w:]) / w
            if now - before < self.delta:
                return f"reward plateau: moving mean {before:.3f} -> {now:.3f} (< +{self.delta})"
        return None

    def state_dict(self):
        return {"rewards": list(self.rewards), "zero": list(self.zero)}

    def load_state_dict(self, state):
        self.rewards, self.zero = list(state["rewards"]), list(state["zero"])


def blend(pools, easy_share, n):
    """(Easy, Moderate) prompts per step; all from one pool when the other is empty."""
    if not pools["moderate"]:
        return n, 0
    if not pools["easy"]:
        return 0, n
    n_easy = round(easy_share * n)
    return n_easy, n - n_easy


def draw(pool, start, n, seed):
    """Items start..start+n of an endless stream over `pool`, reshuffled each epoch by (seed, epoch): a function of
    the position only, so resuming needs just the position."""
    out = []
    for i in range(start, start + n):
        epoch, j = divmod(i, len(pool))
        out.append(pool[_permutation(len(pool), seed, epoch)[j]])
    return out


@lru_cache(maxsize=4)
def _permutation(n, seed, epoch):
    return random.Random(f"{seed}:{epoch}").sample(range(n), n)


# ------------------------------------------------------------------------------ stage 2: mined hard samples

class HardMining(Stage):
    """Stage 2: every remine_every steps the current policy scores the pool (or mine_max of it) with k samples; the
    items it keeps failing are the training set, Difficult ones weighted up (mine()). Runs to max_steps."""
    n = 2
    defaults = dict(batch_size=16, k=16, max_steps=500)
    scratch = ("mine_",)

    @staticmethod
    def start_from(cfg):
        return (os.path.join(cfg.out_dir, "stage1", "hf"),
                "stage 2 starts from stage 1's final checkpoint: run stage 1 first, or pass --model")

    def __init__(self, cfg, recs, stage_dir, log):
        super().__init__(cfg, recs, stage_dir, log)
        self.mined, self.mined_at, self.round = [], -1, 0  # [(record index, weight)], the step and round of mining

    def start(self, score):
        self.labels, where = stage2_labels(self.cfg, self.recs)
        self.log(where)

    def prompts(self, step, score):
        if self.mined_at < 0 or step - self.mined_at >= self.cfg.remine_every:
            self.remine(step, score)
        rng = random.Random(f"{self.cfg.seed}:step:{step}")
        return rng.choices(self.candidates(), [w for _, w in self.mined], k=self.cfg.batch_size)

    def remine(self, step, score):
        """THE MINER's round: pass rates of the current policy, then mine()."""
        cfg, recs, r = self.cfg, self.recs, self.round
        cand = recs if not cfg.mine_max or cfg.mine_max >= len(recs) else \
            random.Random(f"{cfg.seed}:mine:{r}").sample(recs, cfg.mine_max)
        rates = score(cand, f"mining round {r}", os.path.join(self.dir, f"mine_{r:04d}.jsonl"))
        mined = mine(recs, rates, cfg.mine_pass_below, cfg.difficult_weight, self.labels)
        if not mined:
            self.log(f"mining round {r}: the policy passes every item (rate >= {cfg.mine_pass_below}): training on "
                     f"the pool")
            mined = [(i, 1.0) for i in range(len(recs))]
        else:
            hard = sum(self.labels[key(recs[i])] == "difficult" for i, _ in mined)
            self.log(f"mining round {r} at step {step}: {len(mined)} of {len(cand)} items have a pass rate below "
                     f"{cfg.mine_pass_below} ({hard} Difficult, weight {cfg.difficult_weight})")
        self.mined, self.mined_at, self.round = [[i, w] for i, w in mined], step, r + 1

    def candidates(self):
        return [i for i, _ in self.mined]

    def state_dict(self):
        return {"mined": self.mined, "mined_at": self.mined_at, "mine_round": self.round}

    def load_state_dict(self, state):
        self.mined, self.mined_at, self.round = state["mined"], state["mined_at"], state["mine_round"]


def mine(recs, rates, pass_below, difficult_weight, labels=None):
    """Stage 2's training set: [(record index, weight)] of the items with a pass rate below pass_below, Difficult
    ones weighted difficult_weight. labels: {key: difficulty}; None = each record's own."""
    labels = labels if labels is not None else {key(r): r["difficulty"] for r in recs}
    return [(i, difficult_weight if labels.get(key(r)) == "difficult" else 1.0)
            for i, r in enumerate(recs) if key(r) in rates and rates[key(r)] < pass_below]


def stage2_labels(cfg, recs):
    """({key: difficulty}, where they came from): the data file's, else stage 1's pass-rate labels."""
    labels = {key(r): r["difficulty"] for r in recs}
    missing = [i for i, d in labels.items() if d is None]
    if not missing:
        return labels, "stage 2: Difficult items from the data file's labels"
    path = os.path.join(cfg.out_dir, "stage1", "labels.jsonl")
    if not os.path.exists(path):
        return labels, (f"stage 2: {len(missing)} of {len(recs)} records have no difficulty label and stage 1 wrote "
                        f"none ({path} missing): none of them is weighted as Difficult")
    rates = read_rates(path)
    got = [i for i in missing if i in rates]
    labels.update((i, difficulty_from_pass_rate(rates[i])) for i in got)
    return labels, (f"stage 2: difficulty from the data file for {len(recs) - len(missing)} records, from stage 1's "
                    f"pass rates ({path}) for {len(got)}, none for {len(missing) - len(got)}")


CURRICULUM = {1: EasyModerate, 2: HardMining}
