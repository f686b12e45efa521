"""Compiled kernels (optional: Numba, ``pip install "spikemask[event]"``): the event engine's 3x3 convolution
and the multi-step neurons' forward loop.

A 3x3 convolution (stride 1, padding 1) of spikes is a gather-add, as a linear layer's is
(:mod:`spikemask.engine`): output pixel ``q`` sums ``w_e W[ky, kx, c_e, :]`` over the events ``e`` (pixel,
channel ``c_e``, value ``w_e``: 1 for spikes, the count for spike counts) of the 3x3 pixels around it. Work
is events x 9 x out-channels additions instead of pixels x 9 x in x out multiply-adds. There is no way to
express that gather over neighbourhoods with PyTorch's CPU ops without unfolding the input nine-fold or
running one ``embedding_bag`` per kernel offset; both were measured slower than oneDNN at every density
(docs/engine.md), so it is a small compiled loop.

Each output pixel is summed by one thread in a fixed order, so the result does not depend on the number of
threads. Images are split between ``threads`` Python threads (the kernel releases the GIL).

The neurons' forward loop (charge, fire, reset, every step) runs as one pass per step over the membrane instead
of four PyTorch ops, 1.5-4x faster. It repeats PyTorch's arithmetic operation for operation, so the spikes and
membranes are bit-identical to :func:`spikemask.neurons.multi_step_inference` (tested, at the threshold and
with inf / NaN / -0 inputs): the charge ``V + leak (X - V)`` is one fused multiply-add, as PyTorch's
``add(alpha=)`` computes it, the comparison and the reset use the threshold and reset rounded to the dtype.
"""

from __future__ import annotations

import importlib.util
import os
from concurrent.futures import ThreadPoolExecutor
from functools import cache

import numpy as np

__all__ = ["available", "conv3x3_events", "neuron_sequence"]


@cache
def available() -> bool:
    """Whether Numba is installed (the kernels compile on first use, once per process; cached on disk)."""
    return importlib.util.find_spec("numba") is not None


@cache
def _conv_kernel():
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
def _neuron_kernel():
    from numba import njit
    from numba.extending import intrinsic

    @intrinsic
    def fma(typingctx, a, b, c):  # pragma: no cover (compiled): LLVM's fused multiply-add, one rounding
        def codegen(context, builder, signature, args):
            return builder.fma(*args)
        return a(a, b, c), codegen

    # Each line repeats the PyTorch op of spikemask.neurons that it replaces (named in its comment). With an
    # event buffer ``ev`` (``emit``), the flat position of every spike is appended at ``ev[n]``: the event list
    # of the spikes, row-major, built in the same pass; the steps return the new count.
    @njit(inline="always")
    def fire(h, v_th, j, st, ht, keep_h, ev, n, base, emit):  # pragma: no cover (compiled, inlined)
        zero = v_th - v_th  # 0 in the membrane's dtype
        s = zero + 1 if h >= v_th else zero  # torch.ge(h, v_th, out=float)
        st[j] = s
        if keep_h:
            ht[j] = h
        if emit:
            ev[n] = base + j
            n += s == 1
        return s, n

    # one loop per kind, without branches on the kind inside (they keep LLVM from vectorising)
    @njit(cache=True, nogil=True)
    def lif_step(xt, st, ht, v, leak, v_th, keep_h, ev, n, base, emit):  # pragma: no cover (compiled): V_reset 0
        for j in range(xt.shape[0]):
            vj = v[j]
            h = fma(xt[j] - vj, leak, vj)  # torch.sub(x, v), torch.add(v, d, alpha=leak)
            s, n = fire(h, v_th, j, st, ht, keep_h, ev, n, base, emit)
            v[j] = h - h * s  # torch.addcmul(h, h, s, value=-1): h s is exact
        return n

    @njit(cache=True, nogil=True)
    def if_step(xt, st, ht, v, v_th, keep_h, ev, n, base, emit):  # pragma: no cover (compiled): IF, soft reset
        for j in range(xt.shape[0]):
            h = v[j] + xt[j]  # torch.add(v, x)
            s, n = fire(h, v_th, j, st, ht, keep_h, ev, n, base, emit)
            v[j] = h - v_th * s  # torch.add(h, s, alpha=-v_th): v_th s is exact
        return n

    @njit(cache=True, nogil=True)
    def lif_reset_step(xt, st, ht, v, leak, v_th, v_reset, keep_h, ev, n, base, emit):  # pragma: no cover
        zero = v_th - v_th
        for j in range(xt.shape[0]):
            vj = v[j]
            h = fma(xt[j] - (vj - v_reset), leak, vj)  # torch.sub(x, v - v_reset), torch.add(alpha=leak)
            s, n = fire(h, v_th, j, st, ht, keep_h, ev, n, base, emit)
            v[j] = (v_reset if h >= v_th else h) + zero * (v_reset - h)  # torch.lerp: fma(0, end - h, base)
        return n

    @njit(cache=True, nogil=True)
    def sequence(x, out, h_out, ev, leak, v_th, v_reset, v_init, hard, m0, m1):  # pragma: no cover (compiled)
        # x, out [T, M]; h_out [T, M] or [0, 0]; ev [T M + 1] (emit: one chunk, m0 = 0, m1 = M) or [0];
        # columns m0..m1, one step-sized membrane buffer
        keep_h = h_out.shape[0] > 0
        emit = ev.shape[0] > 0
        M = x.shape[1]
        v = np.full(m1 - m0, v_init, dtype=x.dtype)
        n = 0
        for t in range(x.shape[0]):
            st = out[t, m0:m1]
            ht = h_out[t, m0:m1] if keep_h else st
            if not hard:
                n = if_step(x[t, m0:m1], st, ht, v, v_th, keep_h, ev, n, t * M + m0, emit)
            elif v_reset == 0:  # the models' neuron
                n = lif_step(x[t, m0:m1], st, ht, v, leak, v_th, keep_h, ev, n, t * M + m0, emit)
            else:
                n = lif_reset_step(x[t, m0:m1], st, ht, v, leak, v_th, v_reset, keep_h, ev, n, t * M + m0, emit)
        return n

    return sequence


