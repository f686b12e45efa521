"""The primitives of :mod:`spikemask.data.augment`: batched, integer-exact geometric maps (flip, translate,
rotate, shear, roll, cutout) and normalisation on ``[B, C, H, W]`` / ``[B, T, C, H, W]`` tensors, each sample
with its own parameters. The policies and their registry are in :mod:`.augment`."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from .randaugment import affine_pixels, sample_pixels

__all__ = ["hflip", "translate", "rotate", "shear", "roll", "cutout", "normalize"]


def _fill_of(mean: Sequence[float]) -> tuple[float, ...]:
    """timm's RandAugment fill ``img_mean``: the mean colour rounded to 8-bit levels."""
    return tuple(min(255, round(255 * m)) / 255 for m in mean)


def _check(x: torch.Tensor, image_only: bool = False) -> None:
    ok = x.dim() == 4 or (x.dim() == 5 and not image_only)
    if not ok:
        want = "[B, C, H, W]" if image_only else "[B, C, H, W] or [B, T, C, H, W]"
        raise ValueError(f"expected {want}, got shape {tuple(x.shape)}")


def _vec(v, B: int, dtype=torch.float64) -> torch.Tensor:
    """A number or ``[B]`` values -> a ``[B]`` CPU tensor."""
    t = torch.as_tensor(v, dtype=dtype).cpu()
    return t.expand(B) if t.dim() == 0 else t


def _col(v: torch.Tensor, device) -> torch.Tensor:
    return v.to(device=device, dtype=torch.float32).reshape(-1, 1, 1)


def _round(v: torch.Tensor) -> torch.Tensor:
    return torch.floor(v + 0.5)


