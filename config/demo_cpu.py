# The whole paper on a 2-core CPU (python demo.py config/demo_cpu.py; bash demo.sh runs it): a world of 100
# diseases from the KG, a knowledge phase that teaches a tiny Qwen3-shaped model its facts (the stand-in for
# pretraining), CoT SFT, GRPO stage 1 and stage 2, held-out eval after each. --seeds=0,1,2 runs three seeds.
# Needs only ../shared/kg-sources. Every setting of the run is here; --key=value overrides one.
out_dir = "runs/demo"
seed = 0
n_diseases = 102
held = 0.6
eval_max_tokens = 96
pass_k = 8
pass_n = 100
cpu_threads = 1             # one OpenMP thread per process: 5-20x faster than 2 on a busy 2-core machine
vocab_size = 2048
hidden_size = 128
num_layers = 4
num_heads = 4
num_kv_heads = 2
intermediate_size = 384
knowledge = dict(max_len=512, batch_size=32, micro_batch_size=32, max_steps=600, lr=3e-3, min_lr=3e-4,
                 warmup_steps=20, val_size=0, eval_interval=600, ckpt_interval=200, grad_checkpointing=False)
sft = dict(max_len=512, batch_size=16, micro_batch_size=16, max_steps=400, lr=2e-3, min_lr=2e-4, warmup_steps=10,
           val_size=0, eval_interval=400, ckpt_interval=100, grad_checkpointing=False)
grpo1 = dict(prompts_per_step=8, k=8, max_new_tokens=96, max_steps=20, micro_batch=64, lr=2e-4, min_lr=2e-4,
             warmup_steps=2, ckpt_every=5, plateau_window=8, grad_checkpointing=False)
grpo2 = dict(prompts_per_step=8, k=12, max_new_tokens=96, max_steps=16, micro_batch=64, lr=2e-4, min_lr=2e-4,
             warmup_steps=2, ckpt_every=4, remine_every=8, mine_max=64, grad_checkpointing=False)
