"""Event data throughput: framing and the ATIS ``.bin`` reader, spikemask vs SpikingJelly.

* Framing: :func:`spikemask.data.events_to_frames` (one ``bincount`` over the flat index
  ``slice, polarity, y, x``) vs SpikingJelly's ``integrate_events_by_fixed_frames_number`` (a
  ``bincount`` per frame after locating every frame's slice; for ``split_by='time'`` one boolean
  mask over the whole stream per frame). Synthetic streams of 1e4 .. 1e6 events on a 128 x 128
  sensor, T = 16, time-sorted, uniformly spread over one second; both ``split_by`` modes.
* Reading: :func:`spikemask.data.read_atis_bin` (decode + validation: sensor bounds, polarity,
  sorted timestamps) vs SpikingJelly's ``load_ATIS_bin`` (decode only), on files written with
  :func:`spikemask.data.write_atis_bin` (34 x 34 sensor, as N-MNIST), page cache warm for both.

Each implementation gets its natural input: ours the structured ``EVENT_DTYPE`` array it takes,
SpikingJelly a dict of four contiguous arrays, as its ``.npz`` loaders produce (the conversion is
not timed). Outputs are compared (frames equal, events equal) and the result printed.

How SpikingJelly's functions are loaded: ``import spikingjelly.datasets`` fails here (its
``utils.py`` imports torchvision at module level), so this script reads the source of
``spikingjelly/datasets/utils.py``, picks the needed top-level function definitions with ``ast``
and executes just those in a namespace holding ``numpy`` and the typing names they use. The
functions run unmodified; only the module around them is skipped.

Run: ``.venv/bin/python benchmarks/bench_frames.py [--quick] [--repeat N] [--threads N]``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from _common import fmt_ms, fmt_ratio, format_table, interleaved, load_sj, parse_bench_args, ratio_stats

SJ_FUNCTIONS = (
    "integrate_events_segment_to_frame",
    "cal_fixed_frames_number_segment_index",
    "integrate_events_by_fixed_frames_number",
    "load_ATIS_bin",
)


def synthetic_events(n: int, sensor: tuple[int, int], duration_us: int = 1_000_000, seed: int = 0) -> np.ndarray:
    from spikemask.data import make_events

    rng = np.random.default_rng(seed)
    h, w = sensor
    t = np.sort(rng.integers(0, duration_us, n))
    return make_events(t, rng.integers(0, w, n), rng.integers(0, h, n), rng.integers(0, 2, n))


def _as_dict(events: np.ndarray) -> dict[str, np.ndarray]:
    return {k: np.ascontiguousarray(events[k]) for k in ("t", "x", "y", "p")}


def bench_framing(sizes, T: int, sensor, repeat: int, sj) -> list[dict[str, Any]]:
    from spikemask.data import events_to_frames

    h, w = sensor
    out = []
    for n in sizes:
        ev = synthetic_events(n, sensor)
        ev_dict = _as_dict(ev)
        for split_by in ("number", "time"):
            def ours(ev=ev, split_by=split_by):
                return events_to_frames(ev, T, sensor, split_by)

            def theirs(ev_dict=ev_dict, split_by=split_by):
                return sj["integrate_events_by_fixed_frames_number"](ev_dict, split_by, T, h, w)

            same = bool(np.array_equal(ours(), theirs()))
            t = interleaved({"ours": ours, "sj": theirs}, repeat=repeat, warmup=1)
            out.append({"events": n, "split_by": split_by, "T": T, "sensor": list(sensor), "equal": same,
                        "rounds_s": {k: v.rounds for k, v in t.items()},
                        "median_s": {k: v.median for k, v in t.items()},
                        "ratio": ratio_stats(t["sj"], t["ours"])})
    return out


def bench_atis(sizes, repeat: int, sj) -> list[dict[str, Any]]:
    from spikemask.data import read_atis_bin, write_atis_bin

    sensor = (34, 34)
    out = []
    with tempfile.TemporaryDirectory(prefix="spikemask-bench-") as tmp:
        for n in sizes:
            ev = synthetic_events(n, sensor, duration_us=300_000)  # N-MNIST recordings last ~300 ms
            path = write_atis_bin(Path(tmp) / f"{n}.bin", ev)
            def ours(path=path):
                return read_atis_bin(path, sensor)

            def theirs(path=path):
                return sj["load_ATIS_bin"](path)

            a, b = ours(), theirs()
            same = all(np.array_equal(a[k].astype(np.int64), b[k].astype(np.int64)) for k in ("t", "x", "y", "p"))
            t = interleaved({"ours": ours, "sj": theirs}, repeat=repeat, warmup=1)
            out.append({"events": n, "file_bytes": path.stat().st_size, "equal": same,
                        "rounds_s": {k: v.rounds for k, v in t.items()},
                        "median_s": {k: v.median for k, v in t.items()},
                        "ratio": ratio_stats(t["sj"], t["ours"])})
    return out


def _rate(n: int, s: float) -> str:
    return f"{n / s / 1e6:.1f}"


def tables(framing, atis) -> str:
    rows = [[f"{r['events']:.0e}", r["split_by"], fmt_ms(r["median_s"]["ours"]), fmt_ms(r["median_s"]["sj"]),
             _rate(r["events"], r["median_s"]["ours"]), _rate(r["events"], r["median_s"]["sj"]),
             fmt_ratio(*r["ratio"]), "yes" if r["equal"] else "NO"] for r in framing]
    t1 = format_table(["events", "split_by", "ours ms", "sj ms", "ours Mev/s", "sj Mev/s", "sj/ours", "same frames"],
                      rows, title=f"Events -> frames (T {framing[0]['T']}, {framing[0]['sensor'][0]}x"
                                  f"{framing[0]['sensor'][1]}), median of rounds; ratio median (min-max), "
                                  ">1 = ours faster")
    rows = [[f"{r['events']:.0e}", f"{r['file_bytes'] / 1e6:.2f}", fmt_ms(r["median_s"]["ours"]),
             fmt_ms(r["median_s"]["sj"]), _rate(r["events"], r["median_s"]["ours"]),
             _rate(r["events"], r["median_s"]["sj"]), fmt_ratio(*r["ratio"]), "yes" if r["equal"] else "NO"]
            for r in atis]
    t2 = format_table(["events", "file MB", "ours ms", "sj ms", "ours Mev/s", "sj Mev/s", "sj/ours", "same events"],
                      rows,
                      title="ATIS .bin reading (ours validates, SJ only decodes), median of rounds; >1 = ours faster")
    return t1 + "\n" + t2


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args, threads, repeat = parse_bench_args(argv, __doc__.splitlines()[0], "two sizes, fewer rounds", 7)
    sizes = (10_000, 1_000_000) if args.quick else (10_000, 100_000, 1_000_000)
    sj = load_sj("utils", SJ_FUNCTIONS)
    framing = bench_framing(sizes, T=16, sensor=(128, 128), repeat=repeat, sj=sj)
    atis = bench_atis(sizes, repeat=repeat, sj=sj)
    text = tables(framing, atis)
    print(f"bench_frames: torch threads = {threads} (numpy code), rounds = {repeat}")
    print(text)
    return {"name": "frames", "threads": threads, "repeat": repeat, "framing": framing, "atis": atis, "table": text}


if __name__ == "__main__":
    main()
