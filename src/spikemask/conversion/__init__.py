"""ANN-to-SNN conversion (MST, 001_9e47b243e487ffe3.txt): QCFS activations, IF neurons, step-by-step runs."""

from .convert import (
    ConversionError,
    ConversionReport,
    ConvertibleMixin,
    SpikingRunner,
    check,
    convert,
    replace,
    run_steps,
    validate,
)
from .neuron import StepIF, reset_neurons
from .qcfs import QCFS, QCFSConfig, qcfs, quantise

__all__ = [
    "QCFS", "QCFSConfig", "StepIF", "ConversionError", "ConversionReport", "ConvertibleMixin", "SpikingRunner",
    "check", "convert", "qcfs", "quantise", "replace", "reset_neurons", "run_steps", "validate",
]
