# The demo pipeline on 8 GPUs with the paper's student, Qwen2.5-7B-Instruct: the knowledge phase, SFT and both
# GRPO stages run under torchrun (FSDP2), the held-out eval on one GPU; not yet run. The paper's public-data mix
# is data.prepare + config/sft_*.py, then grpo.py --stage 1 and --stage 2 (its defaults).
# Data and model it expects: ../shared/kg-sources and the checkpoint (config.json, safetensors, tokenizer files):
#   huggingface-cli download Qwen/Qwen2.5-7B-Instruct --local-dir models/Qwen2.5-7B-Instruct   (beforehand, online)
#   pip install -r requirements-gpu.txt; python demo.py config/demo_8gpu.py --seeds=0,1,2
out_dir = "runs/demo_8gpu"
base_model = "models/Qwen2.5-7B-Instruct"
launcher = "torchrun --nproc_per_node=8"
n_diseases = 0              # every disease of the graph with a drug, a class and a target
held = 0.6
eval_max_tokens = 256
pass_k = 16
pass_n = 500
knowledge = dict(max_len=2048, batch_size=256, micro_batch_size=8, max_steps=2000, lr=1e-5, min_lr=1e-6,
                 warmup_steps=50, val_size=0, eval_every=2000, ckpt_every=250)
sft = dict(max_len=2048, batch_size=64, micro_batch_size=4, max_steps=300, lr=1e-5, min_lr=1e-6, warmup_steps=20,
           val_size=0, eval_every=300, ckpt_every=100)
grpo1 = dict(batch_size=64, k=8, max_new_tokens=256, max_steps=300, micro_batch_size=16, lr=1e-6, min_lr=1e-6,
             warmup_steps=10, ckpt_every=25)
grpo2 = dict(batch_size=64, k=16, max_new_tokens=256, max_steps=300, micro_batch_size=16, lr=1e-6, min_lr=1e-6,
             ckpt_every=25, remine_every=50, mine_max=4000, difficult_weight=2.0)
