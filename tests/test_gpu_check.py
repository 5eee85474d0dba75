"""bench/gpu_check.py's CPU half: one parseable line per path, the CPU-checkable paths run and match their references,
the GPU-only ones are skipped; a broken reference fails its own line only, and the exit code says so."""
import contextlib
import importlib.util
import io
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "bench" / "gpu_check.py")
gpu_check = importlib.util.module_from_spec(spec)
spec.loader.exec_module(gpu_check)

PATHS = ["triton", "flash_attn", "sampler_paged", "cuda_graphs", "fsdp_bf16", "bench_sample", "bench_grpo"]
ON_CPU = ["triton", "sampler_paged", "fsdp_bf16", "bench_sample", "bench_grpo"]
GPU_ONLY = ["flash_attn", "cuda_graphs"]
LINE = re.compile(r"^(\w+): (ran|skipped|FAILED), matched reference: (yes|no) \(([^()]*)\), (.+)$")


def run(*argv):
    """main(argv) in this process: (exit code, stdout lines)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = gpu_check.main(["--device=cpu", *argv])
    return rc, out.getvalue().splitlines()


def parsed(lines):
    return {m[1]: m for m in map(LINE.match, lines) if m}


@pytest.fixture(scope="module")
def cpu_run():
    return run()


def test_one_line_per_path_in_order(cpu_run):
    _, lines = cpu_run
    assert list(gpu_check.CHECKS) == PATHS  # a new path needs its place in this test
    assert [line.split(":")[0] for line in lines] == PATHS


def test_every_line_parses(cpu_run):
    _, lines = cpu_run
    for line in lines:
        assert LINE.match(line), line


@pytest.mark.parametrize("name", ON_CPU)
def test_cpu_path_ran_and_matched(cpu_run, name):
    if name == "triton" and importlib.util.find_spec("triton") is None:
        pytest.skip("triton is not installed (it is in requirements-dev.txt): the kernels were not checked")
    m = parsed(cpu_run[1])[name]
    assert (m[2], m[3]) == ("ran", "yes"), m[0]
    assert re.search(r"(max|mean) abs diff \d\.\de[-+]\d\d", m[4]), m[0]


@pytest.mark.parametrize("name", GPU_ONLY)
def test_gpu_only_path_skipped(cpu_run, name):
    m = parsed(cpu_run[1])[name]
    assert (m[2], m[3], m[5]) == ("skipped", "no", "skipped: needs a GPU"), m[0]


def test_exit_code_zero(cpu_run):
    rc, lines = cpu_run
    assert rc == 0, "\n".join(lines)


def test_a_raising_reference_fails_its_line_only(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("reference broken on purpose")

    monkeypatch.setattr(gpu_check.M, "greedy", broken)  # the sampler path's reference
    rc, lines = run()
    got = parsed(lines)
    assert len(lines) == len(got) == len(PATHS)  # every other path still printed its line
    assert got["sampler_paged"][0] == ("sampler_paged: FAILED, matched reference: no (not run), "
                                       "error: RuntimeError: reference broken on purpose")
    assert rc == 1
    assert {n for n, m in got.items() if m[2] == "FAILED"} == {"sampler_paged"}
    assert all(got[n][2] == "skipped" for n in GPU_ONLY) and got["fsdp_bf16"][2] == "ran"


def test_a_wrong_reference_is_a_mismatch(monkeypatch):
    greedy = gpu_check.M.greedy

    def off_by_one(net, ids, n):  # the reference's last token is wrong
        out = greedy(net, ids, n)
        return out[:-1] + [out[-1] + 1]

    monkeypatch.setattr(gpu_check.M, "greedy", off_by_one)
    rc, lines = run("--only=sampler_paged")
    assert len(lines) == 1 and rc == 1
    m = LINE.match(lines[0])
    assert (m[2], m[3]) == ("FAILED", "no") and "tokens DIFFER" in m[4], lines[0]


def test_only_selects_and_rejects_unknown_paths(capsys):
    rc, lines = run("--only=flash_attn,cuda_graphs")
    assert rc == 0 and [line.split(":")[0] for line in lines] == GPU_ONLY
    with pytest.raises(SystemExit):
        run("--only=triton,nope")
    assert "unknown path(s) nope" in capsys.readouterr().err
