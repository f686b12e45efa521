"""Reader and writer of jAER's AEDAT 2.0 format: CIFAR10-DVS (DVS128) and the PAF action set (DAVIS346).

Layout (docs/spec ``formats.md`` sections 1.1 and 1.6): ASCII header lines that start with ``#``, the
first one ``#!AER-DAT2.0`` (line ends CRLF or LF), then 8-byte big-endian records
``uint32 address, uint32 timestamp_us``. The header ends at the first line that, decoded as UTF-8
and stripped, is empty or does not start with ``#`` (a line that is not UTF-8 ends it too): exactly
SpikingJelly's ``cifar10_dvs._skip_header``, so both readers start the payload at the same byte.

Address layouts and the orientations returned (each reader's docstring has the details):

* CIFAR10-DVS, jAER DVS128: bit 0 polarity, bits 1-7 x field, bits 8-14 y field. Returned in
  SpikingJelly's orientation ``x = 127 - y_field, y = 127 - x_field, p = 1 - p_raw`` (what the
  papers trained on).
* DAVIS346: bit 31 event type (0 DVS, 1 APS/IMU sample: dropped), bits 22-30 y field, bits 12-21
  x field, bit 11 polarity. Returned in tonic's ``read_davis_346`` orientation.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import numpy as np

from ...io import atomic_write_bytes
from ..events import EVENT_DTYPE, EventFileError, check_events, read_file

__all__ = [
    "CIFAR10DVS_SENSOR", "DAVIS346_SENSOR", "DEFAULT_HEADER", "split_aedat2", "decode_cifar10dvs",
    "decode_davis346", "read_cifar10dvs", "read_davis346", "encode_aedat2", "write_aedat2",
    "dvs128_address", "davis346_address",
]

log = logging.getLogger(__name__)

RECORD_BYTES = 8
CIFAR10DVS_SENSOR = (128, 128)  # (H, W)
DAVIS346_SENSOR = (260, 346)  # (H, W)
DEFAULT_HEADER = (
    "#!AER-DAT2.0",
    "# This is a raw AE data file - do not edit",
    "# Data format is int32 address, int32 timestamp (8 bytes total), repeated for each event",
    "# Timestamps tick is 1 us",
)
_VERSION = re.compile(r"#!AER-DAT(\S*)")
_RECORD = np.dtype([("address", ">u4"), ("t", ">u4")])


def _header_end(raw: bytes) -> tuple[list[str], int]:
    """Header lines (stripped) and the byte offset where the records start, as SpikingJelly finds it."""
    lines: list[str] = []
    pos, n = 0, len(raw)
    while pos < n:
        nl = raw.find(b"\n", pos)
        end = n if nl < 0 else nl + 1
        try:
            text = raw[pos:end].decode().strip()
        except UnicodeDecodeError:
            break
        if not text or text[0] != "#":
            break
        lines.append(text)
        pos = end
    return lines, pos


def split_aedat2(raw: bytes, path: str | os.PathLike = "<bytes>") -> tuple[list[str], np.ndarray]:
    """Split a file's bytes into its header lines (``list[str]``, stripped) and the payload (``uint8 [8 * N]``).

    Raises :class:`EventFileError` naming ``path`` when the first line is not ``#!AER-DAT2.0`` (another
    version, or not an AEDAT file) or the payload is not a whole number of 8-byte records (truncated).
    """
    lines, pos = _header_end(raw)
    version = _VERSION.match(lines[0]) if lines else None
    if version is None:
        raise EventFileError(f"{path}: not an AEDAT 2.0 file (it does not start with a '#!AER-DAT2.0' line)")
    if version.group(1) != "2.0":
        raise EventFileError(f"{path}: AEDAT version {version.group(1)!r}, expected 2.0 ('#!AER-DAT2.0')")
    payload = np.frombuffer(raw, dtype=np.uint8)[pos:]
    if payload.size % RECORD_BYTES:
        raise EventFileError(
            f"{path}: {payload.size} bytes after the {pos}-byte header is not a whole number of "
            f"{RECORD_BYTES}-byte (address, timestamp) records (truncated file?)"
        )
    return lines, payload


def _records(payload: np.ndarray) -> np.ndarray:
    return payload.view(_RECORD)  # [N] (address, t), big-endian; no copy


def _check(events: np.ndarray, sensor: tuple[int, int], path, header_bytes: int, record: np.ndarray | None):
    """``check_events``, with the byte offset of the offending record added to its message."""
    try:
        return check_events(events, sensor, path)
    except EventFileError as err:
        i = _first_fault(events, sensor)
        if i is None:
            raise
        j = i if record is None else int(record[i])
        raise EventFileError(f"{err}, at record {j} (byte offset {header_bytes + RECORD_BYTES * j})") from None


def _first_fault(events: np.ndarray, sensor: tuple[int, int]) -> int | None:
    # the same order as check_events: coordinates, then time order (p and t >= 0 cannot fail here)
    h, w = sensor
    bad = np.flatnonzero((events["x"] >= w) | (events["y"] >= h))
    if bad.size:
        return int(bad[0])
    back = np.flatnonzero(np.diff(events["t"]) < 0)
    return int(back[0]) + 1 if back.size else None


def decode_cifar10dvs(payload: np.ndarray) -> np.ndarray:
    """Decode DVS128 records (``uint8 [8 * N]`` payload) into ``EVENT_DTYPE [N]`` in SpikingJelly's orientation.

    ``x = 127 - y_field``, ``y = 127 - x_field``, ``p = 1 - p_raw`` (``cifar10_dvs._load_origin_data``,
    formats.md 1.1). Address bits 15-31 are ignored, as SpikingJelly ignores them.
    """
    rec = _records(payload)
    # bits 0-14 lie in the address's last two bytes (big-endian): work on those uint8 columns only,
    # and 127 - v == ~v & 0x7F for a 7-bit v (no wider temporaries)
    b2, b3 = payload.reshape(-1, RECORD_BYTES)[:, 2], payload.reshape(-1, RECORD_BYTES)[:, 3]
    events = np.empty(rec.size, dtype=EVENT_DTYPE)
    events["t"] = rec["t"]
    events["x"] = ~b2 & 0x7F  # 127 - y_field
    events["y"] = ~b3 >> 1  # 127 - x_field (the top bit of ~b3 is shifted out)
    events["p"] = ~b3 & 1  # 1 - p_raw
    return events


def read_cifar10dvs(path: str | os.PathLike) -> np.ndarray:
    """Read one CIFAR10-DVS ``.aedat`` file into a validated ``EVENT_DTYPE [N]`` array on a 128 x 128 sensor.

    Orientation is SpikingJelly's (see :func:`decode_cifar10dvs`). Raises :class:`EventFileError`
    naming the file for a wrong/missing header, a truncated payload, no events, or timestamps that go
    backwards (the message gives the record and its byte offset); ``FileNotFoundError`` if it is missing.
    """
    path, raw = read_file(path)
    _, payload = split_aedat2(raw, path)
    if payload.size == 0:
        raise EventFileError(f"{path}: no events after the header")
    events = decode_cifar10dvs(payload)
    return _check(events, CIFAR10DVS_SENSOR, path, len(raw) - payload.size, None)


def decode_davis346(
    payload: np.ndarray, path: str | os.PathLike = "<bytes>", offset: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Decode DAVIS346 records: ``(events EVENT_DTYPE [M], record int64 [M])``, DVS events only.

    ``record`` is each event's record index in the file (APS/IMU samples, bit 31 set, are dropped).
    Orientation is tonic's ``read_davis_346`` (formats.md 1.6): ``x = 345 - x_field``,
    ``y = 259 - y_field``, ``p = bit 11`` (1 = ON). To get PAF's reference reader (``frequency.py``)
    convention instead: ``x`` is the same, ``y_paf = 259 - y``, ``p_paf = 1 - p``. Address bits 0-10 are
    ignored, as both reference readers ignore them. A field beyond the 346 x 260 sensor raises
    :class:`EventFileError` naming ``path``, the record and its byte offset (``offset`` = the header's size).
    """
    rec = _records(payload)
    addr = rec["address"].astype(np.uint32)
    dvs = addr < 0x80000000  # bit 31 clear
    record = np.flatnonzero(dvs)
    if record.size != addr.size:
        addr = addr[record]
    xf = (addr >> 12) & 0x3FF
    yf = (addr >> 22) & 0x1FF
    bad = np.flatnonzero((xf >= DAVIS346_SENSOR[1]) | (yf >= DAVIS346_SENSOR[0]))
    if bad.size:
        i = int(bad[0])
        raise EventFileError(
            f"{path}: record {record[i]} at byte offset {offset + RECORD_BYTES * int(record[i])} has "
            f"x field {xf[i]}, y field {yf[i]}, outside the 260x346 (HxW) DAVIS346 sensor"
        )
    events = np.empty(addr.size, dtype=EVENT_DTYPE)
    events["t"] = rec["t"] if record.size == rec.size else rec["t"][record]
    events["x"] = (DAVIS346_SENSOR[1] - 1) - xf
    events["y"] = (DAVIS346_SENSOR[0] - 1) - yf
    events["p"] = (addr >> 11) & 1
    return events, record


