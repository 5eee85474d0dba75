"""GRPO, the paper's RL with verifiable rewards (Fleming-R1, section 3.3): one stage of its curriculum per run.

Where things are (search for the name):
    reward()          r_i = w_correct * [extracted answer == gold] + w_format * [format_ok]   (the rule reward)
    advantages()      A_i = r_i - b, b = (1/k) sum_j r_j over the k samples of a prompt       (eq. 2, eq. 3)
    grpo_loss()       L = -(1/k) sum_i A_i log pi(y_i|x), and the optional variants          (eq. 1)
    zero_signal()     groups whose k rewards are all equal (the paper's "reward sparsity")
    token_logprobs()  fp32 log pi per completion token, the head run in chunks
    completion_batch() the update's packed row: each prompt once, its k completions attending to it
    _train()          the loop, the same for every stage
    curriculum.py     the stages: which prompts, k, the starting model, stage 1's plateau (the stage switch),
                      stage 2's hard-sample miner, their checkpointed state

One step: the stage's prompts -> Sampler.generate(n=k) -> reward -> advantage -> trainer logprobs -> loss ->
backward / optimizer step -> gathered weights copied into the sampler (Sampler.load_weights: the weight sync)
-> metrics -> the stage says whether to go on -> checkpoint.
"""
import dataclasses
import os
import random
import sys
import time
from dataclasses import dataclass
from functools import partial

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint
from tqdm import tqdm

from curriculum import CURRICULUM, key, read_rates
from eval.answer import build_prompt, format_ok, score
from eval.records import RecordError, append_jsonl, read_jsonl, shuffle_options
from model import CheckpointError, ModelConfig, Tokenizer, Transformer
from offload import empty_weights, kv_budget, move_optimizer, sleep, wake
from sample import Sampler, SamplingParams, logprob_temperature
from training import (ConfigError, Metrics, TrainConfig, adamw, all_reduce_sum, check_min, check_paths,
                      check_resume, check_train_config, clip_grad_norm, file_digest, full_state_dict, latest_checkpoint,
                      load_checkpoint, load_sharded, lr_at, parse_config, save_checkpoint, set_lr, setup_dist,
                      teardown_dist, use_bf16)

AGGREGATIONS = ("sum", "seq_mean", "token_mean", "constant")
LAYOUT = 2  # the checkpoint's state layout: 2 = the curriculum's state apart from the loop's (older ones are refused)

# ---------------------------------------------------------------------------------------------- reward

def reward(rec, text, finish_reason, w_correct=1.0, w_format=1.0):
    """(r, correct, well_formed): r = w_correct * correct + w_format * format_ok, with eval.answer's extractor and
    format check, and nothing else (the paper leaves length out). A truncated completion has no answer: r = 0."""
    if finish_reason == "length":
        return 0.0, False, False
    _, correct = score(rec, text)
    fmt = format_ok(text, rec["options"], multi=bool(rec["meta"].get("multi_answer")))
    return w_correct * correct + w_format * fmt, correct, fmt


# ------------------------------------------------------------------------------ advantage (eq. 2, eq. 3)

def advantages(rewards, std_norm=False, eps=1e-6):
    """rewards [groups, k] -> A [groups, k]. Eq. 2: A_i = r_i - b, eq. 3's baseline b = (1/k) sum_j r_j.
    std_norm (DeepSeekMath, off): A_i / (std_j r_j + eps), Bessel-corrected. A group of one sample: A = 0."""
    r = rewards.float()
    if r.shape[1] < 2:
        return torch.zeros_like(r)
    adv = r - r.mean(1, keepdim=True)
    if std_norm:
        adv = adv / (r.std(1, keepdim=True) + eps)
    return adv


def zero_signal(rewards):
    """[groups] bool: all k rewards equal, so no policy gradient (the paper's reward sparsity: the stage switch)."""
    return (rewards == rewards[:, :1]).all(1)


# ------------------------------------------------------------------------------------ token logprobs

def _head_logprobs(h, targets, weight, temperature):
    """fp32 logprobs of one chunk at its targets, and the entropy (no grad); weight = the sampler's vocab rows."""
    z = F.linear(h, weight).float()  # [chunk, vocab]: the only logits alive at a time
    if temperature != 1.0:
        z = z / temperature
    lse = z.logsumexp(-1)
    lp = z.gather(-1, targets[:, None])[:, 0] - lse
    with torch.no_grad():
        ent = lse - (z.softmax(-1) * z).sum(-1)
    return lp, ent


