# CPU demo: a few GRPO steps of SmolLM2-135M-Instruct (or the SFT demo's export) on the demo's RL pool.
# Data and model first: bash demo.sh (runs/demo/data/rl.jsonl, .cache/smollm2-135m-instruct).
#   .venv/bin/python grpo.py config/grpo_demo_cpu.py
# A 135M model rarely writes <think>...</think><answer>X</answer>: expect rewards near 0 and many zero-signal
# groups; the demo shows the machinery (rollouts, update, weight sync, metrics, checkpoint, export).
model = ".cache/smollm2-135m-instruct"
data = "runs/demo/data/rl.jsonl"
out_dir = "runs/demo/grpo"
prompts_per_step = 2
k = 4
max_new_tokens = 96
max_steps = 3
micro_batch = 8
lr = 1e-6
min_lr = 1e-6
warmup_steps = 1
ckpt_every = 3
plateau_window = 100
grad_checkpointing = False  # 135M fits in memory: no recompute on CPU
