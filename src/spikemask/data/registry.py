"""The data set registry: a :class:`DatasetInfo` and a factory per name."""

from __future__ import annotations

import dataclasses
import importlib
import os
from typing import Any, Callable, Mapping

from torch.utils.data import Dataset

from ..config import ConfigError, close_matches_hint
from .representation import representation_of

__all__ = ["DatasetInfo", "register_dataset", "list_datasets", "dataset_info", "input_info", "get_dataset"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class DatasetInfo:
    """What a model needs to know about a data set, without loading it."""

    name: str
    """Registry name (``"ndigits"``)."""
    num_classes: int
    in_channels: int
    """Input channels per frame: 2 for event sets (OFF, ON), 3 for RGB images, 1 for ``digits``
    (:func:`input_info` gives the channels a configured representation yields)."""
    sensor_size: tuple[int, int]
    """Frame size ``(H, W)`` in pixels (for images: the size the loader delivers)."""
    class_names: tuple[str, ...] = ()
    """Empty when the names come from the files (class folders, meta files)."""
    kind: str = "events"
    """``"events"`` (clips ``[T, 2, H, W]``) or ``"images"`` (``[C, H, W]``, repeated over T by the model)."""
    summary: str = ""


# name -> (info, factory(split=..., T=..., root=..., **opts) -> Dataset, fixed keyword arguments)
_REGISTRY: dict[str, tuple[DatasetInfo, Callable[..., Dataset] | str, dict[str, Any]]] = {}


def register_dataset(info: DatasetInfo, factory: Callable[..., Dataset] | str, **fixed: Any) -> None:
    """Add a data set; ``factory(root=..., split=..., T=..., **fixed, **opts)`` builds it.

    ``factory`` may be ``"package.module:Class"``: imported when the set is first built, so that
    importing spikemask never imports readers (or their dependencies) that are not used.
    """
    if info.name in _REGISTRY:
        raise ValueError(f"data set {info.name!r} is already registered")
    if info.class_names and len(info.class_names) != info.num_classes:
        raise ValueError(f"{info.name}: {len(info.class_names)} class names for {info.num_classes} classes")
    _REGISTRY[info.name] = (info, factory, fixed)


def list_datasets() -> list[str]:
    return sorted(_REGISTRY)


def _entry(name: str) -> tuple[DatasetInfo, Callable[..., Dataset] | str, dict[str, Any]]:
    if name not in _REGISTRY:
        hint = close_matches_hint(name, _REGISTRY)
        raise ConfigError(f"unknown data set {name!r}.{hint} Valid data sets: {', '.join(list_datasets())}")
    return _REGISTRY[name]


def dataset_info(name: str) -> DatasetInfo:
    return _entry(name)[0]


def input_info(name: str, options: Mapping[str, Any] | None = None) -> DatasetInfo:
    """:func:`dataset_info` as the data-set ``options`` (``data.options``) present the samples to a model.

    ``{representation: voxel, bins: n}`` on an event set: ``kind="images"``, ``in_channels=2 * n`` (static
    ``[2n, H, W]`` items); otherwise the registered info unchanged. ``sensor_size`` stays the sensor's
    (``data.size``, when set, is the size of the items). A representation that does not apply raises
    ``ValueError``.
    """
    info = dataset_info(name)
    representation, bins = representation_of(name, options)
    if representation == "frames":
        return info
    if info.kind != "events":
        raise ValueError(f"{name}: data.options.representation={representation!r} applies to event sets only")
    return dataclasses.replace(info, kind="images", in_channels=2 * bins)


def get_dataset(name: str, *, split: str, T: int, root: str | os.PathLike | None = None, **opts: Any) -> Dataset:
    """Build data set ``name`` (``split`` ``"train"``/``"test"``, ``T`` frames); ``root`` defaults to the
    set's folder under :func:`default_data_root`; ``opts`` go to the data set (``split_by``, ``binarize``,
    ``size``, ``progress``, ...)."""
    _, factory, fixed = _entry(name)
    if isinstance(factory, str):
        module, _, attr = factory.partition(":")
        factory = getattr(importlib.import_module(module), attr)
    return factory(root=root, split=split, T=T, **fixed, **opts)
