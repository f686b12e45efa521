"""Reader and writer of ASL-DVS ``.mat`` samples (Bi et al. 2019; formats.md, section 1.5).

Each sample is a MATLAB v5 file (``scipy.io.loadmat`` reads it) with four ``N x 1`` column vectors:
``ts`` (microseconds), ``x``, ``y`` (DAVIS240C pixel, 240 (W) x 180 (H)) and ``pol``.

Orientation: we follow SpikingJelly's ``ASLDVS``, which every Spikformer-family number on this set was
trained with: ``x = 239 - x_raw``, ``y = 179 - y_raw`` (both axes flipped; sensor ``(H, W) = (180, 240)``).
tonic's ``ASLDVS`` flips only y (``y = 179 - y_raw``, x unchanged), so its frames are the mirror image of
ours along x: ``x_tonic = 239 - x_ours``. Polarity is taken as stored (must be 0 or 1).

Order: formats.md does not record whether the released files are sorted by time, and neither reference
reader sorts. Our event streams must be sorted, so an unsorted file is sorted here with a *stable* sort
(events with equal timestamps keep their file order); a sorted file is returned in file order untouched.
"""

from __future__ import annotations

import io
import logging
import os
import struct
from pathlib import Path

import numpy as np
import scipy.io

from ...io import atomic_path
from ..events import EventFileError, check_events, make_events, one_line, read_file

__all__ = ["SENSOR_SIZE", "KEYS", "read_asl_mat", "write_asl_mat"]

log = logging.getLogger(__name__)

SENSOR_SIZE = (180, 240)
"""DAVIS240C ``(H, W)``."""
KEYS = ("ts", "x", "y", "pol")
_HEADER_BYTES = 128  # MATLAB v5: 116 bytes of text, subsystem offset, version, endian indicator
_MI_COMPRESSED = 15  # a zlib-compressed element: not padded to 8 bytes, unlike the others


def _truncation(raw: bytes) -> str | None:
    """Why a MATLAB v5 file is cut short, or None if its top-level elements all fit in ``raw``.

    Walks the 8-byte element tags (``uint32 type, uint32 size``) after the 128-byte header; only called
    once scipy has failed, to tell a truncated file (an incomplete download or copy) from other damage.
    """
    if len(raw) < _HEADER_BYTES:
        started = raw[:6] == b"MATLAB"[: len(raw)]  # the header's text starts "MATLAB 5.0 MAT-file"
        return f"{len(raw)} bytes, shorter than the {_HEADER_BYTES}-byte MATLAB header" if started else None
    endian = {b"IM": "<", b"MI": ">"}.get(raw[126:128])
    if endian is None:
        return None
    pos, n = _HEADER_BYTES, len(raw)
    while pos < n:
        if n - pos < 8:
            return f"{n - pos} stray bytes at byte offset {pos}, where an 8-byte element tag should start"
        kind, size = struct.unpack_from(endian + "II", raw, pos)
        if kind >> 16:  # a small element: type, size and up to 4 bytes of data in one 8-byte word
            pos += 8
            continue
        end = pos + 8 + size
        if end > n:
            return f"the element at byte offset {pos} declares {size} bytes, the file holds {n - pos - 8} more"
        pos = end if kind == _MI_COMPRESSED else end + (-end) % 8
    return None


def _column(mat: dict, key: str, path) -> np.ndarray:
    """One MATLAB vector as a 1-D ``int64`` array; refuses matrices and non-integral values."""
    v = np.asarray(mat[key])
    if v.ndim > 2 or (v.ndim == 2 and min(v.shape) > 1):
        raise EventFileError(f"{path}: '{key}' has shape {v.shape}, expected an N x 1 column vector")
    v = v.reshape(-1)
    if v.dtype == np.bool_:
        return v.astype(np.int64)
    if not (np.issubdtype(v.dtype, np.integer) or np.issubdtype(v.dtype, np.floating)):
        raise EventFileError(f"{path}: '{key}' holds {v.dtype} values, expected numbers")
    if np.issubdtype(v.dtype, np.floating):  # MATLAB's default class is double: accept whole numbers only
        bad = ~np.isfinite(v) | (v != np.round(v))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise EventFileError(f"{path}: '{key}'[{i}] = {v[i]} is not a whole number")
    return v.astype(np.int64)


