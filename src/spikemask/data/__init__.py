"""Event data: formats, framing, the DVS emulator, the bundled N-Digits set, and a data set registry.

``get_dataset(name, split=..., T=...)`` returns a torch ``Dataset`` whose items are
``(float32 [T, 2, H, W] event-count frames, int label)``; ``dataset_info(name)`` describes it without
touching the disk. Only ``"ndigits"`` is registered so far; real sets (CIFAR10-DVS, DVS128 Gesture,
N-Caltech101, ...) register here the same way: one :class:`DatasetInfo` and one factory each.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable

from torch.utils.data import Dataset

from ..config import ConfigError, close_matches_hint
from .atis import read_atis_bin, write_atis_bin
from .dvs_emulator import EmulatorConfig, emulate_saccades, saccade_offsets
from .events import EVENT_DTYPE, EventFileError, check_events, make_events
from .frames import events_to_frames
from .ndigits import NDigits, ensure_ndigits, load_digit_images, ndigits_split, read_manifest
from .paths import default_data_root

__all__ = [
    "DatasetInfo",
    "EVENT_DTYPE",
    "EmulatorConfig",
    "EventFileError",
    "NDigits",
    "check_events",
    "dataset_info",
    "default_data_root",
    "emulate_saccades",
    "ensure_ndigits",
    "events_to_frames",
    "get_dataset",
    "list_datasets",
    "load_digit_images",
    "make_events",
    "ndigits_split",
    "read_atis_bin",
    "read_manifest",
    "register_dataset",
    "saccade_offsets",
    "write_atis_bin",
]


@dataclasses.dataclass(frozen=True, kw_only=True)
class DatasetInfo:
    """What a model needs to know about a data set, without loading it."""

    name: str
    """Registry name (``"ndigits"``)."""
    num_classes: int
    in_channels: int
    """Input channels per frame: 2 for event sets (OFF, ON), 3 for RGB images."""
    sensor_size: tuple[int, int]
    """Frame size ``(H, W)`` in pixels."""
    class_names: tuple[str, ...]


# name -> (info, factory(split=..., T=..., root=..., **opts) -> Dataset)
_REGISTRY: dict[str, tuple[DatasetInfo, Callable[..., Dataset]]] = {}


def register_dataset(info: DatasetInfo, factory: Callable[..., Dataset]) -> None:
    """Add a data set; ``factory`` is called as ``factory(root=..., split=..., T=..., **opts)``."""
    if info.name in _REGISTRY:
        raise ValueError(f"data set {info.name!r} is already registered")
    if len(info.class_names) != info.num_classes:
        raise ValueError(f"{info.name}: {len(info.class_names)} class names for {info.num_classes} classes")
    _REGISTRY[info.name] = (info, factory)


def list_datasets() -> list[str]:
    return sorted(_REGISTRY)


def _entry(name: str) -> tuple[DatasetInfo, Callable[..., Dataset]]:
    if name not in _REGISTRY:
        hint = close_matches_hint(name, _REGISTRY)
        raise ConfigError(f"unknown data set {name!r}.{hint} Valid data sets: {', '.join(list_datasets())}")
    return _REGISTRY[name]


def dataset_info(name: str) -> DatasetInfo:
    return _entry(name)[0]


def get_dataset(name: str, *, split: str, T: int, root: str | os.PathLike | None = None, **opts: Any) -> Dataset:
    """Build data set ``name`` (``split`` ``"train"``/``"test"``, ``T`` frames); ``root`` defaults to
    :func:`default_data_root`; ``opts`` go to the data set (e.g. ``split_by``, ``binarize``, ``progress``)."""
    return _entry(name)[1](root=root, split=split, T=T, **opts)


register_dataset(
    DatasetInfo(
        name="ndigits",
        num_classes=10,
        in_channels=2,
        sensor_size=(32, 32),
        class_names=tuple(str(d) for d in range(10)),
    ),
    NDigits,
)
