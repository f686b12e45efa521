"""ATIS 40-bit .bin reader/writer against bytes built by hand here (struct + bit arithmetic)."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from spikemask.data import EVENT_DTYPE, EventFileError, make_events, read_atis_bin, write_atis_bin

# (t_us, x, y, p): edge values of every field, equal timestamps, both polarities
EVENTS = [
    (0, 0, 0, 0),
    (1, 33, 2, 1),
    (1, 255, 239, 0),
    (65_535, 7, 241, 1),
    (65_536, 12, 255, 1),
    (2**23 - 1, 3, 4, 0),
]


def hand_bytes(records) -> bytes:
    """N-MNIST record: x byte, y byte, then a 24-bit big-endian word = polarity << 23 | timestamp."""
    out = b""
    for t, x, y, p in records:
        out += struct.pack(">BB", x, y) + ((p << 23) | t).to_bytes(3, "big")
    return out


def as_events(records) -> np.ndarray:
    t, x, y, p = zip(*records, strict=True)
    return make_events(t, x, y, p)


def test_reader_decodes_hand_built_bytes(tmp_path):
    path = tmp_path / "hand.bin"
    path.write_bytes(hand_bytes(EVENTS))
    ev = read_atis_bin(path)
    assert ev.dtype == EVENT_DTYPE
    assert [tuple(int(v) for v in e) for e in ev[["t", "x", "y", "p"]]] == EVENTS


def test_writer_produces_the_hand_built_bytes_and_round_trips(tmp_path):
    path = tmp_path / "ours.bin"
    write_atis_bin(path, as_events(EVENTS))
    assert path.read_bytes() == hand_bytes(EVENTS)
    back = read_atis_bin(path, sensor_size=(256, 256))
    assert np.array_equal(back, as_events(EVENTS))


def test_round_trip_random_stream(tmp_path):
    rng = np.random.default_rng(0)
    n = 5000
    t = np.sort(rng.integers(0, 2**23, n))
    ev = make_events(t, rng.integers(0, 34, n), rng.integers(0, 34, n), rng.integers(0, 2, n))
    write_atis_bin(tmp_path / "r.bin", ev)
    assert (tmp_path / "r.bin").stat().st_size == 5 * n
    assert np.array_equal(read_atis_bin(tmp_path / "r.bin", sensor_size=(34, 34)), ev)


def test_overflow_marker_adds_2_pow_13_to_later_events_and_is_dropped(tmp_path):
    # the dataset authors' convention (Read_Ndataset.m, tonic): y == 240 marks a timestamp overflow
    records = [(100, 1, 1, 1), (200, 0, 240, 0), (50, 2, 2, 0), (60, 3, 3, 1), (7, 9, 240, 1), (70, 4, 4, 1)]
    path = tmp_path / "overflow.bin"
    path.write_bytes(hand_bytes(records))
    ev = read_atis_bin(path)
    assert ev["t"].tolist() == [100, 50 + 8192, 60 + 8192, 70 + 2 * 8192]
    assert ev["x"].tolist() == [1, 2, 3, 4] and 240 not in ev["y"]


def test_truncated_file_names_path_and_size(tmp_path):
    path = tmp_path / "0003.bin"
    path.write_bytes(hand_bytes(EVENTS + EVENTS)[:37])  # 7 whole records and 2 stray bytes
    with pytest.raises(EventFileError, match=r"0003\.bin: 37 bytes is not a whole number of 5-byte"):
        read_atis_bin(path)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.bin"
    path.write_bytes(b"")
    with pytest.raises(EventFileError, match=r"empty\.bin: no events"):
        read_atis_bin(path)


def test_coordinates_outside_the_sensor(tmp_path):
    path = tmp_path / "wide.bin"
    path.write_bytes(hand_bytes([(1, 3, 3, 1), (2, 40, 5, 0)]))
    with pytest.raises(EventFileError, match=r"wide\.bin: event 1 at x=40, y=5 outside the 32x32"):
        read_atis_bin(path, sensor_size=(32, 32))
    assert read_atis_bin(path).size == 2  # without a sensor size the file itself is fine


def test_timestamps_going_backwards(tmp_path):
    path = tmp_path / "back.bin"
    path.write_bytes(hand_bytes([(10, 1, 1, 1), (5, 1, 1, 1)]))
    with pytest.raises(EventFileError, match=r"back\.bin: timestamps go backwards at event 1"):
        read_atis_bin(path)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.bin"):
        read_atis_bin(tmp_path / "nope.bin")


@pytest.mark.parametrize(
    ("t", "x", "y", "p", "why"),
    [
        (0, 256, 0, 0, "x=256"),
        (0, 0, 300, 1, "y=300"),
        (0, 0, 240, 1, "overflow marker"),
        (2**23, 0, 0, 1, "23-bit"),
        (-1, 0, 0, 1, "negative"),
        (0, 0, 0, 2, "polarity"),
    ],
)
def test_writer_refuses_unrepresentable_events(tmp_path, t, x, y, p, why):
    path = tmp_path / "bad.bin"
    ev = make_events([0, 1, t], [0, 1, x], [0, 1, y], [0, 1, p])  # only event 2 is bad
    with pytest.raises(EventFileError, match=rf"bad\.bin: cannot write event 2 .*{why}"):
        write_atis_bin(path, ev)
    assert not path.exists() and list(tmp_path.iterdir()) == []  # nothing half-written is left behind


@pytest.mark.parametrize(
    ("events", "why"),
    [(make_events([], [], [], []), "no events"), (as_events([(9, 1, 1, 1), (8, 1, 1, 1)]), "backwards")],
)
def test_writer_refuses_what_the_reader_would_reject(tmp_path, events, why):
    with pytest.raises(EventFileError, match=why):
        write_atis_bin(tmp_path / "x.bin", events)
    assert list(tmp_path.iterdir()) == []
