"""What sft.py and grpo.py share: the common options (TrainConfig) and their parsing, process groups, FSDP2, AdamW
and the LR schedule, metrics (JSONL + plot), DCP checkpoints with resume, and full weights for the export.

    cfg = parse_config(Config)                  # dataclass defaults < config file(s) < --key=value
    dist_env = setup_dist()                     # torchrun (nccl on GPU, gloo on CPU) or one process
    fsdp_wrap(model, model.model.layers, dist_env.device, bf16=True)
    opt = adamw(model, cfg, dist_env.device)
    for step ...: set_lr(opt, lr_at(step, ...)); ...; log.log({"step": step, "loss": ...})
    save_checkpoint(out_dir, step, model, opt, {"examples_seen": ...}, dist_env)
    teardown_dist()

Checkpoints: <out_dir>/ckpt/step_XXXXXXXX holds the model and optimizer (torch.distributed.checkpoint, one file per
rank) and trainer_rank<r>.pt per rank (step, RNG states, data position). Every rank must see the same filesystem.
"""
import ast
import contextlib
import dataclasses
import hashlib
import inspect
import json
import math
import os
import shutil
import sys
import traceback
import types
from dataclasses import dataclass

import torch
import torch.distributed as dist

# ----------------------------------------------------------------------------------------------- config


class ConfigError(ValueError):
    """A bad config file or override; the message names the file or the argument."""


def check_min(cfg, minimum, *names):
    """One clear error for the first option below its minimum (sizes >= 1, rates and counts >= 0)."""
    for name in names:
        value = getattr(cfg, name)
        if value < minimum:
            raise ConfigError(f"--{name}={value}: must be >= {minimum}")


@dataclass
class TrainConfig:
    """The options every trainer shares; sft.Config and grpo.Config add their own (and may change a default)."""
    # start and output
    model: str = ""                   # Hugging Face checkpoint dir to start from: config.json, safetensors, tokenizer
    out_dir: str = "out"              # metrics.jsonl, a plot of the curves, ckpt/, hf/ (the final model)
    seed: int = 0                     # data order (and every other draw of the trainer)
    # batch
    batch_size: int = 8               # per optimizer step over all ranks: SFT examples, GRPO prompts (k completions each)
    micro_batch_size: int = 2         # per forward/backward on one rank: SFT examples, GRPO completions
    # optimizer: AdamW, weight decay on the 2-D parameters only (not norms, biases); warmup, then cosine to min_lr
    max_steps: int = 100              # optimizer steps
    lr: float = 1e-5                  # peak learning rate
    min_lr: float = 1e-6              # end of the cosine decay; = lr keeps it constant
    warmup_steps: int = 10            # linear warmup steps
    weight_decay: float = 0.0         # on matrices and embeddings only
    beta1: float = 0.9                # AdamW betas
    beta2: float = 0.95
    grad_clip: float = 1.0            # max global gradient norm (0: no clipping)
    # precision and memory
    bf16: bool | None = None          # bf16 compute, fp32 master weights and reduce; None: on when CUDA is there
    grad_checkpointing: bool = True   # recompute each block in backward (activation checkpointing)
    # checkpoints
    ckpt_every: int = 50              # steps between checkpoints (and at the last step)
    keep_ckpts: int = 2               # newest checkpoints kept
    resume: bool = False              # continue from the newest checkpoint in out_dir
    resume_force: bool = False        # resume even where the settings that shape the run differ from the checkpoint's


def check_train_config(cfg):
    """The shared options' ranges (each trainer checks its batch sizes: GRPO's 0 means the stage's)."""
    check_min(cfg, 1, "micro_batch_size", "ckpt_every", "keep_ckpts")
    check_min(cfg, 0, "lr", "min_lr", "warmup_steps", "weight_decay", "grad_clip")
    for name in ("beta1", "beta2"):
        if not 0 <= getattr(cfg, name) < 1:
            raise ConfigError(f"--{name}={getattr(cfg, name)}: must be in [0, 1)")


