"""CoT cold-start SFT: fine-tune a Hugging Face checkpoint on chat records, with FSDP2.

    python sft.py config/sft_smollm2.py                                      # one process
    torchrun --nproc_per_node=8 sft.py config/sft_smollm2.py --lr=2e-5       # nccl on GPUs, gloo on CPU
    python sft.py --help                                                     # every option and its default

Input: JSONL, one record per line, {"id", "messages": [{"role": "system"}?, {"role": "user"},
{"role": "assistant", "content": "<think>...</think>\\n<answer>X</answer>"}]}: the loss is on the assistant's
tokens and its end-of-turn token only. Or {"id", "text"}, a plain document (no chat template, the loss on every token
after the first and on the end token): continued pretraining, as in demo.py's knowledge phase. Examples are packed
into rows of max_len tokens; segment ids keep attention inside each example and positions restart at 0.

Normalization: every optimizer step sees `batch_size` examples (over all ranks and micro-batches). Its loss
is sum(token cross-entropy) / N, where N is the number of loss tokens of the whole step, counted before the
step and all-reduced over ranks. Each micro-batch backpropagates sum(its token CE) * world / N; FSDP's
reduce-scatter averages over the world, the accumulation sums over micro-batches, so the gradient is that
of the step's token-mean loss however the batch is split into ranks, micro-batches and packed rows.

Outputs in out_dir: metrics.jsonl (loss, val_loss, lr, grad_norm, tokens_per_s), metrics.png, ckpt/ (see
training.py), hf/ (the final model in Hugging Face layout with the tokenizer files, loadable by transformers).
"""
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from functools import lru_cache

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

import model as M
import training as T


class DataError(ValueError):
    """A bad training file or record; the message names the file and line."""


@dataclass
class Config(T.TrainConfig):
    """sft.py's own options, after training.TrainConfig's shared ones."""
    renamed = {"init_from": "model", "ckpt_interval": "ckpt_every", "eval_interval": "eval_every"}
    out_dir: str = "out/sft"
    train_file: str = ""  # JSONL of chat records; several files: comma-separated
    val_file: str | None = None  # held-out JSONL; None: hold out val_size records of train_file
    val_size: int = 16  # records held out when val_file is None (0: no validation)
    max_len: int = 1024  # tokens per packed row; longer examples are dropped (and counted)
    chat_template: str | None = None  # a .jinja file overriding the checkpoint's chat template
    eval_every: int = 20  # steps between validation losses (and at the last step)
    export: bool = True  # write out_dir/hf at the end


# ------------------------------------------------------------------------------------------------ data

def tokenize_chat(tok, messages):
    """(ids, start) for one conversation ending with the assistant's turn: ids end with the end-of-turn token; the
    loss is on ids[start:]. The prompt (with the generation prompt) is rendered and encoded alone, as at inference,
    and must be a prefix of the full render; the assistant's part is encoded after it."""
    if not messages or messages[-1].get("role") != "assistant":
        raise ValueError("the last message must be the assistant's")
    prompt = tok.render_chat(messages[:-1], add_generation_prompt=True)
    full = tok.render_chat(messages, add_generation_prompt=False)
    if not full.startswith(prompt):
        raise ValueError("the chat template renders the prompt differently inside the full conversation")
    head, tail = tok.encode(prompt), tok.encode(full[len(prompt):])
    eot = tok.eot_id  # ChatML's <|im_end|>, also for a base checkpoint whose EOS is <|endoftext|>
    if tail.count(eot) != 1:
        raise ValueError(f"the assistant turn must hold exactly one end-of-turn token '<|im_end|>', "
                         f"found {tail.count(eot)}")
    return head + tail[:tail.index(eot) + 1], len(head)


def load_examples(paths, tok):
    """Tokenized examples [{"id", "ids", "start"}] from comma-separated JSONL paths; DataError names a bad record's
    file:line."""
    from eval.records import RecordError, iter_jsonl

    out = []
    for path in paths.split(","):
        if not os.path.exists(path):
            raise DataError(f"{path}: no such file")
        try:
            rows = list(iter_jsonl(path))
        except RecordError as e:
            raise DataError(str(e)) from None
        for lineno, rec in rows:
            if isinstance(rec, dict) and isinstance(rec.get("text"), str) and "messages" not in rec:
                ids, start = tok.encode(rec["text"]) + [tok.eos_id], 1
                if len(ids) < 2:
                    raise DataError(f"{path}:{lineno}: empty 'text'")
            else:
                msgs = rec.get("messages") if isinstance(rec, dict) else None
                if not isinstance(msgs, list):
                    raise DataError(f"{path}:{lineno}: no 'messages' list (nor a 'text' document)")
                try:
                    ids, start = tokenize_chat(tok, msgs)
                except (ValueError, AttributeError, TypeError) as e:
                    raise DataError(f"{path}:{lineno}: {e}") from None
            out.append({"id": rec.get("id", f"{path}:{lineno}"), "ids": ids, "start": start})
    return out


