# CPU demo: a few SFT steps of SmolLM2-135M-Instruct on the HuatuoGPT-o1 demo chains (a few minutes on 2 cores).
# Data first:  .venv/bin/python -m data.distill --huatuogpt ../shared/data/huatuogpt_o1_demo/demo_data.json --out runs/demo/huatuo_sft
# Then:        .venv/bin/python sft.py config/sft_demo_cpu.py
init_from = ".cache/smollm2-135m-instruct"
train_file = "runs/demo/huatuo_sft/sft.jsonl"
out_dir = "runs/demo/sft"
max_len = 512  # keeps the shorter chains only: short steps
val_size = 4
batch_size = 2
micro_batch_size = 1
max_steps = 6
lr = 5e-5
min_lr = 5e-6
warmup_steps = 1
eval_interval = 3
ckpt_interval = 3
grad_checkpointing = False  # 135M fits in memory: no recompute on CPU
