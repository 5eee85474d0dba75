# The paper's stage 1 on 8 GPUs: Qwen2.5-7B-Instruct after the CoT cold start (sft.py's export), Easy + Moderate
# items of the RL pool, k = 8, until the reward plateaus.
#   torchrun --nproc_per_node=8 grpo.py config/grpo_stage1.py
stage = 1
model = "out/sft/hf"
data = "work/data/rl.jsonl"
out_dir = "out/grpo"
prompts_per_step = 32   # x 8 rollouts = 256 completions per optimizer step
k = 8
max_new_tokens = 2048
temperature = 1.0
lr = 1e-6
min_lr = 1e-6
warmup_steps = 10
max_steps = 1000        # an upper bound: the plateau detector ends the stage
micro_batch = 4
ckpt_every = 25