def read_davis346(path: str | os.PathLike) -> np.ndarray:
    """Read one DAVIS346 AEDAT 2.0 file (the PAF action set) into a validated ``EVENT_DTYPE [N]`` array.

    Sensor ``(H, W) = (260, 346)``; orientation as in :func:`decode_davis346`. Timestamps are the raw
    ``uint32`` microseconds (tonic's ``# Creation time:`` start offset is not applied). Raises
    :class:`EventFileError` naming the file for a wrong header, a truncated payload, no DVS events,
    out-of-sensor fields or timestamps that go backwards (with the record and its byte offset).
    """
    path, raw = read_file(path)
    _, payload = split_aedat2(raw, path)
    header_bytes = len(raw) - payload.size
    events, record = decode_davis346(payload, path, header_bytes)
    if events.size == 0:
        raise EventFileError(f"{path}: no DVS events ({payload.size // RECORD_BYTES} APS/IMU samples only)")
    dropped = payload.size // RECORD_BYTES - events.size
    log.debug("%s: %d DVS events, %d APS/IMU samples dropped", path, events.size, dropped)
    return _check(events, DAVIS346_SENSOR, path, header_bytes, record)


def _fields(name: str, values, bits: int) -> np.ndarray:
    v = np.asarray(values, dtype=np.int64)
    if v.size and (v.min() < 0 or v.max() >= 1 << bits):
        i = int(np.flatnonzero((v < 0) | (v >= 1 << bits)).flat[0])
        raise ValueError(f"{name}[{i}] = {v.flat[i]} does not fit a {bits}-bit field")
    return v


