"""Reader and writer of the 40-bit ATIS ``.bin`` format of N-MNIST and N-Caltech101.

Each event is 5 bytes (Orchard et al. 2015, the N-MNIST / N-Caltech101 release)::

    b0 = x (8 bit)    b1 = y (8 bit)    b2 bit 7 = polarity (1 = ON)
    t  = (b2 & 0x7F) << 16 | b3 << 8 | b4        (23-bit timestamp, microseconds)

Overflow markers (our choice, documented): an event with ``y == 240`` is not an event but a
timestamp-overflow marker; it is dropped and ``2**13`` is added to the timestamps of every later
event. This is what the dataset authors' MATLAB reader (``Read_Ndataset.m``) and tonic do. SpikingJelly's
``load_ATIS_bin`` keeps such records as events, which would put them on row 240, outside every sensor
recorded in this format (ATIS rows run 0..239), so they can never be real events. The released
recordings last ~300 ms, far below the 2**23 us (8.4 s) the 23-bit field holds, so on the real files
both readers agree; the rule only matters for a file that really contains markers.

The writer therefore never emits markers and refuses anything it cannot represent exactly:
``x`` or ``y`` above 255, ``y == 240`` (would read back as a marker), ``t`` outside ``0 .. 2**23 - 1``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ...io import atomic_write_bytes
from ..events import EVENT_DTYPE, EventFileError, check_events, read_file

__all__ = ["read_atis_bin", "write_atis_bin", "encode_atis_bin", "decode_atis_bin", "OVERFLOW_Y", "OVERFLOW_STEP_US"]

RECORD_BYTES = 5
OVERFLOW_Y = 240
OVERFLOW_STEP_US = 2**13
MAX_T_US = 2**23 - 1


def decode_atis_bin(raw: bytes | np.ndarray, path: str | os.PathLike = "<bytes>") -> np.ndarray:
    """Decode raw file bytes into an ``EVENT_DTYPE`` array ``[N]`` (overflow markers applied, not validated)."""
    buf = np.frombuffer(raw, dtype=np.uint8) if isinstance(raw, (bytes, bytearray, memoryview)) else raw
    if buf.size % RECORD_BYTES:
        raise EventFileError(
            f"{path}: {buf.size} bytes is not a whole number of {RECORD_BYTES}-byte ATIS events (truncated file?)"
        )
    rec = buf.reshape(-1, RECORD_BYTES)
    y = rec[:, 1]
    b2 = rec[:, 2].astype(np.int64)
    t = ((b2 & 0x7F) << 16) | (rec[:, 3].astype(np.int64) << 8) | rec[:, 4]
    marker = y == OVERFLOW_Y
    if marker.any():
        # every marker shifts all records after it: a running count of markers seen so far
        t = t + OVERFLOW_STEP_US * np.cumsum(marker)
        keep = ~marker
        rec, t, y = rec[keep], t[keep], y[keep]
    # (no markers, the usual case: plain column views, no masked copies)
    events = np.empty(rec.shape[0], dtype=EVENT_DTYPE)
    events["t"] = t
    events["x"] = rec[:, 0]
    events["y"] = y
    events["p"] = rec[:, 2] >> 7
    return events


def read_atis_bin(path: str | os.PathLike, sensor_size: tuple[int, int] | None = None) -> np.ndarray:
    """Read one ``.bin`` file into a validated ``EVENT_DTYPE`` array ``[N]``.

    ``sensor_size`` = ``(H, W)`` also checks every coordinate against the sensor (N-MNIST: ``(34, 34)``).
    Raises :class:`EventFileError` naming the file for a truncated or empty file, out-of-sensor
    coordinates or timestamps that go backwards.
    """
    path, raw = read_file(path)
    return check_events(decode_atis_bin(raw, path), sensor_size, path)


def encode_atis_bin(events: np.ndarray, path: str | os.PathLike = "<events>") -> bytes:
    """Encode an ``EVENT_DTYPE`` array ``[N]`` as ATIS bytes (``5 * N`` bytes).

    Refuses (``EventFileError`` naming ``path``) what the format cannot hold and what the reader would
    reject: an empty stream, timestamps that go backwards.
    """
    if not isinstance(events, np.ndarray) or events.dtype != EVENT_DTYPE or events.ndim != 1:
        raise ValueError(f"{path}: expected a 1-D array of EVENT_DTYPE, got {getattr(events, 'dtype', type(events))}")
    problems = [
        (events["x"] > 255, "x", "x > 255 does not fit the 8-bit x field"),
        (events["y"] > 255, "y", "y > 255 does not fit the 8-bit y field"),
        (events["y"] == OVERFLOW_Y, "y", f"y == {OVERFLOW_Y} would be read back as a timestamp-overflow marker"),
        (events["t"] < 0, "t", "negative timestamps cannot be stored"),
        (events["t"] > MAX_T_US, "t", "t >= 2**23 us does not fit the 23-bit timestamp field"),
        (events["p"] > 1, "p", "polarity must be 0 or 1"),
    ]
    for mask, field, why in problems:
        if mask.any():
            i = int(np.flatnonzero(mask)[0])
            raise EventFileError(f"{path}: cannot write event {i} ({field}={events[field][i]}): {why}")
    check_events(events, None, path)  # and nothing the reader would refuse: empty or unsorted streams
    t = events["t"].astype(np.int64)
    rec = np.empty((events.size, RECORD_BYTES), dtype=np.uint8)
    rec[:, 0] = events["x"]
    rec[:, 1] = events["y"]
    rec[:, 2] = (events["p"].astype(np.int64) << 7) | (t >> 16)
    rec[:, 3] = (t >> 8) & 0xFF
    rec[:, 4] = t & 0xFF
    return rec.tobytes()


def write_atis_bin(path: str | os.PathLike, events: np.ndarray) -> Path:
    """Write ``events`` (``EVENT_DTYPE [N]``) to ``path`` atomically in the 40-bit ATIS format."""
    return atomic_write_bytes(path, encode_atis_bin(events, path))