def neuron_sequence(x: np.ndarray, out: np.ndarray, h_out: np.ndarray | None, leak: float, v_th: float,
                    v_reset: float, v_init: float, hard_reset: bool, threads: int = 1,
                    emit: bool = False) -> np.ndarray | None:
    """Multi-step LIF (``hard_reset``: ``H = V + leak (X - (V - V_reset))``, reset to ``V_reset``) or IF (``H =
    V + X``, reset by subtraction) over ``x [T, M]`` from ``V = v_init``: spikes into ``out`` and, if given, the
    charged membranes ``H`` into ``h_out`` (both ``[T, M]``, ``x``'s dtype). Columns are split between threads.

    ``emit``: also return the flat positions of the spikes in ``out`` (int64, ascending: the event list the
    engine gathers from), written in the same pass (on one thread, which keeps them in order); else None."""
    dt = x.dtype.type
    M = x.shape[1]
    kernel = _neuron_kernel()
    ev = np.empty(x.size if emit else 0, dtype=np.int64)  # the kernel writes one slot past the last spike
    args = (x, out, np.empty((0, 0), dtype=x.dtype) if h_out is None else h_out, ev, dt(leak), dt(v_th),
            dt(v_reset), dt(v_init), bool(hard_reset))
    if emit:
        return ev[: kernel(*args, 0, M)]
    _run_chunks(kernel, args, np.linspace(0, M, min(max(1, threads), max(1, M // 4096)) + 1).astype(np.int64))
    return None


@cache
def _pool(workers: int, pid: int) -> ThreadPoolExecutor:
    # per process: a forked child inherits the executor object but not its threads
    return ThreadPoolExecutor(workers, thread_name_prefix="spikemask-kernels")


def _run_chunks(kernel, args: tuple, chunks: np.ndarray) -> None:
    """``kernel(*args, a, b)`` for consecutive ``(a, b)`` of ``chunks``, on threads when there are several."""
    if len(chunks) == 2:
        kernel(*args, int(chunks[0]), int(chunks[1]))
        return
    jobs = [_pool(len(chunks) - 1, os.getpid()).submit(kernel, *args, int(a), int(b))
            for a, b in zip(chunks, chunks[1:])]
    for job in jobs:
        job.result()


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
    kernel = _conv_kernel()
    vals = np.empty(0, dtype=table.dtype) if values is None else values.astype(table.dtype, copy=False)
    chunks = np.linspace(0, N, min(max(1, threads), N) + 1).astype(np.int64)
    _run_chunks(lambda *a: kernel(*a, out), (indices, offsets, vals, table, C, H, W), chunks)
    return out
