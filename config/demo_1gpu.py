# The demo pipeline on one GPU with a real checkpoint: SmolLM2-135M-Instruct (or Qwen2.5-0.5B-Instruct: point
# base_model at its Hugging Face folder). The knowledge phase teaches it the world's facts (a real model knows
# some of them already), then CoT SFT and both GRPO stages as on the CPU; not yet run on a GPU.
# Data and model it expects: ../shared/kg-sources (as the CPU demo) and the base checkpoint in HF layout:
#   .venv/bin/python convert_gguf.py --out .cache/smollm2-135m-instruct        (the offline SmolLM2)
#   pip install -r requirements-gpu.txt; python demo.py config/demo_1gpu.py --seeds=0,1,2
out_dir = "runs/demo_1gpu"
base_model = ".cache/smollm2-135m-instruct"
n_diseases = 200
held = 0.6
eval_max_tokens = 128
pass_k = 8
pass_n = 200
knowledge = dict(max_len=1024, batch_size=128, micro_batch_size=32, max_steps=1500, lr=2e-4, min_lr=2e-5,
                 warmup_steps=50, val_size=0, eval_every=1500, ckpt_every=250, grad_checkpointing=False)
sft = dict(max_len=1024, batch_size=32, micro_batch_size=16, max_steps=150, lr=5e-5, min_lr=5e-6, warmup_steps=10,
           val_size=0, eval_every=150, ckpt_every=50, grad_checkpointing=False)
grpo1 = dict(batch_size=32, k=8, max_new_tokens=128, max_steps=100, micro_batch_size=128, lr=2e-6, min_lr=2e-6,
             warmup_steps=5, ckpt_every=25, plateau_window=20)
grpo2 = dict(batch_size=32, k=16, max_new_tokens=128, max_steps=100, micro_batch_size=128, lr=2e-6, min_lr=2e-6,
             warmup_steps=5, ckpt_every=25, remine_every=25, mine_max=256)