def check_paths(files=(), model=None, out_dir=None, model_option="model"):
    """Before any model is built: each (option, comma-separated paths) in files names files, model is a checkpoint
    folder, out_dir can be a folder (not a file, nor under one). ConfigError naming the option otherwise."""
    from eval.records import UsageError, check_outputs

    for name, paths in files:
        for path in paths.split(","):
            if not path:
                raise ConfigError(f"--{name}={paths}: an empty path")
            if not os.path.exists(path):
                raise ConfigError(f"--{name}={path}: no such file")
            if not os.path.isfile(path):
                raise ConfigError(f"--{name}={path}: a directory, not a file")
    if model is not None:
        if not os.path.isdir(model):
            raise ConfigError(f"--{model_option}={model}: {'not a folder' if os.path.exists(model) else 'no such folder'}"
                              " (a Hugging Face checkpoint folder)")
        if not os.path.isfile(os.path.join(model, "config.json")):
            raise ConfigError(f"--{model_option}={model}: no config.json there: not a Hugging Face checkpoint")
    if out_dir is not None:
        try:
            check_outputs(folders=[out_dir])
        except UsageError as e:
            raise ConfigError(f"--out_dir: {e}") from None


def use_bf16(cfg, device):
    return device.type == "cuda" if cfg.bf16 is None else cfg.bf16


def parse_config(cls, argv=None, prog=None):
    """nanoGPT-style configuration: the dataclass `cls` holds the defaults (its source, comments included,
    is the --help text), then each `path.py` argument is read as `key = value` lines, then each
    `--key=value` (or `--key value`) overrides (Python literals; a str field takes the text as is). Later wins.
    cls.renamed, {old name: new name}, keeps old option names working for one release, with a warning."""
    args = list(sys.argv[1:] if argv is None else argv)
    prog = prog or os.path.basename(sys.argv[0])
    if any(a in ("-h", "--help") for a in args):
        sources = "\n".join(inspect.getsource(c) for c in reversed(cls.__mro__) if dataclasses.is_dataclass(c))
        print(f"usage: {prog} [config.py ...] [--key=value ...]\n\nDefaults (override in a config file or "
              f"with --key=value):\n\n{sources}")
        sys.exit(0)
    values = {}
    while args:
        arg = args.pop(0)
        if not arg.startswith("--"):
            values.update(_read_config_file(arg, cls, prog))
            continue
        key, eq, text = arg[2:].partition("=")
        field = _field(cls, key.replace("-", "_"), arg, prog)
        if not eq:
            if bool in _types(field.type):
                text = "True"  # a bare --flag
            elif args and not args[0].startswith("--"):
                text = args.pop(0)  # --key value, as in `grpo.py --stage 2`
            else:
                raise ConfigError(f"{arg}: expected --{field.name}=value")
        values[field.name] = _coerce(field.type, text, arg)
    return cls(**values)


def _field(cls, key, where, prog):
    """The field of option `key` of cls; an old name (cls.renamed) is accepted with a one-line warning on stderr."""
    renamed = getattr(cls, "renamed", {})
    if key in renamed:
        print(f"{prog}: warning: --{key} is deprecated, use --{renamed[key]} (the old name goes in the next release)",
              file=sys.stderr)
        key = renamed[key]
    fields = {f.name: f for f in dataclasses.fields(cls)}
    if key not in fields:
        raise ConfigError(f"{where}: unknown option {key!r} (see --help)")
    return fields[key]


def _read_config_file(path, cls, prog):
    if not os.path.exists(path):
        raise ConfigError(f"{path}: config file not found")
    if not os.path.isfile(path):
        raise ConfigError(f"{path}: a directory, not a config file")
    try:
        with open(path, encoding="utf-8") as f:
            code = compile(f.read(), path, "exec")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not a UTF-8 text file (byte {e.start}): a config file is Python source") from None
    except (SyntaxError, ValueError) as e:  # ValueError: null bytes in the source
        raise ConfigError(f"{path}:{getattr(e, 'lineno', '?')}: {getattr(e, 'msg', e)}") from None
    ns = {}
    try:
        exec(code, {}, ns)  # a config file is the user's own code, as in nanoGPT
    except Exception as e:  # its own error (a NameError, 1 / 0, ...): where, and what
        last = traceback.extract_tb(e.__traceback__)[-1]
        line = last.lineno if last.filename == path else "?"
        raise ConfigError(f"{path}:{line}: {type(e).__name__}: {e}") from None
    out = {}
    for key, value in ns.items():
        if not key.startswith("_") and not isinstance(value, types.ModuleType):
            field = _field(cls, key, path, prog)
            out[field.name] = _check_type(field.type, value, f"{path}: {field.name}")
    return out


