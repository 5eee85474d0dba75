"""grpo.py: reward, advantage, loss aggregations and masks against hand-computed values; chunked fp32 logprobs
against the model's plain forward; the loop on a toy task; FSDP and kill/resume against one process."""
import json
import math
import re
from types import SimpleNamespace as NS

import pytest
import torch

import grpo
import model as M

# ------------------------------------------------------------------------------ reward and advantage

REC = {"id": "1", "source": "t", "split": "train", "question": "Which vitamin prevents scurvy?",
       "options": {"A": "Vitamin A", "B": "Vitamin C", "C": "Vitamin D"}, "answer": "B", "difficulty": None,
       "meta": {}}
GOOD = "<think>Scurvy is vitamin C deficiency.</think>\n<answer>B</answer>"


def test_reward_is_correctness_plus_format():
    assert grpo.reward(REC, GOOD, "eos") == (2.0, True, True)
    assert grpo.reward(REC, GOOD.replace("B<", "A<"), "eos") == (1.0, False, True)  # well formed, wrong
    r, correct, fmt = grpo.reward(REC, "The answer is (B).", "eos")  # right, but no tags: format fails
    assert (r, correct, fmt) == (1.0, True, False)
    assert grpo.reward(REC, GOOD, "eos", w_correct=1.0, w_format=0.0) == (1.0, True, True)
    assert grpo.reward(REC, GOOD, "eos", w_correct=0.5, w_format=0.25) == (0.75, True, True)
    # several options inside the tag is no answer, whatever else
    r, correct, _ = grpo.reward(REC, "<think>x</think>\n<answer>A or B</answer>", "eos")
    assert not correct and r <= 1.0


def test_truncated_completion_gets_zero_reward():
    assert grpo.reward(REC, GOOD, "length") == (0.0, False, False)


def test_advantage_is_reward_minus_group_mean():
    r = torch.tensor([[1.0, 0.0, 0.0], [2.0, 2.0, 2.0], [2.0, 1.0, 0.0]])
    a = grpo.advantages(r)
    torch.testing.assert_close(a, torch.tensor([[2 / 3, -1 / 3, -1 / 3], [0.0, 0, 0], [1.0, 0, -1]]))
    std = math.sqrt(((2 / 3) ** 2 + 2 * (1 / 3) ** 2) / 2)  # Bessel-corrected
    a = grpo.advantages(r, std_norm=True)
    torch.testing.assert_close(a[0], torch.tensor([2 / 3, -1 / 3, -1 / 3]) / (std + 1e-6))
    assert a[1].abs().max() == 0  # all-equal group: 0 / eps, not NaN
    torch.testing.assert_close(a[2], torch.tensor([1.0, 0, -1]) / (1 + 1e-6))
    assert grpo.advantages(torch.tensor([[1.0], [0.0]])).abs().max() == 0  # one sample: no baseline


def test_zero_signal_groups_counted():
    r = torch.tensor([[1.0, 0.0, 0.0], [2.0, 2.0, 2.0], [0.0, 0.0, 0.0], [1.0, 1.0, 2.0]])
    assert grpo.zero_signal(r).tolist() == [False, True, True, False]


# ------------------------------------------------------------------------------------------- loss

def hand_batch():
    """Two groups of k = 3. Group 0: rewards 1, 0, 0 -> A = 2/3, -1/3, -1/3; lengths 2, 3, 1.
    Group 1: all equal -> A = 0 (zero signal); lengths 1, 2, 3. Padding holds junk logprobs (-7)."""
    logp = torch.full((6, 3), -7.0)
    rows = [[-1.0, -2.0], [-1.0, -1.0, -1.0], [-0.5], [-3.0], [-1.0, -4.0], [-2.0, -2.0, -2.0]]
    mask = torch.zeros(6, 3)
    for i, r in enumerate(rows):
        logp[i, :len(r)] = torch.tensor(r)
        mask[i, :len(r)] = 1
    adv = grpo.advantages(torch.tensor([[1.0, 0.0, 0.0], [1.0, 1.0, 1.0]])).flatten()
    return logp.requires_grad_(), mask, adv


# sum_i A_i sum_t logp = (2/3)(-3) + (-1/3)(-3) + (-1/3)(-0.5) = -5/6; N = 6 completions, 12 tokens, max_len 4
# seq_mean: sum_i A_i mean_t logp = (2/3)(-1.5) + (-1/3)(-1) + (-1/3)(-0.5) = -1/2
EXPECTED = {"sum": (5 / 6) / 6, "seq_mean": (1 / 2) / 6, "token_mean": (5 / 6) / 12, "constant": (5 / 6) / (6 * 4)}


