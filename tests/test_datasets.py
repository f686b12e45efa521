"""The papers' data sets on tiny folders written in their real layouts: splits, labels, frames, cache, errors."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import stale_and_live_temps
from PIL import Image

from spikemask.data import EventFileError, get_dataset, make_events
from spikemask.data.event_dataset import DatasetNotFoundError
from spikemask.data.formats.aedat2 import davis346_address, dvs128_address, write_aedat2
from spikemask.data.formats.aedat3 import write_aedat31
from spikemask.data.formats.asl_mat import write_asl_mat
from spikemask.data.formats.atis import write_atis_bin
from spikemask.data.formats.prophesee_dat import write_prophesee_dat

CIFAR10DVS_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def events(n: int, size: tuple[int, int], seed: int) -> np.ndarray:
    """n time-sorted events inside an (H, W) sensor."""
    rng = np.random.default_rng(seed)
    return make_events(np.sort(rng.integers(0, 300_000, n)), rng.integers(0, size[1], n),
                       rng.integers(0, size[0], n), rng.integers(0, 2, n))


def frames_of(ds, i):
    x, label = ds[i]
    return x.numpy(), label


@pytest.fixture
def data_root(tmp_path, monkeypatch):
    """An isolated $SPIKEMASK_DATA (frame caches land in its cache/)."""
    monkeypatch.setenv("SPIKEMASK_DATA", str(tmp_path / "data"))
    return tmp_path / "data"


# ---------------------------------------------------------------- CIFAR10-DVS
def write_cifar10dvs(root: Path, indices=range(95, 107), n_events=40) -> dict[tuple[str, int], np.ndarray]:
    """One file per (class, index), in SpikingJelly's orientation once read back."""
    written = {}
    for c, name in enumerate(CIFAR10DVS_CLASSES):
        for i in indices:
            ev = events(n_events, (128, 128), seed=c * 1000 + i)
            # the reader returns x = 127 - y_field, y = 127 - x_field, p = 1 - p_raw
            addr = dvs128_address(127 - ev["y"], 127 - ev["x"], 1 - ev["p"])
            write_aedat2(root / name / f"cifar10_{name}_{i}.aedat", addr, ev["t"].astype(np.uint32))
            written[(name, i)] = ev
    return written


def test_cifar10dvs_split_orientation_and_counts(data_root, tmp_path):
    root = tmp_path / "cifar10dvs"
    written = write_cifar10dvs(root)
    train = get_dataset("cifar10dvs", split="train", T=4, root=root)
    test = get_dataset("cifar10dvs", split="test", T=4, root=root)
    # 12 files per class sorted as strings (100..106, 95..99): the first ceil(0.9 * 12) = 11 train
    names = sorted((f"cifar10_airplane_{i}.aedat" for i in range(95, 107)))
    assert [s.file.name for s in train.samples[:11]] == names[:11]
    assert [s.file.name for s in test.samples[:1]] == names[11:] == ["cifar10_airplane_99.aedat"]
    assert len(train) == 10 * math.ceil(12 * 0.9) and len(test) == 10
    assert train.labels.tolist() == [c for c in range(10) for _ in range(11)]
    frames, label = frames_of(test, 3)
    ev = written[("cat", 99)]
    assert label == 3 and frames.shape == (4, 2, 128, 128) and frames.sum() == ev.size
    expected = np.zeros((2, 128, 128))
    np.add.at(expected, (ev["p"], ev["y"], ev["x"]), 1)
    assert np.array_equal(frames.sum(0), expected), "events land at (p, y, x) as SpikingJelly reads them"


def test_cifar10dvs_tebn_protocol(data_root, tmp_path):
    root = tmp_path / "cifar10dvs"
    write_cifar10dvs(root)
    test = get_dataset("cifar10dvs", split="test", T=2, root=root, protocol="tebn")
    assert sorted(int(s.file.stem.rsplit("_", 1)[1]) for s in test.samples if s.label == 0) == [95, 96, 97, 98, 99]
    with pytest.raises(ValueError, match="protocol"):
        get_dataset("cifar10dvs", split="test", T=2, root=root, protocol="random")


