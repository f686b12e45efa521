"""AEDAT 2.0 (CIFAR10-DVS, DAVIS346) and AEDAT 3.1 (DVS128 Gesture) readers, labels and clips.

Every file here is built in the test: by hand with ``struct`` and bit arithmetic written out below
(independent of the writers under test), and through the writers (round trips). Where SpikingJelly's
source is installed, its own decoding functions are extracted with ``ast`` (``import
spikingjelly.datasets`` needs torchvision, absent here) and must give identical events on random files.
"""

from __future__ import annotations

import ast
import importlib.util
import io
import logging
import struct
from pathlib import Path
from types import SimpleNamespace
from typing import Optional, Union

import numpy as np
import pytest

from spikemask.data import EVENT_DTYPE, EventFileError, make_events
from spikemask.data.formats.aedat2 import (
    davis346_address,
    dvs128_address,
    read_cifar10dvs,
    read_davis346,
    split_aedat2,
    write_aedat2,
)
from spikemask.data.formats.aedat3 import (
    LABEL_DTYPE,
    cut_clips,
    encode_aedat31,
    encode_packet,
    read_aedat31,
    read_gesture_labels,
    read_trials,
    write_aedat31,
)

HEADER2 = [b"#!AER-DAT2.0", b"# This is a raw AE data file - do not edit", b"# Timestamps tick is 1 us"]
HEADER3 = [b"#!AER-DAT3.1", b"#Format: RAW", b"#Source 1: DVS128", b"#!END-HEADER"]


# ---- formats written out by hand (formats.md 1.1, 1.2, 1.6) -------------------------------------------------

def aedat2_bytes(records, header=HEADER2, eol=b"\r\n") -> bytes:
    """Header lines, then big-endian (uint32 address, uint32 timestamp) records."""
    return b"".join(h + eol for h in header) + b"".join(struct.pack(">II", a, t) for a, t in records)


def dvs128_addr(x_field, y_field, p_raw) -> int:
    return (y_field << 8) | (x_field << 1) | p_raw  # bit 0 polarity, bits 1-7 x, bits 8-14 y


def davis_addr(x_field, y_field, p_raw, aps=0) -> int:
    return (aps << 31) | (y_field << 22) | (x_field << 12) | (p_raw << 11)


def pol_event(x, y, p, ts, valid=1) -> bytes:
    return struct.pack("<Ii", (x << 17) | (y << 2) | (p << 1) | valid, ts)


def packet(etype, size, body, overflow=0, capacity=None, number=None, valid=None, tsoff=4) -> bytes:
    capacity = len(body) // size if capacity is None else capacity
    number = capacity if number is None else number
    valid = number if valid is None else valid
    return struct.pack("<hhiiiiii", etype, 1, size, tsoff, overflow, capacity, number, valid) + body


def aedat3_bytes(packets, header=HEADER3) -> bytes:
    return b"".join(h + b"\r\n" for h in header) + b"".join(packets)


def rows(ev) -> list[tuple[int, int, int, int]]:
    return [tuple(int(v) for v in e) for e in ev[["t", "x", "y", "p"]]]


def random_events(rng, n, sensor=(128, 128), t_max=10**7) -> np.ndarray:
    h, w = sensor
    return make_events(np.sort(rng.integers(0, t_max, n)), rng.integers(0, w, n), rng.integers(0, h, n),
                       rng.integers(0, 2, n))


# ---- CIFAR10-DVS -----------------------------------------------------------------------------------------------

# (t, x_field, y_field, p_raw): edge values, equal timestamps, the largest uint32 timestamp
CIFAR_RAW = [(0, 0, 0, 0), (5, 127, 0, 1), (5, 0, 127, 1), (90, 3, 100, 0), (2**32 - 1, 127, 127, 1)]


def test_cifar10dvs_hand_built_file_in_spikingjelly_orientation(tmp_path):
    path = tmp_path / "cifar10_airplane_0.aedat"
    path.write_bytes(aedat2_bytes([(dvs128_addr(xf, yf, p), t) for t, xf, yf, p in CIFAR_RAW]))
    ev = read_cifar10dvs(path)
    assert ev.dtype == EVENT_DTYPE
    # SpikingJelly: x = 127 - y_field, y = 127 - x_field, p = 1 - p_raw
    assert rows(ev) == [(t, 127 - yf, 127 - xf, 1 - p) for t, xf, yf, p in CIFAR_RAW]


