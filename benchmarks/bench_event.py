"""Event-driven linears and 3x3 convolutions (spikemask.engine) against dense, by input density; whole models.

Linears of Spikformer's shapes (D 256, MLP ratio 4): 256->256 (q/k/v/proj), 256->1024 (fc1), 1024->256
(fc2), fed ``[T*B*N, in]`` = ``[8*8*64, in]`` rows (``--quick``: ``[8*2*64, in]``) of i.i.d. spikes at
densities 1 .. 50 %, eval, ``no_grad``, fp32, and 256->1024 fed spike counts 1-3 (Spikformer's residual
stream: the gather-add weighted by the counts). Per shape and density, interleaved rounds of:

* ``dense``: ``F.linear(x, W, b)`` (the BLAS GEMM);
* ``event``: ``event_linear(x, W, b, table=Wᵀ, reuse=False)``: the ``!= 0`` pass, the event list built
  from it (NumPy ``flatnonzero`` + ``searchsorted``), the kind check on the events' values and the
  ``embedding_bag`` gather-add, all of it;
* ``bag``: the ``embedding_bag`` alone over a given event list (what a spiking layer that emits its
  events directly would pay).

``dense/event`` and ``dense/bag`` are median (min-max) per-round ratios, > 1: the event path faster. The
crossover is the density where ``dense/event`` falls through 1 (linear interpolation between the measured
densities). The outputs are checked equal to F.linear (atol 1e-5 x magnitude) before timing.

3x3 convolutions (stride 1, padding 1) of Spikformer-2-256's tokenizer at 128² input, T 16, batch 1 (``N`` =
16 frames; quick: 4): 32->64 at 64², 64->128 at 32², 128->256 at 16², 256->256 at 8² (the position embedding),
and the N-Digits model's 16->32 at 8² (N 512; quick 128), channels-last frames of i.i.d. spikes. ``dense``:
the module's oneDNN convolution; ``event``: ``engine.conv2d(..., "event")``, list build and the compiled
gather-add (:mod:`spikemask.kernels`); ``kernel``: the gather-add alone over a given list. Narrower than
``engine.CONV_MIN_CHANNELS`` output channels the engine keeps a convolution dense (the 16->32 row's event
column is that dense fallback; its kernel column shows why).

Binary Q Kᵀ by bit-packing (SSA's scores), at the heads of Spikformer-2-256 (T 16, B 1, 16 heads, 64 tokens,
d 16) and of the N-Digits Spikformer (T 8, B 64, 4 heads, 16 tokens, d 16), spikes at 20 %: ``torch.matmul``
of the float spikes against the bits of Q and K packed into one int64 word per token and head, ANDed pairwise
and counted by NumPy's ``bitwise_count`` (popcount), with and without the packing (a neuron that emitted
packed words would skip it). Equal results checked (the counts are exact in fp32).

Whole models, inference forward (eval, ``no_grad``), engines ``dense``, ``event`` and ``auto`` on the same
weights and input (logits checked equal, atol 1e-4), at real firing rates:

* ``spikformer_2_64_ndigits`` and ``spikingformer_2_64_ndigits`` trained on the bundled N-Digits (5 epochs by
  spikemask's own loop, cached in ``benchmarks/.cache/``; the first full run trains them, a few minutes), fed
  64 test clips (T 8); ``--quick``: untrained, BN calibrated on Poisson(0.4) events, batch 16;
* ``spikformer_2_256_dvs`` (128², T 16, batch 1; quick T 4), BN calibrated on Poisson(0.3) event counts.

Per model: the density each event-capable layer saw (linears, and convolutions wide enough), the shares of
the dense forward spent in the linears and in the tokenizer's convolutions (the Amdahl limits), and the dense
bound (the model's dense FLOPs over the best fp32
``torch.mm`` throughput, as in ``bench_sj_spikformer.py``).

Run: ``.venv/bin/python benchmarks/bench_event.py [--quick] [--repeat N] [--threads N]`` (full ~4 min on
2 vCPUs plus the first training, quick ~40 s); run as a script it replaces its section of ``results.md``
(``--output``) and writes ``event_crossover.png`` (``--plot``; none with ``--quick`` unless given).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from _common import (
    calibrate_bn,
    dense_flops_per_sample,
    fmt_ms,
    fmt_ratio,
    format_table,
    gemm_peak_flops,
    interleaved,
    machine_info,
    parse_bench_args,
    ratio_stats,
    trained_ndigits,
    write_standalone,
)

HERE = Path(__file__).resolve().parent
SECTION = "Event-driven linears and convolutions against dense"
SHAPES = ((256, 256), (256, 1024), (1024, 256))
DENSITIES = (0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5)
MODELS = ("spikformer_2_64_ndigits", "spikingformer_2_64_ndigits")
# in, out, side, N: Spikformer-2-256's tokenizer at 128², T 16, batch 1; the N-Digits model's narrow 16->32
CONVS = ((32, 64, 64, 16), (64, 128, 32, 16), (128, 256, 16, 16), (256, 256, 8, 16), (16, 32, 8, 512))
QK_HEADS = {"spikformer_2_256_dvs": (16, 1, 16, 64, 16), "spikformer_2_64_ndigits": (8, 64, 4, 16, 16)}  # T B H N d


def bench_linear(rows: int, i: int, o: int, density: float, repeat: int, counts: bool = False) -> dict[str, Any]:
    from spikemask.engine import _Events, _gather_add, event_linear

    g = torch.Generator().manual_seed(0)
    x = (torch.rand(rows, i, generator=g) < density).float()  # [T*B*N, in]
    if counts:  # spike counts 1..3 where x fires: Spikformer's residual stream (the weighted gather-add)
        x *= torch.randint(1, 4, x.shape, generator=g).float()
    w, b = torch.randn(o, i, generator=g) / i ** 0.5, torch.randn(o, generator=g)
    table = w.t().contiguous()  # [in, out]
    ev = _Events(x)
    events, weights = ev.list(), ev.weights()
    ref = F.linear(x, w, b)
    ok = torch.allclose(event_linear(x, w, b, table=table, reuse=False), ref, rtol=0,
                        atol=1e-5 * max(1.0, float(ref.abs().max())))
    fns = {"dense": lambda: F.linear(x, w, b), "event": lambda: event_linear(x, w, b, table=table, reuse=False),
           "bag": lambda: _gather_add(events, table, b, x.shape[:-1], weights)}
    t = interleaved(fns, repeat=repeat)
    return {"shape": f"{i}->{o}" + (" counts" if counts else ""), "density": density, "equal": ok,
            "measured_density": float((x != 0).float().mean()),
            **{f"{k}_s": v.median for k, v in t.items()},
            "event_ratio": ratio_stats(t["dense"], t["event"]), "bag_ratio": ratio_stats(t["dense"], t["bag"])}


def crossover(rows: list[dict[str, Any]]) -> float | None:
    """Density where the median dense/event ratio falls through 1 (None: never within the measured range)."""
    pts = [(r["density"], r["event_ratio"][0]) for r in rows]
    for (d0, r0), (d1, r1) in zip(pts, pts[1:]):
        if r0 >= 1 > r1:
            return d0 + (r0 - 1) / (r0 - r1) * (d1 - d0)
    return None if pts[0][1] >= 1 else 0.0


def bench_conv(c_in: int, c_out: int, side: int, n: int, density: float, repeat: int) -> dict[str, Any]:
    """One 3x3 convolution on i.i.d. channels-last spikes: oneDNN, the engine's event path, the kernel alone."""
    from spikemask import kernels
    from spikemask.engine import Conv2d, _Events, conv2d

    g = torch.Generator().manual_seed(0)
    x = (torch.rand(n, c_in, side, side, generator=g) < density).float().contiguous(memory_format=torch.channels_last)
    m = Conv2d(c_in, c_out, 3, 1, 1, bias=False).eval()
    ref = m._conv_forward(x, m.weight, None)
    idx, off = (t.numpy() for t in _Events(x.permute(0, 2, 3, 1)).list())
    table = m.event_table().numpy()
    threads = torch.get_num_threads()
    with torch.no_grad():
        out, path = conv2d(m, x, "event")
        ok = torch.allclose(out, ref, rtol=0, atol=1e-5 * max(1.0, float(ref.abs().max())))
        fns = {"dense": lambda: m._conv_forward(x, m.weight, None), "event": lambda: conv2d(m, x, "event"),
               "kernel": lambda: kernels.conv3x3_events(idx, off, None, table, (n, side, side), threads)}
        t = interleaved(fns, repeat=repeat)
    return {"shape": f"{c_in}->{c_out} at {side}², N {n}", "density": density, "equal": ok, "path": path,
            **{f"{k}_s": v.median for k, v in t.items()},
            "event_ratio": ratio_stats(t["dense"], t["event"]), "kernel_ratio": ratio_stats(t["dense"], t["kernel"])}