def token_logprobs(model, batch, temperature=1.0, chunk=1024, vocab=None):
    """fp32 log pi(y_bt | prompt_b, y_b<t) and its entropy, both [B, L] (completions x tokens), 0 off batch.mask.
    The head runs at batch.src only, `chunk` rows at a time under checkpointing: at most [chunk, vocab] fp32 logits
    live, never [tokens, vocab] (4.6 GB at 152k x 8k). vocab: the sampler's rows (151,665 of Qwen2.5's 152,064)."""
    h = model(batch.ids, position_ids=batch.position_ids, segment_ids=batch.segment_ids,
              prefix_ids=batch.prefix_ids, return_hidden=True)[0]  # [T, hidden]: the packed row
    where = batch.mask.bool()
    hs, ts = h[batch.src[where]], batch.targets[where]
    weight = model.lm_head.weight[:vocab]
    temperature = logprob_temperature(temperature)
    chunks = [checkpoint(_head_logprobs, hs[s:s + chunk], ts[s:s + chunk], weight, temperature, use_reentrant=False)
              for s in range(0, len(hs), chunk)]
    zeros = torch.zeros(where.shape, dtype=torch.float32, device=h.device)
    if not chunks:  # nothing to score (every completion masked, e.g. all cut under --truncated=mask): a zero that
        # still reaches every parameter, so backward runs and each FSDP rank joins the same gradient collectives
        return zeros + 0.0 * (h.sum() + weight.sum()), zeros
    lps, ents = zip(*chunks)
    return zeros.masked_scatter(where, torch.cat(lps)), zeros.masked_scatter(where, torch.cat(ents))


# ---------------------------------------------------------------------------------------- loss (eq. 1)

def grpo_loss(logp, mask, adv, n_seqs, n_tokens=None, agg="sum", max_len=None, old_logp=None, clip_eps=0.2,
              ref_logp=None, kl_beta=0.0):
    """The policy loss of one micro-batch; summed over micro-batches and ranks it is the loss of the step.

    logp, mask: [B, T] trainer logprobs of the completion tokens and the loss mask; adv: [B].
    n_seqs / n_tokens: completions / mask tokens of the whole optimizer step on ALL ranks (global counts,
    so the gradient does not depend on the data-parallel layout or the micro-batch split).

    Per token, with A_i the advantage of completion i:
        default (eq. 1)  l_it = -A_i log pi(y_it)              (REINFORCE with the group-mean baseline)
        old_logp given   l_it = -min(rho A_i, clip(rho, 1 - clip_eps, 1 + clip_eps) A_i),
                         rho = exp(clamp(log pi - log pi_old, -20, 20))      (PPO-style, several updates)
        kl_beta > 0      l_it += kl_beta * min(exp(d) - d - 1, 10), d = clamp(log pi_ref - log pi, -20, 20)
                         (k3 estimator of KL(pi || pi_ref), clamped)
    Aggregation over completions i (N = n_seqs) and their tokens t (|y_i| = mask tokens of row i):
        "sum"        (1/N) sum_i sum_t l_it         eq. 1: a sequence log-likelihood times A, averaged over
                                                    the k samples of a group and over groups (the default)
        "seq_mean"   (1/N) sum_i (1/|y_i|) sum_t l_it    GRPO as in DeepSeekMath; favours short correct and
                                                    long wrong answers (length bias)
        "token_mean" (1/sum_i |y_i|) sum_i sum_t l_it    every token weighs the same (DAPO, verl's default)
        "constant"   (1/(N max_len)) sum_i sum_t l_it    Dr. GRPO: a constant instead of the length
    """
    a = adv[:, None]
    if old_logp is None:
        per_tok = -a * logp
    else:
        ratio = torch.exp((logp - old_logp).clamp(-20, 20))
        per_tok = -torch.minimum(ratio * a, ratio.clamp(1 - clip_eps, 1 + clip_eps) * a)
    if kl_beta:
        d = (ref_logp - logp).clamp(-20, 20)
        per_tok = per_tok + kl_beta * (d.exp() - d - 1).clamp(max=10)
    per_tok = per_tok * mask
    if agg == "sum":
        return per_tok.sum() / n_seqs
    if agg == "seq_mean":
        return (per_tok.sum(1) / mask.sum(1).clamp(min=1)).sum() / n_seqs
    if agg == "token_mean":
        return per_tok.sum() / n_tokens
    if agg == "constant":
        return per_tok.sum() / (n_seqs * max_len)
    raise ValueError(f"agg={agg!r}: use one of {AGGREGATIONS}")


# ------------------------------------------------------------------------------------------ batches