@pytest.mark.parametrize("agg", grpo.AGGREGATIONS)
def test_loss_aggregations_hand_computed(agg):
    logp, mask, adv = hand_batch()
    loss = grpo.grpo_loss(logp, mask, adv, n_seqs=6, n_tokens=12, agg=agg, max_len=4)
    assert loss.item() == pytest.approx(EXPECTED[agg], abs=1e-7)
    loss.backward()
    # d loss / d logp_it = -A_i * mask_it / normalizer (per row for seq_mean)
    lengths = mask.sum(1, keepdim=True)
    norm = {"sum": 6, "seq_mean": 6 * lengths, "token_mean": 12, "constant": 24}[agg]
    torch.testing.assert_close(logp.grad, -adv[:, None] * mask / norm)
    assert logp.grad[mask == 0].abs().max() == 0  # padding carries nothing
    assert logp.grad[3:].abs().max() == 0  # the zero-signal group carries no gradient


def test_loss_split_over_micro_batches_sums_to_whole():
    """Global counts: any split of the step's completions gives the same total loss (and gradient)."""
    for agg in grpo.AGGREGATIONS:
        logp, mask, adv = hand_batch()
        whole = grpo.grpo_loss(logp, mask, adv, 6, 12, agg, 4)
        parts = sum(grpo.grpo_loss(logp[s], mask[s], adv[s], 6, 12, agg, 4) for s in (slice(0, 2), slice(2, 6)))
        assert parts.item() == pytest.approx(whole.item(), abs=1e-7)


def test_ppo_clip_and_ratio():
    logp, mask, adv = hand_batch()
    # old = current: ratio 1, the loss is -A per token and the gradient equals eq. 1's
    loss = grpo.grpo_loss(logp, mask, adv, 6, 12, "sum", old_logp=logp.detach(), clip_eps=0.2)
    assert loss.item() == pytest.approx(-(2 / 3 * 2 - 1 / 3 * 3 - 1 / 3 * 1) / 6, abs=1e-7)
    loss.backward()
    torch.testing.assert_close(logp.grad, -adv[:, None] * mask / 6)
    # ratio 1.5 > 1 + eps: positive advantage is clipped (no gradient), negative is not (gradient -A * ratio)
    lp = torch.zeros(2, 1, requires_grad=True)
    old = torch.full((2, 1), -math.log(1.5))
    loss = grpo.grpo_loss(lp, torch.ones(2, 1), torch.tensor([1.0, -1.0]), n_seqs=1, old_logp=old, clip_eps=0.2)
    assert loss.item() == pytest.approx(-1.2 + 1.5, abs=1e-6)
    loss.backward()
    torch.testing.assert_close(lp.grad, torch.tensor([[0.0], [1.5]]))


def test_kl_k3_clamped():
    lp = torch.zeros(2, 1, requires_grad=True)
    ref = torch.tensor([[math.log(2.0)], [30.0]])  # second: exp(20) - 20 - 1 clamps to 10
    loss = grpo.grpo_loss(lp, torch.ones(2, 1), torch.zeros(2), n_seqs=2, ref_logp=ref, kl_beta=0.1)
    assert loss.item() == pytest.approx(0.1 * ((2 - math.log(2) - 1) + 10) / 2, abs=1e-6)
    loss.backward()
    # d/dlogp of exp(d) - d - 1 with d = ref - logp is 1 - exp(d) = -1 for the first; 0 where clamped
    torch.testing.assert_close(lp.grad, torch.tensor([[0.1 * -1.0 / 2], [0.0]]))


def test_unknown_aggregation_is_an_error():
    logp, mask, adv = hand_batch()
    with pytest.raises(ValueError, match="agg='mean'"):
        grpo.grpo_loss(logp, mask, adv, 6, 12, "mean")


# ------------------------------------------------------------------------------------------- masks

EOS = 0  # pad id == eos id on purpose (Qwen): the mask must still cover the EOS token


