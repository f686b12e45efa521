"""N-CARS .dat, ASL-DVS .mat, CIFAR pickles and ImageNet folders: files with known content built here."""

from __future__ import annotations

import os
import pickle
import pickletools
import struct

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image

from spikemask.data import EVENT_DTYPE, EventFileError, make_events
from spikemask.data.formats.asl_mat import read_asl_mat, write_asl_mat
from spikemask.data.formats.cifar import encode_cifar_pickle, load_cifar, write_cifar_batch, write_cifar_meta
from spikemask.data.formats.image_folder import (
    ImageFileError,
    load_image,
    random_resized_crop_box,
    scan_image_folder,
)
from spikemask.data.formats.prophesee_dat import (
    SENSOR_SIZE,
    encode_prophesee_dat,
    read_prophesee_dat,
    write_prophesee_dat,
)


def as_tuples(ev):
    return [tuple(int(v) for v in e) for e in ev[["t", "x", "y", "p"]]]


def as_events(records):
    return make_events(*zip(*records, strict=True))


# ---------------------------------------------------------------- N-CARS .dat
NCARS_HEADER = b"% Data file containing Event2D events.\n% Version 2\n% Date 2017-01-01 00:00:00\n"
# (t_us, x, y, p): corners of the 120 x 100 crop, equal timestamps, the largest uint32 time
DAT_EVENTS = [(0, 0, 0, 0), (7, 119, 0, 1), (7, 0, 99, 1), (1000, 119, 99, 0), (2**32 - 1, 60, 50, 1)]


def dat_bytes(records, header=NCARS_HEADER, type_size=b"\x00\x08") -> bytes:
    body = b"".join(struct.pack("<II", t, x | (y << 14) | (p << 28)) for t, x, y, p in records)
    return header + type_size + body


def test_dat_reader_decodes_hand_built_bytes(tmp_path):
    path = tmp_path / "car.dat"
    path.write_bytes(dat_bytes(DAT_EVENTS))
    ev = read_prophesee_dat(path, sensor_size=SENSOR_SIZE)
    assert ev.dtype == EVENT_DTYPE
    assert as_tuples(ev) == DAT_EVENTS


def test_dat_writer_bytes_and_round_trip(tmp_path):
    write_prophesee_dat(tmp_path / "w.dat", as_events(DAT_EVENTS))
    assert (tmp_path / "w.dat").read_bytes() == dat_bytes(DAT_EVENTS)
    rng = np.random.default_rng(0)
    n = 3000
    ev = make_events(
        np.sort(rng.integers(0, 100_000, n)), rng.integers(0, 120, n), rng.integers(0, 100, n), rng.integers(0, 2, n)
    )
    write_prophesee_dat(tmp_path / "r.dat", ev, sensor_size=SENSOR_SIZE)
    assert b"% Height 100\n% Width 120\n" in (tmp_path / "r.dat").read_bytes()
    assert np.array_equal(read_prophesee_dat(tmp_path / "r.dat"), ev)


def test_dat_sensor_from_header(tmp_path):
    outside = [(0, 120, 5, 1)]
    (tmp_path / "plain.dat").write_bytes(dat_bytes(outside))
    assert as_tuples(read_prophesee_dat(tmp_path / "plain.dat")) == outside  # no size known: no bounds
    with pytest.raises(EventFileError, match=r"plain\.dat.*x=120.*outside the 100x120"):
        read_prophesee_dat(tmp_path / "plain.dat", sensor_size=SENSOR_SIZE)
    sized = NCARS_HEADER + b"% Height 100\r\n% Width 120\n% end\n"
    (tmp_path / "sized.dat").write_bytes(dat_bytes(outside, header=sized))
    with pytest.raises(EventFileError, match=r"sized\.dat.*outside the 100x120"):
        read_prophesee_dat(tmp_path / "sized.dat")