@dataclass
class Batch:
    """One micro-batch packed in one row, each prompt once, its k completions attending to it (a tree mask): the
    forward costs P + sum_i |y_i| tokens, not sum_i (P + |y_i|). ids, position_ids, segment_ids, prefix_ids: [1, T];
    src, targets, mask, old: [B, L] per completion token: the row position predicting it, the token, 1 if it
    carries loss, the sampler's logprob."""
    ids: torch.Tensor
    position_ids: torch.Tensor
    segment_ids: torch.Tensor
    prefix_ids: torch.Tensor
    src: torch.Tensor
    targets: torch.Tensor
    mask: torch.Tensor
    old: torch.Tensor

    def to(self, device):
        return Batch(*(getattr(self, f.name).to(device) for f in dataclasses.fields(self)))


def completion_batch(prompts, completions, truncated="zero"):
    """The packed Batch of completions[i] after prompts[i] (a prompt equal to the one before is written once). The
    mask comes from each completion's length, never a token id: the stop token carries loss (Qwen's pad is its EOS).
    truncated: a completion cut at max_new_tokens keeps its full loss ("zero") or has none ("mask")."""
    if truncated not in ("zero", "mask"):
        raise ValueError(f"truncated={truncated!r}: use 'zero' (reward 0, full loss) or 'mask'")
    B, L = len(completions), max([len(c.token_ids) for c in completions], default=0)
    ids, pos, seg, pre = [], [], [], []
    src, targets = torch.zeros(B, L, dtype=torch.long), torch.zeros(B, L, dtype=torch.long)
    mask, old = torch.zeros(B, L), torch.zeros(B, L)
    last = None
    for b, (p, c) in enumerate(zip(prompts, completions)):
        if last is None or (p is not last and list(p) != list(last)):
            last, prompt_seg, prompt_end = p, (seg[-1] + 1 if seg else 1), len(ids) + len(p)
            ids += p
            pos += range(len(p))
            seg += [prompt_seg] * len(p)
            pre += [prompt_seg] * len(p)
        n, at = len(c.token_ids), len(ids)
        ids += c.token_ids
        pos += range(len(p), len(p) + n)
        seg += [seg[-1] + 1] * n
        pre += [prompt_seg] * n
        src[b, :n] = torch.tensor([prompt_end - 1] + list(range(at, at + n - 1)))[:n]
        targets[b, :n] = torch.tensor(list(c.token_ids), dtype=torch.long)
        if truncated == "mask" and c.finish_reason == "length":
            continue
        mask[b, :n] = 1
        old[b, :n] = torch.tensor(c.logprobs, dtype=torch.float32)
    row = lambda x: torch.tensor(x, dtype=torch.long)[None]
    return Batch(row(ids), row(pos), row(seg), row(pre), src, targets, mask, old)


# ------------------------------------------------------------------------------------------- config

