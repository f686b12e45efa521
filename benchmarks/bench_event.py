"""Event-driven linears (spikemask.engine) against dense ``F.linear``, by input density, and whole models.

Linears of Spikformer's shapes (D 256, MLP ratio 4): 256->256 (q/k/v/proj), 256->1024 (fc1), 1024->256
(fc2), fed ``[T*B*N, in]`` = ``[8*8*64, in]`` rows (``--quick``: ``[8*2*64, in]``) of i.i.d. spikes at
densities 1 .. 50 %, eval, ``no_grad``, fp32. Per shape and density, interleaved rounds of:

* ``dense``: ``F.linear(x, W, b)`` (the BLAS GEMM);
* ``event``: ``event_linear(x, W, b, table=Wᵀ, reuse=False)``: the binary check, the event list built
  from ``x`` (NumPy ``flatnonzero`` + ``searchsorted``) and the ``embedding_bag`` gather-add, all of it;
* ``bag``: the ``embedding_bag`` alone over a given event list (what a spiking layer that emits its
  events directly would pay).

``dense/event`` and ``dense/bag`` are median (min-max) per-round ratios, > 1: the event path faster. The
crossover is the density where ``dense/event`` falls through 1 (linear interpolation between the measured
densities). The outputs are checked equal to F.linear (atol 1e-5 x magnitude) before timing.

Whole models: ``spikformer_2_64_ndigits`` and ``spikingformer_2_64_ndigits`` (T 8, batch 32 (quick 8),
random Poisson(0.4) event counts, BatchNorm statistics calibrated on that input as in ``bench_attention.py``,
eval, ``no_grad``), engine ``dense`` vs ``event`` with the same weights: logits checked equal (atol 1e-4),
then forward time ratio and the density each event-capable linear saw.

Run: ``.venv/bin/python benchmarks/bench_event.py [--quick] [--repeat N] [--threads N]`` (full ~2 min on
2 vCPUs, quick ~30 s); run as a script it replaces its section of ``results.md`` (``--output``) and writes
``event_crossover.png`` (``--plot``; none with ``--quick`` unless given).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from _common import (
    calibrate_bn,
    fmt_ms,
    fmt_ratio,
    format_table,
    interleaved,
    machine_info,
    parse_bench_args,
    ratio_stats,
    write_standalone,
)

HERE = Path(__file__).resolve().parent
SECTION = "Event-driven linears against dense"
SHAPES = ((256, 256), (256, 1024), (1024, 256))
DENSITIES = (0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5)
MODELS = ("spikformer_2_64_ndigits", "spikingformer_2_64_ndigits")


def bench_linear(rows: int, i: int, o: int, density: float, repeat: int) -> dict[str, Any]:
    from spikemask.engine import _gather_add, event_linear, event_list

    g = torch.Generator().manual_seed(0)
    x = (torch.rand(rows, i, generator=g) < density).float()  # [T*B*N, in]
    w, b = torch.randn(o, i, generator=g) / i ** 0.5, torch.randn(o, generator=g)
    table = w.t().contiguous()  # [in, out]
    events = event_list(x != 0)
    ref = F.linear(x, w, b)
    ok = torch.allclose(event_linear(x, w, b, table=table, reuse=False), ref, rtol=0,
                        atol=1e-5 * max(1.0, float(ref.abs().max())))
    fns = {"dense": lambda: F.linear(x, w, b), "event": lambda: event_linear(x, w, b, table=table, reuse=False),
           "bag": lambda: _gather_add(events, table, b, x.shape[:-1])}
    t = interleaved(fns, repeat=repeat)
    return {"shape": f"{i}->{o}", "density": density, "equal": ok, "measured_density": float(x.mean()),
            **{f"{k}_s": v.median for k, v in t.items()},
            "event_ratio": ratio_stats(t["dense"], t["event"]), "bag_ratio": ratio_stats(t["dense"], t["bag"])}


def crossover(rows: list[dict[str, Any]]) -> float | None:
    """Density where the median dense/event ratio falls through 1 (None: never within the measured range)."""
    pts = [(r["density"], r["event_ratio"][0]) for r in rows]
    for (d0, r0), (d1, r1) in zip(pts, pts[1:]):
        if r0 >= 1 > r1:
            return d0 + (r0 - 1) / (r0 - r1) * (d1 - d0)
    return None if pts[0][1] >= 1 else 0.0


def bench_model(name: str, batch: int, repeat: int) -> dict[str, Any]:
    import spikemask as sm
    from spikemask.engine import Linear

    torch.manual_seed(0)
    dense = sm.create_model(name)
    x = torch.poisson(torch.full((dense.config.T, batch, 2, 32, 32), 0.4))  # [T, B, 2, 32, 32] event counts
    calibrate_bn(dense, [x])
    event = sm.create_model(name, engine="event")
    event.load_state_dict(dense.state_dict())
    event.eval()
    seen: dict[str, list[float]] = {}

    def record(mod_name):
        def hook(m, args, out):
            a = args[0]
            binary = bool(torch.equal(a, (a != 0).to(a.dtype)))
            seen[mod_name] = [float((a != 0).float().mean()), binary, m.last_path]
        return hook

    hooks = [m.register_forward_hook(record(n)) for n, m in event.named_modules() if isinstance(m, Linear)]
    with torch.no_grad():
        ref, out = dense(x), event(x)
    for h in hooks:
        h.remove()
    ok = torch.allclose(out, ref, rtol=0, atol=1e-4)
    with torch.no_grad():
        t = interleaved({"dense": lambda: dense(x), "event": lambda: event(x)}, repeat=repeat)
    rates = [v[0] for v in seen.values() if v[2] == "event"]
    return {"model": name, "batch": batch, "equal": ok, "dense_s": t["dense"].median, "event_s": t["event"].median,
            "ratio": ratio_stats(t["dense"], t["event"]), "event_layers": len(rates), "layers": len(seen),
            "mean_density": sum(rates) / len(rates) if rates else float("nan")}


def tables(lin: list[dict[str, Any]], models: list[dict[str, Any]], rows: int, info: dict[str, Any],
           repeat: int) -> tuple[str, dict[str, float | None]]:
    out, cross = [], {}
    head = (f"{info['cpu']}, torch {info['torch']}, {info['torch_threads']} thread(s), {repeat} rounds, "
            f"load average (1 min) {info.get('load_avg_1m')} at the start. Rows {rows}"
            f"{' (--quick)' if rows < 8 * 8 * 64 else ''}, fp32, i.i.d. spikes.")
    out.append(head)
    for i, o in SHAPES:
        rs = [r for r in lin if r["shape"] == f"{i}->{o}"]
        cross[f"{i}->{o}"] = crossover(rs)
        body = [[f"{r['density']:.0%}", "yes" if r["equal"] else "NO", fmt_ms(r["dense_s"]), fmt_ms(r["event_s"]),
                 fmt_ms(r["bag_s"]), fmt_ratio(*r["event_ratio"]), fmt_ratio(*r["bag_ratio"])] for r in rs]
        c = cross[f"{i}->{o}"]
        title = f"Linear {i}->{o}: crossover (dense/event = 1) at " + ("> 50 %" if c is None else f"{c:.0%}")
        out.append(format_table(["density", "equal", "dense ms", "event ms", "bag ms", "dense/event", "dense/bag"],
                                body, title))
    body = [[m["model"], m["batch"], "yes" if m["equal"] else "NO", f"{m['event_layers']}/{m['layers']}",
             f"{m['mean_density']:.1%}", fmt_ms(m["dense_s"]), fmt_ms(m["event_s"]), fmt_ratio(*m["ratio"])]
            for m in models]
    out.append(format_table(["model (T 8)", "batch", "logits equal", "event layers", "their density", "dense ms",
                             "event ms", "dense/event"], body, "Whole model, inference forward (no_grad)"))
    return "\n".join(out), cross


def plot(lin: list[dict[str, Any]], path: Path, info: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for (i, o), color in zip(SHAPES, ("tab:blue", "tab:orange", "tab:green")):
        rs = [r for r in lin if r["shape"] == f"{i}->{o}"]
        d = [r["density"] * 100 for r in rs]
        ax.plot(d, [r["event_ratio"][0] for r in rs], "o-", color=color, label=f"{i}->{o} event (with list build)")
        ax.plot(d, [r["bag_ratio"][0] for r in rs], "--", color=color, alpha=0.6, label=f"{i}->{o} gather-add only")
    ax.axhline(1.0, color="k", lw=0.8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("input density (%)")
    ax.set_ylabel("dense time / event time (> 1: events faster)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.suptitle(f"Event-driven linear vs F.linear; {info['torch_threads']} thread(s), torch {info['torch']}",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    def extra(ap):
        ap.add_argument("--output", default=None, help="Markdown file whose section to replace when run as a "
                        "script (default results.md, results-quick.md with --quick; '-': none)")
        ap.add_argument("--plot", default=None, help="plot file (default event_crossover.png; none with --quick "
                        "unless given; '-': none)")

    args, threads, repeat = parse_bench_args(argv, __doc__.splitlines()[0], "fewer rows, batch 8, 3 rounds", 7, extra)
    start = time.perf_counter()
    info = machine_info()
    rows = 8 * (2 if args.quick else 8) * 64  # T * B * N
    lin = [bench_linear(rows, i, o, d, repeat) for i, o in SHAPES for d in DENSITIES]
    models = [bench_model(name, 8 if args.quick else 32, repeat) for name in MODELS]
    text, cross = tables(lin, models, rows, info, repeat)
    print(f"bench_event: torch threads = {threads}, rounds = {repeat}")
    print(text)
    plot_path = args.plot or (None if args.quick else str(HERE / "event_crossover.png"))
    if plot_path and plot_path != "-":
        plot(lin, Path(plot_path), info)
        print(f"\nwrote {plot_path}")
    output = args.output or str(HERE / ("results-quick.md" if args.quick else "results.md"))
    return {"name": "event", "threads": threads, "repeat": repeat, "linears": lin, "models": models,
            "crossover": cross, "table": text, "output": output, "seconds": time.perf_counter() - start}


if __name__ == "__main__":
    write_standalone(main(), SECTION, "bench_event.py")