@pytest.mark.parametrize(
    "raw, problem",
    [
        (b"", "empty file"),
        (dat_bytes(DAT_EVENTS, header=b""), "no '%' header"),
        (NCARS_HEADER, "missing the event type and size"),
        (NCARS_HEADER + b"\x00", "missing the event type and size"),
        (b"% Version 2", "without a newline"),
        (NCARS_HEADER + b"\x00\x08", "no events"),
        (dat_bytes(DAT_EVENTS)[:-3], "not a whole number of 8-byte events"),
        (dat_bytes(DAT_EVENTS, type_size=b"\x0c\x08"), "event type 0x0c is not supported"),
        (dat_bytes(DAT_EVENTS, type_size=b"\x00\x10"), "event size 16 bytes is not supported"),
        (dat_bytes([(0, 1, 1, 2)]), "polarity p=2"),
        (dat_bytes(DAT_EVENTS, header=b"% Version 1\n"), "version '1' is not supported"),
        (dat_bytes(DAT_EVENTS, header=b"% Height abc\n% Width 120\n"), "Height abc' is not an integer"),
        (dat_bytes([(5, 1, 1, 0), (4, 1, 1, 0)]), "timestamps go backwards at event 1"),
    ],
)
def test_dat_bad_files(tmp_path, raw, problem):
    path = tmp_path / "bad.dat"
    path.write_bytes(raw)
    with pytest.raises(EventFileError, match=r"bad\.dat") as err:
        read_prophesee_dat(path)
    assert problem in str(err.value)


def test_dat_writer_refuses_unrepresentable(tmp_path):
    with pytest.raises(EventFileError, match="14-bit"):
        encode_prophesee_dat(as_events([(0, 2**14, 0, 0)]))
    with pytest.raises(EventFileError, match="32-bit"):
        encode_prophesee_dat(as_events([(2**32, 0, 0, 0)]))
    with pytest.raises(EventFileError, match="no events"):
        encode_prophesee_dat(as_events([(0, 0, 0, 0)])[:0])


# ---------------------------------------------------------------- ASL-DVS .mat
def save_mat(path, **cols):
    scipy.io.savemat(path, {k: np.asarray(v)[:, None] for k, v in cols.items()})  # N x 1 columns


def test_asl_reader_flips_both_axes_like_spikingjelly(tmp_path):
    raw = dict(ts=[10, 20, 20, 35], x=[0, 239, 5, 100], y=[0, 179, 170, 3], pol=[1, 0, 1, 0])
    save_mat(
        tmp_path / "a_0001.mat", **{k: np.asarray(v, dtype=np.uint8 if k != "ts" else np.int32) for k, v in raw.items()}
    )
    ev = read_asl_mat(tmp_path / "a_0001.mat")
    assert as_tuples(ev) == [(10, 239, 179, 1), (20, 0, 0, 0), (20, 234, 9, 1), (35, 139, 176, 0)]
    # MATLAB's default class is double: whole numbers stored as doubles read the same
    save_mat(tmp_path / "d.mat", **{k: np.asarray(v, dtype=np.float64) for k, v in raw.items()})
    assert np.array_equal(read_asl_mat(tmp_path / "d.mat"), ev)


def test_asl_unsorted_file_is_sorted_stably(tmp_path):
    save_mat(tmp_path / "u.mat", ts=[30, 10, 20, 10, 20], x=[0, 1, 2, 3, 4], y=[0] * 5, pol=[0, 1, 0, 1, 1])
    ev = read_asl_mat(tmp_path / "u.mat")
    assert ev["t"].tolist() == [10, 10, 20, 20, 30]
    assert (239 - ev["x"]).tolist() == [1, 3, 2, 4, 0]  # equal times keep their file order


def test_asl_writer_round_trip_and_raw_layout(tmp_path):
    rng = np.random.default_rng(1)
    n = 2000
    ev = make_events(
        np.sort(rng.integers(0, 10**6, n)), rng.integers(0, 240, n), rng.integers(0, 180, n), rng.integers(0, 2, n)
    )
    write_asl_mat(tmp_path / "w.mat", ev)
    mat = scipy.io.loadmat(tmp_path / "w.mat")
    assert all(mat[k].shape == (n, 1) for k in ("ts", "x", "y", "pol"))
    assert np.array_equal(mat["x"][:, 0], 239 - ev["x"]) and np.array_equal(mat["y"][:, 0], 179 - ev["y"])
    assert np.array_equal(read_asl_mat(tmp_path / "w.mat"), ev)
    assert not list(tmp_path.glob("*.tmp*"))