def n_loss_tokens(ex):
    return len(ex["ids"]) - ex["start"]


def pack(examples, max_len, device="cpu"):
    """Pack examples into rows of at most max_len input tokens (first fit, longest first), padded to the longest
    row. Per example: inputs ids[:-1], targets ids[1:], loss where the target is ids[start:], positions 0..,
    segment id 1, 2, ... within its row (0 = padding, no loss). {input_ids, targets, loss_mask, position_ids,
    segment_ids}, each [rows, length]."""
    rows, room = [], []
    for ex in sorted(examples, key=lambda e: -len(e["ids"])):
        n = len(ex["ids"]) - 1
        if n > max_len:
            raise ValueError(f"example {ex['id']!r} has {n + 1} tokens, over max_len + 1 = {max_len + 1}")
        i = next((i for i, r in enumerate(room) if r >= n), None)
        if i is None:
            rows.append([])
            room.append(max_len)
            i = len(rows) - 1
        rows[i].append(ex)
        room[i] -= n
    L = max(max_len - r for r in room)
    out = {k: torch.zeros(len(rows), L, dtype=torch.long) for k in
           ("input_ids", "targets", "position_ids", "segment_ids")}
    out["loss_mask"] = torch.zeros(len(rows), L, dtype=torch.bool)
    for r, row in enumerate(rows):
        at = 0
        for seg, ex in enumerate(row, 1):
            ids = torch.tensor(ex["ids"])
            n = len(ids) - 1
            out["input_ids"][r, at:at + n] = ids[:-1]
            out["targets"][r, at:at + n] = ids[1:]
            out["position_ids"][r, at:at + n] = torch.arange(n)
            out["segment_ids"][r, at:at + n] = seg
            out["loss_mask"][r, at + ex["start"] - 1:at + n] = True  # targets ids[start:]
            at += n
    return {k: v.to(device) for k, v in out.items()}


class SFTModel(nn.Module):
    """The transformer plus its loss, so the FSDP root's forward covers the head too. Returns the SUM of
    the token cross-entropies (fp32) over the loss positions; the caller normalizes."""

    def __init__(self, net, chunk=4096):
        super().__init__()
        self.net, self.chunk = net, chunk

    def forward(self, input_ids, targets, loss_mask, position_ids, segment_ids):
        h = self.net(input_ids, position_ids=position_ids, segment_ids=segment_ids, return_hidden=True)
        h, t = h[loss_mask], targets[loss_mask]  # only loss positions reach the head
        w = self.net.lm_head.weight
        if len(t) <= self.chunk:
            return _ce_sum(h, t, w)
        # chunks recomputed in backward: never a [tokens, vocab] fp32 tensor for the whole batch
        return sum(checkpoint(_ce_sum, h[i:i + self.chunk], t[i:i + self.chunk], w, use_reentrant=False)
                   for i in range(0, len(t), self.chunk))


def _ce_sum(h, t, w):
    return F.cross_entropy(F.linear(h, w).float(), t, reduction="sum")


# ------------------------------------------------------------------------------------------------ steps

