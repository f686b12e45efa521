"""Exact operation counts for one call of a synaptic layer (../shared/spec/energy.md, "Counting").

Events, not rates x dense MACs: a linear layer costs ``nnz(input) x out_features`` weight uses; a
convolution, the exact number of weight uses of every non-zero input element (border-aware: a
pixel near the edge is seen by fewer output positions); a product of two activation tensors, the
number of (i, k, j) terms whose two factors are both non-zero (for binary operands: coincidences).
"""

from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "BINARY",
    "INTEGER",
    "REAL",
    "ENCODINGS",
    "encoding_of",
    "conv_cover",
    "conv_weight_uses",
    "conv_dense_macs",
    "linear_weight_uses",
    "linear_dense_macs",
    "matmul_pairs",
    "matmul_dense_macs",
    "elementwise_pairs",
    "elementwise_dense",
]

BINARY, INTEGER, REAL = "binary", "integer", "real"
ENCODINGS = (BINARY, INTEGER, REAL)  # ordered: a layer's encoding is the worst seen over calls


def encoding_of(x: torch.Tensor) -> str:
    """``binary`` (spikes: all values 0/1, or all non-zero values one positive constant), ``integer`` (whole
    numbers: counts, spike sums) or ``real``.

    A converted IF neuron's spikes carry its threshold θ (``{0, θ}``): a spike train scaled by θ, the scale
    folding into the next layer's weights, so it is charged as spikes.
    """
    if x.dtype == torch.bool or bool(((x == 0) | (x == 1)).all()):  # spikes: the common case, tested first
        return BINARY
    nz = x[x != 0]
    if bool((nz == nz[0]).all()) and float(nz[0]) > 0:  # scaled spikes (nz is not empty: 0s alone are binary)
        return BINARY
    return INTEGER if torch.equal(x, x.round()) else REAL


@lru_cache(maxsize=256)
def _cover(in_hw: tuple[int, ...], out_hw: tuple[int, ...], kernel, stride, padding, dilation) -> torch.Tensor:
    ones_out = torch.ones(1, 1, *out_hw, dtype=torch.float64)
    ones_k = torch.ones(1, 1, *kernel, dtype=torch.float64)
    if len(in_hw) == 2:
        cover = F.conv_transpose2d(ones_out, ones_k, stride=stride, padding=padding, dilation=dilation)
    else:
        cover = F.conv_transpose1d(ones_out, ones_k, stride=stride, padding=padding, dilation=dilation)
    # conv_transpose may come out short at the bottom/right (inputs no output window reaches)
    full = torch.zeros(1, 1, *in_hw, dtype=torch.float64)
    region = tuple(slice(0, min(a, b)) for a, b in zip(in_hw, cover.shape[2:]))
    full[(slice(None), slice(None), *region)] = cover[(slice(None), slice(None), *region)]
    return full[0, 0]


def conv_cover(conv: nn.Conv1d | nn.Conv2d, in_hw: tuple[int, ...], out_hw: tuple[int, ...]) -> torch.Tensor:
    """``[H, W]``: how many output positions (per output channel) read each input position."""
    if isinstance(conv.padding, str):
        raise ValueError(f"string padding {conv.padding!r} is not supported by the energy counter")
    return _cover(tuple(in_hw), tuple(out_hw), tuple(conv.kernel_size), tuple(conv.stride),
                  tuple(conv.padding), tuple(conv.dilation))


def conv_weight_uses(x: torch.Tensor, conv: nn.Conv1d | nn.Conv2d, out: torch.Tensor, weights: torch.Tensor) -> float:
    """Σ over input elements of ``weights[element]`` x (number of weight uses of that element).

    x: conv input ``[N, C, *spatial]``; ``weights`` has x's shape (the non-zero indicator for an
    event count, or x itself for value-weighted counts). Each input channel feeds
    ``out_channels / groups`` output channels.
    """
    cover = conv_cover(conv, tuple(x.shape[2:]), tuple(out.shape[2:])).to(x.device)
    per_position = weights.sum(dim=(0, 1), dtype=torch.float64)  # [*spatial]
    return float((per_position * cover).sum()) * (conv.out_channels // conv.groups)


def conv_dense_macs(conv: nn.Conv1d | nn.Conv2d, out: torch.Tensor) -> float:
    """Conventional MAC count (padding included, as ANN counters do) for the whole call."""
    k = 1
    for s in conv.kernel_size:
        k *= s
    return float(out.numel()) * (conv.in_channels // conv.groups) * k


def linear_weight_uses(weights: torch.Tensor, linear: nn.Linear) -> float:
    return float(weights.sum(dtype=torch.float64)) * linear.out_features


def linear_dense_macs(x: torch.Tensor, linear: nn.Linear) -> float:
    return float(x.numel()) * linear.out_features


def matmul_pairs(a: torch.Tensor, b: torch.Tensor, *, valued: bool = False) -> float:
    """Number of terms ``a[..., i, k] b[..., k, j]`` with both factors non-zero.

    Σ_k (number of non-zero a[:, k]) x (number of non-zero b[k, :]), summed over the batch dims:
    exact, and linear in the sizes (no N x N x d product is formed). ``valued=True`` weights each
    term by ``a_ik b_kj`` instead (for spike counts: the coincidences of the spikes they stand for).
    """
    if valued:
        col, row = a.to(torch.float64).sum(dim=-2), b.to(torch.float64).sum(dim=-1)
    else:
        col = (a != 0).to(torch.float64).sum(dim=-2)  # [..., K]
        row = (b != 0).to(torch.float64).sum(dim=-1)  # [..., K]
    return float((col * row).sum())


def matmul_dense_macs(a: torch.Tensor, b: torch.Tensor) -> float:
    batch = torch.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    n = 1
    for s in batch:
        n *= s
    return float(n) * a.shape[-2] * a.shape[-1] * b.shape[-1]


def elementwise_pairs(a: torch.Tensor, b: torch.Tensor, *, valued: bool = False) -> float:
    """Number of (broadcast) elements of ``a * b`` whose two factors are both non-zero; ``valued=True``
    weights each by ``a b`` instead (a Hadamard product, summed or not: its terms are its elements)."""
    if valued:
        return float((a.to(torch.float64) * b.to(torch.float64)).sum())
    return float(((a != 0) & (b != 0)).sum())


def elementwise_dense(a: torch.Tensor, b: torch.Tensor) -> float:
    """Elements of the broadcast product: the conventional multiply count."""
    n = 1
    for s in torch.broadcast_shapes(a.shape, b.shape):
        n *= s
    return float(n)
