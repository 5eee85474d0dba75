"""Where GRPO's weights live: the sampler's KV budget, and --sleep, which fits Qwen3-32B on 8 x 80 GB: the trainer's
fp32 shards and AdamW moments on the host during rollouts, the sampler's bf16 weights allocated and all-gathered from
the shards before each rollout (wake: the weight sync under --sleep) and released for the update (sleep). See
README, "Memory at scale".
"""
import torch
import torch.distributed as dist

from model import Transformer, assign_parameter
from sample import free_memory


def kv_budget(cfg, policy, net, device):
    """KV-cache tokens for the sampler, measured after the trainer's allocations: kv_fraction of the free memory less
    AdamW's two fp32 moments per local parameter (not allocated before the first step). With --sleep the sampler's
    weights are not yet allocated, and on a GPU the fp32 shards leave it for each rollout."""
    local = sum((p.to_local() if hasattr(p, "to_local") else p).numel() for p in policy.parameters())
    free = free_memory(device)
    if cfg.sleep:
        weights = sum(p.numel() * p.element_size() for p in net.parameters())
        free += (4 * local if device.type == "cuda" else -8 * local) - weights
    else:
        free -= 8 * local
    c = net.config
    per_token = 2 * c.num_hidden_layers * c.num_key_value_heads * c.head_dim * next(net.parameters()).element_size()
    tokens = int(cfg.kv_fraction * free / per_token)
    if tokens < cfg.max_new_tokens:
        raise RuntimeError(f"no memory left for the sampler's KV cache ({free / 2**30:.1f} GiB free before the "
                           f"optimizer state): use more ranks, a smaller --max_new_tokens or --prompts_per_step")
    return tokens


def empty_weights(mcfg, dtype, device):
    """--sleep: the sampler's model, each weight with its shape and 0-byte storage: it takes memory only from wake()
    to sleep()."""
    net = Transformer.from_config(mcfg, device="meta")
    for name, p in list(net.named_parameters()):  # a tied head appears once, as the embedding
        t = torch.empty(p.shape, dtype=dtype, device=device)
        t.untyped_storage().resize_(0)
        assign_parameter(net, name, torch.nn.Parameter(t, requires_grad=False))
    return net


def wake(cfg, sampler, policy, opt):
    """--sleep, before rollouts: the trainer's fp32 shards and AdamW's moments go to host memory, then each of the
    sampler's weights is allocated and all-gathered from the policy's shards (gather_into). On the GPU the sampler's
    bf16 copy and its KV cache are then all there is."""
    if not cfg.sleep:
        return
    offload(policy, torch.device("cpu"))
    move_optimizer(opt, torch.device("cpu"))  # already there but after a resume (DCP loads it beside the shards)
    shards = dict(policy.named_parameters(remove_duplicate=False))
    with torch.no_grad():
        for name, p in sampler.model.named_parameters():
            p.untyped_storage().resize_(p.numel() * p.element_size())
            gather_into(p, shards[name])


def sleep(cfg, sampler, policy, opt, device):
    """--sleep, after rollouts: the sampler's KV cache and weights are released (0-byte storage until the next wake)
    and the fp32 shards come back to the device for the update (AdamW's moments only for the optimizer step: the
    hooks set in grpo.build)."""
    if not cfg.sleep:
        return
    sampler.free_cache()
    for p in sampler.model.parameters():
        p.untyped_storage().resize_(0)
    offload(policy, device)


def offload(policy, device):
    """Move the FSDP2 shards to `device`, as verl's FSDP offload does (gradients are None at both points). On a CPU
    run the host is the device and nothing moves."""
    if device.type != next(policy.parameters()).device.type:
        policy.to(device)  # FSDPModule._apply re-registers the moved shards
        _empty_cache()


def move_optimizer(opt, device):
    """Move AdamW's moments to `device` (not the scalar step counts, which stay on the host)."""
    moved = False
    for state in opt.state.values():
        for k, v in state.items():
            if torch.is_tensor(v) and v.dim() and v.device.type != device.type:
                state[k], moved = v.to(device), True
    if moved:
        _empty_cache()


def _empty_cache():
    if torch.cuda.is_available():
        torch.cuda.empty_cache()  # give the freed blocks back, for the sampler's (or the trainer's) next allocation


def gather_into(dst, p):
    """dst (a full tensor) = the FSDP2 parameter p all-gathered from its dim-0 shards, each cast to dst's dtype and
    moved to dst's device first (2 bytes per weight for a bf16 sampler; works from shards in host memory)."""
    from torch.distributed.tensor import DTensor

    if not isinstance(p, DTensor):
        dst.copy_(p)
        return
    world, local = dist.get_world_size(), p.to_local()
    rows = -(-p.shape[0] // world)  # torch.chunk's pieces, padded to equal size for the collective
    shard = torch.zeros((rows,) + tuple(p.shape[1:]), dtype=dst.dtype, device=dst.device)
    shard[:local.shape[0]].copy_(local)
    if rows * world == p.shape[0]:
        dist.all_gather_into_tensor(dst, shard)  # straight into the sampler's tensor
    else:
        full = torch.empty((rows * world,) + tuple(p.shape[1:]), dtype=dst.dtype, device=dst.device)
        dist.all_gather_into_tensor(full, shard)
        dst.copy_(full[:p.shape[0]])
