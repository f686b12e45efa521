"""Safe reader (and exact writer, for tests) of the CIFAR-10/100 "python version" pickle batches.

Layout as distributed at https://www.cs.toronto.edu/~kriz/cifar.html (data.md, CIFAR rows)::

    <root>/cifar-10-batches-py/{data_batch_1, ..., data_batch_5, test_batch, batches.meta}
    <root>/cifar-100-python/{train, test, meta}

Each batch is a Python 2 pickle (protocol 2) of a dict with bytes keys: ``b"data"``, a ``uint8`` ndarray
``[N, 3072]`` (the R, G and B planes of 32 x 32 pixels, each row-major), and ``b"labels"`` (CIFAR-10) or
``b"fine_labels"`` + ``b"coarse_labels"`` (CIFAR-100), lists of ints. The meta files hold
``b"label_names"`` / ``b"fine_label_names"``. They are read with ``encoding="bytes"`` as the official loader does.

A pickle can run any code on load, so the unpickler here resolves only the three globals an ndarray
needs (``numpy.core.multiarray._reconstruct``, ``numpy.ndarray``, ``numpy.dtype``) and refuses every
other one. ``numpy._core.multiarray._reconstruct`` is the same function under NumPy 2's name, which
pickles re-saved by NumPy 2 use; it is mapped to the same object.
"""

from __future__ import annotations

import io
import logging
import os
import pickle
import struct
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ...io import atomic_write_bytes
from ..events import one_line, read_file
from .image_folder import ImageFileError

__all__ = [
    "CIFAR_LAYOUT",
    "load_cifar",
    "read_cifar_pickle",
    "encode_cifar_pickle",
    "write_cifar_batch",
    "write_cifar_meta",
]

log = logging.getLogger(__name__)

