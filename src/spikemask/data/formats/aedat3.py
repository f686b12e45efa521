"""Reader and writer of AEDAT 3.1 (DVS128 Gesture), and the Gesture set's labels and trial lists.

Layout (formats.md section 1.2): ASCII header lines ending ``\\r\\n``, the first ``#!AER-DAT3.1``, the
last exactly ``#!END-HEADER\\r\\n``; then packets, each a 28-byte little-endian header
``int16 eventType, int16 eventSource, int32 eventSize, int32 eventTSOffset, int32 eventTSOverflow,
int32 eventCapacity, int32 eventNumber, int32 eventValid`` followed by ``eventCapacity * eventSize``
bytes. Polarity packets (eventType 1, eventSize 8) hold ``uint32 data, int32 timestamp`` events; in
``data`` bit 0 = valid, bit 1 = polarity, bits 2-16 = y, bits 17-31 = x; the full timestamp is
``timestamp | eventTSOverflow << 31``. Coordinates are returned as stored, as SpikingJelly does.

Invalid events (valid bit 0) are dropped, as the format defines. SpikingJelly's ``load_aedat_v3``
ignores the valid bit and keeps them; the two readers agree on files without invalid events, and
this reader logs a warning with the count when a file has any.
"""

from __future__ import annotations

import logging
import os
import struct
from pathlib import Path
from typing import Sequence

import numpy as np

from ...io import atomic_write_bytes
from ..events import EVENT_DTYPE, EventFileError, check_events, read_file

__all__ = [
    "GESTURE_SENSOR", "LABEL_DTYPE", "DEFAULT_HEADER", "read_aedat31", "read_gesture_labels", "read_trials",
    "cut_clips", "encode_packet", "encode_aedat31", "write_aedat31",
]

log = logging.getLogger(__name__)

GESTURE_SENSOR = (128, 128)  # (H, W)
POLARITY_TYPE = 1
POLARITY_SIZE = 8
PACKET_HEADER = struct.Struct("<hhiiiiii")  # 28 bytes
END_HEADER = b"#!END-HEADER\r\n"
DEFAULT_HEADER = ("#!AER-DAT3.1", "#Format: RAW", "#Source 1: DVS128", "#!END-HEADER")
LABEL_DTYPE = np.dtype([("label", "<i8"), ("start_us", "<i8"), ("end_us", "<i8")])
LABELS_HEADER = ["class", "startTime_usec", "endTime_usec"]
_POLARITY = np.dtype([("data", "<u4"), ("ts", "<i4")])


def _header_end(raw: bytes, path) -> int:
    """Byte offset of the first packet (just after ``#!END-HEADER\\r\\n``)."""
    nl = raw.find(b"\n")
    first = raw[: nl if nl >= 0 else 64].strip()
    if not first.startswith(b"#!AER-DAT"):
        raise EventFileError(f"{path}: not an AEDAT file (it does not start with '#!AER-DAT3.1')")
    if first != b"#!AER-DAT3.1":
        version = first[len(b"#!AER-DAT"):].decode(errors="replace")
        raise EventFileError(f"{path}: AEDAT version {version!r}, expected 3.1 ('#!AER-DAT3.1')")
    pos = 0
    while True:
        nl = raw.find(b"\n", pos)
        if nl < 0 or raw[pos:pos + 1] != b"#":
            raise EventFileError(
                f"{path}: no '#!END-HEADER' line (the header stops at byte {pos} without one; "
                "an AEDAT 3.1 header must end with '#!END-HEADER\\r\\n')"
            )
        if raw[pos:nl + 1] == END_HEADER:
            return nl + 1
        pos = nl + 1