def _types(tp):
    return tp.__args__ if isinstance(tp, types.UnionType) else (tp,)


def _coerce(tp, text, where):
    if str in _types(tp) and not (text == "None" and type(None) in _types(tp)):
        return text
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        raise ConfigError(f"{where}: {text!r} is not a valid {_type_name(tp)}") from None
    return _check_type(tp, value, where)


def _check_type(tp, value, where):
    if isinstance(value, int) and not isinstance(value, bool) and float in _types(tp) and int not in _types(tp):
        value = float(value)
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{where}: {value!r} is not a finite number")
    if not any(isinstance(value, t) and not (t is int and isinstance(value, bool)) for t in _types(tp)):
        raise ConfigError(f"{where}: expected {_type_name(tp)}, got {value!r}")
    return value


def _type_name(tp):
    return tp.__name__ if isinstance(tp, type) else str(tp)


# ---------------------------------------------------------------------------------------- process group

@dataclass
class DistEnv:
    rank: int
    world: int
    local_rank: int
    device: torch.device

    @property
    def main(self):
        return self.rank == 0


def setup_dist():
    """Join the process group: under torchrun from its environment (nccl when CUDA is there, else gloo);
    without torchrun a world of one on an in-memory store, so the same FSDP code runs either way."""
    cuda = torch.cuda.is_available()
    backend = "nccl" if cuda else "gloo"
    if "RANK" in os.environ:
        local_rank = int(os.environ.get("LOCAL_RANK", 0))
        if cuda:
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend)
    else:
        local_rank = 0
        dist.init_process_group(backend, store=dist.HashStore(), rank=0, world_size=1)
    device = torch.device("cuda", local_rank) if cuda else torch.device("cpu")
    return DistEnv(dist.get_rank(), dist.get_world_size(), local_rank, device)


def teardown_dist():
    """Leave the process group. The barrier first: without it gloo processes may abort at exit."""
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def all_reduce_sum(value, device="cpu"):
    """Sum a number (or a tensor) over ranks; returns a float (or the summed tensor)."""
    t = value if torch.is_tensor(value) else torch.tensor(float(value), dtype=torch.float64, device=device)
    t = t.detach().clone()
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(t)
    return t if torch.is_tensor(value) else t.item()


# ------------------------------------------------------------------------------------------------- FSDP

