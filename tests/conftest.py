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