def test_completion_batch_packs_each_prompt_once_eos_carries_loss():
    p1, p2 = [5, 6, 7], [5, 6]
    comps = [NS(token_ids=[8, 9, EOS], logprobs=[-0.1, -0.2, -0.3], finish_reason="eos"),
             NS(token_ids=[4], logprobs=[-0.4], finish_reason="eos"),
             NS(token_ids=[3, 2], logprobs=[-0.5, -0.6], finish_reason="eos")]
    b = grpo.completion_batch([p1, p1, p2], comps)
    assert b.ids.tolist() == [[5, 6, 7, 8, 9, 0, 4, 5, 6, 3, 2]]   # p1, its two completions, p2, its one
    assert b.position_ids.tolist() == [[0, 1, 2, 3, 4, 5, 3, 0, 1, 2, 3]]
    assert b.segment_ids.tolist() == [[1, 1, 1, 2, 2, 2, 3, 4, 4, 5, 5]]
    assert b.prefix_ids.tolist() == [[1, 1, 1, 1, 1, 1, 1, 4, 4, 4, 4]]
    # completion tokens and the row position predicting each: the prompt's last token, then their own
    assert b.targets.tolist() == [[8, 9, EOS], [4, 0, 0], [3, 2, 0]]
    assert b.src.tolist() == [[2, 3, 4], [2, 0, 0], [8, 9, 0]]
    assert b.mask.tolist() == [[1, 1, 1], [1, 0, 0], [1, 1, 0]]  # the EOS token is a target with loss
    assert b.old[b.mask.bool()].tolist() == pytest.approx([-0.1, -0.2, -0.3, -0.4, -0.5, -0.6])


@pytest.mark.parametrize("truncated", ["zero", "mask"])
def test_truncated_completion_flag(truncated):
    prompts = [[5, 6], [5, 6]]
    comps = [NS(token_ids=[3, 4], logprobs=[-1.0, -1.0], finish_reason="length"),
             NS(token_ids=[3, EOS], logprobs=[-1.0, -1.0], finish_reason="eos")]
    mask = grpo.completion_batch(prompts, comps, truncated=truncated).mask
    assert mask[1].tolist() == [1, 1]
    assert mask[0].tolist() == ([1, 1] if truncated == "zero" else [0, 0])
    with pytest.raises(ValueError, match="truncated="):
        grpo.completion_batch(prompts, comps, truncated="drop")


# --------------------------------------------------------------------------------- token logprobs

def tiny(vocab=50, seed=0, layers=2, tie=True):
    cfg = M.ModelConfig(model_type="qwen3", vocab_size=vocab, hidden_size=32, intermediate_size=64,
                        num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2, head_dim=8,
                        qk_norm=True, tie_word_embeddings=tie, max_position_embeddings=256, rope_theta=10000.0)
    torch.manual_seed(seed)
    return M.Transformer.from_config(cfg)


def test_trainer_normalises_over_the_samplers_vocabulary():
    """A tokenizer shorter than the head (Qwen2.5: 151,665 tokens, 152,064 rows): the sampler never draws the
    extra rows, so the trainer's log pi must leave them out too, or its logprobs differ from the sampler's by
    the extra rows' mass and the logged mismatch measures that, not numerics."""
    from sample import Sampler, SamplingParams

    m, vocab = tiny(vocab=64), 40
    with torch.no_grad():  # give the rows past the tokenizer real mass, as an untrained tail of rows may
        m.lm_head.weight[vocab:] *= 4
    prompts = [[3, 5, 7, 9], [11, 13]]
    outs = Sampler(m, vocab_size=vocab, block_size=4).generate(prompts, SamplingParams(n=2, max_new_tokens=6,
                                                                                      temperature=1.0, seed=1))
    comps = [c for o in outs for c in o]
    assert max(t for c in comps for t in c.token_ids) < vocab
    b = grpo.completion_batch([p for p in prompts for _ in range(2)], comps)
    with torch.no_grad():
        lp = grpo.token_logprobs(m, b, vocab=vocab)[0]
        full = grpo.token_logprobs(m, b)[0]
    gap = lambda x: ((x - b.old).abs() * b.mask).sum() / b.mask.sum()
    assert gap(lp) < 1e-5 < 1e-2 < gap(full)


