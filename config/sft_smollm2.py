# CoT cold start of the real SmolLM2-135M-Instruct on 2 CPU cores: 120 steps x 4 examples (0.8 epoch of the
# 184 HuatuoGPT-o1 chains, ~670 tokens, and 400 templated KG trajectories, ~270 tokens), about 40 minutes at
# ~130 training tokens/s on a quiet machine (bench/train.py).
# Data (the paths below):
#   .venv/bin/python -m data.distill --huatuogpt ../shared/data/huatuogpt_o1_demo/demo_data.json --out runs/sft_data/huatuogpt
#   .venv/bin/python -m kg.build --out runs/kg
#   .venv/bin/python -m kg.sample --graph runs/kg --n 400 --out runs/sft_data/kg_questions.jsonl --seed 1
#   .venv/bin/python -m data.distill --records runs/sft_data/kg_questions.jsonl --out runs/sft_data/kg_template --template
# On GPUs: torchrun, larger batch_size / micro_batch_size / max_steps, lr about 1e-5.
init_from = ".cache/smollm2-135m-instruct"
train_file = "runs/sft_data/huatuogpt/sft.jsonl,runs/sft_data/kg_template/sft.jsonl"
out_dir = "runs/sft_smollm2"
max_len = 1024  # keeps 183 of the 184 HuatuoGPT chains
val_size = 8
batch_size = 4
micro_batch_size = 2
max_steps = 120
lr = 1e-4
min_lr = 1e-5
warmup_steps = 5
eval_interval = 40
ckpt_interval = 40  # a checkpoint is 1.6 GB (fp32 weights + AdamW moments)
grad_checkpointing = False  # 135M fits in memory: no recompute on CPU