def fsdp_wrap(root, blocks, device, bf16=False):
    """FSDP2: fully_shard each block, then the root (embeddings, final norm and a tied head stay together
    in the root unit, so tied weights are one parameter). bf16=True: bf16 compute with fp32 master weights
    and an fp32 gradient reduce (the GPU recipe); the optimizer state stays fp32 either way."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    mesh = init_device_mesh(device.type, (dist.get_world_size(),))
    mp = MixedPrecisionPolicy(torch.bfloat16, torch.float32) if bf16 else MixedPrecisionPolicy()  # params, reduce
    for module in [*blocks, root]:  # the blocks first
        fully_shard(module, mesh=mesh, mp_policy=mp)
    return root


def load_sharded(path, device, bf16=False, wrap=None):
    """The Hugging Face checkpoint at path as an FSDP2 model (fsdp_wrap; wrap(net) is the root when given, e.g.
    sft.SFTModel), filled shard by shard: built on the meta device, then each rank reads only its own rows from the
    memory-mapped safetensors. Host memory at load: one shard per rank (plus the shared page cache), not a full fp32
    model per rank before fully_shard cuts it (131 GB per rank for Qwen3-32B)."""
    from torch.distributed.tensor import DTensor

    from model import ModelConfig, Transformer, read_checkpoint

    net = Transformer.from_config(ModelConfig.from_file(path), device="meta")  # no memory yet
    root = wrap(net) if wrap else net
    fsdp_wrap(root, net.model.layers, device, bf16=bf16)
    root.to_empty(device=device)  # on the root: FSDP2 re-registers (and pads) the shards it allocates
    world, rank = dist.get_world_size(), dist.get_rank()
    params = dict(net.named_parameters(remove_duplicate=False))
    with torch.no_grad():
        for key, tensor in read_checkpoint(path, net):
            p = params[key]
            if not isinstance(p, DTensor):  # a parameter left unsharded
                p.copy_(tensor[:])
                continue
            local = p.to_local()
            if local.numel() == 0:  # more ranks than rows: this rank holds none
                continue
            rows = -(-p.shape[0] // world)  # FSDP2 shards dim 0 into torch.chunk's pieces: ceil(n / world) rows
            local.copy_(tensor[rank * rows:rank * rows + local.shape[0]])
    return root


def full_state_dict(module, dtype=None, rank0_only=False):
    """The module's state dict with every FSDP shard gathered into a full tensor in host memory, cast to dtype (a
    collective: every rank calls it). Tied weights stay one tensor. rank0_only: the other ranks gather one tensor at
    a time and keep nothing (host memory for one copy of a large model, not one per rank)."""
    from torch.distributed.tensor import DTensor

    keep = not rank0_only or not dist.is_initialized() or dist.get_rank() == 0
    params = dict(module.named_parameters(remove_duplicate=False))  # state_dict() detaches: tied ids differ
    out, seen = {}, {}
    for key, value in module.state_dict().items():
        value = params.get(key, value)
        if id(value) not in seen:
            full = (value.full_tensor() if isinstance(value, DTensor) else value).detach().to(dtype=dtype)
            seen[id(value)] = full.cpu() if keep else None
        out[key] = seen[id(value)]
    return out if keep else {}


def adamw(model, cfg, device):
    """AdamW at cfg.lr with betas (cfg.beta1, cfg.beta2), weight decay on the 2-D parameters only (matrices and
    embeddings; norms and biases none). Fused on GPU: foreach's temporaries would be one more fp32 copy."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    rest = [p for p in model.parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": rest, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), fused=device.type == "cuda" or None)


def clip_grad_norm(params, max_norm):
    """Clip the global gradient norm (over all shards); returns the norm before clipping as a float."""
    params = [p for p in params if p.grad is not None]
    norm = torch.nn.utils.clip_grad_norm_(params, max_norm if max_norm > 0 else float("inf"))
    return float(norm.full_tensor() if hasattr(norm, "full_tensor") else norm)


# ---------------------------------------------------------------------------------------------- LR

def lr_at(step, lr, warmup_steps, max_steps, min_lr=0.0):
    """Learning rate at optimizer step `step` (0-based): linear warmup to lr over warmup_steps, then cosine decay
    to min_lr at max_steps."""
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    if step >= max_steps:
        return min_lr
    progress = (step - warmup_steps) / max(1, max_steps - warmup_steps)
    return min_lr + 0.5 * (lr - min_lr) * (1 + math.cos(math.pi * progress))


def set_lr(optimizer, lr):
    for group in optimizer.param_groups:
        group["lr"] = lr


# ----------------------------------------------------------------------------------------------- metrics

