"""training.py: config parsing, LR schedule, metrics, FSDP (world of one) checkpoints and full state dicts."""
import math
import os
from dataclasses import dataclass

import pytest
import torch

import training as T


@dataclass
class Cfg:
    lr: float = 1e-3  # learning rate
    steps: int = 10
    name: str = "run"
    init_from: str | None = None
    bf16: bool = False


def test_config_defaults_file_and_overrides(tmp_path):
    assert T.parse_config(Cfg, []) == Cfg()
    conf = tmp_path / "c.py"
    conf.write_text("lr = 3e-4\nsteps = 5\nimport math\n_scratch = 1\nname = 'from-file'\n")
    cfg = T.parse_config(Cfg, [str(conf), "--steps=7", "--init_from=/x/y", "--bf16", "--lr=2"])
    assert cfg == Cfg(lr=2.0, steps=7, name="from-file", init_from="/x/y", bf16=True)
    assert isinstance(cfg.lr, float)
    assert T.parse_config(Cfg, ["--init_from=None", "--name=None"]) == Cfg(init_from=None, name="None")
    # `--key value` too; a bare bool flag does not swallow the config file after it
    spaced = T.parse_config(Cfg, ["--bf16", str(conf), "--steps", "4", "--lr=1"])
    assert spaced == Cfg(lr=1.0, steps=4, name="from-file", bf16=True)


@pytest.mark.parametrize("args, msg", [
    (["--stpes=3"], "unknown option 'stpes'"),
    (["--steps=abc"], "'abc' is not a valid int"),
    (["--steps=1.5"], "expected int, got 1.5"),
    (["--bf16=1"], "expected bool"),
    (["--lr"], "expected --lr=value"),
    (["missing.py"], "missing.py: config file not found"),
])
def test_config_errors_name_the_argument(args, msg):
    with pytest.raises(T.ConfigError, match=msg):
        T.parse_config(Cfg, args)