def test_tebn_skips_files_it_cannot_place_with_a_warning(data_root, tmp_path, caplog):
    root = tmp_path / "cifar10dvs"
    write_cifar10dvs(root, indices=range(98, 102))
    (root / "cat" / "cifar10_cat_99.aedat").rename(root / "cat" / "cat_copy.aedat")
    with caplog.at_level("WARNING", logger="spikemask.data.sets.cifar10dvs"):
        test = get_dataset("cifar10dvs", split="test", T=2, root=root, protocol="tebn")
    assert [s.file.name for s in test.samples if s.label == 3] == ["cifar10_cat_98.aedat"]
    assert len(test) == 19 and "cat_copy.aedat" in caplog.text and "cifar10_<class>_<i>.aedat" in caplog.text
    assert len(get_dataset("cifar10dvs", split="train", T=2, root=root, protocol="tebn")) == 20
    assert len(get_dataset("cifar10dvs", split="train", T=2, root=root)) == 40, "spikformer: every .aedat file"


def test_resize_scales_coordinates_and_keeps_counts(data_root, tmp_path):
    root = tmp_path / "cifar10dvs"
    write_cifar10dvs(root, indices=range(10))
    full = get_dataset("cifar10dvs", split="train", T=2, root=root)
    half = get_dataset("cifar10dvs", split="train", T=2, root=root, size=(64, 64))
    a, b = frames_of(full, 5)[0], frames_of(half, 5)[0]
    assert b.shape == (2, 2, 64, 64)
    assert np.array_equal(a.reshape(2, 2, 64, 2, 64, 2).sum(axis=(3, 5)), b), "2x2 blocks summed exactly"


