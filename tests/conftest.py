import os
from pathlib import Path

import pytest

# CI and sessions lay shared/ (real data, configs, KG sources) beside the checkout.
SHARED = Path(os.environ.get("FLEMING_SHARED", Path(__file__).resolve().parents[2] / "shared"))


@pytest.fixture(scope="session")
def shared():
    if not SHARED.is_dir():
        pytest.fail(f"shared data folder not found at {SHARED} (set FLEMING_SHARED)")
    return SHARED


@pytest.fixture(scope="module")
def dist_env():
    """A process group for training.py's FSDP code: a world of one unless the test already runs under one."""
    import torch
    import torch.distributed as dist
    import training as T
    started = not dist.is_initialized()
    env = T.setup_dist() if started else T.DistEnv(dist.get_rank(), dist.get_world_size(), 0, torch.device("cpu"))
    yield env
    if started:
        T.teardown_dist()