@pytest.mark.parametrize(
    "cols, problem",
    [
        (dict(ts=[1, 2], x=[0, 1], y=[0, 1]), "missing variable(s) pol"),
        (dict(x=[0, 1], y=[0, 1]), "missing variable(s) ts, pol (found: x, y)"),
        (dict(ts=[1, 2], x=[0, 1, 2], y=[0, 1], pol=[0, 1]), "different lengths"),
        (dict(ts=[1, 2], x=[0, 240], y=[0, 1], pol=[0, 1]), "raw x=240, y=1 outside the 180x240"),
        (dict(ts=[1, 2], x=[0, 1], y=[180, 1], pol=[0, 1]), "raw x=0, y=180 outside"),
        (dict(ts=[1, 2], x=[0, 1], y=[0, 1], pol=[0, 2]), "polarity pol=2"),
        (dict(ts=[1.5, 2], x=[0, 1], y=[0, 1], pol=[0, 1]), "'ts'[0] = 1.5 is not a whole number"),
        (dict(ts=[-1, 2], x=[0, 1], y=[0, 1], pol=[0, 1]), "negative timestamp"),
        (dict(ts=np.zeros(0), x=np.zeros(0), y=np.zeros(0), pol=np.zeros(0)), "no events"),
    ],
)
def test_asl_bad_files(tmp_path, cols, problem):
    save_mat(tmp_path / "bad.mat", **cols)
    with pytest.raises(EventFileError, match=r"bad\.mat") as err:
        read_asl_mat(tmp_path / "bad.mat")
    assert problem in str(err.value)


@pytest.mark.parametrize(
    "raw, problem",
    [
        (b"", "empty file"),
        (b"MATLAB? no, just text\n" * 10, "not a readable MATLAB v5 .mat file"),
        (None, "truncated .mat file (the element at byte offset"),
        (-130, "truncated .mat file (30 bytes, shorter than the 128-byte MATLAB header)"),
    ],
)
def test_asl_not_a_mat_file(tmp_path, raw, problem):
    path = tmp_path / "junk.mat"
    if raw is None or isinstance(raw, int):  # a real MAT file cut short: in its data, or in its header
        save_mat(path, ts=np.arange(100), x=np.arange(100), y=np.arange(100), pol=np.zeros(100))
        raw = path.read_bytes()[:-40] if raw is None else path.read_bytes()[:30]
    path.write_bytes(raw)
    with pytest.raises(EventFileError, match=r"junk\.mat: ") as err:
        read_asl_mat(path)
    assert problem in str(err.value)


def test_asl_matrix_instead_of_vector(tmp_path):
    scipy.io.savemat(tmp_path / "m.mat", {"ts": np.zeros((2, 2)), "x": [[0, 0]], "y": [[0, 0]], "pol": [[0, 0]]})
    with pytest.raises(EventFileError, match=r"m\.mat: 'ts' has shape \(2, 2\)"):
        read_asl_mat(tmp_path / "m.mat")


# ---------------------------------------------------------------- CIFAR
def planes(i: int) -> np.ndarray:
    """Image ``i`` as uint8 [3, 32, 32] with a distinct value per (image, channel, row, column)."""
    c, h, w = np.meshgrid(np.arange(3), np.arange(32), np.arange(32), indexing="ij")
    return ((i * 7 + c * 50 + h * 3 + w) % 256).astype(np.uint8)


def row(img: np.ndarray) -> np.ndarray:
    """The 3072-byte CIFAR row written out explicitly: R plane, then G, then B, each row-major."""
    return np.concatenate([img[0].ravel(), img[1].ravel(), img[2].ravel()])


def dump(path, obj, protocol=4):
    with open(path, "wb") as fh:
        pickle.dump(obj, fh, protocol=protocol)


