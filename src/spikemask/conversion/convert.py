"""ANN-to-SNN conversion: a module tree with QCFS activations becomes a network of IF neurons.

Three steps a user can follow (or call :func:`convert` for all three):

1. :func:`validate` walks the tree: every :class:`~.qcfs.QCFS` will become a neuron; linear modules (conv,
   linear, pooling by averaging, BatchNorm, dropout) carry over; softmax and LayerNorm stay analog (MST
   keeps its softmax, position bias and head LayerNorm analog); any other non-linearity (GELU, an
   unquantised ReLU, max-pooling, ...) cannot be converted and is refused, naming the module.
2. :func:`replace` swaps each QCFS for a :class:`~.neuron.StepIF` of threshold λ (in place).
3. :func:`check` confirms no QCFS is left and every threshold is positive and finite.

The converted network runs step by step on the analog input (direct encoding: the same input at every
step) and its outputs are averaged over the steps; :func:`run_steps` gives the running average after
every step, so one pass yields the accuracy-vs-T curve. Activations that happen inside ``forward`` as
functions (``F.gelu``) cannot be seen by the walk: build models from modules.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn

from ..config import ConfigError
from .neuron import StepIF, reset_neurons
from .qcfs import QCFS

__all__ = ["ConversionError", "ConversionReport", "validate", "replace", "check", "convert", "run_steps",
           "SpikingRunner", "ConvertibleMixin", "ANALOG_MODULES", "UNCONVERTIBLE"]


class ConversionError(ConfigError):
    """A module tree cannot be converted; the message names the module and what to do."""


# kept as they are in the SNN, computed on real values at every step (reported as analog by the counter)
ANALOG_MODULES: tuple[type[nn.Module], ...] = (nn.Softmax, nn.LayerNorm)
# non-linearities with no spiking counterpart here
UNCONVERTIBLE: dict[type[nn.Module], str] = {
    nn.ReLU: "an unquantised ReLU: quantise the model first (spikemask.conversion.quantise) and train it",
    nn.ReLU6: "an unquantised ReLU6: quantise the model first", nn.Hardtanh: "an unquantised clip: quantise it",
    nn.GELU: "GELU has no integrate-and-fire counterpart; train with QCFS (or ReLU, then quantise) instead",
    nn.SiLU: "SiLU has no integrate-and-fire counterpart", nn.Sigmoid: "a sigmoid has no IF counterpart",
    nn.Tanh: "tanh takes negative values: an IF neuron cannot", nn.ELU: "ELU takes negative values",
    nn.LeakyReLU: "a leaky ReLU takes negative values", nn.PReLU: "PReLU takes negative values",
    nn.SELU: "SELU takes negative values", nn.Mish: "Mish has no IF counterpart",
    nn.Hardswish: "Hardswish has no IF counterpart", nn.Softplus: "Softplus has no IF counterpart",
    nn.MaxPool1d: "max-pooling of spikes is not the max of rates: use average pooling",
    nn.MaxPool2d: "max-pooling of spikes is not the max of rates: use average pooling",
}


@dataclass
class ConversionReport:
    """What :func:`convert` did: neurons (module path -> threshold λ) and the modules left analog."""

    neurons: dict[str, float] = field(default_factory=dict)
    analog: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"neurons": dict(self.neurons), "analog": dict(self.analog), "num_neurons": len(self.neurons)}


def validate(model: nn.Module) -> ConversionReport:
    """Check that ``model`` can be converted; the QCFS modules it will turn into neurons, its analog modules."""
    report = ConversionReport()
    for name, module in model.named_modules():
        if isinstance(module, StepIF):
            raise ConversionError(f"{name or type(model).__name__} is already a converted neuron: convert the ANN")
        if isinstance(module, QCFS):
            lam = float(module.lam.detach())
            if not lam > 0 or lam != lam:
                raise ConversionError(f"{name}: QCFS λ = {lam} is not a positive threshold; the ANN is broken")
            report.neurons[name] = lam
        elif isinstance(module, ANALOG_MODULES):
            report.analog[name] = type(module).__name__
        elif type(module) in UNCONVERTIBLE:
            raise ConversionError(f"cannot convert {name} ({type(module).__name__}): {UNCONVERTIBLE[type(module)]}")
    if not report.neurons:
        raise ConversionError(f"{type(model).__name__} has no QCFS activation to convert: quantise it "
                              "(spikemask.conversion.quantise) and train it first")
    return report


def replace(model: nn.Module, thresholds: dict[str, float] | None = None) -> nn.Module:
    """Swap every QCFS of ``model`` in place for a :class:`StepIF` of threshold λ (``thresholds`` overrides)."""
    for name, module in list(model.named_modules()):
        if isinstance(module, QCFS):
            lam = thresholds[name] if thresholds is not None else module.lam.detach()
            parent_name, _, leaf = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, leaf, StepIF(lam))
    return model


def check(model: nn.Module) -> int:
    """Confirm the conversion: no QCFS left, every neuron's threshold positive and finite; the neuron count."""
    count = 0
    for name, module in model.named_modules():
        if isinstance(module, QCFS):
            raise ConversionError(f"{name} is still a QCFS activation after conversion")
        if isinstance(module, StepIF):
            th = float(module.threshold)
            if not (th > 0 and th < float("inf")):
                raise ConversionError(f"{name}: threshold {th} is not positive and finite")
            count += 1
    if count == 0:
        raise ConversionError("the converted model has no neurons")
    return count