def test_cifar10dvs_ignores_address_bits_above_14_and_accepts_lf_headers(tmp_path):
    path = tmp_path / "lf.aedat"
    path.write_bytes(aedat2_bytes([(0xABCD0000 | dvs128_addr(1, 2, 1), 7)], eol=b"\n"))
    assert rows(read_cifar10dvs(path)) == [(7, 125, 126, 0)]
    lines, payload = split_aedat2(path.read_bytes(), path)
    assert lines == [h.decode() for h in HEADER2] and payload.dtype == np.uint8 and payload.size == 8


def test_cifar10dvs_writer_bytes_and_round_trip(tmp_path):
    recs = [(dvs128_addr(xf, yf, p), t) for t, xf, yf, p in CIFAR_RAW]
    path = write_aedat2(tmp_path / "w.aedat", [a for a, _ in recs], [t for _, t in recs],
                        header_lines=[h.decode() for h in HEADER2])
    assert path.read_bytes() == aedat2_bytes(recs)
    ev = random_events(np.random.default_rng(1), 3000)
    # the inverse of SpikingJelly's orientation gives the raw fields
    write_aedat2(tmp_path / "r.aedat", dvs128_address(127 - ev["y"], 127 - ev["x"], 1 - ev["p"]), ev["t"])
    assert np.array_equal(read_cifar10dvs(tmp_path / "r.aedat"), ev)


def test_cifar10dvs_backwards_timestamp_is_reported_with_its_record(tmp_path):
    path = tmp_path / "back.aedat"
    raw = aedat2_bytes([(dvs128_addr(1, 1, 1), 10), (dvs128_addr(1, 1, 1), 20), (dvs128_addr(2, 2, 0), 15)])
    path.write_bytes(raw)
    offset = len(raw) - 8
    with pytest.raises(EventFileError, match=rf"back\.aedat: timestamps go backwards at event 2 \(20 -> 15 us\)"
                                             rf".*byte offset {offset}"):
        read_cifar10dvs(path)


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        (aedat2_bytes([(1, 2), (3, 4)])[:-3], r"13 bytes after the \d+-byte header is not a whole number of 8-byte"),
        (aedat2_bytes([]), "no events after the header"),
        (aedat2_bytes([(1, 2)], header=[]), r"not an AEDAT 2\.0 file"),
        (aedat2_bytes([(1, 2)], header=[b"# no version line"]), r"not an AEDAT 2\.0 file"),
        (aedat2_bytes([(1, 2)], header=[b"#!AER-DAT3.1"]), r"AEDAT version '3\.1', expected 2\.0"),
        (b"\x89PNG\r\n\x1a\n" + bytes(64), r"not an AEDAT 2\.0 file"),
        (b"", r"not an AEDAT 2\.0 file"),
    ],
    ids=["truncated-mid-record", "empty-stream", "no-header", "no-version", "aedat3", "png", "empty-file"],
)
def test_cifar10dvs_bad_files(tmp_path, raw, match):
    path = tmp_path / "bad.aedat"
    path.write_bytes(raw)
    with pytest.raises(EventFileError, match=rf"bad\.aedat: {match}"):
        read_cifar10dvs(path)


def test_missing_files_are_named(tmp_path):
    for read in (read_cifar10dvs, read_davis346, read_aedat31, read_gesture_labels, read_trials):
        with pytest.raises(FileNotFoundError, match=r"nope\.x.*does not exist"):
            read(tmp_path / "nope.x")


# ---- DAVIS346 --------------------------------------------------------------------------------------------------

def test_davis346_hand_built_file_drops_aps_and_uses_tonic_orientation(tmp_path):
    raw_events = [(1, 0, 0, 0, 0), (2, 345, 259, 1, 0), (2, 17, 3, 0, 1), (3, 100, 200, 1, 0),
                  (9, 1023, 511, 1, 1), (10, 345, 0, 0, 0)]  # (t, x_field, y_field, p, aps)
    path = tmp_path / "walking.aedat"
    path.write_bytes(aedat2_bytes([(davis_addr(xf, yf, p, a), t) for t, xf, yf, p, a in raw_events]))
    ev = read_davis346(path)
    assert rows(ev) == [(t, 345 - xf, 259 - yf, p) for t, xf, yf, p, a in raw_events if not a]
    # the writer's address encoder gives the same bytes
    t, xf, yf, p, a = (np.array(c) for c in zip(*raw_events))
    write_aedat2(tmp_path / "w.aedat", davis346_address(xf, yf, p, a), t, [h.decode() for h in HEADER2])
    assert (tmp_path / "w.aedat").read_bytes() == path.read_bytes()