def bench_packed_qk(label: str, T: int, B: int, H: int, N: int, d: int, repeat: int) -> dict[str, Any]:
    """SSA's binary Q Kᵀ: float matmul against bit-packed AND + popcount (NumPy ``bitwise_count``)."""
    import numpy as np

    g = torch.Generator().manual_seed(0)
    q, k = ((torch.rand(T, B, H, N, d, generator=g) < 0.2).float() for _ in range(2))
    bits = 1 << torch.arange(d, dtype=torch.int64)

    def pack(s):
        return (s.to(torch.int64) * bits).sum(-1).numpy()  # [T, B, H, N]: d bits per word

    qw, kw = pack(q), pack(k)

    def packed():
        a, b = pack(q), pack(k)
        return torch.from_numpy(np.bitwise_count(a[..., :, None] & b[..., None, :]).astype(np.float32))

    ok = torch.equal(packed(), q @ k.transpose(-1, -2))
    t = interleaved({"matmul": lambda: q @ k.transpose(-1, -2), "packed": packed,
                     "popcount": lambda: np.bitwise_count(qw[..., :, None] & kw[..., None, :])}, repeat=repeat)
    return {"heads": f"{label}: T {T}, B {B}, {H} heads, N {N}, d {d}", "equal": ok,
            **{f"{name}_s": v.median for name, v in t.items()},
            "packed_ratio": ratio_stats(t["matmul"], t["packed"]),
            "popcount_ratio": ratio_stats(t["matmul"], t["popcount"])}


