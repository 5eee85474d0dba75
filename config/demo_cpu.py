# The whole paper on a 2-core CPU in about 4 minutes (python demo.py config/demo_cpu.py; bash demo.sh runs it):
# 1500 KG questions asked for (about 1,040 pass the checker) on a small world of diseases, split leak-free by answer, templated CoT targets, a 1M-parameter
# Qwen3-shaped model with its own BPE tokenizer, CoT SFT, GRPO stage 1 and stage 2, held-out eval after each.
# Needs only ../shared/kg-sources. Every setting of the run is here; --key=value overrides one.
out_dir = "runs/demo"
seed = 0
n_diseases = 120
n_questions = 1500
held = 0.2
eval_max_tokens = 200
cpu_threads = 1             # one OpenMP thread per process: 5-20x faster than 2 on a busy 2-core machine
vocab_size = 2048
hidden_size = 128
num_layers = 4
num_heads = 4
num_kv_heads = 2
intermediate_size = 384
sft = dict(max_len=320, batch_size=16, micro_batch_size=16, max_steps=240, lr=3e-3, min_lr=3e-4, warmup_steps=10,
           val_size=32, eval_interval=60, ckpt_interval=60, grad_checkpointing=False)
grpo1 = dict(prompts_per_step=8, k=8, max_new_tokens=200, max_steps=16, micro_batch=32, lr=2e-4, min_lr=2e-4,
             warmup_steps=2, ckpt_every=5, plateau_window=8, grad_checkpointing=False)
grpo2 = dict(prompts_per_step=8, k=12, max_new_tokens=200, max_steps=12, micro_batch=32, lr=2e-4, min_lr=2e-4,
             warmup_steps=2, ckpt_every=4, remine_every=6, mine_max=48, grad_checkpointing=False)