@torch.no_grad()
def run_steps(step: Callable[[torch.Tensor], torch.Tensor], model: nn.Module, x: torch.Tensor, T: int) -> torch.Tensor:
    """Run ``step(x)`` T times from fresh membranes; the running mean of its outputs after each step, ``[T, ...]``.

    Inference only (a converted network is not trained: fine-tune the ANN), so no graph is kept over T steps.
    """
    if not isinstance(T, int) or isinstance(T, bool) or T < 1:
        raise ValueError(f"T must be a positive integer (time steps), got {T!r}")
    reset_neurons(model)
    total, means = None, []
    for t in range(T):
        out = step(x)
        total = out.clone() if total is None else total.add_(out)
        means.append(total / (t + 1))
    reset_neurons(model)
    return torch.stack(means)


class SpikingRunner(nn.Module):
    """A converted user model: ``forward(x)`` runs ``net`` T steps on the analog input and averages its outputs."""

    def __init__(self, net: nn.Module, T: int, report: ConversionReport | None = None) -> None:
        super().__init__()
        self.net = net
        self.T = int(T)
        self.report = report

    @property
    def config(self):  # what the energy counter reads: the steps a static input runs for
        return _Steps(self.T)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_steps(x)[-1]

    def forward_steps(self, x: torch.Tensor, T: int | None = None) -> torch.Tensor:
        return run_steps(self.net, self.net, x, self.T if T is None else T)


@dataclass(frozen=True)
class _Steps:
    T: int


def convert(model: nn.Module, T: int, *, inplace: bool = False) -> nn.Module:
    """Validate, replace and check: the SNN of ``model`` (a copy unless ``inplace``).

    A spikemask convertible family (``config.converted``) comes back as its own class, converted, so it
    saves and loads like any checkpoint; any other module comes back wrapped in a :class:`SpikingRunner`.
    """
    if not isinstance(T, int) or isinstance(T, bool) or T < 1:
        raise ValueError(f"T must be a positive integer (time steps), got {T!r}")
    report = validate(model)
    snn = model if inplace else copy.deepcopy(model)
    replace(snn)
    check(snn)
    if isinstance(snn, ConvertibleMixin):
        snn.config.converted = True
        snn.config.T = int(T)
        snn.conversion_report = report
        return snn.eval()
    return SpikingRunner(snn, T, report).eval()


class ConvertibleMixin:
    """For model families trained as QCFS ANNs: ``config.converted`` and ``config.T`` decide how they run.

    Subclasses implement ``forward_ann(x)``; once converted (:func:`convert`, or a converted checkpoint
    rebuilt with ``converted: true``), ``forward`` runs it step by step and ``forward_steps`` gives the
    running mean after every step.
    """

    def convert_structure(self) -> None:
        """Replace QCFS by neurons (thresholds come from the state dict): rebuilding a converted checkpoint."""
        replace(self)

    def train(self, mode: bool = True):
        """A converted network only runs inference: its BatchNorms keep their statistics (always eval)."""
        return super().train(False if self.config.converted else mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.config.converted:
            return self.forward_ann(x)
        return self.forward_steps(x)[-1]

    def forward_steps(self, x: torch.Tensor, T: int | None = None) -> torch.Tensor:
        if not self.config.converted:
            raise ConversionError(f"{self.variant} is an ANN: convert it first (spikemask convert, conversion.convert)")
        return run_steps(self.forward_ann, self, x, self.config.T if T is None else T)
