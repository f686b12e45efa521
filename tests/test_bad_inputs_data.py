"""Every reader against the same damaged inputs: each raises its own error type with one line naming the file.

Rows are readers, columns are faults: a truncated file, a wrong header (magic), an empty file, values out of
range (coordinates beyond the sensor, a polarity other than 0/1, a label beyond the classes), a directory in
place of the file, and a file without read permission. A fault a format cannot express (no header in the
ATIS format, 1-bit polarity fields, 7-bit CIFAR10-DVS coordinates on a 128-pixel sensor) has no cell.
Good files come from the package's own writers; bad values that those writers refuse are written with
scipy or the hand encoders of the format tests.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import scipy.io
from PIL import Image
from test_formats_other import dat_bytes

from spikemask.data import EventFileError, make_events
from spikemask.data.formats.aedat2 import davis346_address, dvs128_address, read_cifar10dvs, read_davis346, write_aedat2
from spikemask.data.formats.aedat3 import read_aedat31, read_gesture_labels, write_aedat31
from spikemask.data.formats.asl_mat import read_asl_mat, write_asl_mat
from spikemask.data.formats.atis import read_atis_bin, write_atis_bin
from spikemask.data.formats.cifar import load_cifar, write_cifar_batch, write_cifar_meta
from spikemask.data.formats.image_folder import ImageFileError, load_image
from spikemask.data.formats.prophesee_dat import SENSOR_SIZE as NCARS_SENSOR
from spikemask.data.formats.prophesee_dat import read_prophesee_dat, write_prophesee_dat

CIFAR_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def events(x=(1, 2), y=(3, 4), p=(0, 1), t=(10, 20)) -> np.ndarray:
    return make_events(list(t), list(x), list(y), list(p))


def mat(path: Path, **cols) -> None:
    full = dict(ts=[10, 20], x=[1, 2], y=[3, 4], pol=[0, 1]) | cols
    scipy.io.savemat(path, {k: np.asarray(v)[:, None] for k, v in full.items()})  # N x 1 columns


def cifar_batch(path: Path, labels=(0, 1)) -> None:
    write_cifar_meta(path.parent / "batches.meta", CIFAR_NAMES)  # load_cifar finds the folder by its meta file
    write_cifar_batch(path, np.zeros((len(labels), 3, 32, 32), np.uint8), labels)


def jpeg(path: Path) -> None:
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(path, "JPEG")


@dataclass
class Reader:
    """How to write a good file of one format and read it; ``bad`` writes each fault this format can hold."""

    error: type[Exception]
    name: str  # the file's name (its folder is the test's)
    good: Callable[[Path], None]
    read: Callable[[Path], object]
    bad: dict[str, Callable[[Path], None]] = field(default_factory=dict)
    cut: int | None = 3  # bytes to cut off a good file for "truncated" (None: no such cell)


READERS = {
    "aedat2-cifar10dvs": Reader(
        EventFileError, "cifar10_cat_0.aedat",
        good=lambda p: write_aedat2(p, dvs128_address([1, 2], [3, 4], [0, 1]), [10, 20]),
        read=read_cifar10dvs,
        bad={"wrong_header": lambda p: write_aedat2(p, [1], [2], header_lines=("#!AER-DAT3.1",))},
    ),
    "aedat2-davis346": Reader(
        EventFileError, "rec.aedat",
        good=lambda p: write_aedat2(p, davis346_address([1, 2], [3, 4], [0, 1]), [10, 20]),
        read=read_davis346,
        bad={"wrong_header": lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64)),
             "out_of_range": lambda p: write_aedat2(p, davis346_address([400], [3], [0]), [10])},
    ),
    "aedat31": Reader(
        EventFileError, "user01_lab.aedat",
        good=lambda p: write_aedat31(p, events()),
        read=read_aedat31, cut=4,
        bad={"wrong_header": lambda p: write_aedat2(p, dvs128_address([1], [3], [0]), [10]),
             "out_of_range": lambda p: write_aedat31(p, events(x=(200,), y=(3,), p=(0,), t=(10,)))},
    ),
    "gesture-labels": Reader(
        EventFileError, "user01_lab_labels.csv",
        good=lambda p: p.write_text("class,startTime_usec,endTime_usec\n1,0,10\n"),
        read=read_gesture_labels, cut=None,
        bad={"wrong_header": lambda p: p.write_text("label,start,end\n1,0,10\n"),
             "bad_label": lambda p: p.write_text("class,startTime_usec,endTime_usec\n12,0,10\n")},
    ),
    "atis": Reader(
        EventFileError, "00001.bin",
        good=lambda p: write_atis_bin(p, events()),
        read=lambda p: read_atis_bin(p, (34, 34)), cut=2,
        bad={"out_of_range": lambda p: write_atis_bin(p, events(x=(40, 2)))},
    ),
    "prophesee-dat": Reader(
        EventFileError, "obj_00001_td.dat",
        good=lambda p: write_prophesee_dat(p, events()),
        read=lambda p: read_prophesee_dat(p, NCARS_SENSOR),
        bad={"wrong_header": lambda p: p.write_bytes(dat_bytes([(0, 1, 1, 0)], header=b"")),
             "out_of_range": lambda p: write_prophesee_dat(p, events(x=(200, 2))),
             "bad_polarity": lambda p: p.write_bytes(dat_bytes([(0, 1, 1, 2)]))},
    ),
    "asl-mat": Reader(
        EventFileError, "a_0001.mat",
        good=lambda p: write_asl_mat(p, events()),
        read=read_asl_mat, cut=40,
        bad={"wrong_header": lambda p: p.write_bytes(b"not a MAT file\n" * 20),
             "out_of_range": lambda p: mat(p, x=[1, 240]),
             "bad_polarity": lambda p: mat(p, pol=[0, 2])},
    ),
    "cifar-pickle": Reader(
        ImageFileError, "test_batch",
        good=cifar_batch,
        read=lambda p: load_cifar(p.parent, "cifar10", "test"), cut=20,
        bad={"wrong_header": lambda p: (cifar_batch(p), p.write_bytes(b"hello, not a pickle")),
             "bad_label": lambda p: cifar_batch(p, labels=(0, 10))},
    ),
    "image": Reader(
        ImageFileError, "n01440764_1.JPEG",
        good=jpeg,
        read=lambda p: load_image(p, size=32), cut=-1,  # -1: cut half the file
        bad={"wrong_header": lambda p: p.write_text("not an image")},
    ),
}

FAULTS = ("truncated", "wrong_header", "empty", "out_of_range", "bad_polarity", "bad_label", "directory",
          "unreadable")


def _cells():
    for name, r in READERS.items():
        for fault in FAULTS:
            applies = {"truncated": r.cut is not None, "empty": True, "directory": True, "unreadable": True}
            if applies.get(fault, fault in r.bad):
                yield pytest.param(name, fault, id=f"{name}-{fault}")


def _make(r: Reader, fault: str, path: Path) -> None:
    if fault in r.bad:
        r.bad[fault](path)
        return
    r.good(path)
    if fault == "truncated":
        raw = path.read_bytes()
        path.write_bytes(raw[: len(raw) // 2] if r.cut == -1 else raw[: -r.cut])
    elif fault == "empty":
        path.write_bytes(b"")
    elif fault == "directory":
        path.unlink()
        path.mkdir()
    elif fault == "unreadable":
        path.chmod(0)


def test_good_files_read(tmp_path):
    for name, r in READERS.items():
        path = tmp_path / name / r.name
        path.parent.mkdir()
        r.good(path)
        r.read(path)  # the matrix below damages files that are otherwise fine


@pytest.fixture(scope="module")
def unreadable_results(tmp_path_factory) -> dict[str, tuple[Path, tuple[str, bool, str] | None]]:
    """Every reader on a mode-000 file of its format, read in one child process of root that has lost the
    capabilities to ignore file modes (so the file is refused as for anyone): ``reader -> (path, (exception
    type, is it the reader's own error type, message) or None if the file was read)``."""
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv(1) is not installed")
    paths = {}
    for name, r in READERS.items():
        path = tmp_path_factory.mktemp(name) / r.name
        _make(r, "unreadable", path)
        paths[name] = path
    code = textwrap.dedent(f"""
        import json, sys
        from pathlib import Path
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        import test_bad_inputs_data as t
        out = {{}}
        for name, path in {({k: str(v) for k, v in paths.items()})!r}.items():
            r = t.READERS[name]
            try:
                r.read(Path(path))
                out[name] = None
            except Exception as exc:
                out[name] = [type(exc).__name__, isinstance(exc, r.error), str(exc)]
        print(json.dumps(out))
    """)
    proc = subprocess.run(["setpriv", "--bounding-set=-dac_override,-dac_read_search", sys.executable, "-c", code],
                          capture_output=True, text=True, timeout=120)
    for path in paths.values():
        path.chmod(0o644)
    if proc.returncode != 0 or not proc.stdout.strip():
        pytest.skip(f"cannot drop the file-mode capabilities here: {proc.stderr.strip()[-200:]}")
    results = json.loads(proc.stdout.splitlines()[-1])
    return {name: (paths[name], results[name] and tuple(results[name])) for name in paths}


@pytest.mark.parametrize(("reader", "fault"), list(_cells()))
def test_reader_refuses_with_one_line_naming_the_file(tmp_path, request, reader, fault):
    r = READERS[reader]
    as_root = fault == "unreadable" and os.geteuid() == 0  # root reads any file whatever its mode
    path = tmp_path / r.name
    if not as_root:
        _make(r, fault, path)
    try:
        if as_root:
            path, result = request.getfixturevalue("unreadable_results")[reader]
            assert result is not None, "a mode-000 file was read"
            kind, own_type, message = result
            assert own_type, f"{kind}: {message}"
        else:
            with pytest.raises(Exception) as err:
                r.read(path)
            message = str(err.value)
            assert isinstance(err.value, r.error), f"{type(err.value).__name__}: {message}"
    finally:
        if fault == "unreadable" and not as_root:
            path.chmod(0o644)
    assert "\n" not in message and str(path) in message
    if fault == "truncated":
        assert "truncated" in message
    if fault == "directory":
        assert "directory" in message
    if fault == "unreadable":
        assert "permission denied" in message
