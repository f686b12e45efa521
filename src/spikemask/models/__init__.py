"""Model families. Importing this package registers every variant."""

from . import spikformer  # noqa: F401  (registers the Spikformer variants)
from .registry import build_model, count_parameters, create_model, list_models, model_info, register_model
from .spikformer import Spikformer, SpikformerConfig

__all__ = [
    "build_model",
    "count_parameters",
    "create_model",
    "list_models",
    "model_info",
    "register_model",
    "Spikformer",
    "SpikformerConfig",
]