def _packets(raw: bytes, pos: int, path) -> tuple[list[int], list[int], list[int], int]:
    """Walk the packet headers from ``pos``: (body offsets, capacities, overflows) of polarity packets, total packets.

    One Python step per packet (a recording has a few thousand), none per event.
    """
    starts: list[int] = []
    counts: list[int] = []
    overflows: list[int] = []
    n, k = len(raw), 0
    while pos < n:
        if n - pos < PACKET_HEADER.size:
            raise EventFileError(
                f"{path}: truncated packet header at byte offset {pos} (packet {k}): "
                f"{n - pos} of {PACKET_HEADER.size} bytes"
            )
        etype, _source, size, ts_offset, overflow, capacity, _number, _valid = PACKET_HEADER.unpack_from(raw, pos)
        if size < 0 or capacity < 0 or overflow < 0:
            raise EventFileError(
                f"{path}: packet {k} at byte offset {pos} has a negative field "
                f"(eventSize {size}, eventCapacity {capacity}, eventTSOverflow {overflow})"
            )
        body = pos + PACKET_HEADER.size
        end = body + capacity * size
        if end > n:
            raise EventFileError(
                f"{path}: truncated packet {k} at byte offset {pos}: it declares {capacity} events of {size} "
                f"bytes ({capacity * size} bytes), the file holds {n - body} more"
            )
        if etype == POLARITY_TYPE:
            if size != POLARITY_SIZE or ts_offset != 4:
                raise EventFileError(
                    f"{path}: polarity packet {k} at byte offset {pos} has eventSize {size}, eventTSOffset "
                    f"{ts_offset} (expected {POLARITY_SIZE} and 4)"
                )
            starts.append(body)
            counts.append(capacity)
            overflows.append(overflow)
        pos, k = end, k + 1
    return starts, counts, overflows, k


def read_aedat31(path: str | os.PathLike, sensor_size: tuple[int, int] = GESTURE_SENSOR) -> np.ndarray:
    """Read the valid polarity events of one AEDAT 3.1 file into a validated ``EVENT_DTYPE [N]`` array.

    ``sensor_size`` is ``(H, W)`` (DVS128 Gesture: ``(128, 128)``). Packets of other types are skipped
    by their declared size. Raises :class:`EventFileError` naming the file and the byte offset for a
    wrong or unterminated header, a truncated packet, a polarity packet with the wrong eventSize, a
    negative timestamp, coordinates outside the sensor, timestamps that go backwards, or no valid
    polarity events; ``FileNotFoundError`` if the file is missing.
    """
    path, raw = read_file(path)
    starts, counts, overflows, n_packets = _packets(raw, _header_end(raw, path), path)
    buf = np.frombuffer(raw, dtype=np.uint8)
    # one gather of every polarity payload (a memcpy per packet), then whole-stream arithmetic
    body = np.concatenate([buf[s:s + POLARITY_SIZE * c] for s, c in zip(starts, counts)]) if starts else buf[:0]
    rec = body.view(_POLARITY)  # [M] (data, ts)
    count = np.asarray(counts, dtype=np.int64)
    first = np.cumsum(count) - count  # index of each packet's first event in rec

    def where(j: int) -> str:
        pk = int(np.searchsorted(first, j, side="right")) - 1
        at = starts[pk] + POLARITY_SIZE * (j - int(first[pk]))
        return f"byte offset {at} (in the packet at byte offset {starts[pk] - PACKET_HEADER.size})"

    data, ts = rec["data"], rec["ts"]
    kept = None  # index into rec of each event kept; None while that is all of them (the usual case)
    valid = (data & 1).astype(bool)
    if not valid.all():
        kept = np.flatnonzero(valid)
        log.warning("%s: dropped %d invalid polarity events (SpikingJelly's load_aedat_v3 keeps them)",
                    path, rec.size - kept.size)
        data, ts = data[kept], ts[kept]
    if data.size == 0:
        raise EventFileError(
            f"{path}: no valid polarity events ({n_packets} packets, {len(starts)} of type {POLARITY_TYPE}, "
            f"{rec.size} polarity events before the valid-bit filter)"
        )

    def orig(i) -> int:
        return int(i) if kept is None else int(kept[i])

    if ts.min() < 0:  # timestamps are 31-bit: bit 31 of the time lives in eventTSOverflow
        i = int(np.argmax(ts < 0))
        raise EventFileError(f"{path}: negative timestamp {ts[i]} at {where(orig(i))}")
    events = np.empty(data.size, dtype=EVENT_DTYPE)
    events["t"] = ts
    if any(overflows):  # only recordings longer than 2**31 us (35.8 min) get here
        overflow = np.repeat(np.asarray(overflows, dtype=np.int64) << 31, count)
        events["t"] |= overflow if kept is None else overflow[kept]
    events["x"] = data >> 17
    events["y"] = (data >> 2) & 0x7FFF
    events["p"] = (data >> 1) & 1
    try:
        return check_events(events, sensor_size, path)
    except EventFileError as err:
        h, w = sensor_size
        bad = np.flatnonzero((events["x"] >= w) | (events["y"] >= h))
        if not bad.size:
            bad = np.flatnonzero(np.diff(events["t"]) < 0) + 1
        if not bad.size:
            raise
        raise EventFileError(f"{err}, at {where(orig(bad[0]))}") from None


