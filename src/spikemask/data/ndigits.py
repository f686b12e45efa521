"""N-Digits: the bundled neuromorphic data set, built offline from scikit-learn's handwritten digits.

``sklearn.datasets.load_digits()`` ships 1797 real 8x8 digits (values 0..16, CC BY 4.0). Each is
upsampled bilinearly to 24x24 (values / 16 -> [0, 1]), centred on a 32x32 sensor, and recorded by the
saccade DVS emulator (:mod:`.dvs_emulator`), like N-MNIST from MNIST. The streams are stored N-MNIST
style in the 40-bit ATIS format, so the same readers and framing serve real data::

    <root>/ndigits-v1/manifest.json
    <root>/ndigits-v1/Train/<digit>/<index:04d>.bin     index = position in load_digits()
    <root>/ndigits-v1/Test/<digit>/<index:04d>.bin

Split: for each class, a permutation drawn from ``SeedSequence(seed, spawn_key=(0,))`` sends
``round(0.2 * n_class)`` samples to Test (seed 0: 1438 train / 359 test). Sample ``i`` is recorded with
``SeedSequence(seed, spawn_key=(1, i))``, so a file never depends on batching or on which subset was built.

The build is atomic as a whole: everything goes to a temporary sibling directory that is renamed into
place at the end. If two processes build at once, the first rename wins and the other process finds a
valid data set there, discards its own copy and uses the winner's (both are identical anyway).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from ..io import atomic_path, atomic_write_json, private_dir
from .dvs_emulator import EMULATOR_VERSION, EmulatorConfig, emulate_saccades
from .event_dataset import check_frame_options
from .events import check_events
from .formats.atis import encode_atis_bin, read_atis_bin
from .frames import FRAMES_VERSION, events_to_frames
from .paths import default_data_root

if TYPE_CHECKING:
    from . import DatasetInfo

__all__ = ["NDigits", "ensure_ndigits", "load_digit_images", "ndigits_split", "read_manifest"]

log = logging.getLogger(__name__)

NDIGITS_VERSION = 1
DIRNAME = f"ndigits-v{NDIGITS_VERSION}"
SENSOR_SIZE = (32, 32)  # (H, W)
DIGIT_SIZE = 24
DEFAULT_SEED = 0
TEST_FRACTION = 0.2
SPLIT_DIRS = {"train": "Train", "test": "Test"}
CACHE_VERSION = 1  # bump when the cache file's contents change
_BATCH = 128  # images per emulator call: big enough to vectorise, small enough to stay in CPU cache


def load_digit_images() -> tuple[np.ndarray, np.ndarray]:
    """The 1797 digits on the sensor: ``float32 [N, 32, 32]`` in [0, 1] (0 = background), labels ``int64 [N]``."""
    from sklearn.datasets import load_digits  # deferred: importing sklearn costs ~1 s

    digits = load_digits()
    small = digits.images.astype(np.float64) / 16.0  # [N, 8, 8]
    m = _bilinear_matrix(small.shape[1], DIGIT_SIZE)  # [24, 8]
    big = np.clip(m @ small @ m.T, 0.0, 1.0)  # [N, 24, 24], separable bilinear upsampling
    h, w = SENSOR_SIZE
    top, left = (h - DIGIT_SIZE) // 2, (w - DIGIT_SIZE) // 2
    canvas = np.zeros((small.shape[0], h, w), dtype=np.float32)
    canvas[:, top : top + DIGIT_SIZE, left : left + DIGIT_SIZE] = big
    return canvas, digits.target.astype(np.int64)


def _bilinear_matrix(n_in: int, n_out: int) -> np.ndarray:
    """``[n_out, n_in]`` interpolation weights, half-pixel centres and clamped edges (torch ``align_corners=False``)."""
    src = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
    i0 = np.floor(src).astype(np.int64)
    i1 = np.minimum(i0 + 1, n_in - 1)
    m = np.zeros((n_out, n_in))
    np.add.at(m, (np.arange(n_out), i0), 1 - (src - i0))
    np.add.at(m, (np.arange(n_out), i1), src - i0)
    return m


def ndigits_split(labels: np.ndarray, seed: int = DEFAULT_SEED) -> np.ndarray:
    """Seeded stratified split: ``bool [N]``, True = Test; ``round(0.2 * n)`` of each class's ``n`` samples."""
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(0,)))
    is_test = np.zeros(labels.shape[0], dtype=bool)
    for c in np.unique(labels):  # sorted classes: a fixed order of draws
        members = np.flatnonzero(labels == c)
        is_test[rng.permutation(members)[: int(round(TEST_FRACTION * members.size))]] = True
    return is_test