def test_token_logprobs_shared_prompt_equal_full_forward():
    """Packed with each prompt once and the head in chunks, the logprobs, entropies and gradients equal those
    of a plain forward over each prompt + completion alone."""
    m = tiny()
    g = torch.Generator().manual_seed(0)
    rand = lambda n: torch.randint(1, 50, (n,), generator=g).tolist()
    p1, p2 = rand(5), rand(3)
    comps = [NS(token_ids=rand(n), logprobs=[0.0] * n, finish_reason="eos") for n in (4, 1, 6, 2)]
    prompts = [p1, p1, p1, p2]
    b = grpo.completion_batch(prompts, comps)
    assert b.ids.shape[1] == 5 + 3 + 4 + 1 + 6 + 2  # each prompt once
    weight = torch.arange(1.0, 1 + b.mask.numel()).view(b.mask.shape) / b.mask.numel()  # compare gradients too
    lp, ent = grpo.token_logprobs(m, b, temperature=0.7, chunk=4)
    (lp * weight).sum().backward()
    grads = [p.grad.clone() for p in m.parameters()]
    m.zero_grad()
    total = 0
    for i, (p, c) in enumerate(zip(prompts, comps)):
        n = len(c.token_ids)
        full = torch.log_softmax(m(torch.tensor([p + c.token_ids])).float()[0, len(p) - 1:-1] / 0.7, -1)
        ref = full.gather(-1, torch.tensor(c.token_ids)[:, None])[:, 0]
        torch.testing.assert_close(lp[i, :n], ref, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(ent[i, :n], -(full.exp() * full).sum(-1), atol=1e-5, rtol=1e-5)
        total = total + (ref * weight[i, :n]).sum()
    total.backward()
    assert lp[b.mask == 0].abs().max() == 0
    for a, p in zip(grads, m.parameters()):
        torch.testing.assert_close(a, p.grad, atol=1e-5, rtol=1e-4)


# ------------------------------------------------------------------------------------ the loop (toy task)

WORDS = [f"w{i}" for i in range(24)] + ["g0", "g1", "g2", "g3"]  # reward: the share of g* words said
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "[UNK]"]


def toy_reward(rec, text, finish_reason):
    words = text.split()
    r = sum(w.startswith("g") for w in words) / max(len(words), 1)
    return r, r > 0.5, bool(words)


