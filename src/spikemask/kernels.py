"""Compiled kernels of the event-driven engine (optional: Numba, ``pip install "spikemask[event]"``).

A 3x3 convolution (stride 1, padding 1) of spikes is a gather-add, as a linear layer's is
(:mod:`spikemask.engine`): output pixel ``q`` sums ``w_e W[ky, kx, c_e, :]`` over the events ``e`` (pixel,
channel ``c_e``, value ``w_e``: 1 for spikes, the count for spike counts) of the 3x3 pixels around it. Work
is events x 9 x out-channels additions instead of pixels x 9 x in x out multiply-adds. There is no way to
express that gather over neighbourhoods with PyTorch's CPU ops without unfolding the input nine-fold or
running one ``embedding_bag`` per kernel offset; both were measured slower than oneDNN at every density
(docs/engine.md), so it is a small compiled loop.

Each output pixel is summed by one thread in a fixed order, so the result does not depend on the number of
threads. Images are split between ``threads`` Python threads (the kernel releases the GIL).
"""

from __future__ import annotations

import importlib.util
from concurrent.futures import ThreadPoolExecutor
from functools import cache

import numpy as np

__all__ = ["available", "conv3x3_events"]


def available() -> bool:
    """Whether Numba is installed (the kernels compile on first use, once per process; cached on disk)."""
    return importlib.util.find_spec("numba") is not None


@cache
def _compiled():
    from numba import njit

    @njit(cache=True, nogil=True)
    def conv3x3(indices, offsets, values, table, C, H, W, n0, n1, out):  # pragma: no cover (compiled)
        # table [9 C, out]: row (ky * 3 + kx) C + c is W[:, c, ky, kx]; out [N H W, out] zeros; values: per-event
        # weights, empty for binary spikes
        n_out = table.shape[1]
        weighted = values.shape[0] > 0
        for n in range(n0, n1):
            for y in range(H):
                for x in range(W):
                    q = (n * H + y) * W + x
                    for ky in range(3):
                        yy = y + ky - 1
                        if yy < 0 or yy >= H:
                            continue
                        for kx in range(3):
                            xx = x + kx - 1
                            if xx < 0 or xx >= W:
                                continue
                            p = (n * H + yy) * W + xx
                            base = (ky * 3 + kx) * C
                            for e in range(offsets[p], offsets[p + 1]):
                                r = base + indices[e]
                                if weighted:
                                    v = values[e]
                                    for o in range(n_out):
                                        out[q, o] += v * table[r, o]
                                else:
                                    for o in range(n_out):
                                        out[q, o] += table[r, o]

    return conv3x3


@cache
def _pool(workers: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(workers, thread_name_prefix="spikemask-event")


def conv3x3_events(indices: np.ndarray, offsets: np.ndarray, values: np.ndarray | None, table: np.ndarray,
                   shape: tuple[int, int, int], threads: int = 1) -> np.ndarray:
    """3x3 convolution (stride 1, padding 1, no bias) of an event list, ``[N H W, O]`` (NHWC rows).

    ``indices`` / ``offsets``: the events of the input viewed as ``[N H W, C]`` (channel indices, row by
    row, and row offsets ``[N H W + 1]``: :func:`spikemask.engine.event_list`); ``values``: each event's
    value (None: every event is 1); ``table``: ``[9 C, O]``, the weight ``[O, C, 3, 3]`` permuted to
    ``(ky, kx, c)`` rows; ``shape``: ``(N, H, W)``.
    """
    N, H, W = shape
    C = table.shape[0] // 9
    if offsets.shape != (N * H * W + 1,) or table.shape[0] != 9 * C:
        raise ValueError(f"event list of {offsets.shape[0] - 1} pixels or table {table.shape} does not fit "
                         f"{N}x{H}x{W} images and a 3x3 kernel")
    out = np.zeros((N * H * W, table.shape[1]), dtype=table.dtype)
    if N == 0:
        return out
    kernel = _compiled()
    vals = np.empty(0, dtype=table.dtype) if values is None else values.astype(table.dtype, copy=False)
    chunks = np.linspace(0, N, min(max(1, threads), N) + 1).astype(np.int64)
    args = (indices, offsets, vals, table, C, H, W)
    if len(chunks) == 2:
        kernel(*args, 0, N, out)
        return out
    jobs = [_pool(len(chunks) - 1).submit(kernel, *args, int(a), int(b), out) for a, b in zip(chunks, chunks[1:])]
    for job in jobs:
        job.result()
    return out
