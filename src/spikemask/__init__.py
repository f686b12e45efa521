"""spikemask: energy-efficient spiking transformers with Random Spike Masking and honest energy accounting."""

from .masking import MaskConfig, SpikeMask, apply_rsm, random_spike_mask
from .models import build_model, count_parameters, create_model, list_families, list_models, model_info
from .neurons import IF, LIF, NeuronConfig

__version__ = "0.1.0"

__all__ = [
    "IF",
    "LIF",
    "MaskConfig",
    "NeuronConfig",
    "SpikeMask",
    "__version__",
    "apply_rsm",
    "build_model",
    "count_parameters",
    "create_model",
    "list_families",
    "list_models",
    "model_info",
    "random_spike_mask",
]