def _grid(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    H, W = x.shape[-2:]
    ys, xs = torch.meshgrid(torch.arange(H, device=x.device, dtype=torch.float32),
                            torch.arange(W, device=x.device, dtype=torch.float32), indexing="ij")
    return xs.expand(x.shape[0], H, W), ys.expand(x.shape[0], H, W)


# ---------------------------------------------------------------- integer index maps (output -> source)
def _shear_map(X, Y, factor: torch.Tensor, axis: str, H: int, W: int):
    """Shift row y by ``round(f (y - cy))`` (about the centre); a bijection of the grid for any f."""
    f = _col(factor, X.device)
    if axis == "x":
        return X + _round(f * (Y - (H - 1) / 2)), Y
    return X, Y + _round(f * (X - (W - 1) / 2))


def _rotation_map(X, Y, degrees: torch.Tensor, H: int, W: int):
    """Rotation about the image centre (counter-clockwise positive) as a permutation of the grid.

    Three integer shears ``Sx(-tan(θ/2)) Sy(sin θ) Sx(-tan(θ/2))`` about the integer centre ``(W//2, H//2)``,
    after an integer shift that moves the centre to ``((W-1)/2, (H-1)/2)``; |θ| > 90° first takes an exact
    point reflection.
    """
    th = torch.remainder(torch.deg2rad(degrees.double()) + math.pi, 2 * math.pi) - math.pi  # [-π, π)
    flip = th.abs() > math.pi / 2
    th = torch.where(flip, th - torch.sign(th) * math.pi, th)
    cos, sin = torch.cos(th), torch.sin(th)
    dx, dy = W // 2 - (W - 1) / 2, H // 2 - (H - 1) / 2
    sx, sy = _round(dx - cos * dx - sin * dy), _round(dy + sin * dx - cos * dy)  # (I - R) d, R the forward map
    a, b = _col(-torch.tan(th / 2), X.device), _col(sin, X.device)
    X = X + _col(sx, X.device) - W // 2
    Y = Y + _col(sy, X.device) - H // 2
    X = X + _round(a * Y)
    Y = Y + _round(b * X)
    X = X + _round(a * Y)
    X, Y = X + W // 2, Y + H // 2
    f = _col(flip, X.device).bool()
    return torch.where(f, W - 1 - X, X), torch.where(f, H - 1 - Y, Y)


def _translate_map(X, Y, dx: torch.Tensor, dy: torch.Tensor):
    return X - _round(_col(dx, X.device)), Y - _round(_col(dy, X.device))


def _flip_map(X, mask: torch.Tensor, W: int):
    return torch.where(_col(mask, X.device).bool(), W - 1 - X, X)


# ---------------------------------------------------------------- primitives
def hflip(x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mirror the width axis of the samples where ``mask [B]`` is true (all when None). x: ``[B, ..., H, W]``."""
    if mask is None:
        return x.flip(-1)
    m = mask.to(x.device).reshape(-1, *([1] * (x.dim() - 1)))
    return torch.where(m, x.flip(-1), x)


def translate(x: torch.Tensor, dx, dy, *, mode: str = "nearest", fill=0.0) -> torch.Tensor:
    """Move content right by ``dx`` and down by ``dy`` pixels (numbers or ``[B]``), ``fill`` coming in.

    Nearest rounds the shift to whole pixels (an exact copy). x: ``[B, ..., H, W]``.
    """
    B = x.shape[0]
    if mode == "nearest":
        X, Y = _translate_map(*_grid(x), _vec(dx, B), _vec(dy, B))
        return sample_pixels(x, X, Y, mode="nearest", fill=fill)
    o, z = torch.ones(B, dtype=torch.float64), torch.zeros(B, dtype=torch.float64)
    m = torch.stack([torch.stack([o, z, -_vec(dx, B)], -1), torch.stack([z, o, -_vec(dy, B)], -1)], 1)
    return affine_pixels(x, m, mode=mode, fill=fill)


def rotate(x: torch.Tensor, degrees, *, mode: str = "nearest", fill=0.0) -> torch.Tensor:
    """Rotate each sample about its centre, counter-clockwise for positive ``degrees`` (number or ``[B]``).

    Nearest: a count-preserving permutation of the pixels (see the module docstring). x: ``[B, ..., H, W]``.
    """
    B, H, W = x.shape[0], x.shape[-2], x.shape[-1]
    if mode == "nearest":
        X, Y = _rotation_map(*_grid(x), _vec(degrees, B), H, W)
        return sample_pixels(x, X, Y, mode="nearest", fill=fill)
    th = torch.deg2rad(_vec(degrees, B))
    cos, sin = torch.cos(th), torch.sin(th)
    cx, cy = (W - 1) / 2, (H - 1) / 2
    m = torch.stack([torch.stack([cos, -sin, cx - cos * cx + sin * cy], -1),
                     torch.stack([sin, cos, cy - sin * cx - cos * cy], -1)], 1)
    return affine_pixels(x, m, mode=mode, fill=fill)


def shear(x: torch.Tensor, factor, *, axis: str = "x", mode: str = "nearest", fill=0.0) -> torch.Tensor:
    """Shear about the centre: output ``(x, y)`` reads ``(x + f (y - cy), y)`` for ``axis="x"``.

    ``factor`` is a number or ``[B]``; nearest rounds each row's shift to whole pixels. x: ``[B, ..., H, W]``.
    """
    if axis not in ("x", "y"):
        raise ValueError(f"axis must be 'x' or 'y', got {axis!r}")
    B, H, W = x.shape[0], x.shape[-2], x.shape[-1]
    f = _vec(factor, B)
    if mode == "nearest":
        X, Y = _shear_map(*_grid(x), f, axis, H, W)
        return sample_pixels(x, X, Y, mode="nearest", fill=fill)
    o, z = torch.ones(B, dtype=torch.float64), torch.zeros(B, dtype=torch.float64)
    rows = ([o, f, -f * (H - 1) / 2], [z, o, z]) if axis == "x" else ([o, z, z], [f, o, -f * (W - 1) / 2])
    m = torch.stack([torch.stack(r, -1) for r in rows], 1)
    return affine_pixels(x, m, mode=mode, fill=fill)


def roll(x: torch.Tensor, dx, dy) -> torch.Tensor:
    """Per-sample ``torch.roll`` by integers ``dx`` (width) and ``dy`` (height), wrapping around. ``[B, ..., H, W]``."""
    B, H, W = x.shape[0], x.shape[-2], x.shape[-1]
    X, Y = _grid(x)
    X = torch.remainder(X - _col(_vec(dx, B), x.device), W)
    Y = torch.remainder(Y - _col(_vec(dy, B), x.device), H)
    return sample_pixels(x, X, Y, mode="nearest")


def cutout(x: torch.Tensor, top, left, size, *, value: float = 0.0) -> torch.Tensor:
    """Set the square ``[top, top + size) x [left, left + size)`` of each sample (all frames) to ``value``.

    ``top``, ``left``, ``size``: numbers or ``[B]`` integers (size 0: nothing). x: ``[B, ..., H, W]``.
    """
    B = x.shape[0]
    X, Y = _grid(x)
    t, le, s = (_col(_vec(v, B), x.device) for v in (top, left, size))
    box = (Y >= t) & (Y < t + s) & (X >= le) & (X < le + s)  # [B, H, W]
    box = box.reshape(B, *([1] * (x.dim() - 3)), *box.shape[-2:])
    return torch.where(box, torch.as_tensor(value, dtype=x.dtype, device=x.device), x)


def normalize(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """``(x - mean) / std`` per channel (channel dim -3). x: ``[B, C, H, W]`` or ``[B, T, C, H, W]``."""
    m = torch.as_tensor(mean, dtype=x.dtype, device=x.device).reshape(-1, 1, 1)
    s = torch.as_tensor(std, dtype=x.dtype, device=x.device).reshape(-1, 1, 1)
    return (x - m) / s
