"""Small building blocks shared by the model families.

Functional operations that are synaptic (the attention matmuls) or that the energy model charges
(pooling) are wrapped in modules here, so the energy counter sees exactly the tensors they consume.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["SpikeMatmul", "MeanPool", "seq_apply", "TokenBN", "mark_after_time_mean", "is_after_time_mean"]

_AFTER_TIME_MEAN = "after_time_mean"


def mark_after_time_mean(module: nn.Module) -> nn.Module:
    """Declare that ``module`` and everything inside it run after the mean over time; return it.

    Such layers run once per sample, not once per step, on time averages: real-valued by
    construction, whatever T is (at T = 1 as well). Models mark their head (everything after
    the time-reducing pool) at construction; the energy counter reads the mark instead of
    guessing from tensor shapes, which cannot tell the two apart at T = 1.
    """
    for m in module.modules():
        setattr(m, _AFTER_TIME_MEAN, True)
    return module


def is_after_time_mean(module: nn.Module) -> bool:
    """Whether ``module`` was marked with :func:`mark_after_time_mean`."""
    return bool(getattr(module, _AFTER_TIME_MEAN, False))


def seq_apply(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Apply a per-sample module to ``[T, B, ...]`` by folding T into the batch."""
    T, B = x.shape[:2]
    y = module(x.flatten(0, 1))  # [T*B, ...]
    return y.view(T, B, *y.shape[1:])


class SpikeMatmul(nn.Module):
    """``a @ b`` for two activation tensors (e.g. Q Kᵀ); a module so its inputs can be counted."""

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a @ b


class MeanPool(nn.Module):
    """Mean over the given dims (global average pooling over tokens and time before the head)."""

    def __init__(self, dims: tuple[int, ...]) -> None:
        super().__init__()
        self.dims = tuple(dims)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=self.dims)

    def extra_repr(self) -> str:
        return f"dims={self.dims}"


class TokenBN(nn.BatchNorm1d):
    """BatchNorm over the channel (last) axis of ``[..., D]`` token tensors.

    Same statistics as Spikformer's ``BatchNorm1d`` on ``[T*B, D, N]``: per channel over T, B, N.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.reshape(-1, x.shape[-1])).view_as(x)
