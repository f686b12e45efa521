"""On-disk frame caches for event data sets, keyed by every setting that changes them.

A cache is one directory ``<cache_root>/<label>-<digest>/`` holding ``index.json`` (the key, the
labels, the source files) and one compressed ``.npz`` of frames per sample. It is built in a private
temporary sibling directory and published with a single ``os.replace``: a reader never sees a
half-built cache, an interrupted build leaves nothing the next run would trust, and when two
processes build the same cache at once the first rename wins and the other discards its copy.

The digest covers the data set version, the split, T, the slicing, binarisation, resizing, the
frame code version and a fingerprint of the raw files (names, sizes, modification times), so a
changed setting or a replaced raw file gives a new cache instead of stale frames.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from ..io import private_dir

__all__ = ["FrameCache", "cache_digest", "files_fingerprint"]

log = logging.getLogger(__name__)

INDEX = "index.json"


def cache_digest(key: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def files_fingerprint(files: Iterable[Path], base: Path) -> str:
    """Digest of (relative name, size, mtime) of every raw file: cheap to compute, changes when they do."""
    h = hashlib.sha256()
    for f in files:
        st = f.stat()
        h.update(f"{f.relative_to(base).as_posix()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


class FrameCache:
    """Per-sample frame arrays for one (data set, split, settings), built once and read many times."""

    def __init__(self, cache_root: str | os.PathLike, label: str, key: dict[str, Any]) -> None:
        self.key = key
        self.path = Path(cache_root) / f"{label}-{cache_digest(key)}"
        self._index: dict[str, Any] | None = None

    def _read_index(self) -> dict[str, Any] | None:
        try:
            index = json.loads((self.path / INDEX).read_text())
        except (OSError, ValueError):
            return None
        return index if index.get("key") == self.key else None

    @property
    def ready(self) -> bool:
        if self._index is None:
            self._index = self._read_index()
        return self._index is not None

    @property
    def labels(self) -> np.ndarray:
        return np.asarray(self._require()["labels"], dtype=np.int64)

    @property
    def sources(self) -> list[str]:
        return list(self._require()["sources"])

    def _require(self) -> dict[str, Any]:
        if not self.ready:
            raise RuntimeError(f"frame cache {self.path} is not built yet")
        return self._index

    def __len__(self) -> int:
        return len(self._require()["labels"])

    def load(self, i: int) -> np.ndarray:
        """Frames of sample ``i`` as stored (a compact integer dtype) ``[T, 2, H, W]``."""
        with np.load(self.path / f"{i:06d}.npz", allow_pickle=False) as z:
            return z["frames"]

    def build(
        self,
        count: int,
        make: Callable[[int], tuple[np.ndarray, int, str]],
        progress: Callable[[int], None] | None = None,
    ) -> None:
        """Build the cache from ``make(i) -> (frames [T, 2, H, W], label, source name)`` for ``i < count``."""
        if self.ready:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = private_dir(self.path.parent, self.path.name)
        try:
            labels, sources = [], []
            for i in range(count):
                frames, label, source = make(i)
                peak = int(frames.max()) if frames.size else 0
                if peak > np.iinfo(np.uint16).max:
                    raise ValueError(f"{source}: {peak} events at one pixel in one slice overflow the frame cache")
                small = frames.astype(np.uint8 if peak <= 255 else np.uint16)
                np.savez_compressed(tmp / f"{i:06d}.npz", frames=small)
                labels.append(int(label))
                sources.append(source)
                if progress is not None:
                    progress(1)
            (tmp / INDEX).write_text(json.dumps({"key": self.key, "labels": labels, "sources": sources}))
            if hasattr(os, "sync"):
                os.sync()  # the bytes are on disk before the directory becomes visible
            self._publish(tmp)
        finally:
            with contextlib.suppress(FileNotFoundError):
                shutil.rmtree(tmp)
        self._index = None
        if not self.ready:
            raise RuntimeError(f"frame cache {self.path} is unreadable right after it was built")
        log.info("cached %d samples at %s", count, self.path)

    def _publish(self, tmp: Path) -> None:
        try:
            os.replace(tmp, self.path)  # atomic; fails if another process published first
        except OSError:
            if self._read_index() is None:  # a stale or broken directory of the same name: replace it
                shutil.rmtree(self.path, ignore_errors=True)
                os.replace(tmp, self.path)
            else:
                log.info("another process published %s first; using it", self.path)
