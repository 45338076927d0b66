"""Training on several processes with torch.distributed (launched by `torchrun`), on the same code
path as one process: every process draws the same global batch (same seeds, same data order), takes
its own shard of the cells, and DistributedDataParallel averages the gradients. Scaled by
`shard_weight`, each shard's mean loss sums to the global batch's mean, so N processes take the
steps one process would take on the whole batch (dropout aside: each process has its own stream)."""
from __future__ import annotations

import torch
import torch.distributed as dist


def world() -> tuple[int, int]:
    """(rank, world size): (0, 1) unless a process group is initialized (e.g. under torchrun)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def parallel(model: torch.nn.Module) -> torch.nn.Module:
    """`model` wrapped in DistributedDataParallel when there are several processes, else itself."""
    rank, size = world()
    if size == 1:
        return model
    device = next(model.parameters()).device
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)


def shard(n: int) -> slice:
    """This process's rows of a global batch of `n` rows (every size-th row, from its rank)."""
    rank, size = world()
    return slice(rank, n, size)


def shard_weight(local: int, total: int) -> float:
    """Scale of a shard's mean loss over `local` items so that, averaged over processes by DDP, the
    gradients are those of the mean over all `total` items of the global batch."""
    return local * world()[1] / max(total, 1)


def total(*values: float) -> list[float]:
    """Each value summed over all processes (as is with one process)."""
    if world()[1] == 1:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(t)
    return t.tolist()
