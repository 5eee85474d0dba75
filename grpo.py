"""GRPO, the paper's two-stage RL with verifiable rewards (Fleming-R1, section 3.3).

Where things are (search for the name):
    reward()          r_i = w_correct * [extracted answer == gold] + w_format * [format_ok]   (eq. 3)
    advantages()      A_i = r_i - mean_j r_j over the k samples of a prompt                   (eq. 2)
    grpo_loss()       L = -(1/k) sum_i A_i log pi(y_i|x), and the optional variants          (eq. 1)
    zero_signal()     groups whose k rewards are all equal (the paper's "reward sparsity")
    token_logprobs()  fp32 log pi per completion token, the head run in chunks
    Plateau           stage 1's stop rule
    mine()            stage 2's adaptive hard-sample miner

One step: prompts -> Sampler.generate(n=k) -> reward -> advantage -> trainer logprobs -> loss ->
backward / optimizer step -> gathered weights copied into the sampler (Sampler.load_weights).
"""
import math

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from eval.answer import format_ok, score

AGGREGATIONS = ("sum", "seq_mean", "token_mean", "constant")


# ----------------------------------------------------------------------------------------- reward (eq. 3)

def reward(rec, text, finish_reason, w_correct=1.0, w_format=1.0):
    """(r, correct, well_formed) of one completion. Eq. 3: r = w_correct * correct + w_format * format,
    with the shared extractor (eval.answer.score) and format check (eval.answer.format_ok). Nothing else:
    the paper leaves length out on purpose. A truncated completion ("length") has no answer: r = 0
    (whether it also leaves the loss is the `truncated` flag of the loop, see completion_mask)."""
    if finish_reason == "length":
        return 0.0, False, False
    _, correct = score(rec, text)
    fmt = format_ok(text, rec["options"], multi=bool(rec["meta"].get("multi_answer")))
    return w_correct * correct + w_format * fmt, correct, fmt


# ------------------------------------------------------------------------------------ advantage (eq. 2)

def advantages(rewards, std_norm=False, eps=1e-6):
    """rewards [groups, k] -> A [groups, k]. Eq. 2: A_i = r_i - (1/k) sum_j r_j.
    std_norm (DeepSeekMath's GRPO, off by default): A_i / (std_j r_j + eps), std with Bessel's correction;
    an all-equal group then gives 0 / eps = 0. A group of one sample has no baseline: A = 0."""
    r = rewards.float()
    if r.shape[1] < 2:
        return torch.zeros_like(r)
    adv = r - r.mean(1, keepdim=True)
    if std_norm:
        adv = adv / (r.std(1, keepdim=True) + eps)
    return adv


def zero_signal(rewards):
    """[groups] bool: the k rewards of the group are all equal, so every advantage is 0 and the group
    carries no policy gradient. Their share is the paper's reward-sparsity signal for the stage switch."""
    return (rewards == rewards[:, :1]).all(1)


# ------------------------------------------------------------------------------------ token logprobs

def _head_logprobs(h, targets, weight, temperature):
    """fp32 log-softmax of one chunk of logits, gathered at the targets, and the entropy (no grad)."""
    z = F.linear(h, weight).float() / temperature  # [chunk, vocab]: the only logits alive at a time
    lse = z.logsumexp(-1)
    lp = z.gather(-1, targets[:, None])[:, 0] - lse
    with torch.no_grad():
        ent = lse - (z.softmax(-1) * z).sum(-1)
    return lp, ent


def token_logprobs(model, ids, targets, mask, temperature=1.0, chunk=1024):
    """log pi(targets[b, t] | ids[b, :t+1]) in fp32 and the entropy of that distribution, both [B, T],
    zero where mask is 0. The model returns hidden states; the head (lm_head) runs only at masked
    positions, `chunk` rows at a time under activation checkpointing, so neither forward nor backward
    holds more than [chunk, vocab] fp32 logits (never an fp32 [B, T, vocab]: 4.6 GB for a 152k
    vocabulary at 8k tokens). temperature is the sampler's (0, greedy, means 1: untempered)."""
    h = model(ids, return_hidden=True)
    where = mask.bool()
    hs, ts = h[where], targets[where]
    weight = model.lm_head.weight
    temperature = temperature or 1.0
    lps, ents = [], []
    for s in range(0, len(hs), chunk):
        lp, ent = checkpoint(_head_logprobs, hs[s:s + chunk], ts[s:s + chunk], weight, temperature,
                             use_reentrant=False)
        lps.append(lp)
        ents.append(ent)
    lp_out = torch.zeros(mask.shape, dtype=torch.float32, device=h.device)
    ent_out = torch.zeros(mask.shape, dtype=torch.float32, device=h.device)
    if lps:
        lp_out = lp_out.masked_scatter(where, torch.cat(lps))
        ent_out = ent_out.masked_scatter(where, torch.cat(ents))
    return lp_out, ent_out


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

def completion_batch(prompts, completions, truncated="zero", pad_id=0):
    """Rows prompt + completion, right-padded with pad_id. Returns ids, targets (ids shifted left: the
    logits at t predict token t+1), mask (1 where the target is a completion token) and the sampler's
    logprobs at the same places, all [B, T]. The mask comes from each completion's length, never from
    pad == eos: the stop token is part of token_ids and carries loss (pad_id may equal it).
    truncated="zero": a completion cut at max_new_tokens keeps its full loss (its reward is 0);
    "mask": it is left out of the loss (its row of the mask is 0)."""
    if truncated not in ("zero", "mask"):
        raise ValueError(f"truncated={truncated!r}: use 'zero' (reward 0, full loss) or 'mask'")
    T = max(len(p) + len(c.token_ids) for p, c in zip(prompts, completions))
    B = len(prompts)
    ids = torch.full((B, T), pad_id, dtype=torch.long)
    mask = torch.zeros(B, T)
    old = torch.zeros(B, T)
    for b, (p, c) in enumerate(zip(prompts, completions)):
        n = len(c.token_ids)
        ids[b, :len(p) + n] = torch.tensor(list(p) + list(c.token_ids))
        if truncated == "mask" and c.finish_reason == "length":
            continue
        mask[b, len(p) - 1:len(p) - 1 + n] = 1
        old[b, len(p) - 1:len(p) - 1 + n] = torch.tensor(c.logprobs, dtype=torch.float32)
    targets = torch.cat([ids[:, 1:], torch.full((B, 1), pad_id, dtype=torch.long)], 1)
    return ids, targets, mask, old