@dataclass
class Config(TrainConfig):
    """grpo.py's options after training.TrainConfig's. model: the policy to start from, "" = the stage's."""
    renamed = {"prompts_per_step": "batch_size", "micro_batch": "micro_batch_size"}
    out_dir: str = "out/grpo"         # stage s writes <out_dir>/stage<s>/: ckpt/, metrics.jsonl, curves.png, hf/
    batch_size: int = 0               # prompts per optimizer step over all ranks; 0 = the stage's (curriculum.py)
    micro_batch_size: int = 4         # completions per forward/backward
    max_steps: int = 0                # per stage; 0 = the stage's (stage 1 usually stops earlier, at its plateau)
    lr: float = 1e-6                  # AdamW peak learning rate
    beta2: float = 0.99               # AdamW betas (0.9, 0.99)
    # stage and data
    stage: int = 1                    # 1: Easy + Moderate until the reward plateaus; 2: mined hard samples
    data: str = "work/data/rl.jsonl"  # the RL pool: records JSONL (data.prepare's rl.jsonl)
    # rollouts
    k: int = 0                        # rollouts per prompt; 0 = the stage's: 8 in stage 1, 16 in stage 2
    max_new_tokens: int = 2048        # rollout length cap; a completion cut there has no answer (see truncated)
    temperature: float = 1.0          # rollout temperature; the trainer divides its logits by it too (0: greedy, untempered)
    top_p: float = 1.0                # < 1: rollouts come from the truncated distribution, the loss uses the full one
    rollout_chunk: int = 0            # prompts per generate() call (0 = all of a rank's); draws depend on it
    kv_fraction: float = 0.8          # of the memory left after the trainer and the sampler's weights
    shuffle_options: bool = False     # each group sees its item's options in a fresh order (seed, step, id): no letter pays
    # reward and masks
    w_correct: float = 1.0            # reward for an extracted answer equal to the gold (eval.answer.score)
    w_format: float = 1.0             # reward for a well-formed completion (eval.answer.format_ok)
    truncated: str = "zero"           # a completion cut at max_new_tokens: "zero" = reward 0, full loss; "mask" = no loss
    drop_zero_signal: bool = False    # drop groups whose k rewards are all equal and refill the batch
    # loss (eq. 1, 2) and its variants, all off by default
    agg: str = "sum"                  # "sum" (eq. 1) | "seq_mean" | "token_mean" | "constant" (see grpo_loss)
    std_norm: bool = False            # divide advantages by the group's reward std (DeepSeekMath)
    clip_eps: float = 0.0             # > 0: PPO-style ratio clipping against the rollout policy
    ppo_epochs: int = 1               # updates per rollout batch (> 1 needs clip_eps > 0)
    old_logprobs: str = "sampler"     # pi_old for the ratio: "sampler" (its logprobs) or "recompute" (trainer forward)
    kl_beta: float = 0.0              # k3 KL to the frozen starting policy (the paper: none)
    # trainer
    logprob_chunk: int = 1024         # completion tokens per chunk of the fp32 head
    sleep: bool = False               # trainer state on host during rollouts, sampler weights freed during the update
                                      # (what fits Qwen3-32B on 8 x 80 GB: see README, "Memory at scale")
    # stage 1: difficulty labels, the Easy/Moderate blend and the plateau
    easy_share: float = 0.5           # share of each step's prompts drawn from Easy items (the rest Moderate): 1:1 blend
    plateau_window: int = 20          # steps in each moving mean
    plateau_delta: float = 0.01       # stop when the moving mean reward gains less than this over a window
    plateau_zero_frac: float = 0.8    # ... or the moving zero-signal fraction reaches this
    # stage 2: hard-sample mining
    remine_every: int = 50            # re-score the pool with the current model every R steps
    mine_pass_below: float = 0.5      # keep items whose pass rate over k samples is below this
    difficult_weight: float = 2.0     # sampling weight of Difficult items among the kept ones (others 1)
    mine_max: int = 0                 # score at most this many items per round (0 = the whole pool)


def check_config(cfg):
    if cfg.stage not in CURRICULUM:
        raise ConfigError(f"--stage={cfg.stage}: one of {', '.join(map(str, CURRICULUM))}")
    if cfg.agg not in AGGREGATIONS:
        raise ConfigError(f"--agg={cfg.agg}: one of {', '.join(AGGREGATIONS)}")
    if cfg.truncated not in ("zero", "mask"):
        raise ConfigError(f"--truncated={cfg.truncated}: 'zero' (reward 0, full loss) or 'mask' (no loss)")
    if cfg.old_logprobs not in ("sampler", "recompute"):
        raise ConfigError(f"--old_logprobs={cfg.old_logprobs}: 'sampler' or 'recompute'")
    if cfg.ppo_epochs > 1 and cfg.clip_eps <= 0:
        raise ConfigError(f"--ppo_epochs={cfg.ppo_epochs} reuses rollouts: it needs --clip_eps > 0")
    check_train_config(cfg)
    check_min(cfg, 1, "max_new_tokens", "logprob_chunk", "ppo_epochs", "plateau_window", "remine_every")
    check_min(cfg, 0, "batch_size", "k", "max_steps", "temperature", "kl_beta", "clip_eps", "mine_max",
              "rollout_chunk")  # 0: see --help
    if not 0 <= cfg.easy_share <= 1:
        raise ConfigError(f"--easy_share={cfg.easy_share}: a share between 0 and 1")


def resolve(cfg, world):
    """The stage's defaults filled in (curriculum.py); returns (cfg, stage dir)."""
    stage = CURRICULUM[cfg.stage]
    cfg = stage.configure(cfg)
    if cfg.batch_size % world:
        raise ConfigError(f"--batch_size={cfg.batch_size} must be a multiple of the {world} ranks")
    model, hint = stage.start_from(cfg)
    if not os.path.exists(os.path.join(cfg.model or model, "config.json")):
        raise ConfigError(f"--model: no checkpoint at {cfg.model or model}" + ("" if cfg.model else f" ({hint})"))
    if not os.path.exists(cfg.data):
        raise ConfigError(f"--data: {cfg.data} not found (records JSONL, e.g. data.prepare's rl.jsonl)")
    check_paths(model=cfg.model or model, out_dir=cfg.out_dir)  # before any model is built (--data: read_pool)
    return dataclasses.replace(cfg, model=cfg.model or model), os.path.join(cfg.out_dir, f"stage{cfg.stage}")

