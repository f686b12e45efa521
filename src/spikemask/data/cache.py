"""On-disk frame caches for event data sets, keyed by every setting that changes them.

A cache is one directory ``<cache_root>/<label>-<digest>/`` holding ``index.json`` (the key, the
labels, the source files) and one compressed ``.npz`` of frames per sample. It is built in a private
temporary sibling directory and published with a single ``os.replace``: a reader never sees a
half-built cache, an interrupted build leaves nothing the next run would trust, and when two
processes build the same cache at once the first rename wins and the other discards its copy.

The digest covers the data set version, the split, T, the slicing, binarisation, resizing, the
frame code version and a fingerprint of the raw files (names, sizes, modification times), so a
changed setting or a replaced raw file gives a new cache instead of stale frames.

A finished cache can still be damaged later (a full disk, a bad copy, a stray edit). The index records
each sample file's size, checked with one ``stat`` per file whenever the cache is opened (:meth:`repair`);
a sample that is missing, of the wrong size, or that fails to load (:meth:`load`) is rebuilt from its raw
file, with a warning naming it, and written back atomically. Leftover temporaries of killed builds are
removed when the next build starts.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import struct
import zipfile
import zlib
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from ..io import atomic_path, atomic_write_text, clean_stale_temps, fsync_dir, private_dir
from .events import EventFileError, one_line

__all__ = ["FrameCache", "cache_digest", "files_fingerprint"]

log = logging.getLogger(__name__)

INDEX = "index.json"
# what np.load raises for a damaged .npz: zip structure, zlib stream, header parsing, missing member
_LOAD_ERRORS = (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error, struct.error,
                NotImplementedError)

Make = Callable[[int], tuple[np.ndarray, int, str]]


class _Damaged(Exception):
    """A sample file that cannot be used; the message says why."""


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
    """Per-sample frame arrays for one (data set, split, settings), built once and read many times.

    ``shape``: the ``[T, 2, H, W]`` every sample must have (checked on load; None: not checked).
    """

    def __init__(
        self, cache_root: str | os.PathLike, label: str, key: dict[str, Any], *, shape: tuple[int, ...] | None = None
    ) -> None:
        self.key = key
        self.shape = tuple(int(s) for s in shape) if shape is not None else None
        self.path = Path(cache_root) / f"{label}-{cache_digest(key)}"
        self._index: dict[str, Any] | None = None

    def _read_index(self) -> dict[str, Any] | None:
        try:
            index = json.loads((self.path / INDEX).read_text())
        except (OSError, ValueError):
            return None
        return index if isinstance(index, dict) and index.get("key") == self.key else None

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

    def sample_path(self, i: int) -> Path:
        return self.path / f"{i:06d}.npz"

    # ------------------------------------------------------------------ reading, with repair
    def _read(self, i: int) -> np.ndarray:
        path = self.sample_path(i)
        try:
            z = np.load(path, allow_pickle=False)
            if not isinstance(z, np.lib.npyio.NpzFile):
                raise _Damaged("not an .npz archive")
            with z:
                frames = z["frames"]
        except _LOAD_ERRORS as err:
            raise _Damaged("missing" if isinstance(err, FileNotFoundError) else one_line(err)) from None
        if frames.dtype not in (np.uint8, np.uint16) or frames.ndim != 4 or (self.shape and frames.shape != self.shape):
            want = f"uint8/uint16 {list(self.shape) if self.shape else '[T, 2, H, W]'}"
            raise _Damaged(f"holds {frames.dtype} {list(frames.shape)}, expected {want}")
        return frames

    def load(self, i: int, make: Make | None = None) -> np.ndarray:
        """Frames of sample ``i`` as stored (a compact integer dtype) ``[T, 2, H, W]``.

        A sample file that is missing or damaged is rebuilt with ``make(i)`` (the data set's framing of
        its raw file; a broken raw file raises the reader's own error), written back and returned, with a
        warning naming the file. Without ``make`` it raises :class:`EventFileError` naming the file.
        """
        self._require()  # an unbuilt cache is an error, not a thousand "missing" samples to rebuild
        try:
            return self._read(i)
        except _Damaged as why:
            path = self.sample_path(i)
            if make is None:
                raise EventFileError(
                    f"{path}: damaged frame cache file ({why}); delete {self.path} to rebuild the cache"
                ) from None
            log.warning("frame cache file %s is damaged (%s); rebuilding sample %d from its raw file", path, why, i)
        frames, size = self._rewrite(i, make)
        self._record_sizes({i: size})
        return frames

    def repair(self, make: Make) -> list[int]:
        """Rebuild every sample whose file is missing or not the size the index recorded; their indices.

        One ``stat`` per sample: cheap enough to run whenever a finished cache is opened. Caches built
        before sizes were recorded are not checked here (damage is still caught by :meth:`load`).
        """
        clean_stale_temps(self.path)  # rewrites killed half-way
        sizes = self._require().get("sizes")
        if not isinstance(sizes, list) or len(sizes) != len(self):
            return []
        bad = []
        for i, want in enumerate(sizes):
            try:
                got = os.stat(self.sample_path(i)).st_size
            except OSError:
                got = None
            if got != want:
                bad.append(i)
        if bad:
            names = ", ".join(self.sample_path(i).name for i in bad[:5]) + (", ..." if len(bad) > 5 else "")
            log.warning("frame cache %s: %d sample file(s) missing or truncated (%s); rebuilding them from the raw "
                        "files", self.path, len(bad), names)
            self._record_sizes({i: self._rewrite(i, make)[1] for i in bad})
        return bad

    def _rewrite(self, i: int, make: Make) -> tuple[np.ndarray, int | None]:
        """Frame sample ``i`` again and replace its file atomically: ``(frames, file size)``.

        A cache that cannot be written (read-only, full) still serves the frames; the size is then None.
        """
        frames, _, source = make(i)
        small = _compact(frames, source)
        try:
            with atomic_path(self.sample_path(i)) as tmp, open(tmp, "wb") as fh:
                np.savez_compressed(fh, frames=small)  # a handle: savez would append ".npz" to the name
            return small, self.sample_path(i).stat().st_size
        except OSError as err:
            log.warning("could not write the rebuilt %s (%s); using it from memory", self.sample_path(i),
                        getattr(err, "strerror", None) or err)
            return small, None

    def _record_sizes(self, sizes: dict[int, int | None]) -> None:
        index = self._read_index()
        if index is None or not isinstance(index.get("sizes"), list):
            return
        changed = {i: s for i, s in sizes.items() if s is not None and index["sizes"][i] != s}
        if not changed:
            return
        for i, s in changed.items():
            index["sizes"][i] = s
        with contextlib.suppress(OSError):  # a read-only cache: the next open checks (and rebuilds) again
            atomic_write_text(self.path / INDEX, json.dumps(index))
        self._index = index

    # ------------------------------------------------------------------ building
    def build(self, count: int, make: Make, progress: Callable[[int], None] | None = None) -> None:
        """Build the cache from ``make(i) -> (frames [T, 2, H, W], label, source name)`` for ``i < count``."""
        if self.ready:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        clean_stale_temps(self.path.parent)  # builds that were killed before they could clean up
        tmp = private_dir(self.path.parent, self.path.name)
        try:
            labels, sources, sizes = [], [], []
            for i in range(count):
                frames, label, source = make(i)
                target = tmp / self.sample_path(i).name
                np.savez_compressed(target, frames=_compact(frames, source))
                labels.append(int(label))
                sources.append(source)
                sizes.append(target.stat().st_size)
                if progress is not None:
                    progress(1)
            index = {"key": self.key, "labels": labels, "sources": sources, "sizes": sizes}
            (tmp / INDEX).write_text(json.dumps(index))
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
                return
        fsync_dir(self.path.parent)  # the rename itself must survive a crash


def _compact(frames: np.ndarray, source: str) -> np.ndarray:
    """Counts in the smallest unsigned dtype that holds them (uint8, else uint16)."""
    peak = int(frames.max()) if frames.size else 0
    if peak > np.iinfo(np.uint16).max:
        raise ValueError(f"{source}: {peak} events at one pixel in one slice overflow the frame cache")
    return frames.astype(np.uint8 if peak <= 255 else np.uint16)