def test_config_file_errors(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("lr = 1e-3\nsteps = = 2\n")
    with pytest.raises(T.ConfigError, match=r"bad.py:2"):
        T.parse_config(Cfg, [str(bad)])
    bad.write_text("nope = 1\n")
    with pytest.raises(T.ConfigError, match=r"bad.py: unknown option 'nope'"):
        T.parse_config(Cfg, [str(bad)])


def test_help_prints_the_documented_defaults(capsys):
    with pytest.raises(SystemExit):
        T.parse_config(Cfg, ["--help"], prog="x.py")
    out = capsys.readouterr().out
    assert "usage: x.py" in out and "lr: float = 1e-3  # learning rate" in out


def test_lr_schedule_hand_values():
    kw = dict(lr=1.0, warmup_steps=4, max_steps=14, min_lr=0.1)
    assert [T.lr_at(s, **kw) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert T.lr_at(4, **kw) == pytest.approx(1.0)
    assert T.lr_at(9, **kw) == pytest.approx(0.1 + 0.45 * (1 + math.cos(math.pi * 0.5)))  # midpoint: 0.55
    assert T.lr_at(14, **kw) == pytest.approx(0.1) and T.lr_at(20, **kw) == 0.1
    vals = [T.lr_at(s, **kw) for s in range(4, 15)]
    assert all(a > b for a, b in zip(vals, vals[1:]))


def test_metrics_truncate_and_plot(tmp_path, capsys):
    m = T.Metrics(str(tmp_path / "m.jsonl"))
    for s in range(1, 6):
        m.log({"step": s, "loss": 1.0 / s, "lr": 0.1})
    with open(m.path, "a") as f:
        f.write('{"step": 6, "lo')  # torn line from a kill
    m.truncate(3)
    assert [r["step"] for r in m.rows()] == [1, 2, 3]
    m.plot(str(tmp_path / "m.png"))
    pytest.importorskip("matplotlib")
    assert (tmp_path / "m.png").stat().st_size > 1000


def tiny_model(seed):
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Embedding(10, 8), torch.nn.Linear(8, 8), torch.nn.Linear(8, 10))
    net[2].weight = torch.nn.Parameter(torch.randn(10, 8))
    return net


def train_steps(net, opt, n, seed):
    g = torch.Generator().manual_seed(seed)
    for _ in range(n):
        x = torch.randint(0, 10, (4,), generator=g)
        loss = net(x).logsumexp(-1).mean() + torch.rand(()) * 0  # draws from the global RNG too
        loss.backward()
        opt.step()
        opt.zero_grad()


def test_checkpoint_roundtrip_atomic_and_keep(tmp_path, dist_env):
    net = T.fsdp_wrap(tiny_model(0), [], dist_env.device)
    opt = torch.optim.AdamW(net.parameters(), lr=0.1)
    train_steps(net, opt, 2, seed=1)
    for step in (1, 2, 3):
        T.save_checkpoint(str(tmp_path), step, net, opt, {"examples_seen": 10 * step}, dist_env, keep=2)
    ckpt = T.latest_checkpoint(str(tmp_path))
    assert os.path.basename(ckpt) == "step_00000003"
    assert sorted(os.listdir(tmp_path / "ckpt")) == ["step_00000002", "step_00000003"]
    os.makedirs(tmp_path / "ckpt" / ".tmp-step_00000009")  # a save killed halfway is not a checkpoint
    assert T.latest_checkpoint(str(tmp_path)) == ckpt
    rng_after_save = torch.get_rng_state()
    want = {k: v.clone() for k, v in T.full_state_dict(net).items()}
    train_steps(net, opt, 3, seed=2)
    ref = T.full_state_dict(net)

    other = T.fsdp_wrap(tiny_model(5), [], dist_env.device)
    other_opt = torch.optim.AdamW(other.parameters(), lr=0.1)
    torch.manual_seed(123)
    trainer = T.load_checkpoint(ckpt, other, other_opt, dist_env)
    assert trainer["step"] == 3 and trainer["examples_seen"] == 30
    assert torch.equal(torch.get_rng_state(), rng_after_save)
    got = T.full_state_dict(other)
    assert all(torch.equal(got[k], want[k]) for k in want)
    train_steps(other, other_opt, 3, seed=2)  # the optimizer state came back too: same next steps
    got = T.full_state_dict(other)
    assert all(torch.allclose(got[k], ref[k], atol=0, rtol=0) for k in ref)
    assert T.latest_checkpoint(str(tmp_path / "nothing")) is None


@pytest.mark.parametrize("damage", ["truncate", "delete", "no_manifest"])
def test_a_damaged_checkpoint_is_named_and_the_older_one_used(tmp_path, dist_env, capsys, damage):
    """--resume after a file of the newest checkpoint went missing or short gave a 46-line traceback, and the
    whole older checkpoint was not used."""
    net = T.fsdp_wrap(tiny_model(0), [], dist_env.device)
    opt = torch.optim.AdamW(net.parameters(), lr=0.1)
    train_steps(net, opt, 1, seed=1)
    for step in (1, 2):
        T.save_checkpoint(str(tmp_path), step, net, opt, {}, dist_env, keep=2)
    new = tmp_path / "ckpt" / "step_00000002"
    victim = new / "trainer_rank0.pt" if damage != "no_manifest" else new / "manifest.json"
    if damage == "truncate":
        victim.write_bytes(victim.read_bytes()[:10])
    else:
        victim.unlink()
    assert T.latest_checkpoint(str(tmp_path)) == str(tmp_path / "ckpt" / "step_00000001")
    err = capsys.readouterr().err
    assert f"{new} is damaged (" in err and ("trainer_rank0.pt" in err or "manifest.json" in err)
    trainer = T.load_checkpoint(T.latest_checkpoint(str(tmp_path)), net, opt, dist_env)
    assert trainer["step"] == 1
    if damage != "no_manifest":  # loaded by its path anyway: one line naming the folder, not a traceback
        with pytest.raises(T.ConfigError, match=rf"{new}: cannot load this checkpoint: "):
            T.load_checkpoint(str(new), net, opt, dist_env)


def test_full_state_dict_keeps_tied_weights_one_tensor(dist_env):
    net = tiny_model(0)
    net[2].weight = net[0].weight  # tie: the Linear [10, 8] shares the Embedding [10, 8]
    T.fsdp_wrap(net, [net[1]], dist_env.device)
    sd = T.full_state_dict(net)
    assert sd["0.weight"] is sd["2.weight"] and not hasattr(sd["0.weight"], "full_tensor")


# ------------------------------------------------------------------------------ the options trainers share

@dataclass
class Trainer(T.TrainConfig):
    renamed = {"init_from": "model", "ckpt_interval": "ckpt_every"}
    beta2: float = 0.99  # a trainer changes a shared default
    own: int = 1  # and adds its own option


def test_shared_options_one_set_of_names_old_names_warn(tmp_path, capsys):
    cfg = T.parse_config(Trainer, ["--model=/m", "--micro_batch_size=3", "--own=2"], prog="t.py")
    assert (cfg.model, cfg.micro_batch_size, cfg.own, cfg.beta1, cfg.beta2) == ("/m", 3, 2, 0.9, 0.99)
    assert capsys.readouterr().err == ""
    conf = tmp_path / "old.py"
    conf.write_text("ckpt_interval = 7\n")
    cfg = T.parse_config(Trainer, ["--init_from", "/old", str(conf)], prog="t.py")
    assert (cfg.model, cfg.ckpt_every) == ("/old", 7)
    err = capsys.readouterr().err.splitlines()
    assert err == ["t.py: warning: --init_from is deprecated, use --model (the old name goes in the next release)",
                   "t.py: warning: --ckpt_interval is deprecated, use --ckpt_every (the old name goes in the next "
                   "release)"]
    with pytest.raises(SystemExit):
        T.parse_config(Trainer, ["--help"], prog="t.py")
    out = capsys.readouterr().out
    assert "class TrainConfig" in out and "micro_batch_size: int" in out and "own: int = 1" in out
    with pytest.raises(T.ConfigError, match=r"--beta2=1.0: must be in \[0, 1\)"):
        T.check_train_config(Trainer(beta2=1.0))


def test_adamw_decays_matrices_only_with_the_configs_betas():
    net = torch.nn.Sequential(torch.nn.Embedding(10, 8), torch.nn.LayerNorm(8), torch.nn.Linear(8, 10))
    opt = T.adamw(net, Trainer(weight_decay=0.1, lr=0.5), torch.device("cpu"))
    decay, rest = opt.param_groups
    assert [p.shape for p in decay["params"]] == [(10, 8), (10, 8)] and decay["weight_decay"] == 0.1
    assert all(p.dim() == 1 for p in rest["params"]) and len(rest["params"]) == 3 and rest["weight_decay"] == 0
    assert decay["betas"] == (0.9, 0.99) and decay["lr"] == 0.5


def test_a_checkpoint_of_another_state_layout_is_refused_in_one_line(tmp_path, dist_env):
    net = T.fsdp_wrap(tiny_model(0), [], dist_env.device)
    opt = torch.optim.AdamW(net.parameters(), lr=0.1)
    path = T.save_checkpoint(str(tmp_path), 1, net, opt, {"drawn": 4}, dist_env)  # before layouts had a number
    with pytest.raises(T.ConfigError, match=r"written by an older version \(state layout 1, this one reads 2\)"):
        T.load_checkpoint(path, net, opt, dist_env, layout=2)
    path = T.save_checkpoint(str(tmp_path), 2, net, opt, {"layout": 2}, dist_env)
    assert T.load_checkpoint(path, net, opt, dist_env, layout=2)["step"] == 2
