"""One process, or one of many under ``torchrun``: rank, world size, device, and the few collectives used.

``torchrun`` (or any launcher) sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT; ``setup`` then
joins the process group (nccl on GPUs, gloo on CPUs) and pins the process to GPU LOCAL_RANK. Without those
variables the run is a single process and no process group is created.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from .config import ConfigError


@dataclass(frozen=True)
class Dist:
    rank: int
    world: int
    local_rank: int
    device: torch.device
    owned: bool  # this setup created the process group (and tears it down)

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1


def _env_int(name: str, default: int) -> int:
    v = os.environ.get(name)
    if v is None or v == "":
        return default
    try:
        return int(v)
    except ValueError:
        raise ConfigError(f"environment variable {name}={v!r}: expected an integer") from None


def setup(device: str = "auto") -> Dist:
    """Detect the launch (RANK/WORLD_SIZE/LOCAL_RANK), pick the device (auto, cpu, cuda: GPU LOCAL_RANK, or
    cuda:N for one process), join the process group if needed."""
    world = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local = _env_int("LOCAL_RANK", rank)
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" or device.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise ConfigError(f"--device {device}: no CUDA device is available (use --device cpu)")
        n = torch.cuda.device_count()
        if device != "cuda":  # cuda:N, one process
            if world > 1:
                raise ConfigError(f"--device {device}: under torchrun give --device cuda (each process takes "
                                  f"GPU LOCAL_RANK); cuda:N is for a single process")
            local = int(device.split(":", 1)[1])
            if local >= n:
                raise ConfigError(f"--device {device}: this machine has {n} GPU(s) (cuda:0..cuda:{n - 1})")
        elif local >= n:
            raise ConfigError(f"LOCAL_RANK {local}: this machine has {n} GPU(s); launch at most {n} "
                              f"processes per node")
        torch.cuda.set_device(local)
        dev = torch.device("cuda", local)
    else:
        dev = torch.device("cpu")
    owned = False
    if world > 1 and not (dist.is_available() and dist.is_initialized()):
        if not dist.is_available():
            raise ConfigError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
        backend = "nccl" if dev.type == "cuda" else "gloo"
        kw: dict[str, Any] = {"device_id": dev} if dev.type == "cuda" else {}
        dist.init_process_group(backend=backend, **kw)
        owned = True
    if dist.is_available() and dist.is_initialized():
        rank, world = dist.get_rank(), dist.get_world_size()
    return Dist(rank, world, local, dev, owned)


def teardown(d: Dist) -> None:
    """Leave the process group: every rank arrives first, and the DDP reducers still holding it are freed
    before it goes (gloo aborts the process when its threads outlive their group)."""
    if d.owned and dist.is_initialized():
        import gc

        dist.barrier()
        gc.collect()
        dist.destroy_process_group()


def all_sum(d: Dist, values: list[float]) -> list[float]:
    """Element-wise sum over processes (float64)."""
    if not d.active:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=d.device)
    dist.all_reduce(t)
    return t.tolist()


def any_true(d: Dist, flag: bool) -> bool:
    """Whether any process has flag set (every process gets the same answer)."""
    if not d.active:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=d.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def gather(d: Dist, obj: Any) -> list[Any]:
    """Every process's obj, in rank order (on every process)."""
    if not d.active:
        return [obj]
    out: list[Any] = [None] * d.world
    dist.all_gather_object(out, obj)
    return out


def broadcast(d: Dist, obj: Any) -> Any:
    """Rank 0's obj on every process."""
    if not d.active:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(d: Dist) -> None:
    if d.active:
        dist.barrier()


__all__ = ["Dist", "setup", "teardown", "all_sum", "any_true", "gather", "broadcast", "barrier"]
