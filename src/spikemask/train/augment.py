"""Batch augmentation in torch, identical for every time step of a clip."""

from __future__ import annotations

import torch

__all__ = ["random_translate", "batch_transform"]


def random_translate(x: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Shift each clip by integer (dy, dx) in [-max_shift, max_shift], zero-filled (``data.translate``).

    x: ``[B, ..., H, W]`` (all frames of a clip move together).
    """
    if max_shift <= 0:
        return x
    from ..data.augment import translate

    shifts = torch.randint(-max_shift, max_shift + 1, (x.shape[0], 2), generator=generator)  # [B, (dy, dx)]
    return translate(x, shifts[:, 1], shifts[:, 0])


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
