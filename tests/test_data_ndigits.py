"""The DVS emulator, the N-Digits build (determinism, split, manifest, atomicity) and its frame cache."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import stale_and_live_temps
from scipy import ndimage

import spikemask.data.ndigits as ndigits_mod
from spikemask.config import ConfigError
from spikemask.data import (
    EmulatorConfig,
    NDigits,
    dataset_info,
    emulate_saccades,
    ensure_ndigits,
    get_dataset,
    load_digit_images,
    ndigits_split,
    read_atis_bin,
    read_manifest,
    saccade_offsets,
)

CFG = EmulatorConfig()


@pytest.fixture(scope="module")
def digits():
    return load_digit_images()


def subset(labels, per_class_train=2, per_class_test=1):
    """A few samples of every class from each split (positions in load_digits)."""
    is_test = ndigits_split(labels)
    out = []
    for c in range(10):
        out += list(np.flatnonzero((labels == c) & ~is_test)[:per_class_train])
        out += list(np.flatnonzero((labels == c) & is_test)[:per_class_test])
    return sorted(int(i) for i in out)


@pytest.fixture(scope="module")
def built(tmp_path_factory, digits):
    """(data root, N-Digits folder ``<root>/ndigits-v1``) of a small subset; caches go to ``<root>/cache``."""
    root = tmp_path_factory.mktemp("ndroot")
    return root, ensure_ndigits(root / "ndigits-v1", indices=subset(digits[1]))


def nd(built, split, **kw):
    root, data = built
    return NDigits(data, split, cache_root=root / "cache", **kw)


# ---------------------------------------------------------------- emulator


def test_emulator_events_both_polarities_inside_sensor_and_window(digits):
    images = digits[0][:6]
    for ev in emulate_saccades(images, CFG, list(range(6))):
        assert ev.size > 500
        assert set(np.unique(ev["p"]).tolist()) == {0, 1}
        assert ev["x"].max() < 32 and ev["y"].max() < 32
        assert ev["t"].min() >= 0 and ev["t"].max() < 300_000 == CFG.duration_us
        assert np.all(np.diff(ev["t"]) >= 0)


def test_static_or_blank_images_give_no_events_and_noise_is_noise(digits):
    still = EmulatorConfig(saccade_amplitude=0.0)
    assert all(ev.size == 0 for ev in emulate_saccades(digits[0][:3], still, [0, 1, 2]))
    blank = np.zeros((2, 32, 32), np.float32)  # moving, but nothing to see
    assert all(ev.size == 0 for ev in emulate_saccades(blank, CFG, [0, 1]))
    noisy = EmulatorConfig(saccade_amplitude=0.0, noise_rate_hz=10.0)  # expect 10 * 1024 * 0.3 = 3072
    (ev,) = emulate_saccades(digits[0][:1], noisy, [7])
    assert abs(ev.size - 3072) < 5 * np.sqrt(3072)
    assert ev["x"].max() < 32 and ev["t"].max() < 300_000 and np.all(np.diff(ev["t"]) >= 0)


def naive_emulator(image, cfg):
    """Independent reference: scipy's bilinear shift, float64 logs, one pixel at a time.
    A pixel fires while its log intensity is a whole threshold (within 1e-3 C) away from its reference."""
    dxs, dys = saccade_offsets(cfg)
    inten = cfg.background + (1 - cfg.background) * image.astype(np.float64)
    logs = [
        np.log(ndimage.shift(inten, (dy, dx), order=1, mode="grid-constant", cval=cfg.background, prefilter=False))
        for dx, dy in zip(dxs, dys, strict=True)
    ]
    h, w = image.shape
    counts = {}  # (step, polarity, y, x) -> events
    for yy in range(h):
        for xx in range(w):
            ref = logs[0][yy, xx]
            for k in range(1, len(logs)):
                while abs(logs[k][yy, xx] - ref) >= cfg.threshold * (1 - 1e-3):
                    up = logs[k][yy, xx] > ref
                    ref += cfg.threshold if up else -cfg.threshold
                    counts[(k, int(up), yy, xx)] = counts.get((k, int(up), yy, xx), 0) + 1
    return counts


def test_emulator_matches_a_naive_per_pixel_reference(digits):
    image = digits[0][0]
    (ev,) = emulate_saccades(image[None], CFG, [3])
    assert ev.size > 1000
    step = ev["t"] // CFG.time_step_us + 1  # an event is stamped inside the step that detected it
    ours = {}
    for key in zip(step.tolist(), ev["p"].tolist(), ev["y"].tolist(), ev["x"].tolist(), strict=True):
        ours[key] = ours.get(key, 0) + 1
    assert ours == naive_emulator(image, CFG)


def test_closed_path_returns_every_pixel_to_its_start(digits):
    # the saccades end where they began, so each pixel's ON and OFF counts cancel exactly
    for ev in emulate_saccades(digits[0][10:14], CFG, [0, 1, 2, 3]):
        net = np.zeros((32, 32), np.int64)
        np.add.at(net, (ev["y"], ev["x"]), np.where(ev["p"] == 1, 1, -1))
        assert not net.any()


def test_emulator_is_seeded_and_independent_of_batching(digits):
    images = digits[0][:5]
    seeds = [np.random.SeedSequence(0, spawn_key=(1, i)) for i in range(5)]
    together = emulate_saccades(images, CFG, seeds)
    alone = [emulate_saccades(images[i : i + 1], CFG, [seeds[i]])[0] for i in range(5)]
    assert all(a.tobytes() == b.tobytes() for a, b in zip(together, alone, strict=True))
    # another seed moves the timestamps only: the same pixels fire with the same polarities
    other = emulate_saccades(images[:1], CFG, [np.random.SeedSequence(1)])[0]
    assert other.tobytes() != together[0].tobytes()
    assert np.array_equal(np.sort(other[["x", "y", "p"]]), np.sort(together[0][["x", "y", "p"]]))


def test_lower_threshold_more_events(digits):
    low, high = EmulatorConfig(threshold=0.15), EmulatorConfig(threshold=0.4)
    n_low = sum(e.size for e in emulate_saccades(digits[0][:3], low, [0, 1, 2]))
    n_high = sum(e.size for e in emulate_saccades(digits[0][:3], high, [0, 1, 2]))
    assert n_low > 2 * n_high


def test_config_checks():
    with pytest.raises(ValueError, match="threshold"):
        EmulatorConfig(threshold=0)
    with pytest.raises(ValueError, match="background"):
        EmulatorConfig(background=0.0)
    with pytest.raises(TypeError):
        EmulatorConfig(0.2)  # keyword-only


# ---------------------------------------------------------------- the build


def tree_bytes(path: Path) -> dict[str, bytes]:
    return {p.relative_to(path).as_posix(): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def test_build_is_deterministic_and_subset_independent(tmp_path, built, digits):
    root, data = built
    again = ensure_ndigits(tmp_path / "a", indices=subset(digits[1]))
    assert tree_bytes(again) == tree_bytes(data)  # manifest included
    # a different subset, built in other batches, writes the same bytes for the samples it shares
    other_indices = subset(digits[1], 1, 1)[:7] + [1000]
    mine, other = tree_bytes(data), tree_bytes(ensure_ndigits(tmp_path / "b", indices=other_indices))
    shared = (mine.keys() & other.keys()) - {"manifest.json"}
    assert len(shared) == 7 and all(other[k] == mine[k] for k in shared)


def test_split_is_stratified_seeded_and_disjoint(built, digits):
    labels = digits[1]
    is_test = ndigits_split(labels)
    for c in range(10):
        n = int((labels == c).sum())
        assert int((is_test & (labels == c)).sum()) == round(0.2 * n)
    assert 355 <= is_test.sum() <= 365
    assert np.array_equal(ndigits_split(labels), is_test) and not np.array_equal(ndigits_split(labels, seed=1), is_test)
    _, data = built
    train = {p.name for p in (data / "Train").rglob("*.bin")}
    test = {p.name for p in (data / "Test").rglob("*.bin")}
    assert train and test and not train & test
    for p in data.rglob("*.bin"):  # every file in its class folder and in its split
        i = int(p.stem)
        assert int(p.parent.name) == labels[i] and (p.parent.parent.name == "Test") == is_test[i]


def test_manifest_describes_the_files(built):
    _, data = built
    m = json.loads((data / "manifest.json").read_text())
    assert m["version"] == 1 and m["seed"] == 0 and m["emulator"] == dataclasses.asdict(CFG)
    for split, sub in (("train", "Train"), ("test", "Test")):
        for c in range(10):
            assert m["counts"][split][str(c)] == len(list((data / sub / str(c)).glob("*.bin")))
        assert m["num_samples"][split] == sum(m["counts"][split].values())
    assert m["total_events"] == sum(p.stat().st_size for p in data.rglob("*.bin")) // 5
    for p in data.rglob("*.bin"):
        ev = read_atis_bin(p, sensor_size=(32, 32))
        assert ev["t"].max() < 300_000


def test_ensure_reuses_and_refuses_other_settings(tmp_path, built, digits):
    root, data = built
    idx = subset(digits[1])
    stamp = (data / "manifest.json").stat().st_mtime_ns
    assert ensure_ndigits(data, indices=idx) == data
    assert (data / "manifest.json").stat().st_mtime_ns == stamp
    with pytest.raises(ValueError, match="different settings.*emulator"):
        ensure_ndigits(data, indices=idx, config=EmulatorConfig(threshold=0.3))
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "stray.txt").write_text("x")
    with pytest.raises(ValueError, match=r"no valid N-Digits manifest.*Train/<digit>/<index>\.bin.*empty or missing"):
        ensure_ndigits(tmp_path / "mine")  # someone else's folder: never built into, never offered for deletion
    (tmp_path / "ndigits-v1").mkdir()
    with pytest.raises(ValueError, match=r"holds ndigits-v1/: pass .*ndigits-v1 as the root"):
        ensure_ndigits(tmp_path)


def test_the_root_is_the_data_set_folder(built, digits, monkeypatch, caplog):
    root, data = built
    monkeypatch.setenv("SPIKEMASK_DATA", str(root))
    ds = NDigits(split="test", T=2)  # default: $SPIKEMASK_DATA/ndigits-v1, caches in $SPIKEMASK_DATA/cache
    assert ds.root == data and ds.cache_file.parent == root / "cache"
    assert get_dataset("ndigits", split="test", T=2, root=data).cache_file == ds.cache_file
    with caplog.at_level("WARNING", logger="spikemask.data.ndigits"):
        old_style = NDigits(root, "test", T=2)  # the parent folder, as roots were given before
        assert ensure_ndigits(root, indices=subset(digits[1])) == data
    assert old_style.root == data and old_style.cache_file == ds.cache_file
    assert "deprecated" in caplog.text and str(data) in caplog.text
    assert all("\n" not in r.getMessage() for r in caplog.records)


def test_concurrent_build_loser_discards_its_copy(tmp_path, caplog):
    root = tmp_path / "race"
    results = []

    def rival_finishes_first(_n):  # runs inside the first build, after its files are written
        if not results:
            results.append(ensure_ndigits(root / "nd", indices=[3, 4]))

    with caplog.at_level("INFO", logger="spikemask.data.ndigits"):
        first = ensure_ndigits(root / "nd", indices=[3, 4], progress=rival_finishes_first)
    assert "another process finished building" in caplog.text  # the outer build lost the rename
    assert first == results[0] == root / "nd"
    assert sorted(p.name for p in root.iterdir()) == ["nd"]  # the loser's temp dir is gone
    assert sum(read_manifest(first)["num_samples"].values()) == 2


def test_two_processes_build_one_dataset(tmp_path):
    code = "import sys; from spikemask.data import ensure_ndigits as e; print(e(sys.argv[1], indices=range(20)))"
    cmd = [sys.executable, "-c", code, str(tmp_path / "nd")]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    assert outs[0] == outs[1] == str(tmp_path / "nd")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nd"]
    assert sum(read_manifest(tmp_path / "nd")["num_samples"].values()) == 20


def test_killed_builds_leftovers_are_removed_and_live_ones_kept(tmp_path, built):
    data_dead, data_live = stale_and_live_temps(tmp_path, "nd")
    ensure_ndigits(tmp_path / "nd", indices=[0, 1])  # the data set's parent is cleaned before a build
    assert not data_dead.exists() and data_live.is_dir()
    root, _ = built
    (root / "cache").mkdir(exist_ok=True)
    cache_dead, cache_live = stale_and_live_temps(root / "cache", "ndigits-v1-test-T7-number-0.npz")
    nd(built, "test", T=7)  # ... and the cache folder before a cache file is written
    assert not cache_dead.exists() and cache_live.is_dir()
    cache_live.rmdir()  # the module's cache folder is shared with the other tests


# ---------------------------------------------------------------- the torch Dataset and its cache


def test_dataset_items_and_registry(built):
    root, data = built
    ds = get_dataset("ndigits", split="train", T=4, root=data, cache_root=root / "cache")
    m = read_manifest(data)
    assert isinstance(ds, NDigits) and len(ds) == m["num_samples"]["train"] == ds.labels.shape[0]
    x, y = ds[0]
    assert x.dtype == torch.float32 and x.shape == (4, 2, 32, 32) and isinstance(y, int)
    assert ds.info == dataset_info("ndigits") and ds.info.sensor_size == (32, 32) and ds.info.in_channels == 2
    assert sorted(np.unique(ds.labels).tolist()) == list(range(10))
    # frames equal the event counts of the file they came from
    ev = read_atis_bin(data / ds.files[0])
    assert x.sum().item() == ev.size and x[:, 1].sum().item() == int(ev["p"].sum())
    assert ds.files[0].startswith(f"Train/{y}/")
    with pytest.raises(ConfigError, match="Did you mean 'ndigits'"):
        get_dataset("ndigit", split="train", T=4)


def test_binarize(built):
    ds = nd(built, "test", T=2, binarize=True)
    assert set(np.unique(ds.frames).tolist()) <= {0, 1} and ds[0][0].max() == 1


def test_cache_is_reused_and_keyed(built, monkeypatch):
    root, _ = built
    reads = []
    real_read = ndigits_mod.read_atis_bin
    monkeypatch.setattr(ndigits_mod, "read_atis_bin", lambda *a, **k: reads.append(a[0]) or real_read(*a, **k))
    first = nd(built, "train", T=8)
    assert len(reads) == len(first) and first.cache_file.is_file()
    reads.clear()
    second = nd(built, "train", T=8)
    assert reads == [] and second.cache_file == first.cache_file
    assert np.array_equal(second.frames, first.frames) and np.array_equal(second.labels, first.labels)
    assert first.frames.dtype == np.uint8 and first.frames.shape == (len(first), 8, 2, 32, 32)
    variants = [(t, s, b) for t in (4, 8) for s in ("number", "time") for b in (False, True)]
    keys = {nd(built, "train", T=t, split_by=s, binarize=b).cache_file for t, s, b in variants}
    assert len(keys) == 8
    assert nd(built, "test", T=8).cache_file != first.cache_file
    assert first.cache_file.parent == root / "cache"


def test_interrupted_cache_write_leaves_nothing(built, monkeypatch):
    root, _ = built
    real_savez = np.savez

    def savez_then_crash(fh, **arrays):
        real_savez(fh, **arrays)  # the bytes are written to the temporary file ...
        raise KeyboardInterrupt  # ... and the process dies before the rename

    monkeypatch.setattr(np, "savez", savez_then_crash)
    with pytest.raises(KeyboardInterrupt):
        nd(built, "test", T=3)
    monkeypatch.undo()
    assert not list((root / "cache").glob("*-T3-*")) and not list((root / "cache").glob(".*.tmp"))
    ds = nd(built, "test", T=3)  # the next run builds it cleanly
    assert ds.cache_file.is_file() and len(ds) > 0


def test_corrupt_cache_is_rebuilt_and_named(built, caplog):
    ds = nd(built, "test", T=5)
    good = ds.cache_file.read_bytes()
    for damage in (b"not a zip", good[: len(good) // 2]):
        ds.cache_file.write_bytes(damage)
        caplog.clear()
        with caplog.at_level("WARNING", logger="spikemask.data.ndigits"):
            again = nd(built, "test", T=5)
        assert np.array_equal(again.frames, ds.frames)
        assert f"frame cache {ds.cache_file} is unreadable" in caplog.text and "rebuilding" in caplog.text


@pytest.mark.parametrize("size", [(16, 16), (64, 64)])
def test_size_rescales_events_and_keeps_every_event(built, size):
    ds = nd(built, "test", T=2, size=size)
    x, _ = ds[0]
    assert x.shape == (2, 2, *size) and ds.frames.shape[2:] == (2, *size)
    for i in range(len(ds)):
        assert ds.frames[i].sum() == ds.read_events(i).size
    assert f"-{size[0]}x{size[1]}-" in ds.cache_file.name and ds.cache_file != nd(built, "test", T=2).cache_file
    if size == (16, 16):  # a 2x reduction sums 2x2 blocks exactly
        full = nd(built, "test", T=2).frames.astype(np.int64)
        assert np.array_equal(full.reshape(len(ds), 2, 2, 16, 2, 16, 2).sum(axis=(4, 6)), ds.frames)


def test_native_size_is_the_default_cache(built):
    plain, native = nd(built, "test", T=3), nd(built, "test", T=3, size=[32, 32])
    assert native.cache_file == plain.cache_file
    assert native.frames.dtype == plain.frames.dtype and native.frames.tobytes() == plain.frames.tobytes()


@pytest.mark.parametrize("size", [(0, 32), (32, 5000), (32,), (32, 32, 32), "32x32", (32.5, 32), (True, 32)])
def test_bad_sizes_are_refused_naming_the_option(built, size):
    with pytest.raises(ValueError, match=r"ndigits: data\.size must be \[H, W\], two whole numbers from 1 to 4096"):
        nd(built, "test", T=2, size=size)


def test_default_root_from_environment(tmp_path, monkeypatch, built):
    from spikemask.data import default_data_root

    monkeypatch.setenv("SPIKEMASK_DATA", str(tmp_path / "env"))
    assert default_data_root() == tmp_path / "env"
    monkeypatch.delenv("SPIKEMASK_DATA")
    assert default_data_root() == Path.home() / ".cache" / "spikemask"


def test_data_from_an_older_emulator_is_regenerated(tmp_path):
    from spikemask.data.dvs_emulator import EMULATOR_VERSION

    final = ensure_ndigits(tmp_path / "nd", indices=[0, 1, 2])
    manifest = json.loads((final / "manifest.json").read_text())
    manifest["emulator_version"] = EMULATOR_VERSION - 1  # as if written by the previous emulator
    (final / "manifest.json").write_text(json.dumps(manifest))
    victim = next(final.glob("*/*/*.bin"))
    victim.write_bytes(b"")  # the old output must not survive
    ensure_ndigits(tmp_path / "nd", indices=[0, 1, 2])
    assert json.loads((final / "manifest.json").read_text())["emulator_version"] == EMULATOR_VERSION
    assert victim.stat().st_size > 0