def _layer_share(model: torch.nn.Module, x: torch.Tensor, kind: type, repeat: int = 3) -> float:
    """Fraction of a forward's time spent inside the layers of class ``kind`` (forward hooks with a clock): what
    any speedup of those layers alone is limited by (Amdahl)."""
    spent, starts = [0.0], {}
    hooks = []
    for m in model.modules():
        if isinstance(m, kind):
            hooks.append(m.register_forward_pre_hook(lambda mod, a: starts.__setitem__(mod, time.perf_counter())))
            hooks.append(m.register_forward_hook(
                lambda mod, a, o: spent.__setitem__(0, spent[0] + time.perf_counter() - starts[mod])))
    best = 1.0
    with torch.no_grad():
        for _ in range(repeat):
            spent[0] = 0.0
            t0 = time.perf_counter()
            model(x)
            best = min(best, spent[0] / (time.perf_counter() - t0))
    for h in hooks:
        h.remove()
    return best


def bench_model(label: str, dense: torch.nn.Module, x: torch.Tensor, repeat: int, gemm: float) -> dict[str, Any]:
    """Engines ``dense``, ``event`` and ``auto`` on the same weights and input ``x`` (time-first)."""
    import copy

    from spikemask.engine import Conv2d, Linear, set_engine

    dense = dense.eval()
    set_engine(dense, "dense")
    event, auto = copy.deepcopy(dense), copy.deepcopy(dense)
    set_engine(event, "event")
    set_engine(auto, "auto")
    seen: dict[str, list[Any]] = {}

    def record(mod_name):
        def hook(m, args, out):
            a = args[0]
            seen[mod_name] = [float((a != 0).float().mean()), m.last_path]
        return hook

    hooks = [m.register_forward_hook(record(n)) for n, m in event.named_modules() if isinstance(m, Linear | Conv2d)]
    with torch.no_grad():
        ref, out, out_auto = dense(x), event(x), auto(x)
    for h in hooks:
        h.remove()
    ok = torch.allclose(out, ref, rtol=0, atol=1e-4) and torch.allclose(out_auto, ref, rtol=0, atol=1e-4)
    with torch.no_grad():
        t = interleaved({"dense": lambda: dense(x), "event": lambda: event(x), "auto": lambda: auto(x)},
                        repeat=repeat)
    rates = [v[0] for v in seen.values() if v[1] == "event"]
    convs = sum(v[1] == "event" for n, v in seen.items() if n.startswith("sps."))
    T, B = x.shape[:2]
    bound = dense_flops_per_sample(dense, T) * B / gemm
    return {"model": label, "T": T, "batch": B, "equal": ok, "dense_s": t["dense"].median,
            "event_s": t["event"].median, "auto_s": t["auto"].median, "bound_s": bound,
            "ratio": ratio_stats(t["dense"], t["event"]), "auto_ratio": ratio_stats(t["dense"], t["auto"]),
            "event_layers": len(rates), "event_convs": convs, "layers": len(seen),
            "mean_density": sum(rates) / len(rates) if rates else float("nan"),
            "linear_share": _layer_share(dense, x, Linear), "conv_share": _layer_share(dense, x, Conv2d)}


