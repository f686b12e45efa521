"""Batch augmentation in torch, identical for every time step of a clip."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["random_translate", "batch_transform"]


def random_translate(x: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Shift each clip by integer (dy, dx) in [-max_shift, max_shift], zero-filled.

    x: ``[B, ..., H, W]`` (all frames of a clip move together).
    """
    if max_shift <= 0:
        return x
    B, H, W = x.shape[0], x.shape[-2], x.shape[-1]
    shifts = torch.randint(-max_shift, max_shift + 1, (B, 2), generator=generator).tolist()
    padded = F.pad(x, (max_shift, max_shift, max_shift, max_shift))
    out = torch.empty_like(x)
    for i, (dy, dx) in enumerate(shifts):
        y0, x0 = max_shift - dy, max_shift - dx
        out[i] = padded[i, ..., y0:y0 + H, x0:x0 + W]
    return out


def _identity(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    return x


def batch_transform(name: str):
    """The batch transform ``name`` of ``spikemask.data.augment`` as ``f(x, generator) -> x``.

    Imported only when a transform other than ``none`` is asked for.
    """
    if name == "none":
        return _identity
    from ..data.augment import get_augment

    return get_augment(name)