# name -> (folder, {split: batch files}, meta file, labels key, class-names key, number of classes)
CIFAR_LAYOUT: dict[str, tuple[str, dict[str, tuple[str, ...]], str, bytes, bytes, int]] = {
    "cifar10": (
        "cifar-10-batches-py",
        {"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)},
        "batches.meta",
        b"labels",
        b"label_names",
        10,
    ),
    "cifar100": (
        "cifar-100-python",
        {"train": ("train",), "test": ("test",)},
        "meta",
        b"fine_labels",
        b"fine_label_names",
        100,
    ),
}

try:  # NumPy 2 moved numpy.core to numpy._core; importing the old name only warns
    from numpy._core.multiarray import _reconstruct
except ImportError:  # NumPy 1.x
    from numpy.core.multiarray import _reconstruct

_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class _RefusedGlobal(pickle.UnpicklingError):
    pass


# what a damaged (truncated, bit-flipped) pickle makes the unpickler or numpy's __setstate__ raise
_CORRUPT = (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError, struct.error)


class _NdarrayOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise _RefusedGlobal(f"refused global {module}.{name} (only numpy arrays are allowed)") from None


def read_cifar_pickle(path: str | os.PathLike) -> dict:
    """Unpickle one CIFAR file safely (``encoding="bytes"``): a dict, or :class:`ImageFileError` naming the file.

    ``FileNotFoundError`` if it is missing; :class:`ImageFileError` for a directory in its place, an
    unreadable, empty, truncated or foreign file.
    """
    path, raw = read_file(path, "CIFAR batch file", error=ImageFileError)
    if not raw:
        raise ImageFileError(f"{path}: empty file")
    try:
        obj = _NdarrayOnlyUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except _RefusedGlobal as err:
        raise ImageFileError(f"{path}: not a safe CIFAR pickle: {err}") from err
    except _CORRUPT as err:
        raise ImageFileError(
            f"{path}: corrupt pickle ({one_line(err)}); truncated download? Extract the archive again"
        ) from err
    if not isinstance(obj, dict):
        raise ImageFileError(f"{path}: expected a pickled dict, got {type(obj).__name__}")
    return obj


def _find_dir(root: Path, folder: str, meta: str) -> Path:
    for cand in (root / folder, root):  # <root>/cifar-10-batches-py, or that folder itself
        if (cand / meta).is_file():
            return cand
    raise FileNotFoundError(
        f"{root}: no CIFAR data found. Expected {root / folder}/ (or {root}/ itself) holding '{meta}' and the "
        f"batch files, as extracted from the 'python version' archive of https://www.cs.toronto.edu/~kriz/cifar.html "
        "(tar xzf cifar-10-python.tar.gz / cifar-100-python.tar.gz). spikemask never downloads data."
    )


def load_cifar(root: str | os.PathLike, name: str, split: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Load a CIFAR split: ``(images uint8 [N, 3, 32, 32], labels int64 [N], class_names)``.

    ``name`` is ``"cifar10"`` or ``"cifar100"`` (fine labels, 100 classes); ``split`` ``"train"`` (the five
    batches in order for CIFAR-10) or ``"test"``. ``root`` holds the extracted folder (or is it). Images
    are channel-first RGB, in file order. Raises ``FileNotFoundError`` explaining the layout when the data
    is missing and :class:`ImageFileError` naming the file for any malformed batch.
    """
    if name not in CIFAR_LAYOUT:
        raise ValueError(f"unknown CIFAR set {name!r}; expected one of {sorted(CIFAR_LAYOUT)}")
    folder, splits, meta_name, label_key, names_key, num_classes = CIFAR_LAYOUT[name]
    if split not in splits:
        raise ValueError(f"unknown CIFAR split {split!r}; expected one of {sorted(splits)}")
    base = _find_dir(Path(root), folder, meta_name)
    meta_path = base / meta_name
    meta = read_cifar_pickle(meta_path)
    raw_names = meta.get(names_key)
    if not isinstance(raw_names, list) or len(raw_names) != num_classes:
        raise ImageFileError(f"{meta_path}: expected {num_classes} class names under {names_key!r}")
    class_names = [n.decode("utf-8") if isinstance(n, bytes) else str(n) for n in raw_names]
    images, labels = [], []
    for fname in splits[split]:
        path = base / fname
        batch = read_cifar_pickle(path)
        data, lab = batch.get(b"data"), batch.get(label_key)
        if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
            got = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
            raise ImageFileError(f"{path}: b'data' must be a uint8 [N, 3072] array, got {got}")
        if lab is None:
            raise ImageFileError(f"{path}: no {label_key!r} key (found {', '.join(sorted(map(repr, batch)))})")
        lab = np.asarray(lab)
        if lab.shape != (data.shape[0],) or not np.issubdtype(lab.dtype, np.integer):
            raise ImageFileError(f"{path}: {label_key!r} must be {data.shape[0]} integers, got {lab.dtype} {lab.shape}")
        if lab.size and (lab.min() < 0 or lab.max() >= num_classes):
            raise ImageFileError(f"{path}: labels outside 0..{num_classes - 1}")
        images.append(data.reshape(-1, 3, 32, 32))  # [N, 3072] -> [N, C, H, W]: planes R, G, B, rows of 32
        labels.append(lab.astype(np.int64))
    out = np.concatenate(images) if len(images) > 1 else images[0]
    log.debug("%s %s: %d images from %s", name, split, out.shape[0], base)
    return out, np.concatenate(labels), class_names


# ---- writer: the bytes Python 2's cPickle (protocol 2) produced for these dicts -----------------------------
# Python 3's pickle cannot write them (it spells bytes via _codecs.encode and NumPy 2 says numpy._core), so
# the few opcodes are emitted here directly; the reader above is then tested against the real format.


def _p_int(v: int) -> bytes:
    if 0 <= v < 256:
        return b"K" + bytes([v])  # BININT1
    if 0 <= v < 65536:
        return b"M" + struct.pack("<H", v)  # BININT2
    if -(2**31) <= v < 2**31:
        return b"J" + struct.pack("<i", v)  # BININT
    raise ValueError(f"integer {v} does not fit 32 bits")


def _p_bytes(b: bytes) -> bytes:
    return (b"U" + bytes([len(b)]) if len(b) < 256 else b"T" + struct.pack("<i", len(b))) + b  # py2 str


def _p_global(module: str, name: str) -> bytes:
    return b"c" + f"{module}\n{name}\n".encode()


_TUPLE_N = {1: b"\x85", 2: b"\x86", 3: b"\x87"}  # TUPLE1..3


def _p_ndarray(a: np.ndarray) -> bytes:
    if a.dtype != np.uint8:
        raise ValueError(f"only uint8 arrays are written, got {a.dtype}")
    a = np.ascontiguousarray(a)
    dims = b"".join(_p_int(d) for d in a.shape)
    shape = dims + _TUPLE_N[a.ndim] if a.ndim in _TUPLE_N else b"(" + dims + b"t"  # (MARK ... TUPLE)
    # one line per value the opcodes build (the formatter would put one opcode per line)
    # fmt: off
    dtype = b"".join([
        _p_global("numpy", "dtype"), _p_bytes(b"u1"), _p_int(0), _p_int(1), b"\x87R",  # dtype("u1", 0, 1)
        b"(", _p_int(3), _p_bytes(b"|"), b"NNN", _p_int(-1), _p_int(-1), _p_int(0), b"tb",  # state 3, "|", ...
    ])
    return b"".join([
        _p_global("numpy.core.multiarray", "_reconstruct"),  # _reconstruct(ndarray, (0,), "b")
        _p_global("numpy", "ndarray"), _p_int(0), b"\x85", _p_bytes(b"b"), b"\x87R",
        b"(", _p_int(1), shape, dtype, b"\x89", _p_bytes(a.tobytes()), b"tb",  # (1, shape, dtype, False, raw)
    ])
    # fmt: on


def _p_value(v: Any) -> bytes:
    if isinstance(v, np.ndarray):
        return _p_ndarray(v)
    if isinstance(v, bytes):
        return _p_bytes(v)
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
        return _p_int(int(v))
    if isinstance(v, list):
        return b"]" + (b"(" + b"".join(_p_value(x) for x in v) + b"e" if v else b"")  # EMPTY_LIST [MARK ... APPENDS]
    raise TypeError(f"cannot write {type(v).__name__} in a CIFAR pickle")


def encode_cifar_pickle(obj: dict[bytes, Any]) -> bytes:
    """Protocol-2 pickle bytes of a dict with bytes keys and bytes / int / list / uint8-ndarray values."""
    body = b"".join(_p_bytes(k) + _p_value(v) for k, v in obj.items())
    return b"\x80\x02}" + (b"(" + body + b"u" if obj else b"") + b"."


def write_cifar_batch(
    path: str | os.PathLike,
    images: np.ndarray,
    labels: Sequence[int],
    *,
    coarse_labels: Sequence[int] | None = None,
    batch_label: str = "training batch 1 of 5",
) -> Path:
    """Write ``images`` (``uint8 [N, 3, 32, 32]``) and ``labels`` as one batch file, atomically.

    Without ``coarse_labels`` this is a CIFAR-10 batch (``b"labels"``); with them a CIFAR-100 one
    (``b"fine_labels"``, ``b"coarse_labels"``). ``b"batch_label"`` and ``b"filenames"`` (``image_<i>.png``)
    are filled in because the real files have them, although the reader ignores them.
    """
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (3, 32, 32):
        raise ValueError(f"{path}: images must be uint8 [N, 3, 32, 32], got {images.dtype} {images.shape}")
    n = images.shape[0]
    obj: dict[bytes, Any] = {b"batch_label": batch_label.encode()}
    if coarse_labels is None:
        obj[b"labels"] = [int(v) for v in labels]
    else:
        obj[b"fine_labels"] = [int(v) for v in labels]
        obj[b"coarse_labels"] = [int(v) for v in coarse_labels]
    obj[b"data"] = images.reshape(n, 3072)
    obj[b"filenames"] = [f"image_{i}.png".encode() for i in range(n)]
    for key in (b"labels", b"fine_labels", b"coarse_labels"):
        if key in obj and len(obj[key]) != n:
            raise ValueError(f"{path}: {len(obj[key])} {key.decode()} for {n} images")
    return atomic_write_bytes(path, encode_cifar_pickle(obj))


def write_cifar_meta(
    path: str | os.PathLike, class_names: Sequence[str], *, coarse_names: Sequence[str] | None = None
) -> Path:
    """Write a meta file: CIFAR-10 ``batches.meta`` (``b"label_names"``) or, with ``coarse_names``,
    CIFAR-100 ``meta`` (``b"fine_label_names"``, ``b"coarse_label_names"``)."""
    if coarse_names is None:
        obj = {b"num_cases_per_batch": 10000, b"label_names": [n.encode() for n in class_names], b"num_vis": 3072}
    else:
        obj = {
            b"fine_label_names": [n.encode() for n in class_names],
            b"coarse_label_names": [n.encode() for n in coarse_names],
        }
    return atomic_write_bytes(path, encode_cifar_pickle(obj))