def read_asl_mat(path: str | os.PathLike) -> np.ndarray:
    """Read one ASL-DVS ``.mat`` sample into a validated ``EVENT_DTYPE`` array ``[N]``, sorted by time.

    Coordinates come back in SpikingJelly's orientation (module docstring) on the ``(180, 240)`` sensor.
    Raises :class:`EventFileError` naming the file when it is empty, truncated, not a MAT file (or a
    directory, or unreadable), lacks any of ``ts, x, y, pol`` (all missing ones are named), has vectors
    of different lengths, no events, raw coordinates outside 240 x 180, a polarity other than 0/1 or
    negative timestamps.
    """
    path, raw = read_file(path)
    if not raw:
        raise EventFileError(f"{path}: empty file (expected a MATLAB v5 .mat file)")
    try:
        mat = scipy.io.loadmat(io.BytesIO(raw))
    except Exception as err:  # scipy's parser raises MatReadError, ValueError, IndexError, OSError, ...
        cut = _truncation(raw)
        if cut is not None:
            raise EventFileError(f"{path}: truncated .mat file ({cut}); copy or download it again") from err
        raise EventFileError(f"{path}: not a readable MATLAB v5 .mat file ({one_line(err)})") from err
    missing = [k for k in KEYS if k not in mat]
    if missing:
        found = sorted(k for k in mat if not k.startswith("__"))
        raise EventFileError(f"{path}: missing variable(s) {', '.join(missing)} (found: {', '.join(found) or 'none'})")
    cols = {k: _column(mat, k, path) for k in KEYS}
    lengths = {k: c.size for k, c in cols.items()}
    if len(set(lengths.values())) != 1:
        raise EventFileError(f"{path}: variables have different lengths {lengths}")
    if cols["ts"].size == 0:
        raise EventFileError(f"{path}: no events")
    h, w = SENSOR_SIZE
    x, y = cols["x"], cols["y"]
    # bounds on the raw values, before the flip turns them into negative (or wrapped) coordinates
    bad = (x < 0) | (x >= w) | (y < 0) | (y >= h)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise EventFileError(f"{path}: event {i} at raw x={x[i]}, y={y[i]} outside the {h}x{w} (HxW) sensor")
    bad = (cols["pol"] != 0) & (cols["pol"] != 1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise EventFileError(f"{path}: event {i} has polarity pol={cols['pol'][i]} (must be 0 or 1)")
    t = cols["ts"]
    if t.min() < 0:
        i = int(np.argmin(t))
        raise EventFileError(f"{path}: event {i} has a negative timestamp ts={t[i]} us")
    events = make_events(t, (w - 1) - x, (h - 1) - y, cols["pol"])
    if (np.diff(t) < 0).any():
        log.debug("%s: events not in time order; sorting them (stable)", path)
        events = events[np.argsort(t, kind="stable")]
    return check_events(events, SENSOR_SIZE, path)


def write_asl_mat(path: str | os.PathLike, events: np.ndarray) -> Path:
    """Write ``EVENT_DTYPE [N]`` events (our orientation) as an ASL-DVS ``.mat`` file, atomically.

    The flips are undone so that :func:`read_asl_mat` returns ``events`` again; the vectors are
    ``N x 1`` columns: ``ts`` int64, ``x``, ``y`` uint16, ``pol`` uint8 (the real files' integer classes
    are not recorded in formats.md; the reader accepts any integer class and whole-number doubles).
    """
    check_events(events, SENSOR_SIZE, path)
    h, w = SENSOR_SIZE
    mat = {
        "ts": events["t"].astype(np.int64),
        "x": ((w - 1) - events["x"].astype(np.int64)).astype(np.uint16),
        "y": ((h - 1) - events["y"].astype(np.int64)).astype(np.uint16),
        "pol": events["p"].astype(np.uint8),
    }
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            scipy.io.savemat(fh, {k: v[:, None] for k, v in mat.items()}, format="5")
    return Path(path)