def model_cases(quick: bool) -> list[tuple[str, torch.nn.Module, torch.Tensor]]:
    """(label, model, input): the N-Digits models trained (full run; quick: untrained, BN calibrated) at the
    firing rates of 64 test clips, and Spikformer-2-256 (DVS 128², T 16, batch 1; quick T 4) BN-calibrated on
    Poisson(0.3) event counts."""
    import spikemask as sm

    cases = []
    for name in MODELS:
        if quick:
            torch.manual_seed(0)
            m = sm.create_model(name)
            x = torch.poisson(torch.full((m.config.T, 16, 2, 32, 32), 0.4))
            calibrate_bn(m, [x])
            cases.append((f"{name} (calibrated)", m, x))
        else:
            m, batches, _ = trained_ndigits(name)
            cases.append((f"{name} (trained)", m, batches[0]))
    T = 4 if quick else 16
    torch.manual_seed(0)
    m = sm.create_model("spikformer_2_256_dvs", T=T)
    x = torch.poisson(torch.full((T, 1, 2, 128, 128), 0.3))
    calibrate_bn(m, [x])
    cases.append(("spikformer_2_256_dvs (calibrated)", m, x))
    return cases


def tables(lin: list[dict[str, Any]], convs: list[dict[str, Any]], qk: list[dict[str, Any]],
           models: list[dict[str, Any]], rows: int, info: dict[str, Any], repeat: int
           ) -> tuple[str, dict[str, float | None]]:
    from spikemask.engine import CONV_MIN_CHANNELS

    out, cross = [], {}
    head = (f"{info['cpu']}, torch {info['torch']}, {info['torch_threads']} thread(s), {repeat} rounds, "
            f"load average (1 min) {info.get('load_avg_1m')} at the start. Rows {rows}"
            f"{' (--quick)' if rows < 8 * 8 * 64 else ''}, fp32, i.i.d. spikes.")
    out.append(head)
    for shape in dict.fromkeys(r["shape"] for r in lin):
        rs = [r for r in lin if r["shape"] == shape]
        cross[shape] = crossover(rs)
        body = [[f"{r['density']:.0%}", "yes" if r["equal"] else "NO", fmt_ms(r["dense_s"]), fmt_ms(r["event_s"]),
                 fmt_ms(r["bag_s"]), fmt_ratio(*r["event_ratio"]), fmt_ratio(*r["bag_ratio"])] for r in rs]
        c = cross[shape]
        title = f"Linear {shape}: crossover (dense/event = 1) at " + ("> 50 %" if c is None else f"{c:.0%}")
        out.append(format_table(["density", "equal", "dense ms", "event ms", "bag ms", "dense/event", "dense/bag"],
                                body, title))
    for shape in dict.fromkeys(r["shape"] for r in convs):
        rs = [r for r in convs if r["shape"] == shape]
        body = [[f"{r['density']:.0%}", "yes" if r["equal"] else "NO", fmt_ms(r["dense_s"]), fmt_ms(r["event_s"]),
                 fmt_ms(r["kernel_s"]), fmt_ratio(*r["event_ratio"]), fmt_ratio(*r["kernel_ratio"])] for r in rs]
        if all(r["path"] == "event" for r in rs):
            cross[shape] = c = crossover(rs)
            title = f"Conv 3x3 {shape}: crossover (dense/event = 1) at " + ("> 50 %" if c is None else f"{c:.0%}")
        else:  # the engine keeps it dense: its event column is the fallback; the kernel's own crossover instead
            c = crossover([{**r, "event_ratio": r["kernel_ratio"]} for r in rs])
            title = (f"Conv 3x3 {shape}: kept dense by the engine (< {CONV_MIN_CHANNELS} output channels; event "
                     "column = the fallback); the kernel alone crosses dense at "
                     + ("> 50 %" if c is None else f"{c:.0%}"))
        out.append(format_table(["density", "equal", "dense ms", "event ms", "kernel ms", "dense/event",
                                 "dense/kernel"], body, title))
    body = [[r["heads"], "yes" if r["equal"] else "NO", fmt_ms(r["matmul_s"]), fmt_ms(r["packed_s"]),
             fmt_ms(r["popcount_s"]), fmt_ratio(*r["packed_ratio"]), fmt_ratio(*r["popcount_ratio"])] for r in qk]
    out.append(format_table(["heads (spikes at 20 %)", "equal", "matmul ms", "packed ms", "popcount only ms",
                             "matmul/packed", "matmul/popcount"], body,
                            "Binary Q Kᵀ: float matmul against bit-packing + popcount (not shipped: slower)"))
    body = [[m["model"], m["T"], m["batch"], "yes" if m["equal"] else "NO",
             f"{m['event_layers']}/{m['layers']} ({m['event_convs']} conv)", f"{m['mean_density']:.1%}",
             f"{m['linear_share']:.0%} / {m['conv_share']:.0%}", fmt_ms(m["dense_s"]), fmt_ms(m["event_s"]),
             fmt_ms(m["auto_s"]), fmt_ratio(*m["ratio"]), fmt_ratio(*m["auto_ratio"]), fmt_ms(m["bound_s"]),
             f"{m['event_s'] / m['bound_s']:.2f}"]
            for m in models]
    out.append(format_table(["model", "T", "batch", "logits equal", "event layers", "their density",
                             "linears' / convs' share (dense)", "dense ms", "event ms", "auto ms", "dense/event",
                             "dense/auto", "dense bound ms", "event/bound"], body,
                            "Whole model, inference forward (no_grad): engines on the same weights and input"))
    return "\n".join(out), cross


