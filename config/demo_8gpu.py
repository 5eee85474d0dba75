# The demo pipeline on 8 GPUs with the paper's student, Qwen2.5-7B-Instruct: SFT and both GRPO stages run under
# torchrun (FSDP2), the held-out eval on one GPU. KG questions only; the paper's public-data mix is
# data.prepare + config/sft_*.py / config/grpo_stage1.py / config/grpo_stage2.py.
# Data and model it expects: ../shared/kg-sources and the checkpoint (config.json, safetensors, tokenizer files):
#   huggingface-cli download Qwen/Qwen2.5-7B-Instruct --local-dir models/Qwen2.5-7B-Instruct   (beforehand, online)
#   pip install -r requirements-gpu.txt; python demo.py config/demo_8gpu.py
out_dir = "runs/demo_8gpu"
base_model = "models/Qwen2.5-7B-Instruct"
launcher = "torchrun --nproc_per_node=8"
n_diseases = 0
n_questions = 100000
held = 0.05
eval_limit = 2000
eval_max_tokens = 1024
sft = dict(max_len=2048, batch_size=64, micro_batch_size=2, max_steps=1500, lr=1e-5, min_lr=1e-6, warmup_steps=50,
           val_size=256, eval_interval=250, ckpt_interval=250)
grpo1 = dict(prompts_per_step=32, k=8, max_new_tokens=1024, max_steps=1000, micro_batch=4, lr=1e-6, min_lr=1e-6,
             warmup_steps=10, ckpt_every=25)
grpo2 = dict(prompts_per_step=16, k=16, max_new_tokens=1024, max_steps=500, micro_batch=4, lr=1e-6, min_lr=1e-6,
             ckpt_every=25, remine_every=50, mine_max=20000, difficult_weight=2.0)
