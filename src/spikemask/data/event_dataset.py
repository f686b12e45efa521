"""The base of every real event data set: list a split's samples, read their events, frame, cache.

A subclass says where its files live and how they are split (``_samples``) and how one sample's
events are read (``_read``); everything else — framing as SpikingJelly does, optional resizing and
binarisation, the on-disk cache, progress, and the error that explains a missing data set — is here.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, ClassVar

import numpy as np
import torch
from torch.utils.data import Dataset

from .cache import FrameCache, files_fingerprint
from .frames import FRAMES_VERSION, events_to_frames, resize_events
from .paths import default_data_root
from .representation import DEFAULT_BINS, check_representation, voxel_image

if TYPE_CHECKING:
    from . import DatasetInfo

__all__ = [
    "EventSample", "EventFrameDataset", "DatasetNotFoundError", "stratified_split", "check_frame_options", "check_size",
    "MAX_SIDE",
]

log = logging.getLogger(__name__)


class DatasetNotFoundError(FileNotFoundError):
    """The data set's files are not where they were looked for; the message says what is expected."""


@dataclass(frozen=True)
class EventSample:
    """One sample: a file (or a time window of one, for clips cut from recordings) and its label."""

    file: Path
    label: int
    start_us: int | None = None
    end_us: int | None = None

    def name(self, root: Path) -> str:
        rel = self.file.relative_to(root).as_posix()
        return rel if self.start_us is None else f"{rel}[{self.start_us}:{self.end_us}]"


def check_frame_options(name: str, split: str, splits: tuple[str, ...], T: object, split_by: str) -> None:
    """The checks every framed data set makes on its arguments, with messages naming the valid values."""
    if split not in splits:
        raise ValueError(f"{name}: split must be one of {', '.join(splits)}, got {split!r}")
    if not isinstance(T, int) or isinstance(T, bool) or T < 1:
        raise ValueError(f"T must be a positive integer, got {T!r}")
    if split_by not in ("number", "time"):
        raise ValueError(f"split_by must be 'number' or 'time', got {split_by!r}")


MAX_SIDE = 4096  # pixels per side: far above any sensor or model input; beyond it frames exhaust memory


def check_size(name: str, size: object) -> tuple[int, int] | None:
    """``size`` (``data.size``) as ``(H, W)``: two whole numbers in ``1..MAX_SIDE`` (one int: a square);
    None stays None. Anything else raises ``ValueError`` naming the option and what is allowed."""
    if size is None:
        return None

    def whole(v: object) -> bool:
        return isinstance(v, (int, np.integer)) and not isinstance(v, bool)

    pair = (size, size) if whole(size) else tuple(size) if isinstance(size, (tuple, list, np.ndarray)) else ()
    if len(pair) != 2 or not all(whole(v) and 1 <= v <= MAX_SIDE for v in pair):
        raise ValueError(
            f"{name}: data.size must be [H, W], two whole numbers from 1 to {MAX_SIDE} pixels, got {size!r}; "
            "leave it unset for the data set's own size"
        )
    return int(pair[0]), int(pair[1])


def stratified_split(labels: np.ndarray, split: str, test_fraction: float, seed: int) -> np.ndarray:
    """Indices of ``split`` for sets without an official split: per class, a seeded permutation
    sends ``round(test_fraction * n)`` samples to test. Deterministic for a given seed."""
    rng = np.random.default_rng(seed)
    test = np.zeros(labels.shape[0], dtype=bool)
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        test[rng.permutation(idx)[: int(round(test_fraction * idx.size))]] = True
    return np.flatnonzero(test if split == "test" else ~test)


