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


def stand_in(part: slice, n: int) -> slice:
    """`part` of a batch of `n` rows, or its first row when `part` is empty (a batch smaller than the
    number of processes). A process with no rows still runs forward and backward, so that DDP's
    collectives stay in step across processes; weight its loss by `shard_weight(0, ...)`, i.e. 0."""
    return part if len(range(*part.indices(n))) else slice(0, 1)


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


def launch(processes: int, target: str, kwargs: dict, device: str = "cpu", log=None):
    """`target(**kwargs, device=...)` ("module:function") run by `processes` processes under torchrun
    on this machine, each in the process group (NCCL on GPUs, one per process; gloo on CPUs); returns
    what process 0 returned. Process 0 logs by printing: its lines go to `log` as they come. A failure raises
    naming the exit status and the last lines the processes wrote."""
    import pickle
    import subprocess
    import sys
    import tempfile
    from collections import deque
    from pathlib import Path

    with tempfile.TemporaryDirectory(prefix="torchrun-") as folder:
        job = Path(folder)
        (job / "call.pkl").write_bytes(pickle.dumps({"target": target, "kwargs": kwargs, "device": device}))
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}",
                   "-m", "multiome_assets.models.distributed", str(job)]
        child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        last = deque(maxlen=20)
        for line in child.stdout:
            last.append(line.rstrip())
            if log is not None and line.strip():
                log(line.rstrip())
        if child.wait() != 0 or not (job / "result.pkl").exists():
            raise RuntimeError(f"torchrun with {processes} processes ran {target} and failed (exit {child.returncode}):\n"
                               + "\n".join(last))
        return pickle.loads((job / "result.pkl").read_bytes())


def _run_launched(job) -> None:
    """One process of `launch`: join the group, call the target, process 0 writes the result."""
    import importlib
    import os
    import pickle
    from pathlib import Path

    call = pickle.loads((Path(job) / "call.pkl").read_bytes())
    device = call["device"]
    if device.startswith("cuda"):
        device = f"cuda:{os.environ['LOCAL_RANK']}"
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    try:
        module, name = call["target"].split(":")
        rank = dist.get_rank()
        result = getattr(importlib.import_module(module), name)(**call["kwargs"], device=device,
                                                                log=(lambda line: print(line, flush=True)) if rank == 0 else None)
        if rank == 0:
            (Path(job) / "result.pkl").write_bytes(pickle.dumps(result))
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    import sys

    _run_launched(sys.argv[1])