def write_toy(tmp_path, n_records=8, layers=2, seed=0):
    """A tiny random model with a word-level tokenizer in HF layout, and toy records (all Easy)."""
    from tokenizers import Tokenizer as HFTok, models, pre_tokenizers
    tk = HFTok(models.WordLevel({w: i for i, w in enumerate(SPECIALS + WORDS)}, unk_token="[UNK]"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tk.add_special_tokens(SPECIALS)
    d = tmp_path / "toy"
    d.mkdir()
    tk.save(str(d / "tokenizer.json"))
    (d / "tokenizer_config.json").write_text('{"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"}')
    m = tiny(vocab=len(SPECIALS) + len(WORDS), seed=seed, layers=layers)
    for p in m.parameters():  # small weights: a near-uniform policy to start from (g* words ~1/8 of tokens)
        if p.dim() > 1:
            torch.nn.init.normal_(p, std=0.02)
    m.config.eos_token_id = 2
    m.save_pretrained(str(d), tokenizer_dir=str(d))
    recs = [{"id": str(i), "source": "toy", "split": "train", "question": f"w{i} w{i + 1}",
             "options": {"A": "w1", "B": "w2"}, "answer": "A", "difficulty": "easy", "meta": {}}
            for i in range(n_records)]
    (tmp_path / "rl.jsonl").write_text("".join(__import__("json").dumps(r) + "\n" for r in recs))
    return d, tmp_path / "rl.jsonl"


def toy_args(d, data, out, **kw):
    args = dict(model=d, data=data, out_dir=out, batch_size=4, k=8, max_new_tokens=6, micro_batch_size=32,
                lr=1e-2, min_lr=1e-2, warmup_steps=1, max_steps=30, ckpt_every=1000, grad_checkpointing=False,
                plateau_window=1000, logprob_chunk=64)
    args.update(kw)
    return [f"--{k}={v}" for k, v in args.items()]


def read_metrics(path):
    import json
    return [json.loads(l) for l in open(path)]


@pytest.mark.slow
def test_toy_task_reward_rises(tmp_path):
    d, data = write_toy(tmp_path)
    grpo.main(toy_args(d, data, tmp_path / "out", max_steps=16), reward_fn=toy_reward)
    rows = read_metrics(tmp_path / "out" / "stage1" / "metrics.jsonl")
    assert [r["step"] for r in rows] == list(range(1, 17))
    first = sum(r["reward"] for r in rows[:3]) / 3
    last = sum(r["reward"] for r in rows[-3:]) / 3
    print(f"toy reward {first:.3f} -> {last:.3f}")  # about 0.14 -> 0.95 (a near-uniform start: 4 of 32 tokens)
    assert last > max(2 * first, 0.6)
    assert all(r["logprob_mismatch"] < 1e-4 for r in rows)  # fp32 sampler vs trainer, weights synced each step
    assert (tmp_path / "out" / "stage1" / "hf" / "model.safetensors").exists()


def test_clipped_steps_are_logged(tmp_path, capsys):
    """Eq. 1 sums log pi over tokens, so the gradient norm grows with completion length and grad_clip may rescale
    every step: each metrics row says whether it fired, and the stage's end says on how many steps."""
    d, data = write_toy(tmp_path)
    grpo.main(toy_args(d, data, tmp_path / "tiny_clip", max_steps=2, grad_clip=1e-9), reward_fn=toy_reward)
    rows = read_metrics(tmp_path / "tiny_clip" / "stage1" / "metrics.jsonl")
    assert [r["clipped"] for r in rows] == [1, 1] and all(r["grad_norm"] > 1e-9 for r in rows)
    assert "gradient clipped to 1e-09 on 2 of 2 steps" in capsys.readouterr().out
    grpo.main(toy_args(d, data, tmp_path / "no_clip", max_steps=2, grad_clip=0), reward_fn=toy_reward)
    assert [r["clipped"] for r in read_metrics(tmp_path / "no_clip" / "stage1" / "metrics.jsonl")] == [0, 0]


def test_resume_without_a_checkpoint_starts_over_with_clean_metrics(tmp_path, capsys):
    """Killed before its first checkpoint, a run left metrics rows 1-3 and nothing to resume from: --resume starts at
    step 0 and says so, and metrics.jsonl reads 1, 2 (it read 1, 2, 3, 1, 2 and curves.png drew both)."""
    d, data = write_toy(tmp_path)
    stage = tmp_path / "out" / "stage1"
    stage.mkdir(parents=True)
    (stage / "metrics.jsonl").write_text("".join(json.dumps({"step": i, "reward": 9.0}) + "\n" for i in (1, 2, 3)))
    grpo.main(toy_args(d, data, tmp_path / "out", max_steps=2, resume=True), reward_fn=toy_reward)
    assert [r["step"] for r in read_metrics(stage / "metrics.jsonl")] == [1, 2]
    assert "no checkpoint in" in capsys.readouterr().out


def test_resume_refuses_other_settings_or_data(tmp_path, capsys):
    """--resume with another k, lr or data used to be accepted silently: the data order and schedule no longer
    matched the checkpoint's. Each difference is named; --resume_force goes on and logs them."""
    d, data = write_toy(tmp_path)
    grpo.main(toy_args(d, data, tmp_path / "out", max_steps=2, ckpt_every=1), reward_fn=toy_reward)
    argv = lambda **kw: toy_args(d, data, tmp_path / "out", max_steps=3, ckpt_every=1, resume=True, **kw)
    assert "--k: 8 in the checkpoint, 4 now; --lr: 0.01 in the checkpoint, 0.001 now" in usage_error(
        capsys, argv(k=4, lr=1e-3))
    data.write_text(data.read_text().replace("w1", "w3", 1))
    assert re.search(r"--data: '[0-9a-f]{16}' in the checkpoint, '[0-9a-f]{16}' now", usage_error(capsys, argv()))
    grpo.main(argv(resume_force=True), reward_fn=toy_reward)
    assert "--resume_force: --max_steps: 2 in the checkpoint, 3 now" in capsys.readouterr().out


def test_truncated_mask_with_every_completion_cut_runs(tmp_path):
    """--truncated=mask when a whole micro-batch was cut at max_new_tokens: no loss token is left, and the step must
    still run backward (a rank that skipped it would leave the others waiting in FSDP's collectives)."""
    d, data = write_toy(tmp_path)
    grpo.main(toy_args(d, data, tmp_path / "out", max_steps=2, max_new_tokens=1, truncated="mask"),
              reward_fn=toy_reward)
    rows = read_metrics(tmp_path / "out" / "stage1" / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2] and all(math.isfinite(r["grad_norm"]) for r in rows)
    m = M.Transformer.from_pretrained(str(d))
    b = grpo.completion_batch([[5, 6]], [NS(token_ids=[7], logprobs=[0.0], finish_reason="length")], "mask")
    assert b.mask.sum() == 0
    lp, _ = grpo.token_logprobs(m, b)
    lp.sum().backward()  # the empty batch still reaches every parameter, with zero gradients
    assert all(p.grad is not None and not p.grad.any() for p in m.parameters())


def test_rollout_shuffles_options_per_step_and_scores_against_its_own_order():
    rec = {"id": "q1", "source": "t", "split": "train", "question": "Which?", "difficulty": "easy", "meta": {},
           "options": {"A": "alpha", "B": "beta", "C": "gamma", "D": "delta"}, "answer": "C"}

    class Tok:  # renders the user turn, so the test sees the option order the policy saw
        def apply_chat_template(self, msgs):
            return [msgs[-1]["content"]]

        def decode(self, ids, skip_special_tokens=True):
            return ids

    class Sampler:
        def generate(self, prompts, params):
            # every completion answers with the text of option "gamma", whatever its letter
            return [[NS(token_ids="<think>x</think>\n<answer>gamma</answer>", finish_reason="eos")] * params.n
                    for _ in prompts]

    cfg = grpo.Config(k=2, shuffle_options=True, seed=3)
    seen = set()
    for step in range(12):
        (g,) = grpo.rollout(Sampler(), Tok(), [rec], cfg, step, 0, (0,), grpo.reward)
        assert g.rec["options"][g.rec["answer"]] == "gamma" and g.correct == [True, True]
        assert g.prompt[0].index(f"{g.rec['answer']}. gamma") >= 0
        seen.add(g.rec["answer"])
    assert len(seen) >= 3  # the gold letter moves from step to step
    (g,) = grpo.rollout(Sampler(), Tok(), [rec], grpo.Config(k=2), 0, 0, (0,), grpo.reward)
    assert g.rec is rec  # off by default: the record as written


def usage_error(capsys, argv):
    """grpo.main(argv) must stop with exit code 2 and one line on stderr; returns that line."""
    capsys.readouterr()  # what earlier runs printed
    with pytest.raises(SystemExit) as e:
        grpo.main(argv)
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and err.startswith("grpo.py: error: ") and "\n" not in err, err
    return err


def test_stage2_without_stage1_is_a_clear_error(tmp_path, capsys):
    d, data = write_toy(tmp_path)
    assert "stage 2 starts from stage 1's final checkpoint" in usage_error(
        capsys, [f"--data={data}", f"--out_dir={tmp_path / 'out'}", "--stage=2"])
    assert "stage 2 starts from stage 1's final checkpoint" in usage_error(
        capsys, ["--data", str(data), "--out_dir", str(tmp_path / "out"), "--stage", "2"])  # spaced values too
    assert "--agg=mean" in usage_error(capsys, [f"--model={d}", f"--data={data}", "--agg=mean"])
    for bad, msg in (("--max_new_tokens=0", "--max_new_tokens=0: must be >= 1"), ("--k=-1", "--k=-1: must be >= 0"),
                     ("--temperature=-1", "--temperature=-1.0: must be >= 0")):  # ValueError tracebacks before
        assert msg in usage_error(capsys, [f"--model={d}", f"--data={data}", bad])
    assert "needs --clip_eps" in usage_error(capsys, [f"--model={d}", f"--data={data}", "--ppo_epochs=2"])
    assert "a directory, not a JSONL file" in usage_error(capsys, [f"--model={d}", f"--data={tmp_path}"])


# ------------------------------------------------------------------- subprocess runs: torchrun, kill/resume

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DRIVER = """import sys
sys.path[:0] = [{repo!r}, {tests!r}]
import grpo
from test_grpo import toy_reward
grpo.main(sys.argv[1:], reward_fn=toy_reward)
"""


def driver(tmp_path):
    p = tmp_path / "driver.py"
    p.write_text(DRIVER.format(repo=str(REPO), tests=str(REPO / "tests")))
    return p


def env():
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}


def weights(path):
    from safetensors.torch import load_file
    return load_file(str(path / "model.safetensors"))


@pytest.mark.slow
def test_torchrun_two_ranks_equal_one_process(tmp_path):
    """Same global batch (2 prompts x 8 rollouts), same rollouts (one prompt per generate call in both): the
    metrics and the final weights of FSDP over 2 gloo ranks equal one process."""
    d, data = write_toy(tmp_path)
    args = toy_args(d, data, tmp_path / "one", batch_size=2, rollout_chunk=1, max_steps=3)
    subprocess.run([sys.executable, str(driver(tmp_path))] + args, check=True, env=env(), cwd=tmp_path,
                   capture_output=True)
    args = toy_args(d, data, tmp_path / "two", batch_size=2, rollout_chunk=1, max_steps=3)
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29533",
                    str(driver(tmp_path))] + args, check=True, env=env(), cwd=tmp_path, capture_output=True)
    one = read_metrics(tmp_path / "one" / "stage1" / "metrics.jsonl")
    two = read_metrics(tmp_path / "two" / "stage1" / "metrics.jsonl")
    assert len(one) == len(two) == 3
    for a, b in zip(one, two):
        for key in ("reward", "response_len", "zero_signal_frac"):
            assert a[key] == pytest.approx(b[key], rel=1e-12), key  # the same rollouts (sums in another order)
        for key in ("loss", "grad_norm", "entropy"):
            assert a[key] == pytest.approx(b[key], rel=1e-5, abs=1e-7), key
    assert any(r["loss"] != 0 for r in one)  # something was learned from
    w1, w2 = weights(tmp_path / "one" / "stage1" / "hf"), weights(tmp_path / "two" / "stage1" / "hf")
    w0 = weights(d)
    moved = max((w1[k] - w0[k]).abs().max().item() for k in w1)  # 3 AdamW steps at lr 1e-2: about 3e-2
    assert moved > 1e-2
    # Adam's m / sqrt(v) magnifies reduction-order noise where gradients are ~0 (unused embedding rows): allow
    # 1e-3 of the update size
    for k in w1:
        torch.testing.assert_close(w1[k], w2[k], atol=1e-3 * moved, rtol=1e-5)


