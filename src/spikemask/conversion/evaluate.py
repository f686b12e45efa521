"""Accuracy of a converted SNN at every step 1..T in one pass, next to its QCFS ANN's, over mask seeds."""

from __future__ import annotations

import dataclasses
import statistics
from typing import Any, Callable, Iterable

import torch
from torch import nn

from ..masking import MaskableMixin
from ..progress import ProgressFactory, null_progress
from ..train.evaluate import _length

__all__ = ["accuracy_per_step"]


@torch.no_grad()
def accuracy_per_step(
    snn: nn.Module,
    loader: Iterable[Any],
    *,
    T: int,
    ann: nn.Module | None = None,
    mask_seeds: list[int] | None = None,
    transform: Callable[[torch.Tensor, Any], torch.Tensor] | None = None,
    max_batches: int | None = None,
    progress: ProgressFactory = null_progress,
) -> dict[str, Any]:
    """Top-1 accuracy (%) of ``snn`` after each of T steps (``forward_steps``), mean ± std over mask seeds.

    ``ann``: the QCFS ANN it was converted from, evaluated on the same batches (with the same masks
    settings, one pass per seed). Returns ``{"T", "acc" [T], "acc_std" [T], "per_seed" [[T]...],
    "ann_acc", "ann_acc_std", "mask_seeds", "samples"}``.
    """
    maskable = isinstance(snn, MaskableMixin) and snn.config.mask.active
    seeds: list[int | None] = list(mask_seeds) if (mask_seeds and maskable) else [None]
    originals = [(m, dataclasses.replace(m.config.mask)) for m in (snn, ann) if isinstance(m, MaskableMixin)]
    snn.eval()
    if ann is not None:
        ann.eval()
    curves, ann_accs, samples = [], [], 0
    try:
        for seed in seeds:
            for m, _ in originals:
                if seed is not None:
                    m.reseed_masks(seed)
            correct, ann_correct, total = torch.zeros(T, dtype=torch.float64), 0.0, 0
            bar = progress(total=_length(loader, max_batches), unit="batch", leave=False,
                           desc="SNN steps" if seed is None else f"SNN steps (mask seed {seed})")
            for i, (x, y) in enumerate(loader):
                if max_batches is not None and i >= max_batches:
                    break
                x = transform(x, None) if transform is not None else x
                steps = snn.forward_steps(x, T)  # [T, B, classes]: running means
                correct += (steps.argmax(-1) == y.unsqueeze(0)).sum(dim=1).double()
                if ann is not None:
                    ann_correct += float((ann(x).argmax(-1) == y).sum())
                total += y.shape[0]
                bar.update(1)
            bar.close()
            if total == 0:
                raise ValueError("the conversion evaluation saw no samples (empty test split?)")
            curves.append((100.0 * correct / total).tolist())
            ann_accs.append(100.0 * ann_correct / total)
            samples = total
    finally:
        for m, cfg in originals:
            m.set_mask(cfg)
    per_step = list(zip(*curves))
    return {
        "T": T,
        "acc": [statistics.fmean(a) for a in per_step],
        "acc_std": [statistics.stdev(a) if len(a) > 1 else 0.0 for a in per_step],
        "per_seed": curves,
        "ann_acc": statistics.fmean(ann_accs) if ann is not None else None,
        "ann_acc_std": (statistics.stdev(ann_accs) if len(ann_accs) > 1 else 0.0) if ann is not None else None,
        "mask_seeds": [s for s in seeds if s is not None],
        "samples": samples,
    }
