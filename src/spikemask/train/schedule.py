"""Learning-rate schedule: linear warm-up, cosine decay, cool-down (timm's ``CosineLRScheduler``).

As in timm (and so in the Spikformer recipe), the cosine runs over the epoch index itself:
``lr(e) = min + (peak - min) (1 + cos(π e / epochs)) / 2`` for warm-up <= e < epochs, the warm-up
ramps linearly from ``warmup_lr``, and the cool-down epochs stay at ``min_lr``.
"""

from __future__ import annotations

import math

import torch

from .config import ScheduleConfig

__all__ = ["lr_at", "set_lr"]


def lr_at(epoch: int, sched: ScheduleConfig, peak_lr: float) -> float:
    if epoch < sched.warmup_epochs:
        return sched.warmup_lr + (peak_lr - sched.warmup_lr) * epoch / sched.warmup_epochs
    if epoch < sched.epochs:
        return sched.min_lr + 0.5 * (peak_lr - sched.min_lr) * (1.0 + math.cos(math.pi * epoch / sched.epochs))
    return sched.min_lr


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