@pytest.fixture
def cifar10_root(tmp_path):
    base = tmp_path / "cifar-10-batches-py"
    base.mkdir()
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
    dump(base / "batches.meta", {b"num_cases_per_batch": 2, b"label_names": names, b"num_vis": 3072})
    for b, fname in enumerate([*(f"data_batch_{k}" for k in range(1, 6)), "test_batch"]):
        ids = [2 * b, 2 * b + 1]
        dump(
            base / fname,
            {
                b"batch_label": fname.encode(),
                b"labels": [(3 * i) % 10 for i in ids],
                b"data": np.stack([row(planes(i)) for i in ids]),
                b"filenames": [f"{i}.png".encode() for i in ids],
            },
        )
    return tmp_path


def test_cifar10_pickles_built_here(cifar10_root):
    images, labels, names = load_cifar(cifar10_root, "cifar10", "train")
    assert images.dtype == np.uint8 and images.shape == (10, 3, 32, 32)
    assert labels.dtype == np.int64 and labels.tolist() == [(3 * i) % 10 for i in range(10)]  # batches 1..5 in order
    assert all(np.array_equal(images[i], planes(i)) for i in range(10))
    assert names[0] == "airplane" and names[9] == "truck" and len(names) == 10
    test, test_labels, _ = load_cifar(cifar10_root / "cifar-10-batches-py", "cifar10", "test")  # the folder itself
    assert np.array_equal(test[1], planes(11)) and test_labels.tolist() == [0, 3]


def test_cifar100_and_writer_round_trip(tmp_path):
    base = tmp_path / "cifar-100-python"
    fine = [f"class_{i}" for i in range(100)]
    imgs = np.stack([planes(i) for i in range(4)])
    write_cifar_meta(base / "meta", fine, coarse_names=[f"super_{i}" for i in range(20)])
    write_cifar_batch(base / "train", imgs, [99, 0, 5, 42], coarse_labels=[19, 0, 1, 8])
    write_cifar_batch(base / "test", imgs[:1], [7], coarse_labels=[3])
    images, labels, names = load_cifar(tmp_path, "cifar100", "train")
    assert np.array_equal(images, imgs) and labels.tolist() == [99, 0, 5, 42] and names == fine
    # the writer emits what Python 2 cPickle wrote: old numpy names, protocol 2, loadable by the official loader
    raw = (base / "train").read_bytes()
    globals_used = {arg for op, arg, _ in pickletools.genops(raw) if op.name == "GLOBAL"}
    assert raw[:2] == b"\x80\x02"
    assert globals_used == {"numpy.core.multiarray _reconstruct", "numpy ndarray", "numpy dtype"}
    official = pickle.loads(raw, encoding="bytes")
    assert official[b"fine_labels"] == [99, 0, 5, 42] and official[b"coarse_labels"] == [19, 0, 1, 8]
    assert np.array_equal(official[b"data"][1], row(planes(1)))


class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > pwned.txt",))


@pytest.mark.parametrize(
    "payload, protocol, refused",
    [
        ({b"data": Evil(), b"labels": [0]}, 4, f"refused global {os.system.__module__}.system"),
        ({"data": Evil()}, 0, f"refused global {os.system.__module__}.system"),  # text protocol
        ({b"data": [eval], b"labels": [0]}, 4, "refused global builtins.eval"),
        # Python 3 at protocol 2 spells bytes as _codecs.encode(...): not how the real files are written
        ({b"data": np.zeros((1, 3072), np.uint8), b"labels": [0]}, 2, "refused global _codecs.encode"),
    ],
)
def test_cifar_refuses_foreign_globals(cifar10_root, monkeypatch, payload, protocol, refused):
    monkeypatch.chdir(cifar10_root)
    dump(cifar10_root / "cifar-10-batches-py" / "test_batch", payload, protocol=protocol)
    with pytest.raises(ImageFileError, match=r"test_batch: not a safe CIFAR pickle") as err:
        load_cifar(cifar10_root, "cifar10", "test")
    assert refused in str(err.value)
    assert not (cifar10_root / "pwned.txt").exists()


