# GRPO stage 1 of the real SmolLM2-135M-Instruct after its CoT cold start (config/sft_smollm2.py; the README's
# run started from its longer variant, --max_len=1024 --max_steps=120), on 2 CPU
# cores: 30 steps x 4 prompts x 4 rollouts x 256 new tokens, about 1-2 minutes a step.
# The pool: MedQA train (data.prepare's decontaminated items) + KG questions not seen in SFT:
#   .venv/bin/python -m data.prepare --out runs/pool_data --skip-bad
#   .venv/bin/python -m kg.sample --graph runs/kg --n 64 --out runs/pool_data/kg_rl.jsonl --seed 2
#   (runs/pool_data/pool.jsonl = the medqa records of 05_decontam.jsonl + kg_rl.jsonl)
# No record has a difficulty label: stage 1 labels them by the SFT policy's pass rate over k samples first.
stage = 1
model = "runs/sft_smollm2/hf"
data = "runs/pool_data/pool.jsonl"
out_dir = "runs/grpo_smollm2"
batch_size = 4
k = 4
max_new_tokens = 256
temperature = 1.0
lr = 1e-5               # a 135M model and 30 steps: 1e-6 (the 7B setting) would not move it
min_lr = 1e-5
warmup_steps = 3
max_steps = 30
micro_batch_size = 8
ckpt_every = 10
plateau_window = 30     # no plateau stop inside these 30 steps
grad_checkpointing = False  # 135M fits in memory: no recompute on CPU