@pytest.mark.parametrize(
    ("records", "match"),
    [
        ([(davis_addr(3, 3, 1), 1), (davis_addr(346, 5, 0), 2)],
         r"record 1 at byte offset \d+ has x field 346, y field 5"),
        ([(davis_addr(3, 260, 1), 1)], r"record 0 at byte offset \d+ has x field 3, y field 260"),
        ([(davis_addr(0, 0, 0, 1), 1), (davis_addr(5, 5, 0, 1), 2)], r"no DVS events \(2 APS/IMU samples only\)"),
        ([(davis_addr(1, 1, 1), 5), (davis_addr(0, 0, 0, 1), 9), (davis_addr(1, 1, 1), 4)],
         r"timestamps go backwards at event 1 \(5 -> 4 us\), at record 2 \(byte offset"),
    ],
    ids=["x-outside", "y-outside", "aps-only", "backwards"],
)
def test_davis346_bad_files(tmp_path, records, match):
    path = tmp_path / "bad.aedat"
    path.write_bytes(aedat2_bytes(records))
    with pytest.raises(EventFileError, match=rf"bad\.aedat: {match}"):
        read_davis346(path)


def test_davis346_outside_sensor_offset_counts_from_file_start(tmp_path):
    raw = aedat2_bytes([(davis_addr(3, 3, 1), 1), (davis_addr(400, 3, 1), 2)])
    (tmp_path / "o.aedat").write_bytes(raw)
    with pytest.raises(EventFileError, match=rf"byte offset {len(raw) - 8} "):
        read_davis346(tmp_path / "o.aedat")


# ---- AEDAT 3.1 (DVS128 Gesture) --------------------------------------------------------------------------------

def test_aedat31_hand_built_file(tmp_path):
    packets = [
        packet(1, 8, pol_event(0, 0, 0, 10) + pol_event(127, 5, 1, 11) + pol_event(9, 9, 1, 11, valid=0)),
        packet(2, 12, bytes(36)),  # another event type (3 events of 12 bytes): skipped by its size
        packet(1, 8, pol_event(3, 127, 1, 2**31 - 1)),
        packet(1, 8, pol_event(4, 6, 0, 5) + bytes(8), overflow=1, number=1),  # a spare slot (zeros: invalid)
        packet(0, 8, b""),  # empty special-event packet
    ]
    path = tmp_path / "user01_fluorescent.aedat"
    path.write_bytes(aedat3_bytes(packets))
    ev = read_aedat31(path)
    assert ev.dtype == EVENT_DTYPE
    assert rows(ev) == [(10, 0, 0, 0), (11, 127, 5, 1), (2**31 - 1, 3, 127, 1), (2**31 + 5, 4, 6, 0)]


