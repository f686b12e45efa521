"""Surrogate gradients for the Heaviside spike function.

Forward is ``Θ(x) = (x >= 0)``; backward replaces ``δ(x)`` by the derivative of a smooth function,
exactly as SpikingJelly's ``surrogate.Sigmoid`` (alpha 4) and ``surrogate.ATan`` (alpha 2), so that
models trained here and there see the same gradients.
"""

from __future__ import annotations

import math

import torch

__all__ = ["SURROGATES", "surrogate_grad", "surrogate_grad_", "spike_fn"]

# name -> default alpha
SURROGATES: dict[str, float] = {"sigmoid": 4.0, "atan": 2.0}


def surrogate_grad(x: torch.Tensor, kind: str, alpha: float) -> torch.Tensor:
    """d/dx of the smooth stand-in for Θ at ``x`` (the membrane minus threshold)."""
    if kind == "sigmoid":
        sg = torch.sigmoid(alpha * x)
        return alpha * sg * (1.0 - sg)
    if kind == "atan":
        a = alpha / 2.0
        return a / (1.0 + (math.pi * a * x) ** 2)
    raise ValueError(f"unknown surrogate {kind!r}; valid: {', '.join(SURROGATES)}")


def surrogate_grad_(x: torch.Tensor, kind: str, alpha: float) -> torch.Tensor:
    """:func:`surrogate_grad` computed in place on ``x`` (a scratch tensor); returns ``x``."""
    if kind == "sigmoid":
        sg = x.mul_(alpha).sigmoid_()
        return sg.addcmul_(sg, sg, value=-1.0).mul_(alpha)  # sg (1 - sg) without a temporary
    if kind == "atan":
        a = alpha / 2.0
        return x.mul_(math.pi * a).square_().add_(1.0).reciprocal_().mul_(a)
    raise ValueError(f"unknown surrogate {kind!r}; valid: {', '.join(SURROGATES)}")


class _SpikeFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, kind: str, alpha: float) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.kind, ctx.alpha = kind, alpha
        return (x >= 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        (x,) = ctx.saved_tensors
        return grad_out * surrogate_grad(x, ctx.kind, ctx.alpha), None, None


def spike_fn(x: torch.Tensor, kind: str = "sigmoid", alpha: float | None = None) -> torch.Tensor:
    """Heaviside forward, surrogate backward. ``x`` is membrane minus threshold."""
    if kind not in SURROGATES:
        raise ValueError(f"unknown surrogate {kind!r}; valid: {', '.join(SURROGATES)}")
    return _SpikeFn.apply(x, kind, SURROGATES[kind] if alpha is None else float(alpha))
