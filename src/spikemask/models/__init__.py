"""Model families. Importing this package registers every variant."""

from . import cnn, saformer, spikformer, spikingformer, swin_bn  # noqa: F401  (register the variants)
from .registry import (
    build_model,
    count_parameters,
    create_model,
    list_families,
    list_models,
    model_info,
    register_model,
)
from .transformer import SASAConfig, Spikformer, SpikformerConfig, SpikingTransformer, TransformerConfig

__all__ = [
    "SASAConfig",
    "Spikformer",
    "SpikformerConfig",
    "SpikingTransformer",
    "TransformerConfig",
    "build_model",
    "count_parameters",
    "create_model",
    "list_families",
    "list_models",
    "model_info",
    "register_model",
]