@pytest.mark.slow
def test_sleep_equals_the_default_on_two_ranks(tmp_path):
    """--sleep (the sampler's weights freed during the update and all-gathered again from the FSDP shards before
    each rollout, trainer state offloaded) changes where memory is, not one number: 2 gloo ranks, stage 1 with
    pass-rate labelling (a wake before the loop), metrics and final weights bit for bit equal to the default's."""
    d, data = write_toy(tmp_path)
    recs = [__import__("json").loads(l) for l in open(data)]
    for r in recs[::2]:
        r["difficulty"] = None  # labelled by the policy's pass rate: the sampler wakes before the loop too
    data.write_text("".join(__import__("json").dumps(r) + "\n" for r in recs))
    for name, extra in (("default", []), ("sleep", ["--sleep"])):
        args = toy_args(d, data, tmp_path / name, batch_size=2, max_steps=3) + extra
        subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29535",
                        str(driver(tmp_path))] + args, check=True, env=env(), cwd=tmp_path, capture_output=True)
    a = read_metrics(tmp_path / "default" / "stage1" / "metrics.jsonl")
    b = read_metrics(tmp_path / "sleep" / "stage1" / "metrics.jsonl")
    drop = ("rollout_s", "sync_s", "update_s")
    assert len(a) == 3 and [{k: v for k, v in r.items() if k not in drop} for r in a] == \
        [{k: v for k, v in r.items() if k not in drop} for r in b]
    wa, wb = weights(tmp_path / "default" / "stage1" / "hf"), weights(tmp_path / "sleep" / "stage1" / "hf")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert (tmp_path / "sleep" / "stage1" / "labels.jsonl").read_text() == \
        (tmp_path / "default" / "stage1" / "labels.jsonl").read_text()


