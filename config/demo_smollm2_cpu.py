# The demo's world on the real SmolLM2-135M-Instruct, on 2 CPU cores:
#   .venv/bin/python convert_gguf.py --out .cache/smollm2-135m-instruct
#   .venv/bin/python demo.py config/demo_smollm2_cpu.py
# A world of 130 diseases (529 held-out compositions). SmolLM2's tokenizer splits the entity names into pieces,
# so every step costs ~5x the CPU demo's tokens: the cold start sees ~half the training questions once, RL runs a
# few steps of a few prompts, and MedQA's first 400 test items are scored after each reasoning row.
# Seed 0 (README): held-out 20.0 -> 61.1 (SFT) -> 62.2 (RL 1) -> 67.3% (RL 2); GRPO over SFT +6.2 +- 1.9.
# 133 min wall / 144 min CPU on a shared 2-core machine. The knowledge phase asks the one-hop questions as short
# sentences (knowledge_qa="short": the stem and its answer, ~25 tokens instead of ~115 with the options and
# SmolLM2's default system prompt); with the facts alone ("none") the cold start had nothing to build on.
out_dir = "runs/demo_smollm2"
base_model = ".cache/smollm2-135m-instruct"
seed = 0
n_diseases = 130
held = 0.6
fact_copies = 1
knowledge_qa = "short"
eval_max_tokens = 112
pass_k = 4
pass_n = 25
medqa = 400
medqa_max_tokens = 192
cpu_threads = 2
knowledge = dict(max_len=256, batch_size=32, micro_batch_size=32, max_steps=300, lr=3e-4, min_lr=3e-5,
                 warmup_steps=10, val_size=0, eval_every=10000, ckpt_every=100, grad_checkpointing=False)
sft = dict(max_len=320, batch_size=16, micro_batch_size=16, max_steps=40, lr=5e-5, min_lr=5e-6, warmup_steps=4,
           val_size=0, eval_every=10000, ckpt_every=20, grad_checkpointing=False)
grpo1 = dict(batch_size=8, k=4, max_new_tokens=112, max_steps=12, micro_batch_size=32, lr=1e-5, min_lr=1e-5,
             warmup_steps=1, ckpt_every=4, plateau_window=20, grad_checkpointing=False, temperature=0.5,
             drop_zero_signal=True)
grpo2 = dict(batch_size=8, k=8, max_new_tokens=112, max_steps=12, micro_batch_size=32, lr=1e-5, min_lr=1e-5,
             warmup_steps=1, ckpt_every=4, remine_every=100, mine_max=128, mine_pass_below=1.0,
             grad_checkpointing=False, temperature=0.5)
