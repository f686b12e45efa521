"""Multi-process training through ``torchrun`` (DDP); a single process needs none of this."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ..config import ConfigError

__all__ = ["DistInfo", "init_distributed", "resolve_device", "all_reduce_sum", "shard_indices"]


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def resolve_device(name: str, info: DistInfo) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device={name!r} but this machine has no usable CUDA GPU (torch {torch.__version__}, "
                          f"CUDA build: {torch.version.cuda or 'no'}); set device=cpu or device=auto")
    if name == "cuda" and info.enabled:
        return torch.device("cuda", info.local_rank)
    return torch.device(name)


def init_distributed(device_name: str) -> DistInfo:
    """Join the process group that ``torchrun`` describes in the environment (no-op without it)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    info = DistInfo(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        use_cuda = device_name != "cpu" and torch.cuda.is_available()
        if use_cuda:
            torch.cuda.set_device(info.local_rank)
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return info


def all_reduce_sum(values: list[float], info: DistInfo, device: torch.device) -> list[float]:
    if not info.enabled:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def shard_indices(n: int, info: DistInfo) -> list[int]:
    """Evaluation shard of this rank: every sample exactly once over all ranks (no padding)."""
    return list(range(info.rank, n, info.world_size))