def test_aedat31_writer_bytes_and_round_trip(tmp_path, caplog):
    ev = make_events([10, 11, 2**31 + 5], [0, 127, 4], [0, 5, 6], [0, 1, 0])
    hand = aedat3_bytes([packet(1, 8, pol_event(0, 0, 0, 10) + pol_event(127, 5, 1, 11)),
                         packet(1, 8, pol_event(4, 6, 0, 5), overflow=1)])
    assert encode_aedat31(ev, packet_capacity=2) == hand  # (the overflow change also ends a packet)
    rng = np.random.default_rng(2)
    ev = random_events(rng, 5000, t_max=2**33)
    invalid = rng.random(ev.size) < 0.1
    extra = [(0, encode_packet(2, 12, bytes(24))), (3, encode_packet(0, 8, bytes(16))), (99, encode_packet(5, 4))]
    path = write_aedat31(tmp_path / "r.aedat", ev, packet_capacity=300, extra_packets=extra, invalid=invalid)
    with caplog.at_level(logging.WARNING, logger="spikemask.data.formats.aedat3"):
        back = read_aedat31(path)
    assert np.array_equal(back, ev[~invalid])
    assert f"dropped {int(invalid.sum())} invalid polarity events" in caplog.text


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        (aedat3_bytes([packet(1, 8, pol_event(1, 1, 1, 1))], header=HEADER3[:-1]), r"no '#!END-HEADER' line"),
        (aedat3_bytes([packet(1, 8, pol_event(1, 1, 1, 1))]).replace(b"#!END-HEADER\r\n", b"#!END-HEADER\n"),
         r"no '#!END-HEADER' line"),
        (b"hello, world\n" * 4, r"not an AEDAT file"),
        (aedat2_bytes([(1, 2)]), r"AEDAT version '2\.0', expected 3\.1"),
        (aedat3_bytes([packet(1, 8, pol_event(1, 1, 1, 1))])[:-30], r"truncated packet header at byte offset \d+ "
                                                                     r"\(packet 0\): 6 of 28 bytes"),
        (aedat3_bytes([packet(1, 8, pol_event(1, 1, 1, 1) * 3)])[:-4], r"truncated packet 0 at byte offset \d+: "
                                                                         r"it declares 3 events of 8 bytes"),
        (aedat3_bytes([packet(1, 12, bytes(12))]), r"polarity packet 0 at byte offset \d+ has eventSize 12"),
        (aedat3_bytes([]), r"no valid polarity events \(0 packets"),
        (aedat3_bytes([packet(2, 12, bytes(12))]), r"no valid polarity events \(1 packets, 0 of type 1"),
        (aedat3_bytes([packet(1, 8, pol_event(1, 1, 1, 1, valid=0))]), r"no valid polarity events"),
        (aedat3_bytes([packet(1, 8, pol_event(1, 1, 1, -5))]), r"negative timestamp -5 at byte offset"),
    ],
    ids=["no-end-header", "end-header-lf", "text-file", "aedat2", "truncated-mid-header", "truncated-mid-packet",
         "wrong-event-size", "empty-stream", "only-other-packets", "only-invalid", "negative-t"],
)
def test_aedat31_bad_files(tmp_path, raw, match):
    path = tmp_path / "bad.aedat"
    path.write_bytes(raw)
    with pytest.raises(EventFileError, match=rf"bad\.aedat: {match}"):
        read_aedat31(path)


def test_aedat31_outside_sensor_and_backwards_name_the_byte_offset(tmp_path):
    head = aedat3_bytes([])
    first = packet(1, 8, pol_event(1, 1, 1, 1) + pol_event(1, 1, 0, 2, valid=0))
    second = packet(1, 8, pol_event(2, 2, 1, 3) + pol_event(130, 2, 1, 4))
    path = tmp_path / "wide.aedat"
    path.write_bytes(head + first + second)
    second_at = len(head) + len(first)
    bad_at = second_at + 28 + 8  # the second event of the second packet (event 2 once the invalid one is dropped)
    with pytest.raises(EventFileError, match=rf"wide\.aedat: event 2 at x=130, y=2 outside the 128x128.*"
                                             rf"byte offset {bad_at} \(in the packet at byte offset {second_at}\)"):
        read_aedat31(path)
    assert read_aedat31(path, sensor_size=(260, 346)).size == 3
    second = packet(1, 8, pol_event(2, 2, 1, 3) + pol_event(3, 2, 1, 0))
    path.write_bytes(head + first + second)
    with pytest.raises(EventFileError, match=rf"backwards at event 2 \(3 -> 0 us\), at byte offset {bad_at}"):
        read_aedat31(path)


# ---- labels, trials, clips -------------------------------------------------------------------------------------

LABELS_CSV = "class,startTime_usec,endTime_usec\r\n1,100,200\r\n11,150,400\r\n8,400,401\r\n\r\n"


def test_gesture_labels(tmp_path):
    path = tmp_path / "user01_fluorescent_labels.csv"
    path.write_text(LABELS_CSV)
    lab = read_gesture_labels(path)
    assert lab.dtype == LABEL_DTYPE
    assert lab.tolist() == [(0, 100, 200), (10, 150, 400), (7, 400, 401)]


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("class,startTime_usec,endTime_usec\n1,100,200\n2,3\n", r"line 3: expected three integers"),
        ("class,startTime_usec,endTime_usec\n1,100,2x0\n", r"line 2: expected three integers"),
        ("class,startTime_usec,endTime_usec\n12,100,200\n", r"line 2: need class 1\.\.11.*class 12"),
        ("class,startTime_usec,endTime_usec\n0,100,200\n", r"line 2: need class 1\.\.11"),
        ("class,startTime_usec,endTime_usec\n3,200,200\n", r"line 2: need .*start < end"),
        ("label,start,end\n1,100,200\n", r"line 1: expected the header"),
        ("1,100,200\n", r"line 1: expected the header"),
        ("class,startTime_usec,endTime_usec\n", r"no label rows"),
        (b"\xff\xfe\x00binary", r"cannot read the labels file"),
    ],
    ids=["short-row", "not-int", "class-12", "class-0", "empty-range", "bad-header", "no-header", "no-rows", "binary"],
)
def test_gesture_labels_bad_rows(tmp_path, text, match):
    path = tmp_path / "bad_labels.csv"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(EventFileError, match=rf"bad_labels\.csv,? {match}" if "line" in match
                       else rf"bad_labels\.csv: {match}"):
        read_gesture_labels(path)


