"""The sampler's scheduler: which sequences run, and the KV-cache blocks each holds (the budget's unit on CPU too,
where the K/V live elsewhere between steps). Its rules: admit, grow (preemption), fork. It never touches K/V."""
from collections import deque
from dataclasses import dataclass, field

import torch


@dataclass(eq=False)
class Seq:
    prompt: int                   # index of the prompt in the generate() call
    sample: int                   # 0..n-1
    prompt_len: int
    blocks: list                  # block table: shared prompt blocks, then private blocks
    shared: int = 0               # how many leading blocks are shared with the prompt's other samples
    tokens: list = field(default_factory=list)
    logprobs: list = field(default_factory=list)

    @property
    def pos(self):
        """The last token's position: the next decode step writes its K/V there."""
        return self.prompt_len + len(self.tokens) - 1


class BlockPool:
    """Free list + reference counts over KV-cache blocks."""

    def __init__(self, num_blocks):
        self.refs = [0] * num_blocks
        self.free = list(range(num_blocks - 1, -1, -1))

    def alloc(self, n):
        assert n <= len(self.free), "admission control should have prevented this"
        out = [self.free.pop() for _ in range(n)]
        for b in out:
            self.refs[b] = 1
        return out

    def share(self, blocks):
        for b in blocks:
            self.refs[b] += 1

    def release(self, blocks):
        for b in blocks:
            self.refs[b] -= 1
            if self.refs[b] == 0:
                self.free.append(b)


def pool_blocks(prompts, params, block_size, max_blocks):
    """The blocks one generate call needs (its prompts' n samples at full length), at most max_blocks. ValueError
    unless the budget lets a prompt in, and a sequence finish, alone: then the oldest always advances (no livelock)."""
    bs, n, new = block_size, params.n, params.max_new_tokens
    need = [max(-(-len(p) // bs) + 2 * n, -(-(len(p) + new) // bs) + 1) for p in prompts]
    if max(need) > max_blocks:
        i = need.index(max(need))
        raise ValueError(f"prompt {i} ({len(prompts[i])} tokens, n={n}, max_new_tokens={new}) needs "
                         f"{max(need) * bs} KV tokens; the budget is {max_blocks * bs} (raise kv_tokens)")
    # at full length: shared full prompt blocks + per sample the rest of prompt and generation (the last prompt
    # block is copied per sample) + prefill's last block
    full = [len(p) // bs + n * (-(-(len(p) + new) // bs) - len(p) // bs) + (len(p) % bs > 0) for p in prompts]
    return min(sum(map(max, need, full)), max_blocks)


def prefill_chunks(rows, max_tokens):
    """Index lists of rows to run in one forward: similar lengths together, <= max_tokens padded tokens (or 1 row)."""
    chunk = []
    for i in sorted(range(len(rows)), key=lambda i: len(rows[i])):
        if chunk and (len(chunk) + 1) * len(rows[i]) > max_tokens:
            yield chunk
            chunk = []
        chunk.append(i)
    if chunk:
        yield chunk


def block_table(tables, width, device):
    """Block-id lists -> int32 [len(tables), width], padded with block 0 (never read past a row's length)."""
    return torch.tensor([t + [0] * (width - len(t)) for t in tables], dtype=torch.int32, device=device)


class Scheduler:
    """One generate call's queues over a BlockPool: waiting (prompt indices, preempted Seqs in front) and running
    (Seqs, oldest first)."""

    def __init__(self, prompt_lens, n, pool, block_size, max_batch):
        self.prompt_lens, self.n, self.pool, self.block_size = prompt_lens, n, pool, block_size
        self.max_rows = max(max_batch, n)
        self.waiting, self.running = deque(range(len(prompt_lens))), []

    def alloc(self, tokens):
        """Fresh blocks for that many tokens."""
        return self.pool.alloc(-(-tokens // self.block_size))

    def admit(self):
        """Take waiting prompts and preempted Seqs, in order, while max_batch allows and the pool keeps a free block
        per running sequence (its next growth: the admitted are not preempted at once). Returns (new prompt indices,
        preempted Seqs given blocks for their prompt and tokens, to be refilled)."""
        free, rows, new, back = len(self.pool.free), len(self.running), [], []
        while self.waiting:
            x = self.waiting[0]
            preempted = isinstance(x, Seq)
            if preempted:
                blocks, k = -(-(x.pos + 1) // self.block_size), 1
            else:  # its blocks, and one private block per sample
                blocks, k = -(-self.prompt_lens[x] // self.block_size) + self.n, self.n
            if blocks + rows + k > free or rows + k > self.max_rows:
                break
            free, rows = free - blocks, rows + k
            (back if preempted else new).append(self.waiting.popleft())
        for s in back:
            s.blocks = self.alloc(s.pos + 1)
        return new, back

    def fork(self, prompts, tables):
        """The n samples of each prefilled prompt (indices; their block tables): full blocks shared, the partly
        filled last block copied per sample. Returns the new Seqs and the copies to make, (block, its source)."""
        bs, n, seqs, copies = self.block_size, self.n, [], []
        for i, table in zip(prompts, tables):
            length = self.prompt_lens[i]
            full, partial = table[:length // bs], table[length // bs:]
            self.pool.share(full * (n - 1))
            for j in range(n):
                mine = self.pool.alloc(len(partial))  # later blocks are taken as the sample grows (grow)
                copies += [(mine[0], partial[0])] if partial else []
                seqs.append(Seq(i, j, length, full + mine, shared=len(full) if n > 1 else 0))
            self.pool.release(partial)  # may be taken again below: the copy reads every source before writing
        return seqs, copies

    def grow(self):
        """Give every running sequence the block its next token goes to. When the pool runs dry the newest are
        preempted: blocks freed, tokens kept, waiting in front (oldest first) to be refilled; the counter-based
        draws make the rest of the sample the same. Returns how many were preempted."""
        grow = [s for s in self.running if s.pos // self.block_size == len(s.blocks)]
        preempted = []
        while len(self.pool.free) < len(grow):
            assert len(self.running) > 1, "the budget check lets the oldest sequence finish alone"
            victim = self.running.pop()
            self.pool.release(victim.blocks)
            victim.blocks, victim.shared = [], 0
            preempted.append(victim)
            if victim in grow:
                grow.remove(victim)
        for s in grow:
            s.blocks += self.pool.alloc(1)
        self.waiting.extendleft(preempted)  # newest first, so the oldest ends up in front
        return len(preempted)

    def finish(self, done):
        """Drop finished sequences (a collection of Seqs) from running and free their blocks."""
        for s in done:
            self.pool.release(s.blocks)
        self.running = [s for s in self.running if s not in done]
