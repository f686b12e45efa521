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
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

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


class _FusedMultiStep(torch.autograd.Function):
    """LIF (``leak = 1/tau``, hard reset) or IF (``leak = 0``, soft reset), reset detached.

    Only ``H`` is saved for backward. Both passes work step by step into preallocated outputs with
    in-place ops, so no temporary ever has the size of the whole ``[T, ...]`` sequence.
    """

    @staticmethod
    def forward(ctx, x_seq, leak, v_th, v_reset, v_init, kind, alpha, hard_reset):
        h_seq = torch.empty_like(x_seq)
        spikes = torch.empty_like(x_seq)
        carry = 1.0 - leak if hard_reset else 1.0
        v = torch.full_like(x_seq[0], v_init)
        for t in range(x_seq.shape[0]):
            h = h_seq[t]
            if hard_reset:  # H = V (1 - 1/tau) + (X + V_reset) / tau
                torch.mul(x_seq[t], leak, out=h).add_(v, alpha=carry)
                if v_reset:
                    h.add_(v_reset * leak)
            else:  # H = V + X
                torch.add(x_seq[t], v, out=h)
            fired = h >= v_th
            spikes[t].copy_(fired)
            v = h.masked_fill(fired, v_reset) if hard_reset else h - spikes[t] * v_th
        ctx.save_for_backward(h_seq)
        ctx.cfg = (leak, v_th, kind, alpha, hard_reset)
        return spikes

    @staticmethod
    def backward(ctx, grad_s):
        (h_seq,) = ctx.saved_tensors
        leak, v_th, kind, alpha, hard_reset = ctx.cfg
        carry = 1.0 - leak if hard_reset else 1.0
        grad_x = torch.empty_like(h_seq)
        grad_next = None  # dL/dH[t+1]
        for t in range(h_seq.shape[0] - 1, -1, -1):
            h = h_seq[t]
            grad_h = surrogate_grad_(h - v_th, kind, alpha).mul_(grad_s[t])  # the spike path
            if grad_next is not None:
                # dL/dH[t] += dL/dH[t+1] carry dV[t]/dH[t]: the hard reset V = H (1 - S) + V_reset S
                # passes dV/dH only where H[t] did not spike, the soft reset passes it always
                if hard_reset:
                    grad_h.add_(grad_next.masked_fill_(h >= v_th, 0.0), alpha=carry)
                else:
                    grad_h.add_(grad_next)
            if hard_reset:
                torch.mul(grad_h, leak, out=grad_x[t])
            else:
                grad_x[t].copy_(grad_h)
            grad_next = grad_h
        return grad_x, None, None, None, None, None, None, None


class SpikingNeuron(nn.Module):
    """Base class: ``forward([T, ...]) -> spikes [T, ...]``; the energy counter finds neurons by it."""

    def __init__(self, cfg: NeuronConfig) -> None:
        super().__init__()
        self.cfg = cfg

    def _check(self, x_seq: torch.Tensor) -> None:
        if x_seq.dim() < 2 or x_seq.shape[0] == 0:
            raise ValueError(
                f"{type(self).__name__} expects time-first input [T, ...] with T >= 1, got shape {tuple(x_seq.shape)}"
            )

    def extra_repr(self) -> str:
        c = self.cfg
        extra = f", tau={c.tau}, v_reset={c.v_reset}" if c.kind == "lif" else ""
        return f"v_threshold={c.v_threshold}{extra}, surrogate={c.surrogate}({c.surrogate_alpha})"


class LIF(SpikingNeuron):
    """Multi-step LIF neuron with hard reset (see module docstring)."""

    def forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        self._check(x_seq)
        c = self.cfg
        if c.detach_reset:
            return _FusedMultiStep.apply(
                x_seq, 1.0 / c.tau, c.v_threshold, c.v_reset, c.initial_v, c.surrogate, c.surrogate_alpha, True
            )
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

    def forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        self._check(x_seq)
        c = self.cfg
        if c.detach_reset:
            return _FusedMultiStep.apply(
                x_seq, 0.0, c.v_threshold, c.v_reset, c.initial_v, c.surrogate, c.surrogate_alpha, False
            )
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