@pytest.mark.slow
def test_kill_and_resume_continue_the_same_curve_then_stage2(tmp_path):
    d, data = write_toy(tmp_path)
    run = lambda out, *extra: [sys.executable, str(driver(tmp_path))] + \
        toy_args(d, data, tmp_path / out, max_steps=6, ckpt_every=2) + list(extra)
    subprocess.run(run("ref"), check=True, env=env(), cwd=tmp_path, capture_output=True)
    ref = read_metrics(tmp_path / "ref" / "stage1" / "metrics.jsonl")

    metrics = tmp_path / "cut" / "stage1" / "metrics.jsonl"
    proc = subprocess.Popen(run("cut"), env=env(), cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if metrics.exists() and len(metrics.read_text().splitlines()) >= 3:  # step 3 done, checkpoint at 2
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "cut" / "stage1" / "hf").exists()
    subprocess.run(run("cut", "--resume"), check=True, env=env(), cwd=tmp_path, capture_output=True)
    cut = read_metrics(metrics)
    assert [r["step"] for r in cut] == [1, 2, 3, 4, 5, 6]
    for a, b in zip(ref, cut):
        for key in ("reward", "loss", "grad_norm", "entropy", "response_len"):
            assert a[key] == pytest.approx(b[key], rel=1e-6, abs=1e-9), (a["step"], key)
    torch.testing.assert_close(weights(tmp_path / "ref" / "stage1" / "hf"),
                               weights(tmp_path / "cut" / "stage1" / "hf"))

    # stage 2 with its defaults finds stage 1's policy, mines, and raises k to 16
    out = subprocess.run([sys.executable, str(driver(tmp_path)), f"--data={data}", f"--out_dir={tmp_path / 'cut'}",
                          "--stage=2", "--max_steps=2", "--batch_size=2", "--max_new_tokens=6",
                          "--grad_checkpointing=False", "--remine_every=1"],
                         check=True, env=env(), cwd=tmp_path, capture_output=True, text=True)
    rows = read_metrics(tmp_path / "cut" / "stage2" / "metrics.jsonl")
    assert [r["k"] for r in rows] == [16, 16] and [r["stage"] for r in rows] == [2, 2]
    assert "mining round 1" in out.stderr + out.stdout
    assert (tmp_path / "cut" / "stage2" / "mine_0000.jsonl").exists()