class EventFrameDataset(Dataset):
    """Frames ``float32 [T, 2, H, W]`` (per-pixel event counts, OFF then ON) and integer labels.

    root: the data set's own folder (default ``$SPIKEMASK_DATA/<folder>``); cache_root: where frame
    caches go (default ``$SPIKEMASK_DATA/cache``, so a read-only data folder works). size: resize
    to ``(H, W)`` by scaling event coordinates (counts are kept exactly).

    ``representation="voxel"`` (``data.options``, with ``bins``): items are MST's static ``float32
    [2 * bins, H, W]`` images instead (:mod:`.representation`; ``T`` is then not used for framing). Their
    cache holds ``bins`` frames at the sensor size; ``size`` pads to a square and resizes when an item is read.
    """

    name: ClassVar[str]  # the registry name; ``info`` comes from the registry
    folder: ClassVar[str]  # default sub-folder of the data root
    layout: ClassVar[str]  # the expected files, shown when they are missing
    source: ClassVar[str]  # where to obtain them
    version: ClassVar[int] = 1  # bump when reading or splitting changes
    splits: ClassVar[tuple[str, ...]] = ("train", "test")

    def __init__(
        self,
        root: str | os.PathLike | None = None,
        split: str = "train",
        T: int = 16,
        split_by: str = "number",
        binarize: bool = False,
        size: tuple[int, int] | list[int] | None = None,
        *,
        cache_root: str | os.PathLike | None = None,
        progress: Callable[[int], None] | None = None,
        prepare: bool = True,
        representation: str = "frames",
        bins: int = DEFAULT_BINS,
    ) -> None:
        check_frame_options(self.info.name, split, self.splits, T, split_by)
        self.representation, self.bins = check_representation(self.info.name, representation, bins)
        self.root = Path(root) if root is not None else default_data_root() / self.folder
        self.split, self.T, self.split_by, self.binarize = split, T, split_by, bool(binarize)
        self.size = check_size(self.info.name, size) or tuple(self.info.sensor_size)
        voxel = self.representation == "voxel"
        # what is framed and cached: voxel grids are `bins` frames at the sensor size, resized when read
        self.frame_T = self.bins if voxel else T
        self.frame_size = tuple(self.info.sensor_size) if voxel else self.size
        if not self.root.is_dir():
            raise self.missing(f"{self.root} does not exist")
        self.samples = self._samples(split)
        if not self.samples:
            raise self.missing(f"no {split} samples found under {self.root}")
        key = {
            "dataset": self.info.name, "version": self.version, "split": split, "T": self.frame_T,
            "split_by": split_by, "binarize": self.binarize, "size": list(self.frame_size),
            "frames_version": FRAMES_VERSION,
            "files": files_fingerprint(sorted({s.file for s in self.samples}), self.root),
        }
        if voxel:  # frame caches keep the key they always had
            key.update(representation=self.representation, bins=self.bins)
        label = f"{self.info.name}-{split}-" + (f"voxel{self.bins}" if voxel else f"T{T}") + f"-{split_by}"
        self.cache = FrameCache(Path(cache_root) if cache_root else default_data_root() / "cache", label, key,
                                shape=(self.frame_T, 2, *self.frame_size))
        self.labels = np.array([s.label for s in self.samples], dtype=np.int64)  # [N], in sample order
        if prepare:  # prepare=False: list the samples only (``spikemask data info``), frame later
            self.prepare(progress)

    @property
    def info(self) -> "DatasetInfo":
        from .registry import dataset_info

        return dataset_info(self.name)

    # ------------------------------------------------------------------ subclass hooks
    def _samples(self, split: str) -> list[EventSample]:
        raise NotImplementedError

    def _read(self, sample: EventSample) -> np.ndarray:
        raise NotImplementedError

    # ------------------------------------------------------------------
    def missing(self, what: str) -> DatasetNotFoundError:
        return DatasetNotFoundError(
            f"{self.info.name}: {what}.\nExpected layout under the data set folder (--root / data.root):\n"
            f"{self.layout}\nObtain it from {self.source} (spikemask never downloads data)."
        )

    def read_events(self, i: int) -> np.ndarray:
        """The raw events of sample ``i`` (before resizing and framing)."""
        return self._read(self.samples[i])

    def prepare(self, progress: Callable[[int], None] | None = None) -> None:
        """Build the frame cache if needed (``progress(n)`` after every n samples); in a finished cache,
        rebuild the samples whose files are missing or truncated."""
        if not self.cache.ready:
            log.info("framing %d %s samples of %s (%s=%d, by %s)", len(self.samples), self.split, self.info.name,
                     "bins" if self.representation == "voxel" else "T", self.frame_T, self.split_by)
            self.cache.build(len(self.samples), self._make, progress)
        else:
            self.cache.repair(self._make)

    def _make(self, i: int) -> tuple[np.ndarray, int, str]:
        sample = self.samples[i]
        events = self._read(sample)
        if self.frame_size != tuple(self.info.sensor_size):
            events = resize_events(events, self.info.sensor_size, self.frame_size)
        frames = events_to_frames(events, self.frame_T, self.frame_size, self.split_by)
        if self.binarize:
            frames = np.minimum(frames, 1.0)
        return frames, sample.label, sample.name(self.root)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        frames = self.cache.load(i, self._make)  # a damaged cache file is rebuilt from the raw file
        if self.representation == "voxel":
            size = None if self.size == tuple(self.info.sensor_size) else self.size
            return voxel_image(frames, size), int(self.labels[i])
        return torch.from_numpy(frames.astype(np.float32)), int(self.labels[i])
