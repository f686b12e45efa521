"""QCFS: the quantised clip-floor-shift activation that makes an ANN convertible (Bu et al., ICLR 2022; MST,
001_9e47b243e487ffe3.txt), and the transform that puts it into any ANN.

    QCFS(z) = λ · clip(floor(z · L / λ + φ) / L, 0, 1)

with L levels, shift φ = 0.5 and λ a learnable scalar per activation (initialised to 2). The floor passes
its gradient straight through; the clip gives zero gradient outside [0, λ], and λ learns from both the
clipped and the scaled part (the authors' ``MyFloor``: ``λ · clamp(floor(z / λ · L + φ) / L, 0, 1)``).
After conversion each QCFS becomes an integrate-and-fire neuron of threshold λ (:mod:`.neuron`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

import torch
from torch import nn

from ..config import ConfigError, bounded, check_bounds

__all__ = ["QCFSConfig", "QCFS", "qcfs", "quantise", "ACTIVATIONS_TO_QUANTISE"]


@dataclass(kw_only=True)
class QCFSConfig:
    """The activation of a convertible ANN.

    kind: ``qcfs`` (quantised, convertible) or ``relu`` (a plain ANN, to be quantised later with :func:`quantise`).
    levels: L, the quantisation levels (16 in MST); the converted SNN needs about L or more steps.
    init_lambda: λ at initialisation (2.0), learnt per activation.
    shift: φ, added before the floor (0.5: the converted membrane starts at half the threshold).
    """

    kind: str = "qcfs"
    levels: int = bounded(16, ge=1)
    init_lambda: float = bounded(2.0, gt=0)
    shift: float = bounded(0.5, ge=0, le=1)

    def __post_init__(self) -> None:
        check_bounds(self, "act")
        if self.kind not in ("qcfs", "relu"):
            raise ValueError(f"act.kind must be 'qcfs' or 'relu', got {self.kind!r}")

    def make(self) -> nn.Module:
        """A fresh activation module of this kind."""
        return QCFS(self.levels, self.init_lambda, self.shift) if self.kind == "qcfs" else nn.ReLU()


class _StraightFloor(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.floor()

    @staticmethod
    def backward(ctx, grad):
        return grad


def qcfs(z: torch.Tensor, lam: torch.Tensor, levels: int, shift: float = 0.5) -> torch.Tensor:
    """``λ · clip(floor(z L / λ + φ) / L, 0, 1)`` with a straight-through floor (any shape)."""
    q = _StraightFloor.apply(z / lam * levels + shift) / levels
    return torch.clamp(q, 0.0, 1.0) * lam


class QCFS(nn.Module):
    """QCFS activation with its own learnable λ (a scalar)."""

    def __init__(self, levels: int = 16, init_lambda: float = 2.0, shift: float = 0.5) -> None:
        super().__init__()
        if levels < 1:
            raise ValueError(f"QCFS levels must be >= 1, got {levels}")
        self.levels, self.shift = int(levels), float(shift)
        self.lam = nn.Parameter(torch.tensor(float(init_lambda)))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return qcfs(z, self.lam, self.levels, self.shift)

    def extra_repr(self) -> str:
        return f"levels={self.levels}, lambda={float(self.lam.detach()):.4g}, shift={self.shift:g}"


# activations quantise() replaces; anything else non-linear in a model to convert is refused by the converter
ACTIVATIONS_TO_QUANTISE: tuple[type[nn.Module], ...] = (nn.ReLU, nn.ReLU6, nn.Hardtanh)


def quantise(
    model: nn.Module,
    *,
    levels: int = 16,
    init_lambda: float = 2.0,
    shift: float = 0.5,
    names: Iterable[str] | None = None,
    types: tuple[type[nn.Module], ...] = ACTIVATIONS_TO_QUANTISE,
    where: Callable[[str, nn.Module], bool] | None = None,
) -> list[str]:
    """Replace activations of ``model`` in place by :class:`QCFS`; return the replaced module names.

    By default every module of ``types`` (ReLU, ReLU6, Hardtanh: clip-like functions QCFS approximates)
    is replaced; ``names`` restricts it to those module paths (each must exist and be one of ``types``),
    ``where(name, module)`` to those it accepts. A ``names`` entry that is not a replaceable activation
    raises :class:`~spikemask.config.ConfigError` naming it and what it is.
    """
    modules = dict(model.named_modules())
    if names is not None:
        names = list(names)
        for name in names:
            if name not in modules:
                raise ConfigError(f"quantise: {type(model).__name__} has no module {name!r}")
            if not isinstance(modules[name], types):
                kinds = ", ".join(t.__name__ for t in types)
                raise ConfigError(f"quantise: {name!r} is a {type(modules[name]).__name__}, not an activation "
                                  f"QCFS can replace ({kinds})")
        targets = names
    else:
        targets = [n for n, m in modules.items() if n and isinstance(m, types)]
    if where is not None:
        targets = [n for n in targets if where(n, modules[n])]
    for name in targets:
        _set_module(model, name, QCFS(levels, init_lambda, shift))
    return targets


def _set_module(root: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, leaf = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, leaf, module)


def check_convertible(config) -> None:
    """A model config with ``converted: true`` must have QCFS activations (their λ become the thresholds)."""
    if config.converted and config.act.kind != "qcfs":
        raise ValueError(f"model.converted needs act.kind 'qcfs', got {config.act.kind!r}: a ReLU ANN has no "
                         "thresholds; quantise and train it, then convert")