def test_refill_replaces_zero_signal_groups():
    mk = lambda rewards: grpo.Group({}, [1], [None] * len(rewards), [], rewards, [], [])
    fresh = iter([[1.0, 0.0], [0.0, 0.0], [2.0, 2.0]] + [[1.0, 1.0]] * 10)  # one useful group, then none
    calls = []

    def roll(recs, step, first):
        calls.append(len(recs))
        return [mk(next(fresh)) for _ in recs]

    first = [mk([1.0, 1.0]), mk([0.0, 1.0]), mk([0.0, 0.0]), mk([3.0, 3.0])]
    cfg = grpo.Config()
    keep, rolled = grpo.refill(cfg, NS(rank=0), ["r"] * 5, first, roll, step=0)
    assert calls == [3, 2, 2, 2]  # 3 missing; then 2 for the remaining rounds
    assert len(keep) == 4 and keep[:2] == [first[1], rolled[4]]  # the two with signal first
    assert all(grpo.zero_signal(torch.tensor([g.rewards]))[0] for g in keep[2:])  # filled with dropped ones
    assert len(rolled) == 4 + 3 + 2 + 2 + 2


@pytest.mark.slow
def test_loss_variants_run_in_the_loop(tmp_path):
    """PPO clipping with 2 updates per batch and recomputed old logprobs, KL to the frozen start, token-mean,
    std-normalized advantages, truncated completions masked, zero-signal groups dropped: the loop runs and
    learns, and the first update (old = current) still matches the sampler."""
    d, data = write_toy(tmp_path)
    grpo.main(toy_args(d, data, tmp_path / "out", max_steps=3, clip_eps=0.2, ppo_epochs=2, old_logprobs="recompute",
                       kl_beta=0.1, agg="token_mean", std_norm=True, truncated="mask", drop_zero_signal=True),
              reward_fn=toy_reward)
    rows = read_metrics(tmp_path / "out" / "stage1" / "metrics.jsonl")
    assert len(rows) == 3 and all(math.isfinite(r["loss"]) and r["logprob_mismatch"] < 1e-4 for r in rows)
    assert rows[0]["truncated_frac"] > 0  # max_new_tokens=6 cuts some, and they were masked without error


# ------------------------------------------------------------------- the README's commands are the defaults

def test_readme_stage_commands_resolve_to_the_settings_the_readme_states(tmp_path):
    """The README's two `grpo.py --stage N` lines say their prompts per step and k; grpo.py must resolve them to
    exactly that (there was a preset file that disagreed with the README), with the same completions per step."""
    import re
    from training import parse_config

    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "rl.jsonl").write_text("")
    lines = [line for line in (REPO / "README.md").read_text().splitlines() if "grpo.py --stage" in line]
    assert len(lines) == 2, lines
    completions = set()
    for line in lines:
        command, _, comment = line.partition("#")
        args = command.split("grpo.py", 1)[1].split()
        prompts, k = map(int, re.search(r"(\d+) prompts x k = (\d+)", comment).groups())
        cfg = parse_config(grpo.Config, args + [f"--model={tmp_path}", f"--data={tmp_path / 'rl.jsonl'}"])
        cfg, _ = grpo.resolve(cfg, world=8)
        assert (cfg.batch_size, cfg.k) == (prompts, k), line
        completions.add(cfg.batch_size * cfg.k)
    assert completions == {256}
    # an explicit value wins over the stage's default
    cfg, _ = grpo.resolve(parse_config(grpo.Config, ["--stage=2", "--k=4", f"--model={tmp_path}",
                                                     f"--data={tmp_path / 'rl.jsonl'}"]), world=1)
    assert (cfg.k, cfg.batch_size, cfg.max_steps) == (4, 16, 500)


def test_presets_use_the_shared_option_names(capsys):
    """Every preset's trainer options parse under the trainer's Config with no deprecation warning: the presets speak
    training.TrainConfig's names (model, batch_size, micro_batch_size, ckpt_every, eval_every)."""
    import demo
    import sft
    from training import parse_config

    for preset in sorted((REPO / "config").glob("demo_*.py")):
        d = parse_config(demo.Config, [str(preset)], prog="demo.py")
        for cls, opts in ((sft.Config, d.knowledge), (sft.Config, d.sft), (grpo.Config, d.grpo1), (grpo.Config, d.grpo2)):
            parse_config(cls, [f"--{k}={v}" for k, v in opts.items()], prog=preset.name)
    parse_config(grpo.Config, [str(REPO / "config" / "grpo_smollm2.py")])
    parse_config(sft.Config, [str(REPO / "config" / "sft_smollm2.py")])
    assert "deprecated" not in capsys.readouterr().err