def test_cifar_missing_data_explains_layout(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        load_cifar(tmp_path / "nowhere", "cifar10", "train")
    msg = str(err.value)
    assert (
        "cifar-10-batches-py" in msg
        and "https://www.cs.toronto.edu/~kriz/cifar.html" in msg
        and "never downloads" in msg
    )


def test_cifar_missing_batch(cifar10_root):
    (cifar10_root / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(FileNotFoundError, match="data_batch_3: CIFAR batch file does not exist"):
        load_cifar(cifar10_root, "cifar10", "train")


@pytest.mark.parametrize(
    "content, problem",
    [
        (b"", "empty file"),
        (encode_cifar_pickle({b"labels": [0], b"data": np.zeros((1, 3072), np.uint8)})[:-20], "corrupt pickle"),
        (encode_cifar_pickle({b"labels": [0], b"data": np.zeros((1, 3000), np.uint8)}), "uint8 [N, 3072]"),
        (encode_cifar_pickle({b"labels": [10], b"data": np.zeros((1, 3072), np.uint8)}), "labels outside 0..9"),
        (encode_cifar_pickle({b"labels": [0, 1], b"data": np.zeros((1, 3072), np.uint8)}), "must be 1 integers"),
        (encode_cifar_pickle({b"data": np.zeros((1, 3072), np.uint8)}), "no b'labels' key"),
        (pickle.dumps([1, 2]), "expected a pickled dict"),
    ],
)
def test_cifar_bad_batches(cifar10_root, content, problem):
    (cifar10_root / "cifar-10-batches-py" / "test_batch").write_bytes(content)
    with pytest.raises(ImageFileError, match=r"test_batch") as err:
        load_cifar(cifar10_root, "cifar10", "test")
    assert problem in str(err.value)


def test_cifar_bad_arguments(cifar10_root):
    with pytest.raises(ValueError, match="unknown CIFAR set"):
        load_cifar(cifar10_root, "cifar20", "train")
    with pytest.raises(ValueError, match="unknown CIFAR split"):
        load_cifar(cifar10_root, "cifar10", "val")


# ---------------------------------------------------------------- ImageNet folders
def save_img(path, w=20, h=16, mode="RGB", fmt=None, seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.random.default_rng(seed).integers(0, 256, (h, w, len(mode)), dtype=np.uint8)
    Image.fromarray(arr[..., 0] if mode == "L" else arr, mode).save(path, format=fmt)
    return path


WNIDS = ["n01440764", "n01443537", "n01484850"]


@pytest.fixture
def imagenet(tmp_path):
    for k, wnid in enumerate(reversed(WNIDS)):  # created out of order; the scan must sort
        for name in ("b.JPEG", "a.JPEG", "c.png"):
            save_img(
                tmp_path / "train" / wnid / f"{wnid}_{name}", seed=k, fmt="PNG" if name.endswith("png") else "JPEG"
            )
    (tmp_path / "train" / WNIDS[0] / "notes.txt").write_text("not an image")
    return tmp_path


def test_scan_train_sorted(imagenet):
    files, labels, classes = scan_image_folder(imagenet, "train")
    assert classes == WNIDS
    assert [f.name for f in files] == [f"{w}_{n}" for w in WNIDS for n in ("a.JPEG", "b.JPEG", "c.png")]
    assert labels.dtype == np.int64 and labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]


def test_scan_val_by_class(imagenet):
    save_img(imagenet / "val" / WNIDS[2] / "v2.JPEG")
    save_img(imagenet / "val" / WNIDS[0] / "v0.JPEG")
    files, labels, classes = scan_image_folder(imagenet, "val")
    assert [f.name for f in files] == ["v0.JPEG", "v2.JPEG"] and labels.tolist() == [0, 2] and classes == WNIDS


@pytest.mark.parametrize("where", ["root", "val"])
def test_scan_val_flat_kaggle_csv(imagenet, where):
    for i in (3, 1, 2):
        save_img(imagenet / "val" / f"ILSVRC2012_val_{i:08d}.JPEG")
    csv_dir = imagenet if where == "root" else imagenet / "val"
    (csv_dir / "LOC_val_solution.csv").write_text(
        "ImageId,PredictionString\n"
        f"ILSVRC2012_val_00000002,{WNIDS[0]} 1 2 30 40 {WNIDS[0]} 5 6 7 8\n"
        f"ILSVRC2012_val_00000001,{WNIDS[2]} 0 0 10 10\n"
        f"ILSVRC2012_val_00000003,{WNIDS[1]} 3 3 9 9\n"
        f"ILSVRC2012_val_00000099,{WNIDS[1]} 3 3 9 9\n"  # an image this copy does not hold: ignored
    )
    files, labels, _ = scan_image_folder(imagenet, "val")
    assert [f.name for f in files] == [f"ILSVRC2012_val_{i:08d}.JPEG" for i in (1, 2, 3)]
    assert labels.tolist() == [2, 0, 1]


def test_scan_val_flat_labels_txt(imagenet):
    save_img(imagenet / "val" / "x1.JPEG")
    save_img(imagenet / "val" / "x0.JPEG")
    (imagenet / "val_labels.txt").write_text(f"x0.JPEG {WNIDS[1]}\n\nx1.JPEG {WNIDS[2]}\n")
    files, labels, _ = scan_image_folder(imagenet, "val")
    assert [f.name for f in files] == ["x0.JPEG", "x1.JPEG"] and labels.tolist() == [1, 2]


@pytest.mark.parametrize(
    "name, text, problem",
    [
        (None, None, "flat folder without a labels file"),
        ("val_labels.txt", "x0.JPEG n01440764 extra\n", "val_labels.txt, line 1: expected '<filename> <wnid>'"),
        ("val_labels.txt", "x9.JPEG n01440764\n", "val_labels.txt: no label for x0.JPEG"),
        ("val_labels.txt", "x0.JPEG n99999999\n", "labelled 'n99999999', which is not a train class"),
        ("val_labels.txt", b"\xff\xfe\x00bad", "val_labels.txt: unreadable labels file"),
        ("val_labels.txt", "\n\n", "labels file lists no images"),
        ("LOC_val_solution.csv", "Id,Label\nx0,n01440764\n", "expected the header 'ImageId,PredictionString'"),
        ("LOC_val_solution.csv", "ImageId,PredictionString\nx0\n", "LOC_val_solution.csv, line 2"),
    ],
)
def test_scan_val_bad_labels(imagenet, name, text, problem):
    save_img(imagenet / "val" / "x0.JPEG")
    if name is not None:
        (imagenet / name).write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(ImageFileError) as err:
        scan_image_folder(imagenet, "val")
    assert problem in str(err.value)


def test_scan_folder_errors(imagenet):
    with pytest.raises(FileNotFoundError, match=r"val: no such folder.*never downloads"):
        scan_image_folder(imagenet, "val")
    (imagenet / "train" / "n09999999").mkdir()
    with pytest.raises(ImageFileError, match="n09999999: class folder holds no images"):
        scan_image_folder(imagenet, "train")
    with pytest.raises(ValueError, match="unknown split"):
        scan_image_folder(imagenet, "test")


@pytest.mark.parametrize("w, h, new, box", [(50, 40, (45, 36), (6, 2, 38, 34)), (30, 70, (36, 84), (2, 26, 34, 58))])
def test_load_image_eval_matches_step_by_step_pil(tmp_path, w, h, new, box):
    path = save_img(tmp_path / "im.png", w=w, h=h, fmt="PNG")
    # size 32: shorter side -> int(32 / 0.875) = 36, longer side scaled and truncated, then a centered 32 x 32
    # crop whose offsets torchvision rounds half to even: (45 - 32) / 2 = 6.5 -> 6
    expected = np.array(Image.open(path).convert("RGB").resize(new, Image.Resampling.BICUBIC).crop(box))
    out = load_image(path, size=32)
    assert out.dtype == torch.uint8 and out.shape == (3, 32, 32)
    assert np.array_equal(out.permute(1, 2, 0).numpy(), expected)


def test_load_image_non_square_size_as_timm(tmp_path):
    path = save_img(tmp_path / "im.png", w=50, h=40, fmt="PNG")
    # (H, W) = (24, 40): timm's ResizeKeepRatio to cover (floor(24 / 0.875), floor(40 / 0.875)) = (27, 45):
    # ratio min(40 / 27, 50 / 45) -> 45 x 36, then a centered 40 x 24 crop (offsets 2.5 -> 2 and 6)
    expected = np.array(Image.open(path).convert("RGB").resize((45, 36), Image.Resampling.BICUBIC).crop((2, 6, 42, 30)))
    out = load_image(path, size=(24, 40))
    assert out.shape == (3, 24, 40) and np.array_equal(out.permute(1, 2, 0).numpy(), expected)
    g = torch.Generator().manual_seed(0)
    box = random_resized_crop_box(50, 40, g)
    unflipped = np.array(Image.open(path).crop(box).resize((40, 24), Image.Resampling.BICUBIC))
    # flip=False: the crop alone (the batch augmentation flips instead); seed 0 draws a flip otherwise
    got = load_image(path, (24, 40), train=True, generator=torch.Generator().manual_seed(0), flip=False)
    assert np.array_equal(got.permute(1, 2, 0).numpy(), unflipped)
    flipped = load_image(path, (24, 40), train=True, generator=torch.Generator().manual_seed(0))
    assert np.array_equal(flipped.permute(1, 2, 0).numpy(), unflipped[:, ::-1])


def test_load_image_no_resize_when_short_side_fits(tmp_path):
    path = save_img(tmp_path / "im.png", w=36, h=40, fmt="PNG")
    expected = np.array(Image.open(path))[4:36, 2:34]  # no resampling at all: a plain center crop
    assert np.array_equal(load_image(path, size=32).permute(1, 2, 0).numpy(), expected)


def test_load_image_train_uses_only_the_generator(tmp_path):
    path = save_img(tmp_path / "im.png", w=64, h=48, fmt="PNG")
    state = torch.get_rng_state()
    outs = [load_image(path, 32, train=True, generator=torch.Generator().manual_seed(s)) for s in (0, 0, 1)]
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(outs[0], outs[1]) and not torch.equal(outs[0], outs[2])
    flips = 0
    for seed in range(12):  # the same draws, replayed by hand
        g = torch.Generator().manual_seed(seed)
        box = random_resized_crop_box(64, 48, g)
        flip = torch.rand(1, generator=g).item() < 0.5
        img = Image.open(path).crop(box).resize((32, 32), Image.Resampling.BICUBIC)
        expected = np.array(img)[:, ::-1] if flip else np.array(img)
        got = load_image(path, 32, train=True, generator=torch.Generator().manual_seed(seed))
        assert np.array_equal(got.permute(1, 2, 0).numpy(), expected)
        flips += flip
    assert 0 < flips < 12


def test_random_resized_crop_box_bounds():
    g = torch.Generator().manual_seed(0)
    for w, h in [(64, 48), (10, 300), (300, 10), (1, 1)]:
        for _ in range(50):
            left, top, right, bottom = random_resized_crop_box(w, h, g)
            assert 0 <= left < right <= w and 0 <= top < bottom <= h
    # a very tall image always falls back to the centered crop at the extreme ratio
    assert random_resized_crop_box(10, 300, g) == (0, 143, 10, 156)


@pytest.mark.parametrize(
    "mode, fmt, name",
    [("L", "JPEG", "g.JPEG"), ("CMYK", "JPEG", "c.JPEG"), ("RGB", "PNG", "png_named.JPEG"), ("RGBA", "PNG", "a.png")],
)
def test_load_image_converts_modes(tmp_path, mode, fmt, name):
    path = save_img(tmp_path / name, w=40, h=40, mode=mode, fmt=fmt)
    out = load_image(path, size=32)
    assert out.shape == (3, 32, 32) and out.dtype == torch.uint8
    if mode == "L":
        assert torch.equal(out[0], out[1]) and torch.equal(out[1], out[2])


def test_load_image_unreadable(tmp_path):
    (tmp_path / "text.JPEG").write_text("not an image")
    with pytest.raises(ImageFileError, match=r"text\.JPEG: unreadable image"):
        load_image(tmp_path / "text.JPEG")
    good = save_img(tmp_path / "cut.JPEG", w=64, h=64, fmt="JPEG").read_bytes()
    (tmp_path / "cut.JPEG").write_bytes(good[: len(good) // 2])
    with pytest.raises(ImageFileError, match=r"cut\.JPEG: unreadable image"):
        load_image(tmp_path / "cut.JPEG")
    with pytest.raises(FileNotFoundError, match="missing.JPEG"):
        load_image(tmp_path / "missing.JPEG")