def dvs128_address(x_field, y_field, p_raw) -> np.ndarray:
    """jAER DVS128 address ``uint32 [N]`` = ``y_field << 8 | x_field << 1 | p_raw`` (raw sensor fields)."""
    x, y, p = _fields("x_field", x_field, 7), _fields("y_field", y_field, 7), _fields("p_raw", p_raw, 1)
    return ((y << 8) | (x << 1) | p).astype(np.uint32)


def davis346_address(x_field, y_field, p_raw, aps=False) -> np.ndarray:
    """jAER DAVIS address ``uint32 [N]`` = ``aps << 31 | y_field << 22 | x_field << 12 | p_raw << 11``.

    Fields are the raw ones (any value the bit widths hold, so tests can place events off the sensor).
    """
    x, y = _fields("x_field", x_field, 10), _fields("y_field", y_field, 9)
    p, a = _fields("p_raw", p_raw, 1), _fields("aps", aps, 1)
    return ((a << 31) | (y << 22) | (x << 12) | (p << 11)).astype(np.uint32)


def encode_aedat2(address, timestamp, header_lines=DEFAULT_HEADER, newline: str = "\r\n") -> bytes:
    """AEDAT 2.0 bytes: ``header_lines`` (each must start with ``#``), then big-endian ``(address, t)`` records.

    ``address`` and ``timestamp`` are equally long 1-D integer array-likes in ``0 .. 2**32 - 1``. Time
    order is not enforced (tests write backwards steps on purpose). Refuses a stream whose first record
    would itself read back as a header line (a first address byte of ``#``).
    """
    addr = _fields("address", address, 32)
    t = _fields("timestamp", timestamp, 32)
    if addr.ndim != 1 or addr.shape != t.shape:
        raise ValueError(f"address and timestamp must be 1-D of one length, got {addr.shape} and {t.shape}")
    for line in header_lines:
        if not line.startswith("#") or "\n" in line or "\r" in line:
            raise ValueError(f"header line {line!r} must start with '#' and hold no line break")
    head = "".join(line + newline for line in header_lines).encode()
    rec = np.empty(addr.size, dtype=_RECORD)
    rec["address"], rec["t"] = addr, t
    raw = head + rec.tobytes()
    if _header_end(raw)[1] != len(head):
        raise ValueError("the first record's bytes would be read back as a header line")
    return raw


def write_aedat2(path: str | os.PathLike, address, timestamp, header_lines=DEFAULT_HEADER) -> Path:
    """Write :func:`encode_aedat2` bytes to ``path`` atomically."""
    return atomic_write_bytes(path, encode_aedat2(address, timestamp, header_lines))
