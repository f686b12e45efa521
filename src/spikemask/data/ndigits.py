"""N-Digits: the bundled neuromorphic data set, built offline from scikit-learn's handwritten digits.

``sklearn.datasets.load_digits()`` ships 1797 real 8x8 digits (values 0..16, CC BY 4.0). Each is
upsampled bilinearly to 24x24 (values / 16 -> [0, 1]), centred on a 32x32 sensor, and recorded by the
saccade DVS emulator (:mod:`.dvs_emulator`), like N-MNIST from MNIST. The streams are stored N-MNIST
style in the 40-bit ATIS format, so the same readers and framing serve real data::

    <root>/manifest.json                               root: the data set folder, by default
    <root>/Train/<digit>/<index:04d>.bin               $SPIKEMASK_DATA/ndigits-v1 (index = position
    <root>/Test/<digit>/<index:04d>.bin                in load_digits())

``root`` is the data set's own folder, as for every other set. (Before, it was the folder above
``ndigits-v1/``; such a folder is still accepted, with a deprecation warning, when it holds a built set.)

Split: for each class, a permutation drawn from ``SeedSequence(seed, spawn_key=(0,))`` sends
``round(0.2 * n_class)`` samples to Test (seed 0: 1438 train / 359 test). Sample ``i`` is recorded with
``SeedSequence(seed, spawn_key=(1, i))``, so a file never depends on batching or on which subset was built.

The build is atomic as a whole: everything goes to a temporary sibling directory that is renamed into
place at the end. If two processes build at once, the first rename wins and the other process finds a
valid data set there, discards its own copy and uses the winner's (both are identical anyway). Temporaries
left by a killed build are removed by the next one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
import zipfile
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from ..io import atomic_path, atomic_write_json, clean_stale_temps, fsync_dir, private_dir
from .dvs_emulator import EMULATOR_VERSION, EmulatorConfig, emulate_saccades
from .event_dataset import check_frame_options, check_size
from .events import check_events, one_line
from .formats.atis import encode_atis_bin, read_atis_bin
from .frames import FRAMES_VERSION, events_to_frames, resize_events
from .paths import default_data_root
from .representation import DEFAULT_BINS, check_representation, voxel_image

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


def _data_folder(root: str | os.PathLike | None) -> Path:
    """The data set folder for ``root`` (None: ``$SPIKEMASK_DATA/ndigits-v1``); an old-style parent folder
    that holds a built ``ndigits-v1/`` resolves to it, with a deprecation warning."""
    if root is None:
        return default_data_root() / DIRNAME
    root = Path(root)
    if read_manifest(root) is None and read_manifest(root / DIRNAME) is not None:
        log.warning("%s is the folder above the N-Digits data set; the ndigits root is now the data set folder "
                    "itself: using %s (pass that folder instead; this fallback is deprecated)", root, root / DIRNAME)
        return root / DIRNAME
    return root


def _layout_error(data_dir: Path) -> ValueError:
    if (data_dir / DIRNAME).is_dir():
        fix = f"it holds {DIRNAME}/: pass {data_dir / DIRNAME} as the root (data.root / --root) instead"
    elif read_manifest(data_dir) is None and ((data_dir / "Train").is_dir() or (data_dir / "manifest.json").exists()):
        fix = f"it looks like an unfinished or damaged N-Digits build: delete {data_dir} to rebuild it"
    else:
        fix = "point the root (data.root / --root) at an empty or missing folder to build N-Digits there"
    return ValueError(
        f"{data_dir} exists but holds no valid N-Digits manifest.json (a built set is manifest.json, "
        f"Train/<digit>/<index>.bin, Test/<digit>/<index>.bin); {fix}"
    )


def ensure_ndigits(
    root: str | os.PathLike | None = None,
    progress: Callable[[int], None] | None = None,
    *,
    config: EmulatorConfig | None = None,
    seed: int = DEFAULT_SEED,
    indices: Sequence[int] | None = None,
) -> Path:
    """Return the N-Digits folder ``root`` (default ``$SPIKEMASK_DATA/ndigits-v1``), building it on first use.

    ``root`` is the data set folder itself: missing or empty, it is built there. A later call only reads
    the manifest; if the data set there was built with other settings (emulator config, seed, subset)
    this raises ``ValueError`` rather than mixing data sets. ``indices`` builds only those samples
    (positions in ``load_digits()``, for tests); their files are byte-identical to the full build's.
    ``progress`` is called with the number of samples just recorded.
    """
    final = _data_folder(root)
    wanted = _settings(config or EmulatorConfig(), seed, indices)
    old = read_manifest(final)
    if old is not None and old.get("emulator_version") != EMULATOR_VERSION:
        # generated data, not the user's: an older emulator's output is replaced, never reused
        log.warning("%s was generated by an older DVS emulator; regenerating it", final)
        stale = final.with_name(f".{final.name}.stale-{os.getpid()}")
        os.rename(final, stale)
        shutil.rmtree(stale, ignore_errors=True)
    if read_manifest(final) is None:
        if final.exists() and not final.is_dir():
            raise ValueError(f"{final} is a file, not a folder; point the N-Digits root at a folder")
        if final.exists() and any(final.iterdir()):
            raise _layout_error(final)
        _build(final, wanted, progress)
    manifest = read_manifest(final)
    diff = sorted(k for k, v in wanted.items() if manifest.get(k) != v)
    if diff:
        raise ValueError(
            f"{final} was built with different settings ({', '.join(diff)} differ from the requested ones); "
            f"delete it or choose another root"
        )
    return final


def _build(final: Path, settings: dict[str, Any], progress: Callable[[int], None] | None) -> None:
    """Record the samples into a temporary sibling directory, then publish it as ``final``."""
    config, seed = EmulatorConfig(**settings["emulator"]), settings["seed"]
    images, labels = load_digit_images()
    chosen = np.arange(labels.size) if settings["indices"] is None else np.asarray(settings["indices"])
    if chosen.size == 0 or chosen.min() < 0 or chosen.max() >= labels.size:
        raise ValueError(f"indices must be a non-empty subset of 0..{labels.size - 1}")
    is_test = ndigits_split(labels, seed)
    final.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_temps(final.parent)  # builds killed before they could clean up
    tmp = private_dir(final.parent, final.name)
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
        _publish(tmp, final)
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
    fsync_dir(final.parent)  # the rename itself must survive a crash
    log.info("built N-Digits at %s", final)


class NDigits(Dataset):
    """N-Digits as frames: ``ds[i] -> (float32 [T, 2, H, W] event counts, int label)``, ``(H, W)`` = ``size``.

    ``root``: the data set folder (default ``$SPIKEMASK_DATA/ndigits-v1``), built on first use
    (``ensure_ndigits``; an existing build, even a subset, is used as is). ``size``: resize to ``(H, W)``
    by scaling event coordinates (counts are kept; default the 32 x 32 sensor). A whole split is framed
    with :func:`events_to_frames` and cached as one ``.npz`` in ``cache_root`` (default
    ``$SPIKEMASK_DATA/cache``, as for the other sets): frames in the smallest unsigned dtype that holds them,
    labels, file list, keyed by a hash of the manifest, split, T, split_by, binarize, size and code
    versions. The frames of a split stay in memory (``N * T * 2 * H * W`` bytes), so keep ``size`` small.
    ``progress`` is called with the number of samples recorded or files framed, so a CLI can show a bar
    during the build. ``binarize=True`` clips counts to 0/1.

    ``representation="voxel"`` (with ``bins``): items are MST's static ``float32 [2 * bins, H, W]`` images
    (:mod:`.representation`): ``bins`` frames framed and cached at 32 x 32, ``size`` padding and resizing the
    image when an item is read.
    """

    def __init__(
        self,
        root: str | os.PathLike | None = None,
        split: str = "train",
        T: int = 8,
        split_by: str = "number",
        binarize: bool = False,
        size: tuple[int, int] | list[int] | None = None,
        *,
        cache_root: str | os.PathLike | None = None,
        progress: Callable[[int], None] | None = None,
        prepare: bool = True,  # accepted for the registry's interface; this small set always frames at once
        representation: str = "frames",
        bins: int = DEFAULT_BINS,
    ) -> None:
        check_frame_options("ndigits", split, tuple(SPLIT_DIRS), T, split_by)
        self.representation, self.bins = check_representation("ndigits", representation, bins)
        self.size = check_size("ndigits", size) or SENSOR_SIZE
        voxel = self.representation == "voxel"
        # what is framed and cached: voxel grids are `bins` frames at the sensor size, resized when read
        self.frame_T, self.frame_size = (self.bins, SENSOR_SIZE) if voxel else (T, self.size)
        self.root = _data_folder(root)
        self.split, self.T, self.split_by, self.binarize = split, T, split_by, bool(binarize)
        self.data_dir = self.root  # the folder holding manifest.json (the name older code used)
        if read_manifest(self.root) is None:
            ensure_ndigits(self.root, progress)
        manifest_bytes = (self.root / "manifest.json").read_bytes()
        key = dict(dataset="ndigits", manifest_sha256=hashlib.sha256(manifest_bytes).hexdigest(), split=split,
                   T=self.frame_T)
        # "sensor_size" is the frame size: at the native size the key (so the cache file) is what it always was
        key.update(split_by=split_by, binarize=self.binarize, sensor_size=list(self.frame_size))
        key.update(frames_version=FRAMES_VERSION, cache_version=CACHE_VERSION)
        if voxel:  # frame caches keep the key they always had
            key.update(representation=self.representation, bins=self.bins)
        self._key = json.dumps(key, sort_keys=True)  # everything that changes the cached arrays
        digest = hashlib.sha256(self._key.encode()).hexdigest()[:16]
        sized = "" if self.frame_size == SENSOR_SIZE else f"-{self.frame_size[0]}x{self.frame_size[1]}"
        steps = f"voxel{self.bins}" if voxel else f"T{T}"
        name = f"{DIRNAME}-{split}-{steps}-{split_by}{'-bin' if self.binarize else ''}{sized}-{digest}.npz"
        self.cache_file = (Path(cache_root) if cache_root is not None else default_data_root() / "cache") / name
        if not self._load_cache():
            self._build_cache(progress)

    @property
    def info(self) -> DatasetInfo:
        from . import dataset_info  # the registry imports this module, so look it up at call time

        return dataset_info("ndigits")

    def __len__(self) -> int:
        return self.labels.shape[0]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        if self.representation == "voxel":
            return voxel_image(self.frames[i], None if self.size == SENSOR_SIZE else self.size), int(self.labels[i])
        return torch.from_numpy(self.frames[i].astype(np.float32)), int(self.labels[i])

    def read_events(self, i: int) -> np.ndarray:
        """The raw events of sample ``i`` (on the 32 x 32 sensor, before resizing)."""
        return read_atis_bin(self.root / self.files[i], SENSOR_SIZE)

    def _load_cache(self) -> bool:
        try:
            with np.load(self.cache_file, allow_pickle=False) as z:
                if str(z["key"]) != self._key:
                    log.warning("frame cache %s belongs to other settings; rebuilding it", self.cache_file)
                    return False
                self.frames, self.labels, self.files = z["frames"], z["labels"], [str(f) for f in z["files"]]
        except FileNotFoundError:
            return False
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
            log.warning("frame cache %s is unreadable (%s); rebuilding it", self.cache_file, one_line(exc))
            return False
        log.debug("loaded frame cache %s", self.cache_file)
        return True

    def _build_cache(self, progress: Callable[[int], None] | None) -> None:
        sub = SPLIT_DIRS[self.split]
        files = sorted(self.root.glob(f"{sub}/*/*.bin"), key=lambda f: (int(f.parent.name), f.name))
        expected = read_manifest(self.root)["num_samples"][self.split]
        if len(files) != expected:
            raise ValueError(f"{self.root / sub}: {len(files)} .bin files, manifest says {expected}")
        shape = (len(files), self.frame_T, 2) + self.frame_size  # [N, T, 2, H, W]
        try:
            frames = np.zeros(shape, dtype=np.uint8)  # widened to uint16 only if a count needs it
        except MemoryError:
            gib = np.prod(shape, dtype=np.float64) / 2**30
            raise ValueError(f"ndigits: {len(files)} frames at data.size {list(self.frame_size)} need {gib:.1f} GiB of "
                             "memory; choose a smaller data.size") from None
        for n, f in enumerate(files):
            events = read_atis_bin(f, SENSOR_SIZE)
            if self.frame_size != SENSOR_SIZE:
                events = resize_events(events, SENSOR_SIZE, self.frame_size)
            fr = events_to_frames(events, self.frame_T, self.frame_size, self.split_by)
            if self.binarize:
                fr = np.minimum(fr, 1)
            peak = int(fr.max()) if fr.size else 0
            if peak > np.iinfo(np.uint16).max:  # not with ~300 ms recordings, but never wrap silently
                raise ValueError(f"{f}: {peak} events at one pixel in one slice exceed the cache dtype")
            if peak > np.iinfo(frames.dtype).max:
                frames = frames.astype(np.uint16)
            frames[n] = fr
            if progress is not None and (n % 64 == 63 or n == len(files) - 1):
                progress(n % 64 + 1)
        self.frames = frames
        self.labels = np.array([int(f.parent.name) for f in files], dtype=np.int64)
        self.files = [f.relative_to(self.root).as_posix() for f in files]
        self.cache_file.parent.mkdir(parents=True, exist_ok=True)
        clean_stale_temps(self.cache_file.parent)  # cache writes killed before they could clean up
        with atomic_path(self.cache_file) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, frames=self.frames, labels=self.labels, files=np.array(self.files), key=np.array(self._key))
        log.info("cached %d %s frames at %s", len(files), self.split, self.cache_file)
