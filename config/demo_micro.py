# The demo pipeline in a minute or two (tests/test_demo.py): every stage runs on a toy scale (one-hop diagnosis
# questions about 150 diseases, a 0.2M-parameter model); only the format is expected to be learnt.
# 160 SFT steps: with the varied CoT templates (data.distill --template) 80 left the format unlearnt (0% vs 69%).
#   python demo.py config/demo_micro.py --out_dir=/tmp/demo_micro
out_dir = "runs/demo_micro"
seed = 0
n_diseases = 150
n_questions = 250
templates = "diagnosis=1"
held = 0.2
eval_limit = 16
eval_max_tokens = 120
cpu_threads = 1
vocab_size = 1024
hidden_size = 64
num_layers = 2
num_heads = 4
num_kv_heads = 2
intermediate_size = 192
sft = dict(max_len=256, batch_size=16, micro_batch_size=16, max_steps=160, lr=5e-3, min_lr=5e-4, warmup_steps=3,
           val_size=8, eval_interval=160, ckpt_interval=160, grad_checkpointing=False)
grpo1 = dict(prompts_per_step=4, k=4, max_new_tokens=120, max_steps=2, micro_batch=16, lr=1e-4, min_lr=1e-4,
             warmup_steps=1, ckpt_every=2, grad_checkpointing=False)
grpo2 = dict(prompts_per_step=4, k=4, max_new_tokens=120, max_steps=2, micro_batch=16, lr=1e-4, min_lr=1e-4,
             warmup_steps=1, ckpt_every=2, remine_every=2, mine_max=8, grad_checkpointing=False)
