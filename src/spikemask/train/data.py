"""The test data a checkpoint was trained on, and evaluation loaders over it (CLI and library alike)."""

from __future__ import annotations

import dataclasses
from typing import Any

from torch.utils.data import DataLoader, Subset

from ..config import from_dict
from ..data import get_dataset
from .config import DataConfig

__all__ = ["checkpoint_data_config", "test_loader"]


def checkpoint_data_config(state: dict[str, Any] | None, name: str | None = None,
                           root: str | None = None) -> DataConfig:
    """The data a checkpoint's run was evaluated on (size, options, normalisation), unless another set is
    named; ``root`` replaces the stored folder. A checkpoint without a run config: N-Digits."""
    stored = ((state or {}).get("run_config") or {}).get("data") or {}
    if name is not None and name != stored.get("name"):
        stored = {"name": name}  # another data set: its own defaults
    cfg = from_dict(DataConfig, stored or {"name": "ndigits"}, where="data")
    return dataclasses.replace(cfg, root=root) if root else cfg


def test_loader(data_cfg: DataConfig, T: int, batch_size: int, samples: int | None = None,
                seed: int = 0) -> DataLoader:
    """The test split (``samples``: a seeded random draw of that many, across classes, not the first ones)."""
    from .loop import eval_subset

    ds = get_dataset(data_cfg.name, split="test", T=T, **data_cfg.dataset_options())
    if samples is not None and samples < len(ds):
        ds = Subset(ds, eval_subset(len(ds), 1, samples, seed))
    return DataLoader(ds, batch_size=batch_size, shuffle=False)
