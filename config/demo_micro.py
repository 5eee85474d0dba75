# The demo pipeline in about a minute (tests/test_demo.py): every stage runs on a toy scale (a world of 30
# diseases, a 0.2M-parameter model); only the shape of a chain of thought is expected to be learnt.
#   python demo.py config/demo_micro.py --out_dir=/tmp/demo_micro
out_dir = "runs/demo_micro"
seed = 0
n_diseases = 30
held = 0.6
eval_max_tokens = 64
pass_k = 4
pass_n = 8
cpu_threads = 1
vocab_size = 512
hidden_size = 64
num_layers = 2
num_heads = 4
num_kv_heads = 2
intermediate_size = 192
knowledge = dict(max_len=256, batch_size=32, micro_batch_size=32, max_steps=60, lr=5e-3, min_lr=5e-4,
                 warmup_steps=3, val_size=0, eval_every=100, ckpt_every=100, grad_checkpointing=False)
sft = dict(max_len=256, batch_size=16, micro_batch_size=16, max_steps=100, lr=5e-3, min_lr=5e-4, warmup_steps=3,
           val_size=0, eval_every=100, ckpt_every=100, grad_checkpointing=False)
grpo1 = dict(batch_size=4, k=4, max_new_tokens=64, max_steps=2, micro_batch_size=16, lr=1e-4, min_lr=1e-4,
             warmup_steps=1, ckpt_every=2, grad_checkpointing=False, temperature=0.5, drop_zero_signal=True)
grpo2 = dict(batch_size=4, k=4, max_new_tokens=64, max_steps=2, micro_batch_size=16, lr=1e-4, min_lr=1e-4,
             warmup_steps=1, ckpt_every=2, remine_every=2, mine_max=8, grad_checkpointing=False, temperature=0.5)
