"""spikemask: energy-efficient spiking transformers with Random Spike Masking and honest energy accounting.

Names are imported on first use (PEP 562), so that tools which need no torch (``spikemask report``, the
results database) start without loading it; ``from spikemask import create_model`` works as usual.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "MaskConfig": "masking", "SpikeMask": "masking", "apply_rsm": "masking", "random_spike_mask": "masking",
    "build_model": "models", "count_parameters": "models", "create_model": "models", "list_families": "models",
    "list_models": "models", "model_info": "models",
    "IF": "neurons", "LIF": "neurons", "NeuronConfig": "neurons",
}

__all__ = sorted([*_EXPORTS, "__version__"])


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    else:
        try:  # a submodule: spikemask.conversion, spikemask.energy, ...
            value = importlib.import_module(f".{name}", __name__)
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":
                raise
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
