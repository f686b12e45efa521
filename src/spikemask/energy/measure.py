"""Measure a model's energy on data (mean ± std over mask seeds) or count it densely without data."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Iterable

import torch
from torch import nn

from ..masking import MaskableMixin
from .config import EnergyConfig
from .counter import EnergyCounter
from .report import build_report, combine_reports

__all__ = ["measure_energy", "dense_energy", "saving_pct"]


def _inputs(batch: Any) -> torch.Tensor:
    return batch[0] if isinstance(batch, (tuple, list)) else batch


def _describe(model: nn.Module) -> dict[str, Any]:
    cfg = getattr(model, "config", None)
    mask = getattr(cfg, "mask", None)
    return {"model": getattr(model, "variant", type(model).__name__),
            "mask": mask.describe() if mask is not None else "off"}


def measure_energy(
    model: nn.Module,
    batches: Iterable[Any],
    *,
    config: EnergyConfig | None = None,
    mask_seeds: Iterable[int] = (0,),
    max_batches: int | None = None,
    device: torch.device | str | None = None,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Energy report of ``model`` on ``batches`` (inputs or ``(inputs, labels)``), masks as at inference.

    The model runs in eval mode without gradients. With masks active, the data is seen once per
    mask seed and the totals come as mean and ``_std`` over seeds; ``batches`` must be re-iterable
    (a DataLoader or a list). The model's mask settings are restored afterwards.
    """
    config = config or EnergyConfig()
    device = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    maskable = isinstance(model, MaskableMixin)
    original = dataclasses.replace(model.config.mask) if maskable else None
    active = maskable and original.active
    seeds = list(mask_seeds) if active else [None]
    if not seeds:
        raise ValueError("mask_seeds is empty: give at least one seed")
    model.eval()
    reports = []
    try:
        for seed in seeds:
            if seed is not None:
                model.reseed_masks(seed)
            with EnergyCounter(model) as counter, torch.no_grad():
                for i, batch in enumerate(batches):
                    if max_batches is not None and i >= max_batches:
                        break
                    x = _inputs(batch)
                    model(x.to(device))
                    if progress is not None:
                        progress(x.shape[1] if x.dim() == 5 else x.shape[0])
            reports.append(build_report(counter, config, **_describe(model), mask_seed=seed))
    finally:
        if maskable:
            model.set_mask(original)
        model.train(was_training)
    out = combine_reports(reports)
    out["mask_seeds"] = seeds
    return out


def dense_energy(model: nn.Module, *, T: int | None = None, config: EnergyConfig | None = None) -> dict[str, Any]:
    """Deterministic count with every input treated as firing (masks at their nominal keep rate)."""
    config = config or EnergyConfig()
    cfg = model.config
    T = T or cfg.T
    device = next(model.parameters()).device
    x = torch.zeros(T, 1, cfg.in_channels, cfg.img_size, cfg.img_size, device=device)  # [T, B, C, H, W]
    was_training = model.training
    model.eval()
    try:
        with EnergyCounter(model, dense=True) as counter, torch.no_grad():
            model(x)
    finally:
        model.train(was_training)
    return combine_reports([build_report(counter, config, **_describe(model), mask_seed=None)])


def saving_pct(energy: float, reference: float) -> float:
    """ΔE as the papers print it: percent of the reference energy saved (positive = less energy)."""
    return 100.0 * (1.0 - energy / reference) if reference else float("nan")
