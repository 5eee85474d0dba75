# The paper's stage 2 on 8 GPUs: from stage 1's policy (out/grpo/stage1/hf), hard samples mined from the whole
# pool and re-mined every 50 steps, Difficult items weighted up, k raised from 8 to 16.
#   torchrun --nproc_per_node=8 grpo.py config/grpo_stage2.py     (the same as --stage=2 with the defaults)
stage = 2
data = "work/data/rl.jsonl"
out_dir = "out/grpo"
prompts_per_step = 16   # x 16 rollouts = 256 completions per optimizer step
k = 16
max_new_tokens = 2048
lr = 1e-6
min_lr = 1e-6
max_steps = 500
micro_batch = 4
remine_every = 50
mine_pass_below = 0.5
difficult_weight = 2.0
ckpt_every = 25