def read_gesture_labels(path: str | os.PathLike) -> np.ndarray:
    """Read a ``userXX_<light>_labels.csv`` into a ``LABEL_DTYPE [rows]`` array, labels 0..10.

    The csv's header is ``class,startTime_usec,endTime_usec`` and its classes are 1..11 (formats.md
    1.2); the label returned is ``class - 1``, as SpikingJelly's. Blank lines are skipped. A row that
    is not three integers, a class outside 1..11, ``start < 0`` or ``end <= start``, a wrong header, no
    rows, or an unreadable file raise :class:`EventFileError` naming the file (and line);
    ``FileNotFoundError`` if the file is missing.
    """
    path, text = read_file(path, "labels file", encoding="utf-8-sig")
    rows: list[tuple[int, int, int]] = []
    header_seen = False
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        cells = [c.strip() for c in line.split(",")]
        if not header_seen:
            if cells != LABELS_HEADER:
                raise EventFileError(f"{path}, line {lineno}: expected the header {','.join(LABELS_HEADER)!r}, "
                                     f"got {line.strip()!r}")
            header_seen = True
            continue
        try:
            cls, start, end = (int(c) for c in cells)
        except ValueError:
            raise EventFileError(f"{path}, line {lineno}: expected three integers "
                                 f"class,startTime_usec,endTime_usec, got {line.strip()!r}") from None
        if not 1 <= cls <= 11 or start < 0 or end <= start:
            raise EventFileError(f"{path}, line {lineno}: need class 1..11 and 0 <= start < end, "
                                 f"got class {cls}, start {start}, end {end}")
        rows.append((cls - 1, start, end))
    if not rows:
        raise EventFileError(f"{path}: no label rows" + ("" if header_seen else " (and no header)"))
    return np.array(rows, dtype=LABEL_DTYPE)


def read_trials(path: str | os.PathLike) -> list[str]:
    """Read ``trials_to_train.txt`` / ``trials_to_test.txt``: the ``.aedat`` names, one per line, blank lines skipped.

    A line that does not name an ``.aedat`` file raises :class:`EventFileError` naming the file and line.
    """
    path, text = read_file(path, "trials file", encoding="utf-8")
    names = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        name = line.strip()
        if not name:
            continue
        if not name.endswith(".aedat") or "/" in name or "\\" in name:
            raise EventFileError(f"{path}, line {lineno}: expected a bare '.aedat' file name, got {name!r}")
        names.append(name)
    return names