class Metrics:
    """Append-only JSONL metrics (one row per step; rank 0 writes) and a PNG of the curves. On resume, rows past
    the checkpoint's step are dropped (truncate), so the file reads like one clean run."""

    def __init__(self, path, main=True):
        self.path, self.main = path, main

    def log(self, row):
        if self.main:
            from eval.records import append_jsonl
            append_jsonl(self.path, [row])

    def rows(self):
        from eval.records import iter_jsonl
        if not os.path.exists(self.path):
            return []
        return [row for _, row in iter_jsonl(self.path, skip_bad=True)]  # a kill may tear the last line

    def truncate(self, step):
        """Keep only the rows with row["step"] <= step (atomic rewrite)."""
        if self.main and os.path.exists(self.path):
            from eval.records import write_jsonl
            write_jsonl(self.path, [r for r in self.rows() if r.get("step", -1) <= step])

    def plot(self, png_path, keys=None):
        """One panel per metric against step. Skipped with one line when matplotlib is not installed."""
        if not self.main:
            return
        try:
            import matplotlib
            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            print(f"matplotlib not installed: no plot written ({png_path})")
            return
        rows = self.rows()
        keys = keys or sorted({k for r in rows for k, v in r.items()
                               if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool)})
        if not keys:
            return
        fig, axes = plt.subplots(len(keys), 1, figsize=(7, 2.2 * len(keys)), sharex=True, squeeze=False)
        for ax, key in zip(axes[:, 0], keys):
            pts = [(r["step"], r[key]) for r in rows if isinstance(r.get(key), (int, float)) and "step" in r]
            if pts:
                ax.plot(*zip(*pts), marker="." if len(pts) < 50 else None)
            ax.set_ylabel(key)
            ax.grid(alpha=0.3)
        axes[-1, 0].set_xlabel("step")
        fig.tight_layout()
        tmp = png_path + ".tmp.png"
        fig.savefig(tmp, dpi=100)
        plt.close(fig)
        os.replace(tmp, png_path)


# ------------------------------------------------------------------------------------------- checkpoints

def latest_checkpoint(out_dir):
    """Path of the newest whole checkpoint under <out_dir>/ckpt, or None. Only renamed (finished) directories
    count (a save killed halfway leaves a .tmp-* dir), and only those whose files all match their manifest: a
    damaged one is named on stderr and the next older one is used."""
    root = os.path.join(out_dir, "ckpt")
    names = [n for n in os.listdir(root) if n.startswith("step_") and n[5:].isdigit()] if os.path.isdir(root) else []
    for path in sorted((os.path.join(root, n) for n in names), reverse=True):
        damage = checkpoint_damage(path)
        if damage is None:
            return path
        print(f"warning: {path} is damaged ({damage}); trying an older checkpoint", file=sys.stderr)
    return None


MANIFEST = "manifest.json"  # {"files": {path: size}} of a checkpoint's other files, written last by save_checkpoint