def _settings(config: EmulatorConfig, seed: int, indices: Sequence[int] | None) -> dict[str, Any]:
    """Everything that determines the files; stored in the manifest and compared on reuse."""
    return {
        "dataset": "ndigits",
        "version": NDIGITS_VERSION,
        "source": "sklearn.datasets.load_digits (1797 8x8 digits, CC BY 4.0)",
        "format": "ATIS 40-bit .bin (N-MNIST layout)",
        "sensor_size": list(SENSOR_SIZE),
        "digit_size": DIGIT_SIZE,
        "seed": seed,
        "test_fraction": TEST_FRACTION,
        "emulator": dataclasses.asdict(config),
        "emulator_version": EMULATOR_VERSION,
        "indices": None if indices is None else sorted({int(i) for i in indices}),
    }


def read_manifest(data_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The parsed ``manifest.json`` of a built data set, or None if absent or not an N-Digits manifest."""
    try:
        manifest = json.loads((Path(data_dir) / "manifest.json").read_text())
    except (FileNotFoundError, NotADirectoryError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    ok = isinstance(manifest, dict) and manifest.get("dataset") == "ndigits" and "counts" in manifest
    return manifest if ok and manifest.get("version") == NDIGITS_VERSION else None


def _layout_error(data_dir: Path) -> ValueError:
    return ValueError(
        f"{data_dir} exists but holds no valid N-Digits manifest.json. Expected layout (built by spikemask): "
        f"{DIRNAME}/manifest.json, {DIRNAME}/Train/<digit>/<index>.bin, {DIRNAME}/Test/<digit>/<index>.bin. "
        f"Delete {data_dir} to rebuild it."
    )


def ensure_ndigits(
    root: str | os.PathLike | None = None,
    progress: Callable[[int], None] | None = None,
    *,
    config: EmulatorConfig | None = None,
    seed: int = DEFAULT_SEED,
    indices: Sequence[int] | None = None,
) -> Path:
    """Return ``root/ndigits-v1`` (root defaults to :func:`default_data_root`), building it on first use.

    A later call only reads the manifest; if the data set there was built with other settings (emulator
    config, seed, subset) this raises ``ValueError`` rather than mixing data sets. ``indices`` builds only
    those samples (positions in ``load_digits()``, for tests); their files are byte-identical to the full
    build's. ``progress`` is called with the number of samples just recorded.
    """
    root = Path(root) if root is not None else default_data_root()
    final = root / DIRNAME
    wanted = _settings(config or EmulatorConfig(), seed, indices)
    old = read_manifest(final)
    if old is not None and old.get("emulator_version") != EMULATOR_VERSION:
        # generated data, not the user's: an older emulator's output is replaced, never reused
        log.warning("%s was generated by an older DVS emulator; regenerating it", final)
        stale = final.with_name(f".{DIRNAME}.stale-{os.getpid()}")
        os.rename(final, stale)
        shutil.rmtree(stale, ignore_errors=True)
    if read_manifest(final) is None:
        if final.exists() and any(final.iterdir()):
            raise _layout_error(final)
        _build(root, wanted, progress)
    manifest = read_manifest(final)
    diff = sorted(k for k, v in wanted.items() if manifest.get(k) != v)
    if diff:
        raise ValueError(
            f"{final} was built with different settings ({', '.join(diff)} differ from the requested ones); "
            f"delete it or choose another root"
        )
    return final


def _build(root: Path, settings: dict[str, Any], progress: Callable[[int], None] | None) -> None:
    """Record the samples into a temporary sibling directory, then publish it as ``root/ndigits-v1``."""
    config, seed = EmulatorConfig(**settings["emulator"]), settings["seed"]
    images, labels = load_digit_images()
    chosen = np.arange(labels.size) if settings["indices"] is None else np.asarray(settings["indices"])
    if chosen.size == 0 or chosen.min() < 0 or chosen.max() >= labels.size:
        raise ValueError(f"indices must be a non-empty subset of 0..{labels.size - 1}")
    is_test = ndigits_split(labels, seed)
    root.mkdir(parents=True, exist_ok=True)
    tmp = private_dir(root, DIRNAME)
    try:
        counts = {s: {str(c): 0 for c in range(10)} for s in SPLIT_DIRS}
        events = {s: 0 for s in SPLIT_DIRS}
        for sub in SPLIT_DIRS.values():
            for c in range(10):
                (tmp / sub / str(c)).mkdir(parents=True)
        for start in range(0, chosen.size, _BATCH):
            batch = chosen[start : start + _BATCH]
            seeds = [np.random.SeedSequence(seed, spawn_key=(1, int(i))) for i in batch]
            for i, ev in zip(batch, emulate_saccades(images[batch], config, seeds), strict=True):
                split = "test" if is_test[i] else "train"
                path = tmp / SPLIT_DIRS[split] / str(labels[i]) / f"{i:04d}.bin"
                path.write_bytes(encode_atis_bin(check_events(ev, SENSOR_SIZE, path), path))
                counts[split][str(labels[i])] += 1
                events[split] += ev.size
            if progress is not None:
                progress(batch.size)
        _flush_to_disk(tmp)  # the files must be on disk before the rename makes them visible
        num_samples = {s: sum(v.values()) for s, v in counts.items()}
        manifest = dict(settings, counts=counts, num_samples=num_samples, num_events=events)
        atomic_write_json(tmp / "manifest.json", dict(manifest, total_events=sum(events.values())))
        _publish(tmp, root / DIRNAME)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # a no-op once published; removes a loser's or a failed copy


def _flush_to_disk(folder: Path) -> None:
    # One system-wide sync costs 0.1-0.4 s here, 1797 per-file fsyncs 1-6 s on the same (shared) disk.
    if hasattr(os, "sync"):
        os.sync()
        return
    for path in folder.rglob("*.bin"):  # Windows has no os.sync
        with open(path, "rb+") as fh:
            os.fsync(fh.fileno())


def _publish(tmp: Path, final: Path) -> None:
    """Rename the finished ``tmp`` to ``final``; if another build got there first, keep that one."""
    try:
        os.rename(tmp, final)  # atomic; fails if ``final`` exists and is not empty
    except OSError:
        if not final.exists():
            raise
        if read_manifest(final) is None:
            raise _layout_error(final) from None
        log.info("another process finished building %s first; using its copy", final)
        return
    log.info("built N-Digits at %s", final)


class NDigits(Dataset):
    """N-Digits as frames: ``ds[i] -> (float32 [T, 2, 32, 32] event counts, int label)``.

    Builds the event files on first use (``ensure_ndigits``; an existing build, even a subset, is used as
    is), frames a whole split with :func:`events_to_frames` and caches it as one ``.npz`` under
    ``root/cache/`` (frames in the smallest unsigned dtype that holds them, labels, file list), keyed by a
    hash of the manifest, split, T, split_by, binarize, sensor size and code versions. ``progress`` is
    called with the number of samples recorded or files framed, so a CLI can show a bar during the build.
    ``binarize=True`` clips counts to 0/1.
    """

    def __init__(
        self,
        root: str | os.PathLike | None = None,
        split: str = "train",
        T: int = 8,
        split_by: str = "number",
        binarize: bool = False,
        *,
        progress: Callable[[int], None] | None = None,
        prepare: bool = True,  # accepted for the registry's interface; this small set always frames at once
    ) -> None:
        check_frame_options("ndigits", split, tuple(SPLIT_DIRS), T, split_by)
        self.root = Path(root) if root is not None else default_data_root()
        self.split, self.T, self.split_by, self.binarize = split, T, split_by, bool(binarize)
        self.data_dir = self.root / DIRNAME
        if read_manifest(self.data_dir) is None:
            ensure_ndigits(self.root, progress)
        manifest_bytes = (self.data_dir / "manifest.json").read_bytes()
        key = dict(dataset="ndigits", manifest_sha256=hashlib.sha256(manifest_bytes).hexdigest(), split=split, T=T)
        key.update(split_by=split_by, binarize=self.binarize, sensor_size=list(SENSOR_SIZE))
        key.update(frames_version=FRAMES_VERSION, cache_version=CACHE_VERSION)
        self._key = json.dumps(key, sort_keys=True)  # everything that changes the cached arrays
        digest = hashlib.sha256(self._key.encode()).hexdigest()[:16]
        name = f"{DIRNAME}-{split}-T{T}-{split_by}{'-bin' if self.binarize else ''}-{digest}.npz"
        self.cache_file = self.root / "cache" / name
        if not self._load_cache():
            self._build_cache(progress)

    @property
    def info(self) -> DatasetInfo:
        from . import dataset_info  # the registry imports this module, so look it up at call time

        return dataset_info("ndigits")

    def __len__(self) -> int:
        return self.labels.shape[0]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return torch.from_numpy(self.frames[i].astype(np.float32)), int(self.labels[i])

    def read_events(self, i: int) -> np.ndarray:
        """The raw events of sample ``i``."""
        return read_atis_bin(self.data_dir / self.files[i], SENSOR_SIZE)

    def _load_cache(self) -> bool:
        try:
            with np.load(self.cache_file, allow_pickle=False) as z:
                if str(z["key"]) != self._key:
                    log.warning("%s belongs to other settings; rebuilding it", self.cache_file)
                    return False
                self.frames, self.labels, self.files = z["frames"], z["labels"], [str(f) for f in z["files"]]
        except FileNotFoundError:
            return False
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
            log.warning("frame cache %s is unreadable (%s); rebuilding it", self.cache_file, exc)
            return False
        log.debug("loaded frame cache %s", self.cache_file)
        return True

    def _build_cache(self, progress: Callable[[int], None] | None) -> None:
        sub = SPLIT_DIRS[self.split]
        files = sorted(self.data_dir.glob(f"{sub}/*/*.bin"), key=lambda f: (int(f.parent.name), f.name))
        expected = read_manifest(self.data_dir)["num_samples"][self.split]
        if len(files) != expected:
            raise ValueError(f"{self.data_dir / sub}: {len(files)} .bin files, manifest says {expected}")
        frames = np.zeros((len(files), self.T, 2) + SENSOR_SIZE, dtype=np.uint16)  # [N, T, 2, H, W]
        for n, f in enumerate(files):
            fr = events_to_frames(read_atis_bin(f, SENSOR_SIZE), self.T, SENSOR_SIZE, self.split_by)
            if fr.max() > np.iinfo(frames.dtype).max:  # not with ~300 ms recordings, but never wrap silently
                raise ValueError(f"{f}: {int(fr.max())} events at one pixel in one slice exceed the cache dtype")
            frames[n] = np.minimum(fr, 1) if self.binarize else fr
            if progress is not None and (n % 64 == 63 or n == len(files) - 1):
                progress(n % 64 + 1)
        if frames.size and frames.max() <= np.iinfo(np.uint8).max:
            frames = frames.astype(np.uint8)
        self.frames = frames
        self.labels = np.array([int(f.parent.name) for f in files], dtype=np.int64)
        self.files = [f.relative_to(self.data_dir).as_posix() for f in files]
        with atomic_path(self.cache_file) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, frames=self.frames, labels=self.labels, files=np.array(self.files), key=np.array(self._key))
        log.info("cached %d %s frames at %s", len(files), self.split, self.cache_file)
