"""Accuracy with Random Spike Masking active as at inference: mean ± std over mask seeds."""

from __future__ import annotations

import contextlib
import dataclasses
import statistics
from typing import Any, Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn

from ..masking import MaskableMixin
from ..progress import ProgressFactory, null_progress
from .distributed import DistInfo, all_reduce_sum

__all__ = ["evaluate", "time_first", "TimeFirstBatches", "autocast"]


def time_first(x: torch.Tensor) -> torch.Tensor:
    """Loader batches of clips are ``[B, T, C, H, W]``; models take ``[T, B, C, H, W]``."""
    return x.transpose(0, 1) if x.dim() == 5 else x


class TimeFirstBatches:
    """Re-iterable ``(x, y)`` batches of a loader with time-first inputs (energy passes once per seed),
    after the evaluation ``transform`` (image normalisation) if one is given."""

    def __init__(self, loader: Iterable[Any], transform: Callable[[torch.Tensor, Any], torch.Tensor] | None = None):
        self.loader, self.transform = loader, transform

    def __iter__(self):
        for x, y in self.loader:
            yield time_first(self.transform(x, None) if self.transform is not None else x), y


def autocast(device: torch.device, enabled: bool):
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: Iterable[Any],
    device: torch.device,
    *,
    mask_seeds: list[int] | None = None,
    info: DistInfo | None = None,
    max_batches: int | None = None,
    amp: bool = False,
    progress: ProgressFactory = null_progress,
    desc: str = "eval",
    transform: Callable[[torch.Tensor, Any], torch.Tensor] | None = None,
) -> dict[str, Any]:
    """Top-1 accuracy (%) and loss of ``model`` on ``loader``.

    With masks active, the data is seen once per seed in ``mask_seeds`` (each pass with freshly
    seeded masks) and ``acc``/``acc_std`` are the mean and standard deviation over seeds. Without
    seeds, masks draw from the global generator. The model's mask settings are restored afterwards.
    """
    info = info or DistInfo()
    net = getattr(model, "module", model)
    maskable = isinstance(net, MaskableMixin)
    original = dataclasses.replace(net.config.mask) if maskable else None
    seeds: list[int | None] = list(mask_seeds) if (mask_seeds and maskable and original.active) else [None]
    was_training = model.training
    model.eval()
    accs, losses = [], []
    try:
        for seed in seeds:
            if seed is not None:
                net.reseed_masks(seed)
            correct = total = loss_sum = 0.0
            bar = progress(total=_length(loader, max_batches),
                           desc=desc if seed is None else f"{desc} (mask seed {seed})",
                           unit="batch", leave=False)
            for i, (x, y) in enumerate(loader):
                if max_batches is not None and i >= max_batches:
                    break
                x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                x = time_first(transform(x, None) if transform is not None else x)
                with autocast(device, amp):
                    logits = model(x)
                loss_sum += float(F.cross_entropy(logits.float(), y, reduction="sum"))
                correct += float((logits.argmax(-1) == y).sum())
                total += y.shape[0]
                bar.update(1)
            bar.close()
            correct, total, loss_sum = all_reduce_sum([correct, total, loss_sum], info, device)
            if total == 0:
                raise ValueError("evaluation saw no samples (empty test split?)")
            accs.append(100.0 * correct / total)
            losses.append(loss_sum / total)
    finally:
        if maskable:
            net.set_mask(original)
        model.train(was_training)
    return {
        "acc": statistics.fmean(accs),
        "acc_std": statistics.stdev(accs) if len(accs) > 1 else 0.0,
        "loss": statistics.fmean(losses),
        "per_seed": accs,
        "mask_seeds": [s for s in seeds if s is not None],
    }


def _length(loader: Any, max_batches: int | None) -> int | None:
    try:
        n = len(loader)
    except TypeError:
        return max_batches
    return n if max_batches is None else min(n, max_batches)
