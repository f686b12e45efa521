"""Multi-step spiking neurons, time-first ``[T, ...]``.

LIF (directly trained models, ../shared/spec/architectures.md):
    H[t] = V[t-1] + (X[t] - (V[t-1] - V_reset)) / tau
    S[t] = Θ(H[t] - V_th)
    V[t] = H[t] (1 - S[t]) + V_reset S[t]          (hard reset)
IF with reset by subtraction (converted MST, 001_9e47b243e487ffe3.txt):
    H[t] = V[t-1] + X[t];  S[t] = Θ(H[t] - V_th);  V[t] = H[t] - V_th S[t]

Every forward call processes a whole sequence and starts from the initial membrane, so there is
no hidden state to reset between batches (a forgotten ``reset_net`` cannot happen here).

With the reset detached from the graph (the default, as in Spikformer), the whole sequence runs
in one autograd node that saves only ``H``; the backward pass is the exact BPTT recursion
    dL/dH[t] = dL/dS[t] σ'(H[t] - V_th) + dL/dV[t] (1 - S[t])        (LIF; IF: + dL/dV[t])
    dL/dX[t] = dL/dH[t] / tau,   dL/dV[t-1] = dL/dH[t] (1 - 1/tau)   (IF: 1, 1)
which matches SpikingJelly's ``LIFNode``/``IFNode`` in multi-step mode (tested).

The forward loop runs compiled on CPU when Numba is installed (:func:`spikemask.kernels.neuron_sequence`: one
pass per step, the same bits as the PyTorch ops of :func:`inference_torch` / :func:`with_h_torch`, which run
everywhere else).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from . import engine, kernels
from .config import bounded, check_bounds
from .surrogate import SURROGATES, spike_fn, surrogate_grad_

__all__ = ["NeuronConfig", "SpikingNeuron", "LIF", "IF", "make_neuron"]


@dataclass(kw_only=True)
class NeuronConfig:
    """How the spiking neurons of a model behave.

    kind: ``"lif"`` (leaky, hard reset) or ``"if"`` (no leak, reset by subtraction).
    tau: LIF membrane time constant (> 1).
    v_threshold: firing threshold V_th.
    v_reset: LIF reset potential (hard reset).
    v_init: membrane at t = 0; None means V_reset for LIF (as SpikingJelly) and 0 for IF
        (an IF converted from QCFS starts at V_th / 2).
    surrogate: ``"sigmoid"`` or ``"atan"``; alpha: its sharpness (None: 4 for sigmoid, 2 for atan).
    detach_reset: cut the reset out of the gradient (Spikformer's choice).
    """

    kind: Literal["lif", "if"] = "lif"
    tau: float = bounded(2.0, gt=0)
    v_threshold: float = bounded(1.0, gt=0)
    v_reset: float = bounded(0.0)  # any finite value
    v_init: float | None = bounded(None)
    surrogate: Literal["sigmoid", "atan"] = "sigmoid"
    alpha: float | None = bounded(None, gt=0)  # <= 0 would silence or flip every gradient
    detach_reset: bool = True

    def __post_init__(self) -> None:
        check_bounds(self, "neuron")
        if self.kind not in ("lif", "if"):
            raise ValueError(f"neuron.kind must be 'lif' or 'if', got {self.kind!r}")
        if self.kind == "lif" and not self.tau > 1.0:
            raise ValueError(f"neuron.tau must be > 1 for a LIF neuron, got {self.tau}")
        if self.surrogate not in SURROGATES:
            raise ValueError(f"neuron.surrogate {self.surrogate!r} unknown; valid: {', '.join(SURROGATES)}")

    @property
    def initial_v(self) -> float:
        if self.v_init is not None:
            return float(self.v_init)
        return self.v_reset if self.kind == "lif" else 0.0

    @property
    def surrogate_alpha(self) -> float:
        return SURROGATES[self.surrogate] if self.alpha is None else float(self.alpha)


def _charge(x_t: torch.Tensor, v: torch.Tensor, leak: float, v_reset: float, hard_reset: bool,
            out: torch.Tensor) -> torch.Tensor:
    """``H[t]`` into ``out`` (not ``v``), in SpikingJelly's order of operations so that spikes match theirs
    bit for bit: LIF ``H = V + (X - (V - V_reset)) / tau`` as ``X - V`` then ``V + leak (X - V)`` (``leak =
    1/tau``: exact for tau 2, where ``/ 2`` and ``* 0.5`` round alike), IF ``H = V + X``."""
    if not hard_reset:
        return torch.add(v, x_t, out=out)
    torch.sub(x_t, v - v_reset if v_reset else v, out=out)
    return torch.add(v, out, alpha=leak, out=out)


def _fire(h: torch.Tensor, s: torch.Tensor, v_th: float, v_reset: float, hard_reset: bool,
          out: torch.Tensor) -> torch.Tensor:
    """Spikes ``S = Θ(H - V_th)`` into ``s`` (float, no bool temporary), then the reset membrane into ``out``
    (may be ``h``): hard ``H (1 - S) + V_reset S`` as ``lerp(H, V_reset, S)`` (exactly H or V_reset, since
    PyTorch's lerp returns ``end`` at weight 1), soft ``H - V_th S``."""
    torch.ge(h, v_th, out=s)
    if not hard_reset:
        return torch.add(h, s, alpha=-v_th, out=out)
    if v_reset:
        return torch.lerp(h, h.new_tensor(v_reset), s, out=out)
    return torch.addcmul(h, h, s, value=-1.0, out=out)  # H - H S: exactly H or 0


def multi_step_inference(x_seq, leak, v_th, v_reset, v_init, hard_reset, events: bool = False) -> torch.Tensor:
    """The forward pass without autograd: spikes ``[T, ...]`` (the compiled loop where it applies, else
    :func:`inference_torch`; the same bits either way). ``events``: the compiled loop also writes the spikes'
    event list and hands it to the event engine (:func:`spikemask.engine.remember_events`), for the layer
    that reads them (contiguous input, outside inference mode, whose tensors the engine does not cache)."""
    if _compiled(x_seq):
        emit = events and x_seq.is_contiguous() and not torch.is_inference_mode_enabled()
        spikes, _, positions = _compiled_sequence(x_seq, leak, v_th, v_reset, v_init, hard_reset, keep_h=False,
                                                  emit=emit)
        if positions is not None:
            engine.remember_events(spikes, positions)
        return spikes
    return inference_torch(x_seq, leak, v_th, v_reset, v_init, hard_reset)


def multi_step_with_h(x_seq, leak, v_th, v_reset, v_init, hard_reset) -> tuple[torch.Tensor, torch.Tensor]:
    """(spikes, H) of the whole sequence: the forward pass that keeps what the backward pass needs (compiled
    where it applies, else :func:`with_h_torch`; the same bits either way)."""
    if _compiled(x_seq):
        return _compiled_sequence(x_seq, leak, v_th, v_reset, v_init, hard_reset, keep_h=True)[:2]
    return with_h_torch(x_seq, leak, v_th, v_reset, v_init, hard_reset)


def _time_major_dense(x: torch.Tensor) -> bool:
    """Whether ``x [T, ...]`` is one dense block per step, steps one after another (contiguous, or
    channels-last frames): then it is a ``[T, M]`` matrix in memory, whatever the order within a step."""
    M = x.numel() // x.shape[0]
    if x.shape[0] > 1 and x.stride(0) != M:
        return False
    expected = 1
    for stride, size in sorted((x.stride(d), x.shape[d]) for d in range(1, x.dim()) if x.shape[d] != 1):
        if stride != expected:
            return False
        expected *= size
    return True


def _compiled(x_seq: torch.Tensor) -> bool:
    # under torch.compile the PyTorch ops are traced instead (Dynamo cannot follow into Numba)
    return (x_seq.device.type == "cpu" and x_seq.dtype in (torch.float32, torch.float64) and x_seq.numel() > 0
            and not torch.compiler.is_compiling() and _time_major_dense(x_seq) and kernels.available())


def _compiled_sequence(x_seq, leak, v_th, v_reset, v_init, hard_reset, keep_h, emit=False):
    """(spikes, H or None, spike positions or None) by the compiled charge-fire-reset loop
    (:func:`spikemask.kernels.neuron_sequence`): one pass per step instead of four PyTorch ops; outputs keep
    ``x_seq``'s layout."""
    T, M = x_seq.shape[0], x_seq.numel() // x_seq.shape[0]

    def matrix(t: torch.Tensor):
        # [T, M]: dense, time-major (checked); detached: called inside autograd Functions' forward or no_grad
        return torch.as_strided(t.detach(), (T, M), (M, 1), t.storage_offset()).numpy()

    spikes = torch.empty_strided(x_seq.shape, x_seq.stride(), dtype=x_seq.dtype)
    h_seq = torch.empty_strided(x_seq.shape, x_seq.stride(), dtype=x_seq.dtype) if keep_h else None
    positions = kernels.neuron_sequence(matrix(x_seq), matrix(spikes), matrix(h_seq) if keep_h else None, leak,
                                        v_th, v_reset, v_init, hard_reset, threads=torch.get_num_threads(),
                                        emit=emit)
    return spikes, h_seq, positions


def inference_torch(x_seq, leak, v_th, v_reset, v_init, hard_reset) -> torch.Tensor:
    """The forward pass without autograd in PyTorch ops: two step-sized membrane buffers (charged, reset) reused
    every step and every step's spikes written into the preallocated output, so no step allocates (per-step
    allocations of step-sized tensors cost more than the arithmetic on CPU: page faults on every fresh block)."""
    spikes = torch.empty_like(x_seq)
    v = torch.full_like(x_seq[0], v_init)
    h = torch.empty_like(v)
    for t in range(x_seq.shape[0]):
        _charge(x_seq[t], v, leak, v_reset, hard_reset, out=h)
        _fire(h, spikes[t], v_th, v_reset, hard_reset, out=v)
    return spikes


def with_h_torch(x_seq, leak, v_th, v_reset, v_init, hard_reset) -> tuple[torch.Tensor, torch.Tensor]:
    """(spikes, H) in PyTorch ops (any device and dtype)."""
    h_seq = torch.empty_like(x_seq)
    spikes = torch.empty_like(x_seq)
    v = torch.full_like(x_seq[0], v_init)
    for t in range(x_seq.shape[0]):
        h = _charge(x_seq[t], v, leak, v_reset, hard_reset, out=h_seq[t])
        _fire(h, spikes[t], v_th, v_reset, hard_reset, out=v)
    return spikes, h_seq


def multi_step_backward(h_seq, grad_s, leak, v_th, kind, alpha, hard_reset) -> torch.Tensor:
    """dL/dX of the whole sequence from ``H`` and dL/dS (module docstring), reset detached."""
    carry = 1.0 - leak if hard_reset else 1.0
    grad_x = torch.empty_like(h_seq)
    bufs = (torch.empty_like(h_seq[0]), torch.empty_like(h_seq[0]))  # dL/dH of t and of t + 1
    fired = torch.empty_like(h_seq[0]) if hard_reset else None
    grad_next = None  # dL/dH[t+1]
    for t in range(h_seq.shape[0] - 1, -1, -1):
        h = h_seq[t]
        grad_h = surrogate_grad_(torch.sub(h, v_th, out=bufs[t % 2]), kind, alpha).mul_(grad_s[t])  # spike path
        if grad_next is not None:
            # dL/dH[t] += dL/dH[t+1] carry dV[t]/dH[t]: the hard reset V = H (1 - S) + V_reset S
            # passes dV/dH only where H[t] did not spike, the soft reset passes it always
            if hard_reset:
                torch.ge(h, v_th, out=fired)
                grad_next.addcmul_(grad_next, fired, value=-1.0)  # zero where H[t] spiked
                grad_h.add_(grad_next, alpha=carry)
            else:
                grad_h.add_(grad_next)
        if hard_reset:
            torch.mul(grad_h, leak, out=grad_x[t])
        else:
            grad_x[t].copy_(grad_h)
        grad_next = grad_h
    return grad_x


class _FusedMultiStep(torch.autograd.Function):
    """LIF (``leak = 1/tau``, hard reset) or IF (``leak = 0``, soft reset), reset detached.

    Only ``H`` is saved for backward. Both passes work step by step into preallocated outputs and two
    or three step-sized scratch buffers, so no temporary ever has the size of the whole ``[T, ...]``
    sequence and no step allocates.
    """

    @staticmethod
    def forward(ctx, x_seq, leak, v_th, v_reset, v_init, kind, alpha, hard_reset):
        spikes, h_seq = multi_step_with_h(x_seq, leak, v_th, v_reset, v_init, hard_reset)
        ctx.save_for_backward(h_seq)
        ctx.cfg = (leak, v_th, kind, alpha, hard_reset)
        return spikes

    @staticmethod
    def backward(ctx, grad_s):
        (h_seq,) = ctx.saved_tensors
        return (multi_step_backward(h_seq, grad_s, *ctx.cfg),) + (None,) * 7


def _needs_grad(x_seq: torch.Tensor) -> bool:
    return torch.is_grad_enabled() and x_seq.requires_grad


class SpikingNeuron(nn.Module):
    """Base class: ``forward([T, ...]) -> spikes [T, ...]``; the energy counter finds neurons by it.

    ``emit_events`` (set by :func:`spikemask.engine.set_engine` for the event engines): at inference the
    compiled loop hands its spikes' event list to the engine for the layer that reads them."""

    emit_events = False

    def __init__(self, cfg: NeuronConfig) -> None:
        super().__init__()
        self.cfg = cfg

    def _check(self, x_seq: torch.Tensor) -> None:
        if x_seq.dim() < 2 or x_seq.shape[0] == 0:
            raise ValueError(
                f"{type(self).__name__} expects time-first input [T, ...] with T >= 1, got shape {tuple(x_seq.shape)}"
            )

    def dynamics(self) -> tuple[float, float, float, float, bool]:
        """(leak, V_th, V_reset, V_init, hard reset): the arguments of the multi-step kernels."""
        raise NotImplementedError

    def unrolled(self, x_seq: torch.Tensor) -> torch.Tensor:
        """The sequence step by step through autograd (the reset kept in the graph: ``detach_reset=False``)."""
        raise NotImplementedError

    def forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        self._check(x_seq)
        leak, v_th, v_reset, v_init, hard_reset = self.dynamics()
        if not _needs_grad(x_seq):
            return multi_step_inference(x_seq, leak, v_th, v_reset, v_init, hard_reset, events=self.emit_events)
        c = self.cfg
        if c.detach_reset:
            return _FusedMultiStep.apply(x_seq, leak, v_th, v_reset, v_init, c.surrogate, c.surrogate_alpha,
                                         hard_reset)
        return self.unrolled(x_seq)

    def extra_repr(self) -> str:
        c = self.cfg
        extra = f", tau={c.tau}, v_reset={c.v_reset}" if c.kind == "lif" else ""
        return f"v_threshold={c.v_threshold}{extra}, surrogate={c.surrogate}({c.surrogate_alpha})"


class LIF(SpikingNeuron):
    """Multi-step LIF neuron with hard reset (see module docstring)."""

    def dynamics(self) -> tuple[float, float, float, float, bool]:
        c = self.cfg
        return 1.0 / c.tau, c.v_threshold, c.v_reset, c.initial_v, True

    def unrolled(self, x_seq: torch.Tensor) -> torch.Tensor:
        c = self.cfg
        v = torch.full_like(x_seq[0], c.initial_v)
        spikes = []
        for t in range(x_seq.shape[0]):
            h = v + (x_seq[t] - (v - c.v_reset)) / c.tau
            s = spike_fn(h - c.v_threshold, c.surrogate, c.surrogate_alpha)
            v = h * (1.0 - s) + c.v_reset * s
            spikes.append(s)
        return torch.stack(spikes)


class IF(SpikingNeuron):
    """Multi-step integrate-and-fire neuron with reset by subtraction (see module docstring)."""

    def dynamics(self) -> tuple[float, float, float, float, bool]:
        c = self.cfg
        return 0.0, c.v_threshold, c.v_reset, c.initial_v, False

    def unrolled(self, x_seq: torch.Tensor) -> torch.Tensor:
        c = self.cfg
        v = torch.full_like(x_seq[0], c.initial_v)
        spikes = []
        for t in range(x_seq.shape[0]):
            h = v + x_seq[t]
            s = spike_fn(h - c.v_threshold, c.surrogate, c.surrogate_alpha)
            v = h - c.v_threshold * s
            spikes.append(s)
        return torch.stack(spikes)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", v_init={self.cfg.initial_v}"


def make_neuron(cfg: NeuronConfig, **overrides) -> SpikingNeuron:
    """Neuron factory used by every model; ``overrides`` change single fields (e.g. ``v_threshold=0.5``)."""
    if overrides:
        cfg = dataclasses.replace(cfg, **overrides)
    return {"lif": LIF, "if": IF}[cfg.kind](cfg)
