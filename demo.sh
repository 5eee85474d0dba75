#!/usr/bin/env bash
# The whole paper on this machine (about 19 minutes on 2 quiet CPU cores), outputs in runs/demo:
#   KG -> a world of 102 diseases -> the knowledge phase (a tiny Qwen3-shaped model learns the world's facts)
#   -> CoT SFT -> GRPO stage 1 -> GRPO stage 2, held-out eval and pass@k after each, then the Table-4 ablation
#   (runs/demo/ablation.md) and the training curves (runs/demo/curves.png).
# Rerunning resumes: finished stages are skipped, a killed training stage continues from its checkpoint.
# Three seeds, mean +- s.e.:  bash demo.sh config/demo_cpu.py --seeds=0,1,2
# Another preset scales it up:  bash demo.sh config/demo_1gpu.py   (torchrun x 8: config/demo_8gpu.py)
# Extra --key=value arguments override the preset, e.g. bash demo.sh config/demo_cpu.py --out_dir=runs/demo2
set -euo pipefail
cd "$(dirname "$0")"
PRESET=${1:-config/demo_cpu.py}
[ $# -gt 0 ] && shift
exec .venv/bin/python demo.py "$PRESET" "$@"