def step_examples(n, step, batch_size, seed):
    """Indices of the examples of optimizer step `step` (0-based): a fresh seeded permutation each epoch, read in
    order, so the data position is a function of the step alone."""
    return [_perm(n, seed + p // n)[p % n] for p in range(step * batch_size, (step + 1) * batch_size)]


@lru_cache(maxsize=1)
def _perm(n, seed):
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()


def train_step(lm, optimizer, examples, cfg, env):
    """One optimizer step on this rank's share of the examples (normalization: the module docstring). Returns
    (loss, grad_norm, tokens), loss and tokens over all ranks."""
    mine = examples[env.rank::env.world]
    n_tok = T.all_reduce_sum(sum(n_loss_tokens(e) for e in mine))
    loss_sum, tokens = 0.0, 0
    for i in range(0, len(mine), cfg.micro_batch_size):
        batch = pack(mine[i:i + cfg.micro_batch_size], cfg.max_len, env.device)
        s = lm(**batch)
        (s * env.world / n_tok).backward()
        loss_sum += s.item()
        tokens += int((batch["segment_ids"] > 0).sum())
    norm = T.clip_grad_norm(lm.parameters(), cfg.grad_clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return T.all_reduce_sum(loss_sum) / n_tok, norm, T.all_reduce_sum(tokens)


@torch.no_grad()
def val_loss(lm, examples, micro_batch_size, max_len, env):
    """Token-mean cross-entropy over all examples, split over ranks. Every rank runs the same number of
    forwards (FSDP all-gathers are collectives): a rank out of examples reruns one with weight 0."""
    was_training = lm.training
    lm.eval()
    total = count = 0.0
    per_round = micro_batch_size * env.world
    for r in range(0, len(examples), per_round):
        mine = examples[r:r + per_round][env.rank::env.world]
        s = lm(**pack(mine or examples[:1], max_len, env.device)).item()
        if mine:
            total += s
            count += sum(n_loss_tokens(e) for e in mine)
    lm.train(was_training)
    return T.all_reduce_sum(total) / T.all_reduce_sum(count)


def export(lm, cfg, env):
    """Write out_dir/hf: the full weights in the initial checkpoint's dtype, the tokenizer files (a collective)."""
    raw = lm.net.config.raw
    dtype = getattr(torch, str(raw.get("torch_dtype") or raw.get("dtype") or "float32"), torch.float32)
    sd = T.full_state_dict(lm.net, dtype=dtype, rank0_only=True)
    if env.main:
        lm.net.save_pretrained(os.path.join(cfg.out_dir, "hf"), state_dict=sd, tokenizer_dir=cfg.model)
        if cfg.chat_template:
            shutil.copy(cfg.chat_template, os.path.join(cfg.out_dir, "hf", "chat_template.jinja"))
    return os.path.join(cfg.out_dir, "hf")


# ------------------------------------------------------------------------------------------------- main

def split_data(cfg, tok, log):
    train = load_examples(cfg.train_file, tok)
    if cfg.val_file:
        val = load_examples(cfg.val_file, tok)
    else:
        held = set(_perm(len(train), cfg.seed + 10**6)[:cfg.val_size]) if len(train) > cfg.val_size else set()
        val = [e for i, e in enumerate(train) if i in held]
        train = [e for i, e in enumerate(train) if i not in held]
    too_long = sum(len(e["ids"]) > cfg.max_len + 1 for e in train + val)
    train = [e for e in train if len(e["ids"]) <= cfg.max_len + 1]
    val = [e for e in val if len(e["ids"]) <= cfg.max_len + 1]
    if too_long:
        log(f"dropped {too_long} examples longer than max_len={cfg.max_len} tokens")
    if not train:
        raise DataError(f"{cfg.train_file}: no training examples left (max_len={cfg.max_len})")
    return train, val


def check_config(cfg, world):
    if not cfg.train_file or not cfg.model:
        raise T.ConfigError("--train_file and --model are required (see --help)")
    T.check_train_config(cfg)
    T.check_min(cfg, 1, "batch_size", "max_steps", "max_len", "eval_every")
    T.check_min(cfg, 0, "val_size")
    if cfg.batch_size % (cfg.micro_batch_size * world):
        raise T.ConfigError(f"--batch_size={cfg.batch_size} must be a multiple of --micro_batch_size="
                            f"{cfg.micro_batch_size} x {world} processes")


def check_paths(cfg):
    """training.check_paths for sft's files, and a --chat_template that is UTF-8 text."""
    files = [("train_file", cfg.train_file)] + [(k, getattr(cfg, k)) for k in ("val_file", "chat_template")
                                                if getattr(cfg, k)]
    T.check_paths(files, model=cfg.model, out_dir=cfg.out_dir)
    if cfg.chat_template:
        try:
            with open(cfg.chat_template, encoding="utf-8") as f:
                f.read()
        except UnicodeDecodeError as e:
            raise T.ConfigError(f"--chat_template={cfg.chat_template}: not UTF-8 text (byte {e.start})") from None


def main(argv=None):
    try:
        cfg = T.parse_config(Config, argv, prog="sft.py")
        check_config(cfg, int(os.environ.get("WORLD_SIZE", 1)))
        check_paths(cfg)
    except T.ConfigError as e:
        print(f"sft.py: error: {e}", file=sys.stderr)
        sys.exit(2)
    env = T.setup_dist()
    try:
        run(cfg, env)
    except (T.ConfigError, DataError, M.CheckpointError) as e:
        if env.main:
            print(f"sft.py: error: {e}", file=sys.stderr)
        sys.exit(2)
    finally:
        T.teardown_dist()


def resume_settings(cfg):
    """What a resumed run must share with its checkpoint: the data (its bytes), the batch and the schedule."""
    keys = ("batch_size", "max_steps", "lr", "min_lr", "warmup_steps", "weight_decay", "max_len", "seed", "val_size")
    return {**{k: getattr(cfg, k) for k in keys}, "data": T.file_digest(cfg.train_file)}


def run(cfg, env):
    from tqdm import tqdm

    def log(msg):
        if env.main:
            tqdm.write(msg)

    metrics = T.Metrics(os.path.join(cfg.out_dir, "metrics.jsonl"), env.main)
    ckpt = T.latest_checkpoint(cfg.out_dir)
    if not cfg.resume and (ckpt or os.path.exists(metrics.path)):
        raise T.ConfigError(f"--out_dir={cfg.out_dir} already holds a run: pass --resume or another out_dir")
    torch.manual_seed(cfg.seed)
    tok = M.Tokenizer.from_pretrained(cfg.model, chat_template=cfg.chat_template)
    train, val = split_data(cfg, tok, log)
    settings = resume_settings(cfg)
    log(f"{len(train)} training examples ({cfg.max_steps * cfg.batch_size / len(train):.2f} epochs), "
        f"{len(val)} validation; {env.world} process(es), "
        f"{cfg.batch_size // (cfg.micro_batch_size * env.world)} micro-batches per step")

    # fp32 master shards: each rank reads only its rows
    lm = T.load_sharded(cfg.model, env.device, T.use_bf16(cfg, env.device), wrap=SFTModel)
    lm.net.grad_checkpointing = cfg.grad_checkpointing
    lm.train()
    optimizer = T.adamw(lm, cfg, env.device)
    step = 0
    if ckpt:
        state = T.load_checkpoint(ckpt, lm, optimizer, env)
        for diff in T.check_resume(ckpt, state.get("settings", {}), settings, cfg.resume_force):
            log(f"--resume_force: {diff}")
        step = state["step"]
        if state["n_train"] != len(train):
            raise DataError(f"{ckpt}: saved with {state['n_train']} training examples, the data now has "
                             f"{len(train)}: the data position would not match")
        metrics.truncate(step)
        log(f"resumed from {ckpt} (step {step})")
    elif cfg.resume:
        metrics.truncate(0)  # killed before its first checkpoint: start over

    bar = tqdm(total=cfg.max_steps, initial=step, disable=not env.main, desc="sft")
    while step < cfg.max_steps:
        T.set_lr(optimizer, T.lr_at(step, cfg.lr, cfg.warmup_steps, cfg.max_steps, cfg.min_lr))
        t0 = time.perf_counter()
        batch = [train[i] for i in step_examples(len(train), step, cfg.batch_size, cfg.seed)]
        loss, norm, tokens = train_step(lm, optimizer, batch, cfg, env)
        dt = time.perf_counter() - t0
        step += 1
        row = {"step": step, "loss": loss, "lr": optimizer.param_groups[0]["lr"], "grad_norm": norm,
               "tokens_per_s": tokens / dt, "examples_seen": step * cfg.batch_size}
        if val and (step % cfg.eval_every == 0 or step == cfg.max_steps):
            row["val_loss"] = val_loss(lm, val, cfg.micro_batch_size, cfg.max_len, env)
        metrics.log(row)
        bar.update(1)
        bar.set_postfix(loss=f"{loss:.4f}", **({"val": f"{row['val_loss']:.4f}"} if "val_loss" in row else {}))
        if step % cfg.ckpt_every == 0 or step == cfg.max_steps:
            extra = {"n_train": len(train), "examples_seen": step * cfg.batch_size, "settings": settings,
                     "config": {k: v for k, v in asdict(cfg).items() if v is not None}}
            T.save_checkpoint(cfg.out_dir, step, lm, optimizer, extra, env, keep=cfg.keep_ckpts)
    bar.close()
    metrics.plot(os.path.join(cfg.out_dir, "metrics.png"), ["loss", "val_loss", "lr", "grad_norm", "tokens_per_s"])
    if cfg.export:
        log(f"exported {export(lm, cfg, env)}")


if __name__ == "__main__":
    main()
