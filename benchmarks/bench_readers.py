"""AEDAT readers: spikemask vs SpikingJelly on CIFAR10-DVS (AEDAT 2.0) and DVS128 Gesture (AEDAT 3.1) files.

* CIFAR10-DVS: :func:`spikemask.data.formats.aedat2.read_cifar10dvs` (header split, vectorised
  decode into SpikingJelly's orientation, validation: sensor bounds, polarity, sorted timestamps) vs
  SpikingJelly's ``cifar10_dvs._load_origin_data`` (``_skip_header`` + ``np.frombuffer`` + bit masks;
  vectorised too, no validation).
* DVS128 Gesture: :func:`spikemask.data.formats.aedat3.read_aedat31` (a Python step per packet
  header, then one gather and whole-stream arithmetic, validation) vs SpikingJelly's
  ``utils.load_aedat_v3`` (a Python step per *event*: two ``struct.unpack`` calls and four list appends).

Synthetic files of 1e4 .. 1e6 events (128 x 128, time-sorted over ten seconds), written by our
writers; AEDAT 3.1 in polarity packets of 2048 events (a few hundred packets per 1e6 events, as
cAER's packet limits give). Page cache warm for both. Events are compared before timing.

How SpikingJelly's functions are loaded: ``import spikingjelly.datasets`` fails here (it imports
torchvision), so the needed top-level functions and the module's constant assignments (the default
bit masks) are picked from the source files with ``ast`` and executed unmodified in a namespace
holding ``numpy``, ``struct``, the typing names they use and a logger.

Run: ``.venv/bin/python benchmarks/bench_readers.py [--quick] [--repeat N] [--threads N]``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np
from _common import fmt_ms, fmt_ratio, format_table, interleaved, load_sj, parse_bench_args, ratio_stats

SJ_CIFAR = ("_read_bits", "_skip_header", "_load_raw_events", "_parse_raw_address", "_load_events",
            "_load_origin_data")
PACKET_CAPACITY = 2048


def synthetic_events(n: int, seed: int = 0, duration_us: int = 10_000_000) -> np.ndarray:
    from spikemask.data import make_events

    rng = np.random.default_rng(seed)
    t = np.sort(rng.integers(0, duration_us, n))
    return make_events(t, rng.integers(0, 128, n), rng.integers(0, 128, n), rng.integers(0, 2, n))


def _same(ours: np.ndarray, theirs: dict[str, np.ndarray]) -> bool:
    return ours.size == len(theirs["t"]) and all(
        np.array_equal(ours[k].astype(np.int64), np.asarray(theirs[k]).astype(np.int64)) for k in "txyp")


def _bench(kind: str, sizes, repeat: int, write: Callable, ours: Callable, theirs: Callable) -> list[dict[str, Any]]:
    out = []
    with tempfile.TemporaryDirectory(prefix="spikemask-bench-") as tmp:
        for n in sizes:
            path = write(Path(tmp) / f"{kind}-{n}.aedat", synthetic_events(n))
            same = _same(ours(path), theirs(path))
            t = interleaved({"ours": lambda p=path: ours(p), "sj": lambda p=path: theirs(p)}, repeat=repeat, warmup=1)
            out.append({"format": kind, "events": n, "file_bytes": path.stat().st_size, "equal": same,
                        "rounds_s": {k: v.rounds for k, v in t.items()},
                        "median_s": {k: v.median for k, v in t.items()},
                        "ratio": ratio_stats(t["sj"], t["ours"])})
    return out


def bench_cifar(sizes, repeat: int) -> list[dict[str, Any]]:
    from spikemask.data.formats.aedat2 import dvs128_address, read_cifar10dvs, write_aedat2

    sj = load_sj("cifar10_dvs", SJ_CIFAR)

    def write(path, ev):  # the inverse of SpikingJelly's orientation gives the raw DVS128 fields
        return write_aedat2(path, dvs128_address(127 - ev["y"], 127 - ev["x"], 1 - ev["p"]), ev["t"])

    return _bench("cifar10dvs", sizes, repeat, write, read_cifar10dvs, sj["_load_origin_data"])


def bench_gesture(sizes, repeat: int) -> list[dict[str, Any]]:
    from spikemask.data.formats.aedat3 import read_aedat31, write_aedat31

    sj = load_sj("utils", ("load_aedat_v3",))

    def write(path, ev):
        return write_aedat31(path, ev, packet_capacity=PACKET_CAPACITY)

    return _bench("aedat31", sizes, repeat, write, read_aedat31, sj["load_aedat_v3"])


def tables(results: list[dict[str, Any]]) -> str:
    titles = {"cifar10dvs": "CIFAR10-DVS AEDAT 2.0: read_cifar10dvs (validates) vs SJ _load_origin_data",
              "aedat31": f"DVS128 Gesture AEDAT 3.1 ({PACKET_CAPACITY}-event packets): read_aedat31 (validates) "
                         "vs SJ load_aedat_v3"}
    out = []
    for kind, title in titles.items():
        rows = [[f"{r['events']:.0e}", f"{r['file_bytes'] / 1e6:.2f}", fmt_ms(r["median_s"]["ours"]),
                 fmt_ms(r["median_s"]["sj"]), f"{r['events'] / r['median_s']['ours'] / 1e6:.2f}",
                 f"{r['events'] / r['median_s']['sj'] / 1e6:.3f}", fmt_ratio(*r["ratio"]),
                 "yes" if r["equal"] else "NO"] for r in results if r["format"] == kind]
        out.append(format_table(["events", "file MB", "ours ms", "sj ms", "ours Mev/s", "sj Mev/s", "sj/ours",
                                 "same events"], rows, title=f"{title}; median of rounds, >1 = ours faster"))
    return "\n".join(out)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args, threads, repeat = parse_bench_args(argv, __doc__.splitlines()[0], "two sizes, fewer rounds", 7)
    sizes = (10_000, 100_000) if args.quick else (10_000, 100_000, 1_000_000)
    results = bench_cifar(sizes, repeat) + bench_gesture(sizes, repeat)
    text = tables(results)
    print(f"bench_readers: torch threads = {threads} (numpy code), rounds = {repeat}")
    print(text)
    return {"name": "readers", "threads": threads, "repeat": repeat, "readers": results, "table": text}


if __name__ == "__main__":
    main()
