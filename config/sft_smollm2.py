# CoT cold start of the real SmolLM2-135M-Instruct on 2 CPU cores, sized for 10-15 minutes: 12 steps x 2
# examples (HuatuoGPT-o1 chains ~670 tokens, KG trajectories ~270) at 15-40 training tokens/s
# (bench/train.py; the low end on a busy machine).
# That is an eighth of an epoch of the 184 HuatuoGPT chains: enough to learn the <think>/<answer> format,
# not the medicine. Data (the paths below):
#   .venv/bin/python -m data.distill --huatuogpt ../shared/data/huatuogpt_o1_demo/demo_data.json --out runs/sft_data/huatuo
#   .venv/bin/python -m data.distill --records runs/demo/kg_questions.jsonl --out runs/sft_data/kg --template
# On GPUs: torchrun, larger batch_size / micro_batch_size / max_steps, lr about 1e-5.
init_from = ".cache/smollm2-135m-instruct"
train_file = "runs/sft_data/huatuo/sft.jsonl,runs/sft_data/kg/sft.jsonl"
out_dir = "runs/sft_smollm2"
max_len = 1024  # keeps 183 of the 184 HuatuoGPT chains
val_size = 8
batch_size = 2
micro_batch_size = 1
max_steps = 12
lr = 1e-4
min_lr = 1e-5
warmup_steps = 2
eval_interval = 6
ckpt_interval = 6  # a checkpoint is 1.6 GB (fp32 weights + AdamW moments)
grad_checkpointing = False  # 135M fits in memory: no recompute on CPU