def plot(lin: list[dict[str, Any]], convs: list[dict[str, Any]], path: Path, info: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.4), sharey=True)
    colors = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple")
    for ax, rows, alone, what in ((axes[0], lin, "bag", "linear vs F.linear"),
                                  (axes[1], convs, "kernel", "3x3 conv vs oneDNN")):
        for shape, color in zip(dict.fromkeys(r["shape"] for r in rows), colors):
            rs = [r for r in rows if r["shape"] == shape]
            d = [r["density"] * 100 for r in rs]
            ax.plot(d, [r["event_ratio"][0] for r in rs], "o-", color=color, label=f"{shape} (with list build)")
            ax.plot(d, [r[f"{alone}_ratio"][0] for r in rs], "--", color=color, alpha=0.6, label=f"{shape}, {alone}")
        ax.axhline(1.0, color="k", lw=0.8)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("input density (%)")
        ax.set_title(f"event-driven {what}", fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=6)
    axes[0].set_ylabel("dense time / event time (> 1: events faster)")
    fig.suptitle(f"Event-driven engine against dense; {info['torch_threads']} thread(s), torch {info['torch']}",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args, threads, repeat = parse_bench_args(argv, __doc__.splitlines()[0], "fewer rows, batch 8, 3 rounds", 7,
                                             section=True, plot="event_crossover.png")
    start = time.perf_counter()
    info = machine_info()
    rows = 8 * (2 if args.quick else 8) * 64  # T * B * N
    lin = [bench_linear(rows, i, o, d, repeat) for i, o in SHAPES for d in DENSITIES]
    lin += [bench_linear(rows, 256, 1024, d, repeat, counts=True) for d in DENSITIES]
    convs = [bench_conv(i, o, side, n // 4 if args.quick else n, d, repeat)
             for i, o, side, n in CONVS for d in DENSITIES]
    qk = [bench_packed_qk(label, *heads, repeat) for label, heads in QK_HEADS.items()]
    gemm = gemm_peak_flops(rounds=3 if args.quick else 5)
    models = [bench_model(label, m, x, repeat, gemm) for label, m, x in model_cases(args.quick)]
    text, cross = tables(lin, convs, qk, models, rows, info, repeat)
    print(f"bench_event: torch threads = {threads}, rounds = {repeat}")
    print(text)
    if args.plot:
        plot(lin, convs, Path(args.plot), info)
        print(f"\nwrote {args.plot}")
    return {"name": "event", "threads": threads, "repeat": repeat, "linears": lin, "convs": convs, "packed_qk": qk,
            "models": models,
            "crossover": cross, "table": text, "output": args.output, "seconds": time.perf_counter() - start}


if __name__ == "__main__":
    write_standalone(main(), SECTION, "bench_event.py")
