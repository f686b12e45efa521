"""Reader and writer of Prophesee ``.dat`` v2 TD files, the format of N-CARS (formats.md, section 1.4).

Layout::

    % Data file containing Event2D events.      text header, one line each, every line starting with '%'
    % Version 2                                 (newer files also have '% Height H', '% Width W', '% end')
    % Date 2017-01-01 00:00:00
    <uint8 event type> <uint8 event size>       0 = TD (2-D change events), 8 bytes per event
    <uint32 t_us> <uint32 data>  * N            little-endian; x = data & 0x3FFF,
                                                y = (data >> 14) & 0x3FFF, p = (data >> 28) & 0xF

Choices (ours, documented):

* A header is required. Prophesee's own loader accepts a file without one, but every N-CARS file has one,
  and without it any stray binary file whose first two bytes happen to be ``00 08`` would decode as garbage.
* Only ``Version 2`` (or no Version line) with event type 0 and size 8 is accepted: other types (CD = 0x0C
  from newer tools, IMU, ...) use other record layouts.
* The 4-bit polarity field must be 0 or 1. Prophesee's loader masks bit 28 only, which would silently turn
  a corrupt 2 into 0; we refuse it instead.
* Timestamps must be non-decreasing, as for every reader here (:func:`~spikemask.data.events.check_events`):
  the sensor writes events in time order, so a step backwards means a damaged file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from ...io import atomic_write_bytes
from ..events import EVENT_DTYPE, EventFileError, check_events, read_file

__all__ = [
    "SENSOR_SIZE",
    "decode_prophesee_dat",
    "encode_prophesee_dat",
    "read_prophesee_dat",
    "write_prophesee_dat",
]

SENSOR_SIZE = (100, 120)
"""N-CARS ``(H, W)``: every sample is a crop that fits 120 (W) x 100 (H) (formats.md, 1.0)."""

TD_TYPE = 0
TD_SIZE = 8
COORD_MAX = 0x3FFF  # 14-bit x and y fields
MAX_T_US = 2**32 - 1
_RECORD = np.dtype([("t", "<u4"), ("data", "<u4")])
DEFAULT_HEADER = ("Data file containing Event2D events.", "Version 2", "Date 2017-01-01 00:00:00")


def _parse_header(raw: bytes, path) -> tuple[int, dict[str, str]]:
    """Return (offset of the type byte, {first word: rest of line}) for the ``%`` lines at the start of ``raw``."""
    if not raw:
        raise EventFileError(f"{path}: empty file")
    if raw[:1] != b"%":
        raise EventFileError(f"{path}: no '%' header line at the start: not a Prophesee .dat file")
    fields: dict[str, str] = {}
    pos = 0
    while raw[pos : pos + 1] == b"%":  # a handful of lines: a Python loop costs nothing here
        end = raw.find(b"\n", pos)
        if end < 0:
            raise EventFileError(f"{path}: header ends without a newline: missing the event type/size bytes")
        words = raw[pos + 1 : end].decode("latin-1").strip().split(None, 1)
        if words:
            fields[words[0]] = words[1] if len(words) > 1 else ""
        pos = end + 1
    return pos, fields


def _header_int(fields: dict[str, str], key: str, path) -> int | None:
    if key not in fields:
        return None
    try:
        value = int(fields[key])
    except ValueError:
        raise EventFileError(f"{path}: header line '% {key} {fields[key]}' is not an integer") from None
    if value <= 0:
        raise EventFileError(f"{path}: header line '% {key} {value}' must be positive")
    return value


def decode_prophesee_dat(raw: bytes, path: str | os.PathLike = "<bytes>") -> tuple[np.ndarray, dict[str, str]]:
    """Decode a whole ``.dat`` file into (``EVENT_DTYPE [N]``, header fields); not validated beyond the layout.

    Header fields map the first word of each ``%`` line to the rest (``{"Version": "2", "Height": "100"}``).
    Raises :class:`EventFileError` for an empty file, a missing header, missing type/size bytes,
    an unsupported version, event type or size, or a payload that is not whole 8-byte events.
    """
    pos, fields = _parse_header(raw, path)
    if fields.get("Version", "2") != "2":
        raise EventFileError(f"{path}: .dat version {fields['Version']!r} is not supported (only version 2)")
    if len(raw) - pos < 2:
        raise EventFileError(f"{path}: file ends after the header: missing the event type and size bytes")
    ev_type, ev_size = raw[pos], raw[pos + 1]
    if ev_type != TD_TYPE:
        raise EventFileError(f"{path}: event type {ev_type:#04x} is not supported (only {TD_TYPE} = TD events)")
    if ev_size != TD_SIZE:
        raise EventFileError(f"{path}: event size {ev_size} bytes is not supported (TD events are {TD_SIZE})")
    payload = memoryview(raw)[pos + 2 :]
    if len(payload) % TD_SIZE:
        raise EventFileError(
            f"{path}: {len(payload)} bytes after the header is not a whole number of {TD_SIZE}-byte events "
            "(truncated file?)"
        )
    rec = np.frombuffer(payload, dtype=_RECORD)
    data = rec["data"]
    events = np.empty(rec.size, dtype=EVENT_DTYPE)
    events["t"] = rec["t"]
    events["x"] = data & COORD_MAX
    events["y"] = (data >> 14) & COORD_MAX
    events["p"] = data >> 28  # 4-bit field; check_events refuses anything but 0 and 1
    return events, fields


def read_prophesee_dat(path: str | os.PathLike, sensor_size: tuple[int, int] | None = None) -> np.ndarray:
    """Read one N-CARS ``.dat`` file into a validated ``EVENT_DTYPE`` array ``[N]`` (t in us, p 0 = OFF, 1 = ON).

    ``sensor_size`` ``(H, W)`` bounds the coordinates; ``None`` takes ``(Height, Width)`` from the header
    when both lines are there, and otherwise checks no bounds (N-CARS files carry no size: pass
    :data:`SENSOR_SIZE`). Raises :class:`EventFileError` naming the file for every fault listed in
    :func:`decode_prophesee_dat`, for no events, polarity above 1, coordinates outside the sensor and
    timestamps that go backwards.
    """
    path, raw = read_file(path)
    events, fields = decode_prophesee_dat(raw, path)
    if sensor_size is None:
        h, w = _header_int(fields, "Height", path), _header_int(fields, "Width", path)
        sensor_size = (h, w) if h is not None and w is not None else None
    return check_events(events, sensor_size, path)


def encode_prophesee_dat(
    events: np.ndarray,
    header: Sequence[str] | None = None,
    *,
    sensor_size: tuple[int, int] | None = None,
    path: str | os.PathLike = "<events>",
) -> bytes:
    """Encode ``EVENT_DTYPE [N]`` as ``.dat`` v2 TD bytes (header, ``00 08``, then ``8 * N`` bytes).

    ``header`` lines are written without their ``"% "`` prefix (default :data:`DEFAULT_HEADER`, the
    N-CARS lines); ``sensor_size`` ``(H, W)`` appends ``Height``/``Width`` lines, as newer files have,
    and checks the events fit. Refuses (``EventFileError`` naming ``path``) what the format cannot hold
    or the reader would reject: coordinates above 14 bits, t outside uint32, p > 1, empty or unsorted streams.
    """
    if not isinstance(events, np.ndarray) or events.dtype != EVENT_DTYPE or events.ndim != 1:
        raise ValueError(f"{path}: expected a 1-D array of EVENT_DTYPE, got {getattr(events, 'dtype', type(events))}")
    problems = [
        (events["x"] > COORD_MAX, "x", "x does not fit the 14-bit x field"),
        (events["y"] > COORD_MAX, "y", "y does not fit the 14-bit y field"),
        (events["t"] < 0, "t", "negative timestamps cannot be stored"),
        (events["t"] > MAX_T_US, "t", "t >= 2**32 us does not fit the 32-bit timestamp field"),
    ]
    for mask, field, why in problems:
        if mask.any():
            i = int(np.flatnonzero(mask)[0])
            raise EventFileError(f"{path}: cannot write event {i} ({field}={events[field][i]}): {why}")
    check_events(events, sensor_size, path)  # polarity, emptiness, order, bounds: what the reader checks
    lines = list(DEFAULT_HEADER if header is None else header)
    if sensor_size is not None:
        lines += [f"Height {sensor_size[0]}", f"Width {sensor_size[1]}"]
    for line in lines:
        if "\n" in line or "\r" in line:
            raise ValueError(f"{path}: header line {line!r} must not contain a line break")
    text = "".join(f"% {line}\n" for line in lines).encode("latin-1")
    rec = np.empty(events.size, dtype=_RECORD)
    rec["t"] = events["t"]
    rec["data"] = (
        events["x"].astype(np.uint32) | (events["y"].astype(np.uint32) << 14) | (events["p"].astype(np.uint32) << 28)
    )
    return text + bytes([TD_TYPE, TD_SIZE]) + rec.tobytes()


def write_prophesee_dat(
    path: str | os.PathLike,
    events: np.ndarray,
    header: Sequence[str] | None = None,
    *,
    sensor_size: tuple[int, int] | None = None,
) -> Path:
    """Write ``events`` (``EVENT_DTYPE [N]``) to ``path`` atomically as a ``.dat`` v2 TD file."""
    return atomic_write_bytes(path, encode_prophesee_dat(events, header, sensor_size=sensor_size, path=path))
