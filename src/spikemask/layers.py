"""Small building blocks shared by the model families.

Functional operations that are synaptic (the attention matmuls) or that the energy model charges
(pooling) are wrapped in modules here, so the energy counter sees exactly the tensors they consume.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "SpikeMatmul", "MeanPool", "seq_apply", "channels_last_seq", "TokenBN", "mark_after_time_mean",
    "is_after_time_mean", "SpikeGate", "HadamardSum", "TokenPool", "ResidualAdd", "TokenDWConv",
]

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


def channels_last_seq(x: torch.Tensor) -> torch.Tensor:
    """``[T, B, C, H, W]`` with the same values, each frame stored channels-last (NHWC): oneDNN (CPU) and
    cuDNN (under AMP) convolve that layout faster, and conv, BN, max-pool and the neurons keep it."""
    return x.flatten(0, 1).contiguous(memory_format=torch.channels_last).view(x.shape)


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


class SpikeGate(nn.Module):
    """``a * b`` elementwise (broadcasting), where at least one operand is a spike tensor: a gate (AND).

    Spike-driven attention uses it to let one spike tensor pass where another fires (SDSA's
    ``Q ⊙ SN(...)``, SASA's ``A ⊙ K``). A module so the energy counter sees both operands.
    """

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a * b


class HadamardSum(nn.Module):
    """``(a * b).sum(dim)``: a Hadamard product summed along one axis (``keepdim``).

    For spikes this counts coincidences, like a matmul does; SASA sums the product of its aggregated
    Q and K over the token rows this way. Counted like :class:`SpikeMatmul` (pairs of non-zero factors).
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return (a * b).sum(dim=self.dim, keepdim=True)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class TokenPool(nn.Module):
    """Pool ``[T, B, N, D]`` along the tokens to ``[T, B, N', D]``: adaptive average (``"mean"``) or sum.

    The aggregation of SASA (adaptive average pooling, N -> N') and the token sum of SDSA (``"sum"``,
    N' = 1). Windows are those of ``adaptive_avg_pool1d`` (they may overlap when N' does not divide N).
    Each non-zero input costs one addition; the output is not binary.
    """

    def __init__(self, out_tokens: int, reduce: str = "mean") -> None:
        super().__init__()
        if reduce not in ("mean", "sum"):
            raise ValueError(f"TokenPool reduce must be 'mean' or 'sum', got {reduce!r}")
        self.out_tokens, self.reduce = int(out_tokens), reduce

    def windows(self, n: int) -> list[tuple[int, int]]:
        """``[start, end)`` of each output token's window over ``n`` input tokens (PyTorch's adaptive rule)."""
        return [((i * n) // self.out_tokens, -((-(i + 1) * n) // self.out_tokens)) for i in range(self.out_tokens)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T, B, N, D = x.shape
        if self.reduce == "sum" and self.out_tokens == 1:
            return x.sum(dim=2, keepdim=True)
        pooled = F.adaptive_avg_pool1d(x.reshape(T * B, N, D).transpose(1, 2), self.out_tokens)  # [TB, D, N']
        out = pooled.transpose(1, 2).reshape(T, B, self.out_tokens, D)
        if self.reduce == "sum":
            sizes = torch.tensor([e - s for s, e in self.windows(N)], dtype=x.dtype, device=x.device)
            out = out * sizes.view(1, 1, -1, 1)
        return out

    def extra_repr(self) -> str:
        return f"out_tokens={self.out_tokens}, reduce={self.reduce}"


class ResidualAdd(nn.Module):
    """``x + branch``: the residual addition, a module so the counter can report it (outside the total)."""

    def forward(self, x: torch.Tensor, branch: torch.Tensor) -> torch.Tensor:
        return x + branch


class TokenDWConv(nn.Module):
    """Depthwise 2-D convolution over the token grid of ``[T, B, N, D]`` (N = side², per channel)."""

    def __init__(self, dim: int, kernel: int, side: int) -> None:
        super().__init__()
        self.side = side
        self.conv = nn.Conv2d(dim, dim, kernel, padding=kernel // 2, groups=dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T, B, N, D = x.shape
        grid = x.transpose(2, 3).reshape(T * B, D, self.side, self.side)  # [TB, D, H, W]
        out = self.conv(grid)
        return out.reshape(T, B, D, N).transpose(2, 3)  # [T, B, N, D]
