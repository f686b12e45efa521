"""Model registry: every variant is a tiny registered function over one builder per family.

``create_model(name, **overrides)`` ignores ``None`` overrides (so CLI flags left unset do not
clobber variant defaults), validates the rest against the family's config dataclass, and lists
close names on a typo. Checkpoints store ``(family, variant, config)`` and are rebuilt with
:func:`build_model`, never from the command line.
"""

from __future__ import annotations

import difflib
import fnmatch
from typing import Any, Callable

import torch
from torch import nn

from ..config import ConfigError, from_dict, merge, to_dict

__all__ = [
    "register_model",
    "register_family",
    "list_families",
    "create_model",
    "list_models",
    "build_model",
    "model_info",
    "count_parameters",
]

# variant name -> (family, default config dict, docstring)
_VARIANTS: dict[str, tuple[str, dict[str, Any], str]] = {}
# family -> (config class, model class)
_FAMILIES: dict[str, tuple[type, type[nn.Module]]] = {}


def register_family(name: str, config_cls: type, model_cls: type[nn.Module]) -> None:
    """A family: the config class its variants fill in and the model class that builds them (several
    families may share both: they differ only in their variants' defaults)."""
    _FAMILIES[name] = (config_cls, model_cls)


def list_families() -> list[str]:
    return sorted(_FAMILIES)


def register_model(family: str) -> Callable[[Callable[[], dict[str, Any]]], Callable[..., nn.Module]]:
    """Decorator: the function returns the variant's config defaults; it becomes a model factory.

    ::

        @register_model("spikformer")
        def spikformer_4_384():
            return dict(embed_dim=384, depth=4, ...)

        model = spikformer_4_384(num_classes=100)
    """

    def wrap(fn: Callable[[], dict[str, Any]]) -> Callable[..., nn.Module]:
        name = fn.__name__
        _VARIANTS[name] = (family, fn(), (fn.__doc__ or "").strip())

        def factory(**overrides: Any) -> nn.Module:
            return create_model(name, **overrides)

        factory.__name__ = name
        factory.__doc__ = fn.__doc__
        return factory

    return wrap


def list_models(pattern: str | None = None) -> list[str]:
    """Registered variant names, sorted; ``pattern`` is a shell glob (``"spikformer_*"``)."""
    names = sorted(_VARIANTS)
    return [n for n in names if pattern is None or fnmatch.fnmatch(n, pattern)]


def _variant(name: str) -> tuple[str, dict[str, Any], str]:
    if name not in _VARIANTS:
        close = difflib.get_close_matches(name, list(_VARIANTS), n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ValueError(
            f"unknown model {name!r}.{hint} Run `spikemask models` to see all {len(_VARIANTS)} registered models."
        )
    return _VARIANTS[name]


def resolve_config(name: str, **overrides: Any):
    """The variant's config with ``overrides`` applied (``None`` values ignored)."""
    family, defaults, _ = _variant(name)
    config_cls, _ = _FAMILIES[family]
    clean = {k: to_dict(v) for k, v in overrides.items() if v is not None}
    return from_dict(config_cls, merge(defaults, clean), where="model")


def create_model(name: str, **overrides: Any) -> nn.Module:
    """Build a registered model; keyword overrides are config fields (``num_classes=10``, ``mask=...``)."""
    family, _, _ = _variant(name)
    cfg = resolve_config(name, **overrides)
    _, model_cls = _FAMILIES[family]
    model = model_cls(cfg)
    model.family, model.variant = family, name
    return model


def build_model(family: str, config: dict[str, Any], variant: str | None = None) -> nn.Module:
    """Rebuild a model from a stored ``(family, config)`` pair (checkpoints)."""
    if family not in _FAMILIES:
        raise ConfigError(f"unknown model family {family!r}; known: {', '.join(sorted(_FAMILIES))}")
    config_cls, model_cls = _FAMILIES[family]
    model = model_cls(from_dict(config_cls, config, where="model"))
    model.family, model.variant = family, variant or family
    return model


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def model_info(name: str) -> dict[str, Any]:
    """Name, family, parameter count (built on the meta device: no memory, no init) and summary."""
    family, _, doc = _variant(name)
    with torch.device("meta"):
        model = create_model(name)
    return {
        "name": name,
        "family": family,
        "params": count_parameters(model),
        "summary": doc.splitlines()[0] if doc else "",
    }
