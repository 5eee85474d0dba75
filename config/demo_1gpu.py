# The demo pipeline on one GPU with a real checkpoint: SmolLM2-135M-Instruct (or Qwen2.5-0.5B-Instruct: point
# base_model at its Hugging Face folder), questions from the whole graph, about an hour.
# Data and model it expects: ../shared/kg-sources (as the CPU demo) and the base checkpoint in HF layout:
#   .venv/bin/python convert_gguf.py --out .cache/smollm2-135m-instruct        (the offline SmolLM2)
#   pip install -r requirements-gpu.txt; python demo.py config/demo_1gpu.py
out_dir = "runs/demo_1gpu"
base_model = ".cache/smollm2-135m-instruct"
n_diseases = 0              # the whole graph
n_questions = 20000
held = 0.1
eval_limit = 1000
eval_max_tokens = 512
sft = dict(max_len=1024, batch_size=32, micro_batch_size=16, max_steps=600, lr=5e-5, min_lr=5e-6, warmup_steps=20,
           val_size=64, eval_interval=100, ckpt_interval=100, grad_checkpointing=False)
grpo1 = dict(prompts_per_step=32, k=8, max_new_tokens=512, max_steps=300, micro_batch=64, lr=2e-6, min_lr=2e-6,
             warmup_steps=5, ckpt_every=25, plateau_window=20)
grpo2 = dict(prompts_per_step=16, k=16, max_new_tokens=512, max_steps=150, micro_batch=64, lr=2e-6, min_lr=2e-6,
             warmup_steps=5, ckpt_every=25, remine_every=50, mine_max=2000)
