# CoT cold start of the real SmolLM2-135M-Instruct on 2 CPU cores, sized for ~15 minutes (about 25 training
# tokens/s: 16 steps x 2 chains of ~650 tokens; a sixth of an epoch of the 184 HuatuoGPT-o1 chains).
# On GPUs raise batch_size, max_steps and micro_batch_size, and use torchrun.
init_from = ".cache/smollm2-135m-instruct"
train_file = "runs/sft_data/huatuo/sft.jsonl,runs/sft_data/kg/sft.jsonl"
out_dir = "runs/sft_smollm2"
max_len = 1024
val_size = 8
batch_size = 2
micro_batch_size = 1
max_steps = 16
lr = 5e-5
min_lr = 5e-6
warmup_steps = 2
weight_decay = 0.0
eval_interval = 8
ckpt_interval = 4
grad_checkpointing = False  # 135M fits in memory: no recompute on CPU