def cut_clips(events: np.ndarray, labels: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """One ``(label, events[start <= t < end])`` per ``labels`` row, in row order (SpikingJelly's slicing).

    ``events`` is a time-sorted ``EVENT_DTYPE [N]`` stream, ``labels`` a ``LABEL_DTYPE`` array. Rows are
    sliced independently, so overlapping rows (``user22_led``) share events, as in SpikingJelly. Clips
    are views into ``events`` (no copy); a row may give an empty clip.
    """
    t = events["t"]
    if t.size > 1 and (t[1:] < t[:-1]).any():
        raise ValueError("cut_clips needs time-sorted events (binary search on t)")
    lo = np.searchsorted(t, labels["start_us"], side="left")
    hi = np.searchsorted(t, labels["end_us"], side="left")
    return [(int(label), events[a:b]) for label, a, b in zip(labels["label"], lo, hi)]


def encode_packet(event_type: int, event_size: int, body: bytes = b"", *, ts_overflow: int = 0, source: int = 1,
                  ts_offset: int = 4, capacity: int | None = None, number: int | None = None,
                  valid: int | None = None) -> bytes:
    """One packet: the 28-byte header then ``body``; ``capacity`` defaults to ``len(body) // event_size``."""
    if capacity is None:
        capacity = len(body) // event_size if event_size else 0
    number = capacity if number is None else number
    valid = number if valid is None else valid
    return PACKET_HEADER.pack(event_type, source, event_size, ts_offset, ts_overflow, capacity, number, valid) + body


def encode_aedat31(events: np.ndarray, packet_capacity: int = 4096, extra_packets: Sequence[tuple[int, bytes]] = (),
                   invalid: np.ndarray | None = None, header_lines: Sequence[str] = DEFAULT_HEADER) -> bytes:
    """AEDAT 3.1 bytes holding ``events`` (``EVENT_DTYPE [N]``) as polarity packets of at most ``packet_capacity``.

    A packet also ends where ``t >> 31`` changes (one eventTSOverflow per packet). ``invalid`` (bool
    ``[N]``) writes those events with the valid bit clear; ``extra_packets`` = ``(i, packet_bytes)``
    inserts raw packets (see :func:`encode_packet`) before polarity packet ``i`` (``i`` past the last:
    at the end). Time order is not enforced; values the fields cannot hold raise ``ValueError``.
    """
    if not isinstance(events, np.ndarray) or events.dtype != EVENT_DTYPE or events.ndim != 1:
        raise ValueError(f"expected a 1-D array of EVENT_DTYPE, got {getattr(events, 'dtype', type(events))}")
    if packet_capacity < 1:
        raise ValueError(f"packet_capacity must be >= 1, got {packet_capacity}")
    t = events["t"]
    for bad, why in ((events["x"] >= 1 << 15, "x >= 2**15"), (events["y"] >= 1 << 15, "y >= 2**15"),
                     (events["p"] > 1, "p > 1"), (t < 0, "t < 0")):
        if bad.any():
            raise ValueError(f"cannot write event {int(np.flatnonzero(bad)[0])}: {why}")
    ok = np.ones(events.size, bool) if invalid is None else ~np.asarray(invalid, dtype=bool)
    rec = np.empty(events.size, dtype=_POLARITY)
    rec["data"] = ((events["x"].astype(np.uint32) << 17) | (events["y"].astype(np.uint32) << 2)
                   | (events["p"].astype(np.uint32) << 1) | ok)
    rec["ts"] = t & 0x7FFFFFFF
    overflow = t >> 31
    cuts = set(range(0, events.size, packet_capacity)) | set((np.flatnonzero(np.diff(overflow)) + 1).tolist())
    bounds = sorted(cuts) + [events.size]
    polarity = [encode_packet(POLARITY_TYPE, POLARITY_SIZE, rec[a:b].tobytes(), ts_overflow=int(overflow[a]),
                              valid=int(ok[a:b].sum())) for a, b in zip(bounds[:-1], bounds[1:])]
    packets = []
    for j in range(len(polarity) + 1):
        last = j == len(polarity)
        packets += [packet for i, packet in extra_packets if i == j or (last and i > j)]
        packets += polarity[j:j + 1]
    head = "".join(line + "\r\n" for line in header_lines).encode()
    return head + b"".join(packets)


def write_aedat31(path: str | os.PathLike, events: np.ndarray, **kw) -> Path:
    """Write :func:`encode_aedat31` bytes to ``path`` atomically (keywords as there)."""
    return atomic_write_bytes(path, encode_aedat31(events, **kw))
