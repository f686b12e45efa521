"""Event streams: one structured dtype for every reader, and the checks every reader runs.

An event stream is a 1-D numpy array of :data:`EVENT_DTYPE` records, sorted by time:

* ``t``: ``int64`` timestamp in microseconds,
* ``x``, ``y``: ``uint16`` pixel column and row (``0 <= x < W``, ``0 <= y < H``),
* ``p``: ``uint8`` polarity, ``0`` = OFF (darker), ``1`` = ON (brighter).

The field layout matches tonic's (``t, x, y, p``) so streams are easy to compare with it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["EVENT_DTYPE", "EventFileError", "make_events", "check_events", "read_file", "one_line"]

EVENT_DTYPE = np.dtype([("t", "<i8"), ("x", "<u2"), ("y", "<u2"), ("p", "u1")])


class EventFileError(ValueError):
    """An event file (or stream read from one) is corrupt; the message names the file and the fault."""


def make_events(t, x, y, p) -> np.ndarray:
    """Pack four equally long 1-D array-likes into an ``EVENT_DTYPE`` array of shape ``[N]``.

    Values are cast to the field dtypes; out-of-range values are refused here rather than wrapped
    silently by the cast (a negative x would otherwise become 65535).
    """
    cols = {name: np.asarray(v) for name, v in zip("txyp", (t, x, y, p), strict=True)}
    lengths = {name: c.shape for name, c in cols.items()}
    if any(c.ndim != 1 for c in cols.values()) or len({c.size for c in cols.values()}) != 1:
        raise ValueError(f"make_events needs four 1-D arrays of one length, got shapes {lengths}")
    for name in "xyp":
        c = cols[name]
        if c.size and (c.min() < 0 or c.max() > np.iinfo(EVENT_DTYPE[name]).max):
            raise ValueError(f"make_events: {name} values must lie in 0..{np.iinfo(EVENT_DTYPE[name]).max}")
    events = np.empty(cols["t"].size, dtype=EVENT_DTYPE)
    for name, c in cols.items():
        events[name] = c
    return events


def _first_bad(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def check_events(
    events: np.ndarray, sensor_size: tuple[int, int] | None, path: str | os.PathLike | None = None
) -> np.ndarray:
    """Validate an event stream and return it unchanged; raise :class:`EventFileError` on the first fault.

    ``sensor_size`` is ``(H, W)``; ``None`` skips the coordinate bounds check (for readers of
    formats whose sensor is not known in advance). ``path`` is only used in messages.
    Checks: the dtype, at least one event, ``p`` in {0, 1}, coordinates inside the sensor,
    timestamps non-decreasing. Each message reports the first offending event index and values.
    """
    where = str(path) if path is not None else "<events>"
    if not isinstance(events, np.ndarray) or events.dtype != EVENT_DTYPE or events.ndim != 1:
        got = getattr(events, "dtype", type(events).__name__)
        raise EventFileError(f"{where}: expected a 1-D array of EVENT_DTYPE, got {got}")
    if events.size == 0:
        raise EventFileError(f"{where}: no events")
    bad = events["p"] > 1
    if bad.any():
        i = _first_bad(bad)
        raise EventFileError(f"{where}: event {i} has polarity p={events['p'][i]} (must be 0 or 1)")
    if sensor_size is not None:
        h, w = sensor_size
        bad = (events["x"] >= w) | (events["y"] >= h)
        if bad.any():
            i = _first_bad(bad)
            raise EventFileError(
                f"{where}: event {i} at x={events['x'][i]}, y={events['y'][i]} outside the {h}x{w} (HxW) sensor"
            )
    if events["t"][0] < 0:
        raise EventFileError(f"{where}: negative timestamp t={events['t'][0]} us")
    back = np.diff(events["t"]) < 0
    if back.any():
        i = _first_bad(back) + 1
        raise EventFileError(
            f"{where}: timestamps go backwards at event {i} ({events['t'][i - 1]} -> {events['t'][i]} us)"
        )
    return events


def one_line(err: BaseException) -> str:
    """``"<Type>: <message>"`` of a library's exception on one line, to quote inside our own messages."""
    text = " ".join(str(err).split())
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def read_file(
    path: str | os.PathLike,
    what: str = "event file",
    *,
    encoding: str | None = None,
    error: type[Exception] = EventFileError,
) -> tuple[Path, Any]:
    """``(path, contents)`` of a whole file: bytes, or text with ``encoding``.

    A missing file raises ``FileNotFoundError``; anything else that stops the read (a directory in place
    of the file, no read permission, an I/O error, undecodable text) raises ``error`` (default
    :class:`EventFileError`). Both messages are one line naming the file and ``what`` it was meant to be
    (``"labels file"``, ...).
    """
    path = Path(path)
    try:
        return path, path.read_bytes() if encoding is None else path.read_text(encoding=encoding)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: {what} does not exist") from None
    except IsADirectoryError:
        raise error(f"{path}: expected a {what}, found a directory") from None
    except PermissionError:
        raise error(f"{path}: cannot read the {what}: permission denied (check the file's mode and owner)") from None
    except (OSError, UnicodeDecodeError) as err:
        why = getattr(err, "strerror", None) or one_line(err)
        raise error(f"{path}: cannot read the {what}: {why}") from None