def test_trials(tmp_path):
    path = tmp_path / "trials_to_train.txt"
    path.write_text("user01_fluorescent.aedat\r\n\r\nuser01_led.aedat\n  \n")
    assert read_trials(path) == ["user01_fluorescent.aedat", "user01_led.aedat"]
    path.write_text("user01_fluorescent.aedat\nuser01_led.csv\n")
    with pytest.raises(EventFileError, match=r"trials_to_train\.txt, line 2: expected a bare '\.aedat'"):
        read_trials(path)


def test_cut_clips_slices_each_row_half_open_like_spikingjelly():
    ev = make_events([100, 150, 199, 200, 300, 399, 400, 401], np.arange(8), np.zeros(8), np.ones(8))
    labels = np.array([(0, 100, 200), (10, 150, 400), (7, 400, 401), (3, 900, 1000)], dtype=LABEL_DTYPE)
    clips = cut_clips(ev, labels)
    assert [label for label, _ in clips] == [0, 10, 7, 3]
    assert [c["t"].tolist() for _, c in clips] == [[100, 150, 199], [150, 199, 200, 300, 399], [400], []]
    with pytest.raises(ValueError, match="time-sorted"):
        cut_clips(ev[::-1], labels)


# ---- cross-checks against SpikingJelly's own decoding (extracted from source with ast) -------------------------

def sj_functions(module: str, names: tuple[str, ...], **extra) -> dict:
    """Top-level functions ``names`` of ``spikingjelly/datasets/<module>.py`` plus its simple constants.

    Executed unmodified in a namespace with numpy, struct, the typing names and a logger stub; skips
    the test when SpikingJelly's source is not there.
    """
    spec = importlib.util.find_spec("spikingjelly")
    src = Path(list(spec.submodule_search_locations)[0]) / "datasets" / f"{module}.py" if spec else None
    if src is None or not src.is_file():
        pytest.skip("SpikingJelly source not installed")
    tree = ast.parse(src.read_text(), filename=str(src))
    body = [n for n in tree.body if (isinstance(n, ast.FunctionDef) and n.name in names) or
            (isinstance(n, ast.Assign) and all(isinstance(t, ast.Name) for t in n.targets)
             and isinstance(n.value, ast.Constant))]
    missing = set(names) - {n.name for n in body if isinstance(n, ast.FunctionDef)}
    if missing:
        pytest.skip(f"{src} has no {sorted(missing)}")
    ns = {"np": np, "struct": struct, "Union": Union, "Optional": Optional, "Path": Path,
          "logger": logging.getLogger("sj-stub"), **extra}
    exec(compile(ast.Module(body=body, type_ignores=[]), str(src), "exec"), ns)
    return ns


def sj_cifar():
    return sj_functions("cifar10_dvs", ("_read_bits", "_skip_header", "_load_raw_events", "_parse_raw_address",
                                        "_load_events", "_load_origin_data"))


def same(ours: np.ndarray, theirs: dict) -> bool:
    return ours.size == len(theirs["t"]) and all(
        np.array_equal(ours[k].astype(np.int64), np.asarray(theirs[k]).astype(np.int64)) for k in "txyp")


@pytest.mark.parametrize("seed", [0, 1])
def test_cifar10dvs_matches_spikingjelly(tmp_path, seed):
    sj = sj_cifar()
    rng = np.random.default_rng(seed)
    n = 4000
    addr = rng.integers(0, 2**32, n, dtype=np.uint64) & ~np.uint64(0xFF000000)  # never a '#' first byte
    header = [h.decode() for h in HEADER2] + ["#  created by a test"]
    path = write_aedat2(tmp_path / "c.aedat", addr, np.sort(rng.integers(0, 2**32, n)), header_lines=header)
    assert same(read_cifar10dvs(path), sj["_load_origin_data"](path))