# ------------------------------------------------------------------------------------------ rollouts

@dataclass(eq=False)
class Group:
    """The k rollouts of one prompt."""
    rec: dict
    prompt: list
    completions: list
    texts: list
    rewards: list
    correct: list
    formatted: list


def rollout(sampler, tok, recs, cfg, step, first, stop_ids, reward_fn):
    """k completions per record, scored by reward_fn. Each generate() call is seeded by (seed, step, global index of
    its first prompt), so N ranks draw what one process draws; `step` may be any tag (mining, refills)."""
    if cfg.shuffle_options:
        recs = [shuffle_options(r, random.Random(f"{cfg.seed}:{step}:{r['id']}")) for r in recs]
    prompts = [tok.apply_chat_template(build_prompt(r)) for r in recs]
    chunk = cfg.rollout_chunk or len(recs) or 1
    groups = []
    for s in range(0, len(recs), chunk):
        seed = random.Random(f"{cfg.seed}:{step}:{first + s}").getrandbits(31)
        params = SamplingParams(n=cfg.k, max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature,
                                top_p=cfg.top_p, stop_token_ids=stop_ids, seed=seed)
        outs = sampler.generate(prompts[s:s + chunk], params)
        for rec, prompt, comps in zip(recs[s:s + chunk], prompts[s:s + chunk], outs):
            texts = [tok.decode(c.token_ids, skip_special_tokens=True) for c in comps]
            scored = [reward_fn(rec, t, c.finish_reason) for t, c in zip(texts, comps)]
            groups.append(Group(rec, prompt, comps, texts, *map(list, zip(*scored))))
    return groups


def pass_rates(sampler, tok, recs, cfg, env, tag, path, reward_fn):
    """{key: share of k samples answered correctly} by the current policy, the ranks splitting recs. With `path`
    the rates are appended there batch by batch and records already there skipped: a killed round resumes."""
    stops = tok.stop_ids(sampler.model.config.eos_token_id)
    done = read_rates(path) if path and os.path.exists(path) else {}
    todo = [r for r in recs if key(r) not in done]
    batch = 16 * env.world
    bar = tqdm(total=len(todo), desc=tag, disable=not env.main or not todo)
    for b in range(0, len(todo), batch):
        mine = todo[b + env.rank:b + batch:env.world]
        groups = rollout(sampler, tok, mine, cfg, tag, b + env.rank, stops, reward_fn) if mine else []
        rows = [{"source": g.rec["source"], "id": g.rec["id"], "pass_rate": sum(g.correct) / len(g.correct)}
                for g in groups]
        everything = [None] * env.world
        dist.all_gather_object(everything, rows)
        rows = [row for part in everything for row in part]
        if path and env.main:
            append_jsonl(path, rows)
        done.update((key(row), row["pass_rate"]) for row in rows)
        bar.update(len(rows))
    bar.close()
    sampler.free_cache()  # for the update; the next generate() allocates it again within kv_budget
    return done


def read_pool(path):
    """The RL pool's records; a (source, id) seen twice is an error naming both lines."""
    recs, seen = [], {}
    for lineno, rec in enumerate(read_jsonl(path), 1):
        if key(rec) in seen:
            raise RecordError(f"{path}:{lineno}: source {rec['source']!r} id {rec['id']!r} is already record "
                              f"{seen[key(rec)]}: (source, id) must be unique in the pool")
        seen[key(rec)] = lineno
        recs.append(rec)
    if not recs:
        raise RecordError(f"{path}: no records")
    return recs


# ------------------------------------------------------------------------------------------- update

