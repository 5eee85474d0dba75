# CoT cold start of the real SmolLM2-135M-Instruct on 2 CPU cores: 80 steps x 4 examples of the trajectories that
# fit in 768 tokens (about 140 of the 184 HuatuoGPT-o1 chains and the 400 templated KG trajectories), about 17
# minutes at ~130 training tokens/s. Short chains matter for a 135M model: with max_len=1024 and 120 steps it
# learnt longer reasoning and looped more under greedy decoding (37% extraction failures on MedQA against 13%);
# varied KG templates (data.distill --template) then took the failures to 7% (first 100 MedQA items, greedy).
# Data (the paths below):
#   .venv/bin/python -m data.distill --huatuogpt ../shared/data/huatuogpt_o1_demo/demo_data.json --out runs/sft_data/huatuogpt
#   .venv/bin/python -m kg.build --out runs/kg
#   .venv/bin/python -m kg.sample --graph runs/kg --n 400 --out runs/sft_data/kg_questions.jsonl --seed 1
#   .venv/bin/python -m data.distill --records runs/sft_data/kg_questions.jsonl --out runs/sft_data/kg_template --template
# On GPUs: torchrun, larger batch_size / micro_batch_size / max_steps, lr about 1e-5.
model = ".cache/smollm2-135m-instruct"
train_file = "runs/sft_data/huatuogpt/sft.jsonl,runs/sft_data/kg_template/sft.jsonl"
out_dir = "runs/sft_smollm2"
max_len = 768   # drops 44 of the 584 examples (the longest HuatuoGPT chains)
val_size = 8
batch_size = 4
micro_batch_size = 2
max_steps = 80
lr = 1e-4
min_lr = 1e-5
warmup_steps = 5
eval_every = 40
ckpt_every = 40  # a checkpoint is 1.6 GB (fp32 weights + AdamW moments)
grad_checkpointing = False  # 135M fits in memory: no recompute on CPU