def checkpoint_damage(path):
    """None for a checkpoint whose every file in its manifest is there with its size, else what is wrong."""
    try:
        with open(os.path.join(path, MANIFEST)) as f:
            files = json.load(f)["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return f"no readable {MANIFEST}"
    for name, size in files.items():
        full = os.path.join(path, name)
        if not os.path.exists(full):
            return f"{name} is missing"
        if os.path.getsize(full) != size:
            return f"{name} has {os.path.getsize(full)} bytes, the manifest says {size}"
    return None


def save_checkpoint(out_dir, step, model, optimizer, extra, dist_env, keep=2):
    """Save model + optimizer (torch.distributed.checkpoint) and, per rank, {step, RNG states, **extra}
    into <out_dir>/ckpt/step_<step>, atomically: all ranks write into a temp dir that rank 0 renames when
    every rank is done, so a kill during the save leaves the previous checkpoint whole. Keeps the newest
    `keep` (>= 1). A collective: every rank calls it."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict

    root = os.path.join(out_dir, "ckpt")
    final = os.path.join(root, f"step_{step:08d}")
    tmp = os.path.join(root, f".tmp-step_{step:08d}")
    if dist_env.main:
        os.makedirs(root, exist_ok=True)
        for name in os.listdir(root):  # leftovers of saves killed halfway
            if name.startswith(".tmp-"):
                shutil.rmtree(os.path.join(root, name), ignore_errors=True)
        os.makedirs(tmp)
    dist.barrier()
    msd, osd = get_state_dict(model, optimizer)
    dcp.save({"model": msd, "optim": osd}, checkpoint_id=tmp)
    trainer = {"step": step, "world": dist_env.world, "rng_cpu": torch.get_rng_state(), **extra}
    if torch.cuda.is_available():
        trainer["rng_cuda"] = torch.cuda.get_rng_state()
    torch.save(trainer, os.path.join(tmp, f"trainer_rank{dist_env.rank}.pt"))
    dist.barrier()
    if dist_env.main:
        files = {os.path.relpath(os.path.join(d, f), tmp): os.path.getsize(os.path.join(d, f))
                 for d, _, names in os.walk(tmp) for f in names}
        with open(os.path.join(tmp, MANIFEST), "w") as f:  # inside tmp: visible only with the whole checkpoint
            json.dump({"files": files}, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        _fsync_dir(tmp)
        if os.path.exists(final):
            shutil.rmtree(final)
        os.rename(tmp, final)
        _fsync_dir(root)
        for name in sorted(n for n in os.listdir(root) if n.startswith("step_"))[:-keep]:
            shutil.rmtree(os.path.join(root, name), ignore_errors=True)
    dist.barrier()
    return final


def file_digest(paths):
    """sha256 over the bytes of comma-separated files: what a resumed run checks its data against."""
    h = hashlib.sha256()
    for path in paths.split(","):
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()[:16]


def check_resume(ckpt, saved, now, force=False):
    """The settings a checkpoint was saved with (saved: {name: value}) against this run's (now): a resumed run with
    another batch, schedule or data would not continue the saved curve. ConfigError naming each difference, or with
    force the differences (to be logged). Names the checkpoint lacks are not checked."""
    diffs = [f"--{k}: {saved[k]!r} in the checkpoint, {v!r} now"
             for k, v in now.items() if k in saved and saved[k] != v]
    if diffs and not force:
        raise ConfigError(f"{ckpt} was saved with other settings: " + "; ".join(diffs) +
                          " (put them back, or pass --resume_force to continue anyway)")
    return diffs


def load_checkpoint(path, model, optimizer, dist_env, layout=None):
    """Load a save_checkpoint checkpoint into the (FSDP-wrapped) model and optimizer, restore this rank's RNG
    states, and return the trainer dict ({"step", **extra}). layout: the value its extra["layout"] must have (a
    trainer whose saved state changed shape refuses older checkpoints in one line)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

    msd, osd = get_state_dict(model, optimizer)
    mine = os.path.join(path, f"trainer_rank{dist_env.rank}.pt")
    if not os.path.exists(mine):  # resumed on more ranks than saved: the new ranks start from rank 0's RNG
        mine = os.path.join(path, "trainer_rank0.pt")
    try:
        trainer = torch.load(mine, weights_only=True)
        if layout is not None and trainer.get("layout") != layout:
            raise ConfigError(f"{path}: written by an older version (state layout {trainer.get('layout', 1)}, this "
                              f"one reads {layout}): it cannot be resumed; start again in another --out_dir")
        dcp.FileSystemReader(path).read_metadata()  # first: dcp.load logs a damaged one's traceback on the root logger
        dcp.load({"model": msd, "optim": osd}, checkpoint_id=path)
        set_state_dict(model, optimizer, model_state_dict=msd, optim_state_dict=osd)
    except ConfigError:
        raise
    except (Exception, dcp.api.CheckpointException) as e:  # a checkpoint of another model, or bytes the manifest
        # could not see (dcp raises CheckpointException, a BaseException, for a shape that does not match)
        if isinstance(e, dcp.api.CheckpointException) and e.failures:
            e = next(iter(e.failures.values()))[0]  # the rank's own error, not dcp's wrapper and its traceback
        raise ConfigError(f"{path}: cannot load this checkpoint: {type(e).__name__}: {str(e).splitlines()[0][:200]}"
                          ) from None
    torch.set_rng_state(trainer.pop("rng_cpu"))
    cuda_rng = trainer.pop("rng_cuda", None)
    if cuda_rng is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(cuda_rng)
    return trainer


def _fsync_dir(path):
    with contextlib.suppress(OSError):  # best effort: not every filesystem lets a directory be fsynced
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
