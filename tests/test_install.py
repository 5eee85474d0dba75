"""The install is reproducible and collision-free.

- No top-level module or package of ours has the import name of a module that an installed distribution
  provides, or of the standard library: from the repo root ours would shadow it (transformers 5.25 imports
  the PyPI package `kernels`, which our old kernels.py hid, and a fresh clone went red).
- requirements-lock.txt pins every distribution that requirements-dev.txt pulls in, transitively, and the
  installed versions are the pinned ones.
"""
import importlib.metadata as md
import re
import sys
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]


def our_top_level_names(root=ROOT):
    names = {p.stem for p in root.glob("*.py")}
    names |= {p.parent.name for p in root.glob("*/__init__.py")}
    return names


def test_no_module_of_ours_shadows_an_installed_or_stdlib_module():
    ours = our_top_level_names()
    assert {"model", "sample", "eval", "data", "kg"} <= ours  # the scan sees the layout
    theirs = md.packages_distributions()
    clashes = {n: theirs[n] for n in ours if n in theirs}
    clashes.update({n: ["the standard library"] for n in ours if n in sys.stdlib_module_names})
    assert not clashes, f"rename these modules of ours, they shadow: {clashes}"


def test_the_scan_would_catch_a_clash(tmp_path):
    (tmp_path / "numpy.py").write_text("")
    (tmp_path / "kernels").mkdir()
    (tmp_path / "kernels" / "__init__.py").write_text("")
    names = our_top_level_names(tmp_path)
    assert names == {"numpy", "kernels"}
    assert "numpy" in md.packages_distributions()


def read_lock():
    pins = {}
    for line in (ROOT / "requirements-lock.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, version = line.split("==")
            pins[canonicalize_name(name)] = version
    return pins


def direct_requirements(path):
    reqs = []
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line.startswith("-r "):
            reqs += direct_requirements(path.parent / line[3:].strip())
        elif line:
            reqs.append(Requirement(line))
    return reqs


def installed_closure(reqs):
    """Every installed distribution reachable from `reqs` through the requirements in their metadata."""
    env, seen, todo = default_environment(), {}, list(reqs)
    while todo:
        req = todo.pop()
        name = canonicalize_name(req.name)
        if name in seen or (req.marker and not req.marker.evaluate({**env, "extra": ""})):
            continue
        dist = md.distribution(req.name)
        seen[name] = dist.version
        todo += [Requirement(r) for r in dist.requires or []]
    return seen


def test_lock_pins_everything_the_dev_requirements_install():
    pins = read_lock()
    closure = installed_closure(direct_requirements(ROOT / "requirements-dev.txt"))
    assert {"torch", "transformers", "numpy", "pytest"} <= set(closure)
    unpinned = sorted(set(closure) - set(pins))
    assert not unpinned, f"installed but not pinned in requirements-lock.txt: {unpinned}"
    wrong = {n: (v, pins[n]) for n, v in closure.items()
             if Version(v).public != Version(pins[n]).public}  # torch 2.13.0+cpu is the pinned 2.13.0
    assert not wrong, f"installed version differs from the lock (installed, pinned): {wrong}"


def test_setup_installs_with_the_lock_as_constraints():
    setup = (ROOT / "setup.sh").read_text()
    assert re.search(r"pip install -c requirements-lock.txt -r requirements-dev.txt", setup)
    assert "torch==" in setup