def update(cfg, policy, opt, groups, env, ref=None, vocab=None):
    """One optimizer step (ppo_epochs with clipping) on this rank's groups: eq. 2, trainer logprobs, eq. 1 over the
    global counts, backward per micro-batch. Returns local sums for the metrics and the gradient norm."""
    dev = env.device
    prompts = [g.prompt for g in groups for _ in g.completions]
    comps = [c for g in groups for c in g.completions]
    adv = advantages(torch.tensor([g.rewards for g in groups]), cfg.std_norm).flatten().to(dev)
    mb = cfg.micro_batch_size
    starts = range(0, len(comps), mb)
    batches = [completion_batch(prompts[s:s + mb], comps[s:s + mb], cfg.truncated).to(dev) for s in starts]
    local_seqs = sum(int((b.mask.sum(1) > 0).sum()) for b in batches)
    local_tokens = sum(b.mask.sum().item() for b in batches)
    n_seqs = max(all_reduce_sum(local_seqs, dev), 1)  # global: same gradient on 1 or N ranks
    n_tokens = max(all_reduce_sum(local_tokens, dev), 1)

    def no_grad_logprobs(net):
        with torch.no_grad():
            return [token_logprobs(net, b, cfg.temperature, cfg.logprob_chunk, vocab)[0] for b in batches]

    old = None
    if cfg.clip_eps > 0:
        old = [b.old for b in batches] if cfg.old_logprobs == "sampler" else no_grad_logprobs(policy)
    ref_lp = no_grad_logprobs(ref) if cfg.kl_beta else None
    sums = {"loss": 0.0, "mismatch": 0.0, "entropy": 0.0, "tokens": local_tokens}
    for epoch in range(cfg.ppo_epochs):
        for j, (s, b) in enumerate(zip(starts, batches)):
            lp, ent = token_logprobs(policy, b, cfg.temperature, cfg.logprob_chunk, vocab)
            loss = grpo_loss(lp, b.mask, adv[s:s + mb], n_seqs=n_seqs, n_tokens=n_tokens, agg=cfg.agg,
                             max_len=cfg.max_new_tokens, old_logp=old[j] if old else None, clip_eps=cfg.clip_eps,
                             ref_logp=ref_lp[j] if ref_lp else None, kl_beta=cfg.kl_beta)
            (loss * env.world).backward()  # FSDP averages gradients over ranks; a globally normalized loss sums
            if epoch == 0:
                sums["loss"] += loss.item()
                sums["mismatch"] += ((lp.detach() - b.old).abs() * b.mask).sum().item()
                sums["entropy"] += (ent * b.mask).sum().item()
        grad_norm = clip_grad_norm(policy.parameters(), cfg.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
    return sums, grad_norm


# -------------------------------------------------------------------------------------------- loop

def train(cfg, reward_fn=None):
    """Run stage cfg.stage to max_steps or until the stage stops it; writes <out_dir>/stage<s>/."""
    check_config(cfg)
    env = setup_dist()
    try:
        cfg, stage_dir = resolve(cfg, env.world)
        reward_fn = reward_fn or partial(reward, w_correct=cfg.w_correct, w_format=cfg.w_format)
        _train(cfg, env, stage_dir, reward_fn)
    except BaseException:
        if dist.is_initialized():
            dist.destroy_process_group()
        raise
    teardown_dist()


def _train(cfg, env, stage_dir, reward_fn):
    """The loop, the same for every stage: prompts -> rollout -> update -> weight sync -> metrics -> stop? -> ckpt."""
    torch.manual_seed(cfg.seed)
    recs, p, dev = read_pool(cfg.data), build(cfg, env), env.device
    metrics = Metrics(os.path.join(stage_dir, "metrics.jsonl"), env.main)
    stage = CURRICULUM[cfg.stage](cfg, recs, stage_dir, partial(log, env))
    step, done = restore(cfg, env, stage_dir, p, stage, metrics)
    score = lambda rs, tag, path: pass_rates(p.sampler, p.tok, rs, cfg, env, tag, path, reward_fn)  # for the stage
    roll = partial(rollout, p.sampler, p.tok, cfg=cfg, stop_ids=p.tok.stop_ids(p.sampler.model.config.eos_token_id),
                   reward_fn=reward_fn)
    wake(cfg, p.sampler, p.policy, p.opt)
    stage.start(score)  # stage 1 labels unlabelled records by their pass rate: rollouts
    sleep(cfg, p.sampler, p.policy, p.opt, dev)
    per_rank = cfg.batch_size // env.world
    first = env.rank * per_rank
    bar = tqdm(total=cfg.max_steps, initial=step, desc=f"grpo stage {cfg.stage}", disable=not env.main)
    while step < cfg.max_steps and not done:
        ta = _now(dev)
        wake(cfg, p.sampler, p.policy, p.opt)  # --sleep: the weight sync is here, before the rollout
        sync_s = _now(dev) - ta
        chosen = stage.prompts(step, score)  # stage 2 re-mines here when due
        t0 = _now(dev)
        groups = rolled = roll([recs[i] for i in chosen[first:first + per_rank]], step=step, first=first)
        if cfg.drop_zero_signal:
            groups, rolled = refill(cfg, env, [recs[i] for i in stage.candidates()], groups, roll, step)
        p.sampler.free_cache()  # the KV cache, for the update
        sleep(cfg, p.sampler, p.policy, p.opt, dev)
        t1 = _now(dev)
        set_lr(p.opt, lr_at(step, cfg.lr, cfg.warmup_steps, cfg.max_steps, cfg.min_lr))
        sums, grad_norm = update(cfg, p.policy, p.opt, groups, env, p.ref, p.sampler.vocab_size)
        t2 = _now(dev)
        if not cfg.sleep:
            p.sampler.load_weights(p.policy)  # THE WEIGHT SYNC: gathered (full_tensor) shard by shard, in place
        t3 = _now(dev) + sync_s
        step += 1
        row = step_metrics(cfg, env, step, rolled, sums, grad_norm, p.opt, (t1 - t0, t3 - t2, t2 - t1))
        metrics.log(row)
        bar.update(1)
        bar.set_postfix(reward=f"{row['reward']:.3f}", zero=f"{row['zero_signal_frac']:.2f}")
        done = stage.after_step(step, row) or ""
        if step % cfg.ckpt_every == 0 or done or step == cfg.max_steps:
            save_checkpoint(stage_dir, step, p.policy, p.opt, {"layout": LAYOUT, "done": done, "curriculum":
                            stage.state_dict(), "settings": resume_settings(cfg)}, env, keep=cfg.keep_ckpts)
            metrics.plot(os.path.join(stage_dir, "curves.png"))
    bar.close()
    if env.main and cfg.grad_clip > 0:  # eq. 1 sums over tokens (agg=sum): the gradient grows with length
        rows = metrics.rows()
        clipped = sum(r.get("clipped", 0) for r in rows)
        log(env, f"gradient clipped to {cfg.grad_clip} on {clipped} of {len(rows)} steps (see grad_norm in "
                 f"metrics.jsonl; a clipped step moves lr * grad_clip / grad_norm less than eq. 1 asks)")
    export(p.policy, cfg, stage_dir, env, p.bf16)


@dataclass
class Parts:
    """The FSDP2 policy (fp32 master weights), its AdamW, the frozen KL reference (or None), the sampler's copy."""
    tok: Tokenizer
    policy: Transformer
    opt: torch.optim.Optimizer
    ref: Transformer | None
    sampler: Sampler
    bf16: bool


def build(cfg, env):
    dev, bf16 = env.device, use_bf16(cfg, env.device)
    tok, mcfg = Tokenizer.from_pretrained(cfg.model), ModelConfig.from_file(cfg.model)
    policy = load_sharded(cfg.model, dev, bf16)  # each rank reads only its shards
    policy.grad_checkpointing = cfg.grad_checkpointing
    policy.train()
    opt = adamw(policy, cfg, dev)
    if cfg.sleep and dev.type == "cuda":  # AdamW's moments live in host memory except during the step itself
        opt.register_step_pre_hook(lambda *_: move_optimizer(opt, dev))
        opt.register_step_post_hook(lambda *_: move_optimizer(opt, torch.device("cpu")))
    dtype = torch.bfloat16 if bf16 else torch.float32
    ref = load_sharded(cfg.model, dev, bf16).eval().requires_grad_(False) if cfg.kl_beta else None  # frozen
    # the sampler's full copy: read from the file, or with --sleep allocated only while it rolls out (wake)
    net = empty_weights(mcfg, dtype, dev) if cfg.sleep else Transformer.from_pretrained(cfg.model, dtype, dev)
    sampler = Sampler(net, tok, kv_tokens=kv_budget(cfg, policy, net, dev))  # sized after the trainer
    return Parts(tok, policy, opt, ref, sampler, bf16)


def restore(cfg, env, stage_dir, p, stage, metrics):
    """(step, done) of the newest checkpoint under --resume, everything loaded; (0, "") for a fresh start, which
    removes what an earlier run of the stage left."""
    last = latest_checkpoint(stage_dir)
    if cfg.resume and last:
        trainer = load_checkpoint(last, p.policy, p.opt, env, layout=LAYOUT)
        for diff in check_resume(last, trainer["settings"], resume_settings(cfg), cfg.resume_force):
            log(env, f"--resume_force: {diff}")
        stage.load_state_dict(trainer["curriculum"])
        metrics.truncate(trainer["step"])
        if not cfg.sleep:  # asleep, the sampler gathers the weights at its next wake
            p.sampler.load_weights(p.policy)
        log(env, f"resumed {last} at step {trainer['step']}")
        return trainer["step"], trainer["done"]
    if last:
        raise ConfigError(f"{stage_dir} holds checkpoints: pass --resume, or another --out_dir")
    if cfg.resume:  # killed before its first checkpoint: no step survives, only the labelling/mining done
        log(env, f"--resume: no checkpoint in {stage_dir}: starting at step 0 (keeping the pass rates written)")
        metrics.truncate(0)
    elif env.main:  # a fresh start: nothing of an earlier run is reused
        for name in os.listdir(stage_dir) if os.path.isdir(stage_dir) else []:
            if name == "metrics.jsonl" or name.startswith(type(stage).scratch):
                os.remove(os.path.join(stage_dir, name))
    return 0, ""


def resume_settings(cfg):
    """What a resumed stage must share with its checkpoint to continue the same curve (the data: its bytes)."""
    keys = ("stage", "batch_size", "k", "max_new_tokens", "temperature", "top_p", "seed", "shuffle_options",
            "w_correct", "w_format", "truncated", "drop_zero_signal", "agg", "std_norm", "clip_eps", "ppo_epochs",
            "kl_beta", "lr", "min_lr", "warmup_steps", "max_steps", "weight_decay", "beta1", "beta2", "easy_share",
            "remine_every", "mine_pass_below", "difficult_weight", "mine_max")
    return {**{k: getattr(cfg, k) for k in keys}, "data": file_digest(cfg.data)}


def refill(cfg, env, candidates, groups, roll, step, rounds=4):
    """drop_zero_signal: replace zero-signal groups by fresh prompts from candidates, up to `rounds` times; what is
    still missing is filled with dropped groups (every rank keeps as many rows). Returns (kept, every group rolled)."""
    want = len(groups)
    signal = lambda gs: [g for g in gs if not zero_signal(torch.tensor([g.rewards]))[0]]
    keep, rolled = signal(groups), list(groups)
    for r in range(rounds):
        if len(keep) >= want:
            break
        rng = random.Random(f"{cfg.seed}:refill:{step}:{env.rank}:{r}")
        extra = roll(rng.choices(candidates, k=want - len(keep)), step=f"{step}:refill{r}", first=env.rank * want)
        rolled += extra
        keep += signal(extra)
    keep += [g for g in rolled if all(g is not x for x in keep)][:max(0, want - len(keep))]
    return keep[:want], rolled


def step_metrics(cfg, env, step, groups, sums, grad_norm, opt, times):
    """One metrics row: local sums all-reduced over ranks, then divided."""
    comps = [(g, j) for g in groups for j in range(len(g.completions))]
    local = {"reward": sum(g.rewards[j] for g, j in comps), "correct": sum(g.correct[j] for g, j in comps),
             "formatted": sum(g.formatted[j] for g, j in comps), "n": len(comps),
             "length": sum(len(g.completions[j].token_ids) for g, j in comps),
             "truncated": sum(g.completions[j].finish_reason == "length" for g, j in comps),
             "zero": int(zero_signal(torch.tensor([g.rewards for g in groups])).sum()), "groups": len(groups),
             **{name: sums[name] for name in ("loss", "mismatch", "entropy", "tokens")}}
    summed = all_reduce_sum(torch.tensor(list(local.values()), dtype=torch.float64, device=env.device), env.device)
    t = dict(zip(local, summed.tolist()))
    n, tokens = t["n"], max(t["tokens"], 1)
    return {"step": step, "stage": cfg.stage, "k": cfg.k, "reward": t["reward"] / n, "accuracy": t["correct"] / n,
            "format_rate": t["formatted"] / n, "zero_signal_frac": t["zero"] / t["groups"],
            "response_len": t["length"] / n, "truncated_frac": t["truncated"] / n, "entropy": t["entropy"] / tokens,
            "logprob_mismatch": t["mismatch"] / tokens, "loss": t["loss"], "grad_norm": grad_norm,
            "clipped": int(0 < cfg.grad_clip < grad_norm), "lr": opt.param_groups[0]["lr"],
            "rollout_s": round(times[0], 4), "sync_s": round(times[1], 4), "update_s": round(times[2], 4)}


def export(policy, cfg, stage_dir, env, bf16):
    """The stage's policy in Hugging Face layout at <stage dir>/hf (stage 2 starts from stage 1's)."""
    sd = full_state_dict(policy, dtype=torch.bfloat16 if bf16 else torch.float32, rank0_only=True)  # a collective
    if env.main:
        policy.save_pretrained(os.path.join(stage_dir, "hf"), state_dict=sd, tokenizer_dir=cfg.model)
        log(env, f"stage {cfg.stage} policy written to {os.path.join(stage_dir, 'hf')}")
    dist.barrier()


def _now(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def log(env, msg):
    if env.main:
        tqdm.write(msg)


def main(argv=None, reward_fn=None):
    try:
        train(parse_config(Config, sys.argv[1:] if argv is None else argv, prog="grpo.py"), reward_fn)
    except (ConfigError, RecordError, CheckpointError) as e:  # bad input: one line, exit 2 (as sft.py)
        print(f"grpo.py: error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