# ---------------------------------------------------------------- frame cache
def test_cache_is_reused_keyed_and_invalidated(data_root, tmp_path):
    root = tmp_path / "cifar10dvs"
    write_cifar10dvs(root, indices=range(10))
    first = get_dataset("cifar10dvs", split="train", T=4, root=root)
    before = frames_of(first, 0)[0]
    raw = first.samples[0].file
    stat = raw.stat()
    data = raw.read_bytes()
    raw.write_bytes(data[:-8] + bytes(4) + data[-4:])  # another pixel for the last event: same size, then mtime
    os.utime(raw, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    again = get_dataset("cifar10dvs", split="train", T=4, root=root)
    assert again.cache.path == first.cache.path and np.array_equal(frames_of(again, 0)[0], before), \
        "a second construction reads the cached frames, not the raw files"
    assert get_dataset("cifar10dvs", split="train", T=8, root=root).cache.path != first.cache.path
    os.utime(raw, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # a replaced raw file
    rebuilt = get_dataset("cifar10dvs", split="train", T=4, root=root)
    assert rebuilt.cache.path != first.cache.path
    assert not np.array_equal(frames_of(rebuilt, 0)[0], before), "the replaced file's events are framed"
    assert not [p for p in (data_root / "cache").iterdir() if p.name.endswith(".tmp")]


def test_killed_builds_leftovers_are_removed_and_live_ones_kept(data_root, tmp_path):
    root = tmp_path / "cifar10dvs"
    write_cifar10dvs(root, indices=range(2))
    (data_root / "cache").mkdir(parents=True)
    dead, live = stale_and_live_temps(data_root / "cache", "cifar10dvs-train-T4-number-0123456789abcdef")
    get_dataset("cifar10dvs", split="train", T=4, root=root)
    assert not dead.exists(), "a temporary of a process that no longer exists is removed by the next build"
    assert live.is_dir(), "one a live process owns is left alone"


@pytest.mark.parametrize("damage", ["truncated", "garbage", "wrong_shape", "missing"])
def test_damaged_cache_sample_is_rebuilt_from_its_raw_file(data_root, tmp_path, caplog, damage):
    root = tmp_path / "cifar10dvs"
    write_cifar10dvs(root, indices=range(2))
    first = get_dataset("cifar10dvs", split="train", T=4, root=root)
    before = [frames_of(first, i)[0] for i in range(len(first))]
    victim = first.cache.sample_path(3)
    good = victim.read_bytes()
    if damage == "truncated":
        victim.write_bytes(good[: len(good) // 2])
    elif damage == "garbage":  # same size: only loading it finds the damage
        victim.write_bytes(bytes(len(good)))
    elif damage == "wrong_shape":
        np.savez_compressed(victim, frames=np.zeros((4, 2, 8, 8), np.uint8))
    else:
        victim.unlink()
    caplog.clear()
    with caplog.at_level("WARNING", logger="spikemask.data.cache"):
        again = get_dataset("cifar10dvs", split="train", T=4, root=root)
        after = [frames_of(again, i)[0] for i in range(len(again))]
    assert again.cache.path == first.cache.path
    assert all(np.array_equal(a, b) for a, b in zip(before, after))
    assert str(victim) in caplog.text or (victim.name in caplog.text and str(again.cache.path) in caplog.text)
    assert victim.read_bytes() == good or np.array_equal(np.load(victim)["frames"], before[3]), "written back"
    caplog.clear()
    with caplog.at_level("WARNING", logger="spikemask.data.cache"):
        frames_of(get_dataset("cifar10dvs", split="train", T=4, root=root), 3)
    assert not caplog.text, "repaired once, for good"
    assert not [p for p in again.cache.path.iterdir() if p.name.endswith(".tmp")]
    np.savez_compressed(again.cache.sample_path(5), frames=np.zeros((4, 2, 8, 8), np.uint16))
    assert np.array_equal(frames_of(again, 5)[0], before[5]), "an open data set checks every sample it loads"


def test_damaged_cache_sample_of_a_broken_raw_file_names_the_raw_file(data_root, tmp_path):
    root = tmp_path / "cifar10dvs"
    write_cifar10dvs(root, indices=range(2))
    ds = get_dataset("cifar10dvs", split="train", T=4, root=root)
    ds.cache.sample_path(0).write_bytes(b"PK\x03\x04 not really a zip")
    raw = ds.samples[0].file
    raw.write_bytes(raw.read_bytes()[:-3])
    with pytest.raises(EventFileError, match=rf"{raw.name}: .*truncated file") as err:
        ds[0]
    assert "\n" not in str(err.value)


def test_corrupt_file_names_itself_and_leaves_no_cache(data_root, tmp_path):
    root = tmp_path / "cifar10dvs"
    write_cifar10dvs(root, indices=range(10))
    bad = root / "dog" / "cifar10_dog_3.aedat"
    bad.write_bytes(bad.read_bytes()[:-3])  # a truncated record
    with pytest.raises(EventFileError, match="cifar10_dog_3.aedat"):
        get_dataset("cifar10dvs", split="train", T=4, root=root)
    assert not (data_root / "cache").exists() or not any((data_root / "cache").iterdir()), \
        "a failed build leaves neither a cache nor a temporary directory"


def test_two_processes_build_one_cache(data_root, tmp_path):
    root = tmp_path / "cifar10dvs"
    write_cifar10dvs(root, indices=range(10))
    code = ("import sys; from spikemask.data import get_dataset; "
            f"ds = get_dataset('cifar10dvs', split='train', T=4, root={str(root)!r}); print(ds.cache.path, len(ds))")
    env = dict(os.environ, SPIKEMASK_DATA=str(data_root))
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=120)[0].split() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert outs[0] == outs[1] and outs[0][1] == "90"
    caches = list((data_root / "cache").iterdir())
    assert [c.name for c in caches] == [Path(outs[0][0]).name], "one valid cache, no leftovers"
    assert json.loads((caches[0] / "index.json").read_text())["labels"] == [c for c in range(10) for _ in range(9)]


def test_missing_data_set_explains_the_layout(data_root, tmp_path):
    with pytest.raises(DatasetNotFoundError, match="cifar10_<class>_<i>.aedat") as err:
        get_dataset("cifar10dvs", split="train", T=4, root=tmp_path / "nowhere")
    assert "never downloads" in str(err.value) and "figshare" in str(err.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetNotFoundError, match="no train samples"):
        get_dataset("cifar10dvs", split="train", T=4, root=tmp_path / "empty")


@pytest.mark.parametrize("size", [(0, 64), (64, 4097), (64,), "64x64", (64.0, 64), None])
def test_sizes_are_checked_naming_the_option(data_root, tmp_path, size):
    root = tmp_path / "cifar10dvs"
    write_cifar10dvs(root, indices=range(1))
    if size is None:  # one int: a square
        assert get_dataset("cifar10dvs", split="train", T=2, root=root, size=16)[0][0].shape == (2, 2, 16, 16)
        return
    with pytest.raises(ValueError, match=r"cifar10dvs: data\.size must be \[H, W\], two whole numbers from 1 to "
                                         r"4096 pixels, got"):
        get_dataset("cifar10dvs", split="train", T=2, root=root, size=size)


# ---------------------------------------------------------------- DVS128 Gesture
def test_gesture_official_split_and_clips(data_root, tmp_path):
    root = tmp_path / "gesture"
    recordings = {"user01_lab.aedat": "train", "user24_led.aedat": "test"}
    rows = {"user01_lab.aedat": [(1, 10_000, 90_000), (8, 90_000, 200_000), (11, 210_000, 290_000)],
            "user24_led.aedat": [(3, 0, 150_000), (8, 100_000, 300_000)]}  # overlapping rows: each cut on its own
    streams = {}
    for k, name in enumerate(recordings):
        ev = events(500, (128, 128), seed=k)
        write_aedat31(root / name, ev)
        streams[name] = ev
        lines = ["class,startTime_usec,endTime_usec"] + [f"{c},{s},{e}" for c, s, e in rows[name]]
        (root / name.replace(".aedat", "_labels.csv")).write_text("\r\n".join(lines) + "\r\n")
    (root / "trials_to_train.txt").write_text("user01_lab.aedat\n")
    (root / "trials_to_test.txt").write_text("user24_led.aedat\n")
    for split in ("train", "test"):
        ds = get_dataset("dvs128_gesture", split=split, T=4, root=root)
        name = next(n for n, s in recordings.items() if s == split)
        assert ds.labels.tolist() == [c - 1 for c, _, _ in rows[name]]
        for i, (_, start, end) in enumerate(rows[name]):
            t = streams[name]["t"]
            assert frames_of(ds, i)[0].sum() == np.count_nonzero((t >= start) & (t < end))
    (root / "trials_to_test.txt").write_text("user25_natural.aedat\n")
    with pytest.raises(DatasetNotFoundError, match="user25_natural"):
        get_dataset("dvs128_gesture", split="test", T=4, root=root)


# ---------------------------------------------------------------- ATIS sets
def test_nmnist_and_ncaltech101(data_root, tmp_path):
    nm = tmp_path / "nmnist"
    for split in ("Train", "Test"):
        for d in range(10):
            write_atis_bin(nm / split / str(d) / "00001.bin", events(30, (34, 34), seed=d))
    train = get_dataset("nmnist", split="train", T=2, root=nm)
    assert train.labels.tolist() == list(range(10)) and frames_of(train, 7)[0].sum() == 30
    nc = tmp_path / "ncaltech101"
    for c in range(101):
        for i in range(11):
            write_atis_bin(nc / "Caltech101" / f"class_{c:03d}" / f"image_{i + 1:04d}.bin",
                           events(10, (180, 240), seed=c * 11 + i))
    test = get_dataset("ncaltech101", split="test", T=2, root=nc)
    assert len(test) == 101 and [s.file.name for s in test.samples[:1]] == ["image_0011.bin"]  # ceil(9.9) = 10 train


def test_ncars_asl_and_action_recognition(data_root, tmp_path):
    cars = tmp_path / "ncars"
    for split in ("train", "test"):
        for c, name in enumerate(("background", "cars")):
            for i in range(3):
                write_prophesee_dat(cars / f"n-cars_{split}" / name / f"obj_{i:05d}_td.dat",
                                    events(20, (100, 120), seed=c * 10 + i))
    test = get_dataset("ncars", split="test", T=2, root=cars)
    assert test.labels.tolist() == [0, 0, 0, 1, 1, 1]
    asl = tmp_path / "asl"
    letters = "abcdefghiklmnopqrstuvwxy"
    for c, letter in enumerate(letters):
        for i in range(5):
            ev = events(15, (180, 240), seed=c * 5 + i)
            raw = ev.copy()
            raw["x"], raw["y"] = 239 - ev["x"], 179 - ev["y"]  # stored unflipped; the reader flips both axes
            write_asl_mat(asl / letter / f"{letter}_{i:04d}.mat", raw)
    tr, te = (get_dataset("asl_dvs", split=s, T=2, root=asl) for s in ("train", "test"))
    assert len(te) == 24 and len(tr) == 96 and np.bincount(te.labels).tolist() == [1] * 24  # round(0.2 * 5)
    assert not {s.file for s in tr.samples} & {s.file for s in te.samples}
    act = tmp_path / "actions"
    names = ("arm_crossing", "get_up", "jumping", "kicking", "picking_up", "sit_down", "throwing",
             "turning_around", "walking", "waving")
    for c, name in enumerate(names):
        for i in range(5):
            ev = events(25, (260, 346), seed=c * 5 + i)
            write_aedat2(act / name / f"rec{i}.aedat", davis346_address(345 - ev["x"], 259 - ev["y"], ev["p"]),
                         ev["t"].astype(np.uint32))
    te = get_dataset("action_recognition", split="test", T=2, root=act)
    assert len(te) == 10 and frames_of(te, 0)[0].shape == (2, 2, 260, 346) and frames_of(te, 0)[0].sum() == 25


# ---------------------------------------------------------------- images
def test_cifar10_images(tmp_path):
    from spikemask.data.formats.cifar import write_cifar_batch, write_cifar_meta

    base = tmp_path / "cifar10" / "cifar-10-batches-py"
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (12, 3, 32, 32), dtype=np.uint8)
    labels = np.arange(12) % 10
    for k in range(1, 6):
        write_cifar_batch(base / f"data_batch_{k}", images, labels)
    write_cifar_batch(base / "test_batch", images[:4], labels[:4])
    write_cifar_meta(base / "batches.meta", list(CIFAR10DVS_CLASSES))
    train = get_dataset("cifar10", split="train", T=4, root=tmp_path / "cifar10")
    test = get_dataset("cifar10", split="test", T=4, root=tmp_path / "cifar10")
    assert len(train) == 60 and len(test) == 4
    x, y = test[2]
    assert y == 2 and x.shape == (3, 32, 32) and np.allclose(x.numpy() * 255, images[2])
    big = get_dataset("cifar10", split="test", T=4, root=tmp_path / "cifar10", size=(64, 48))
    x2, y2 = big[2]
    assert y2 == 2 and x2.shape == (3, 64, 48) and 0 <= x2.min() and x2.max() <= 1
    assert torch.equal(get_dataset("cifar10", split="test", T=4, root=tmp_path / "cifar10", size=(32, 32))[2][0], x)
    with pytest.raises(ValueError, match=r"cifar10: data\.size must be"):
        get_dataset("cifar10", split="test", T=4, root=tmp_path / "cifar10", size=(0, 32))


def test_imagenet_at_a_small_size(tmp_path):
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for wnid in ("n01440764", "n01443537"):
            for k in range(2):
                path = tmp_path / "imagenet" / split / wnid / f"{wnid}_{k}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(rng.integers(0, 256, (30 + 7 * k, 41, 3), dtype=np.uint8)).save(path)
    for size, want in (((32, 32), (3, 32, 32)), ((24, 40), (3, 24, 40))):
        for split in ("train", "test"):
            ds = get_dataset("imagenet", split=split, T=4, root=tmp_path / "imagenet", size=size)
            x, y = ds[1]
            assert len(ds) == 4 and x.shape == want and x.dtype == torch.float32 and y == 0
    default = get_dataset("imagenet", split="test", T=4, root=tmp_path / "imagenet")
    assert default[0][0].shape == (3, 224, 224)
    with pytest.raises(ValueError, match=r"imagenet: data\.size must be"):
        get_dataset("imagenet", split="test", T=4, root=tmp_path / "imagenet", size=(10_000, 10_000))


# ---------------------------------------------------------------- CLI and training on a real-format set
def test_cli_data_list_info_prepare(data_root, tmp_path, capsys):
    from spikemask.cli.main import main

    root = tmp_path / "cifar10dvs"
    write_cifar10dvs(root, indices=range(10), n_events=50)
    assert main(["data", "list", "--json"]) == 0
    listed = {d["name"]: d for d in json.loads(capsys.readouterr().out)}
    assert listed["cifar10dvs"]["classes"] == 10 and listed["dvs128_gesture"]["size"] == [128, 128]
    assert main(["data", "info", "cifar10dvs", "--root", str(root), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["splits"]["train"]["samples"] == 90 and info["splits"]["test"]["per_class"]["truck"] == 1
    assert info["splits"]["train"]["events"]["events_mean"] == 50
    assert not (data_root / "cache").exists(), "info reads samples but builds no frames"
    assert main(["-q", "data", "prepare", "cifar10dvs", "--root", str(root), "--T", "4", "--size", "32", "32"]) == 0
    out = capsys.readouterr().out
    assert "cifar10dvs train: 90 samples ready" in out and "cifar10dvs test: 10 samples ready" in out
    assert len(list((data_root / "cache").iterdir())) == 2
    assert main(["data", "info", "cifar10dvs", "--root", str(tmp_path / "missing")]) == 2
    assert "Expected layout" in capsys.readouterr().err


def test_training_runs_on_a_real_format_set(data_root, tmp_path):
    from spikemask.train import fit, load_run_config

    root = tmp_path / "cifar10dvs"
    write_cifar10dvs(root, indices=range(10), n_events=200)
    cfg = load_run_config({
        "name": "c10dvs", "out_dir": str(tmp_path / "runs"), "device": "cpu",
        "model": {"name": "test_spikformer", "mask": {"ratio": 0.5}},
        "data": {"name": "cifar10dvs", "root": str(root), "size": [32, 32], "augment": "spikformer_event",
                 "batch_size": 8},
        "schedule": {"epochs": 1, "warmup_epochs": 0, "cooldown_epochs": 0},
        "train": {"max_train_batches": 3, "eval_mask_seeds": 2},
    })
    result = fit(cfg)
    assert result.checkpoint.is_file() and 0.0 <= result.final["acc"] <= 100.0
    assert len(result.final["per_seed"]) == 2


def test_eval_and_energy_of_a_checkpoint_use_its_data_settings(data_root, tmp_path, capsys):
    """A model trained on resized frames is evaluated and measured on the same resized frames."""
    from spikemask.cli.main import main
    from spikemask.train import fit, load_run_config

    root = tmp_path / "cifar10dvs"
    write_cifar10dvs(root, indices=range(10), n_events=200)
    cfg = load_run_config({
        "name": "sized", "out_dir": str(tmp_path / "runs"), "device": "cpu", "model": {"name": "test_spikformer"},
        "data": {"name": "cifar10dvs", "root": str(root), "size": [32, 32], "batch_size": 8},
        "schedule": {"epochs": 1, "warmup_epochs": 0, "cooldown_epochs": 0},
        "train": {"max_train_batches": 2, "eval_mask_seeds": 1},
    })
    result = fit(cfg)
    capsys.readouterr()
    assert main(["eval", str(result.checkpoint), "--seeds", "1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["acc"] == pytest.approx(result.final["acc"])
    assert main(["energy", "--checkpoint", str(result.checkpoint), "--samples", "10", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["data"] == "cifar10dvs"