@pytest.mark.parametrize(
    "head",
    [b"#!AER-DAT2.0\r\n#a\r\n", b"#!AER-DAT2.0\n#a\n\n#b\n", b"#!AER-DAT2.0\r\n  #x\r\n\x1f#y\n",
     b"#!AER-DAT2.0\r\n#\xff\xfe bad utf-8\r\n"],
    ids=["crlf", "blank-line-ends-header", "whitespace-before-hash", "non-utf8-line"],
)
def test_header_ends_where_spikingjellys_skip_header_says(head):
    sj = sj_cifar()
    raw = head + struct.pack(">II", 0x0102, 7) * 3
    end = sj["_skip_header"](io.BytesIO(raw))
    raw += bytes(-(len(raw) - end) % 8)  # whole records after SpikingJelly's header end
    _, payload = split_aedat2(raw)
    assert len(raw) - payload.size == end


def test_davis346_matches_spikingjelly_decoding_with_tonic_orientation(tmp_path):
    # SpikingJelly's generic AEDAT 2.0 decoder uses the DAVIS layout by default; filter_dvs drops bit-31 records
    sj = sj_cifar()
    rng = np.random.default_rng(3)
    n = 4000
    aps = rng.random(n) < 0.3
    addr = davis346_address(rng.integers(0, 346, n), rng.integers(0, 260, n), rng.integers(0, 2, n), aps)
    addr = addr | (rng.integers(0, 2**11, n) * ~aps).astype(np.uint32)  # noise in the ignored low bits
    addr[aps] |= rng.integers(0, 2**31, int(aps.sum())).astype(np.uint32)  # APS/IMU payloads are arbitrary
    addr[0] = davis346_address(1, 1, 1)  # the first record must not start with a '#' byte
    path = write_aedat2(tmp_path / "d.aedat", addr, np.sort(rng.integers(0, 2**32, n)))
    with open(path, "rb") as fp:
        t, x, y, p = sj["_load_events"](fp, filter_dvs=True)
    theirs = {"t": t, "x": 345 - x.astype(np.int64), "y": 259 - y.astype(np.int64), "p": p}
    assert same(read_davis346(path), theirs)


def test_aedat31_matches_spikingjelly_load_aedat_v3(tmp_path):
    sj = sj_functions("utils", ("load_aedat_v3",))
    rng = np.random.default_rng(4)
    ev = random_events(rng, 20_000, t_max=2**32 + 10**6)  # crosses an eventTSOverflow step
    extra = [(1, encode_packet(2, 12, bytes(range(12)) * 3)), (4, encode_packet(0, 8, bytes(8)))]
    path = write_aedat31(tmp_path / "g.aedat", ev, packet_capacity=1024, extra_packets=extra)
    assert same(read_aedat31(path), sj["load_aedat_v3"](path))
    # SpikingJelly ignores the valid bit: with invalid events, ours equals its output restricted to valid ones
    invalid = rng.random(ev.size) < 0.05
    write_aedat31(path, ev, packet_capacity=1024, invalid=invalid)
    theirs = sj["load_aedat_v3"](path)
    assert len(theirs["t"]) == ev.size
    assert same(read_aedat31(path), {k: v[~invalid] for k, v in theirs.items()})


def test_labels_and_clips_match_spikingjelly_split(tmp_path):
    load = sj_functions("utils", ("load_aedat_v3",))["load_aedat_v3"]
    saved = []
    fake_utils = SimpleNamespace(load_aedat_v3=load, np_savez=lambda f, **a: saved.append((Path(f), a)))
    split = sj_functions("dvs128_gesture", ("_split_aedat_files_to_np",), utils=fake_utils)["_split_aedat_files_to_np"]
    rng = np.random.default_rng(5)
    ev = random_events(rng, 6000, t_max=10**6)
    write_aedat31(tmp_path / "user22_led.aedat", ev, packet_capacity=500)
    csv = tmp_path / "user22_led_labels.csv"
    # overlapping rows (as in the real user22_led) and a class that appears twice
    csv.write_text("class,startTime_usec,endTime_usec\n1,1000,300000\n9,250000,500000\n10,450000,700000\n"
                   "9,700000,999999\n11,0,5\n")
    split("user22_led", tmp_path / "user22_led.aedat", csv, tmp_path / "out")
    ours = cut_clips(read_aedat31(tmp_path / "user22_led.aedat"), read_gesture_labels(csv))
    assert [int(f.parent.name) for f, _ in saved] == [label for label, _ in ours] == [0, 8, 9, 8, 10]
    assert all(same(clip, arrays) for (_, arrays), (_, clip) in zip(saved, ours))
