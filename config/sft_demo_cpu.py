# CPU demo: a few SFT steps of SmolLM2-135M-Instruct on knowledge-graph trajectories (~270 tokens each;
# a couple of minutes on 2 cores). Data first (demo.sh makes runs/demo/kg_questions.jsonl):
#   .venv/bin/python -m data.distill --records runs/demo/kg_questions.jsonl --out runs/demo/kg_sft --template
#   .venv/bin/python sft.py config/sft_demo_cpu.py
init_from = ".cache/smollm2-135m-instruct"
train_file = "runs/demo/kg_sft/sft.jsonl"
out_dir = "runs/demo/sft"
max_len = 512
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
