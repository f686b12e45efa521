"""The integrate-and-fire neuron a QCFS activation becomes, run one time step per call.

    v[0] = θ / 2;   v[t] = v[t-1] + z[t];   s[t] = (v[t] >= θ);   v[t] -= θ s[t];   out[t] = θ s[t]

with θ = λ of the QCFS it replaces (reset by subtraction, membrane starting at half the threshold, each
spike carrying θ: 001_9e47b243e487ffe3.txt and the QCFS code's ``ScaledNeuron``). For a constant input z
and T = L steps, the spike count is exactly ``clip(floor(z L / θ + 1/2), 0, L)``: QCFS with L levels.

Converted networks are huge at T = 64 … 512, so they run step by step: the neuron keeps its membrane
between calls (one call = one step) and never holds T copies of anything. :func:`reset_neurons`
starts a new input.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["StepIF", "reset_neurons"]


class StepIF(nn.Module):
    """Single-step IF neuron with threshold ``threshold`` (a buffer: saved with the converted model)."""

    kind = "if"  # for the energy counter's neuron-update column

    def __init__(self, threshold: float | torch.Tensor = 1.0, v_init: float = 0.5) -> None:
        super().__init__()
        self.register_buffer("threshold", torch.as_tensor(threshold, dtype=torch.float32).clone().detach())
        self.v_init = float(v_init)  # fraction of the threshold the membrane starts at
        self.v: torch.Tensor | None = None

    def reset_state(self) -> None:
        self.v = None

    @torch.no_grad()
    def forward(self, z: torch.Tensor) -> torch.Tensor:
        th = self.threshold.to(z.dtype)
        if self.v is None or self.v.shape != z.shape:
            self.v = torch.full_like(z, 0.0) + th * self.v_init
        v = self.v.add_(z)
        out = torch.ge(v, th, out=torch.empty_like(v)).mul_(th)  # each spike carries θ; no bool temporary
        v.sub_(out)
        return out

    def extra_repr(self) -> str:
        return f"threshold={float(self.threshold):.4g}, v_init={self.v_init:g} x threshold"


def reset_neurons(model: nn.Module) -> None:
    """Forget every :class:`StepIF` membrane in ``model`` (before each new input)."""
    for m in model.modules():
        if isinstance(m, StepIF):
            m.reset_state()
