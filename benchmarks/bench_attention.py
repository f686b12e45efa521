"""Attention cost against the number of tokens N: SSA (quadratic) vs SDSA and SASA (linear).

The three spiking attentions of :mod:`spikemask.models.attention`, each built from a
``TransformerConfig(img_size=side, sps_pool=(False,) * 4, ...)`` so that the token grid is
``side x side`` (N = side², SASA's DWC needs the side), D 256, 16 heads, T 4, batch 1, membrane
residual, no masking, eval mode, ``torch.no_grad``. The BatchNorm statistics of the untrained
blocks are first set from the benchmark input (as in ``bench_energy.py``): with default statistics
they are nearly silent and the counted operations would be about zero.

Input: i.i.d. spikes ``s ~ Bernoulli(0.15)``, ``[T, 1, N, D]``. With the membrane residual every
attention starts with a neuron (``in_lif``) that reads the membrane stream, not spikes (a LIF with
threshold 1 and tau 2 fed 0/1 never fires), so the block is fed ``3 s``: that neuron then fires
exactly where ``s`` is 1 (checked at every N), and every projection reads the 15 % spikes.

Measured per attention and N:

* ``time``: one forward, median over interleaved rounds (the three attentions rotate within a
  round); ``SSA/x`` is the median (min-max) of the per-round ratios, > 1: x faster than SSA.
* ``peak``: peak of the CPU allocator's live bytes during one forward, above the level at its start
  (``torch.profiler`` memory events, see ``_common.peak_alloc_bytes``): the activations and
  temporaries the forward needs; the input and the weights are not counted.
* ``counted``: SOPs + MACs per sample from spikemask's own counter (``EnergyCounter`` +
  ``build_report``), with ``EnergyConfig(first_layer="as_input")``: the block is never a network's
  first layer, so its Q projection is charged by its (spike) input like the others rather than as
  dense MACs. ``dense`` is the counter's conventional count with every input firing
  (``dense_macs_per_step`` x steps, summed over the layers).

SSA cells whose ``[T, B, H, N, N]`` float32 score tensor would exceed ``--max-scores-gb`` (2 GB) are
skipped; for those only the dense count is given, from SSA's formula ``T (4 N D² + 2 N² D)``, which
is checked equal to the counter's dense count at every measured N.

Fits: ``log(cost) = a + b log(N)`` by least squares over the measured N (``b`` all), and the slope
between the two largest measured N (``b`` last). Crossover: the smallest measured N from which SDSA
(SASA) costs less than SSA at every larger measured N (time: the median per-round ratio > 1).

Run: ``.venv/bin/python benchmarks/bench_attention.py [--quick] [--repeat N] [--threads N]`` (full
~75 s on 2 vCPUs, quick ~20 s; writes the section "Attention cost against tokens" of ``results.md`` and
``attention_cost.png``).
"""

from __future__ import annotations

import datetime as _dt
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _common import (
    calibrate_bn,
    fmt_bytes,
    fmt_ms,
    fmt_ratio,
    format_table,
    interleaved,
    machine_info,
    parse_bench_args,
    peak_alloc_bytes,
    ratio_stats,
    write_standalone,
)
from torch import nn

HERE = Path(__file__).resolve().parent
SECTION = "Attention cost against tokens"
KINDS = ("ssa", "sdsa", "sasa")
NAMES = {"ssa": "SSA", "sdsa": "SDSA", "sasa": "SASA"}
ATTN_NEURON = {"ssa": "attn_lif", "sdsa": "kv_lif", "sasa": "vector_lif"}  # the attention's own neuron
SIDES_FULL = (4, 8, 16, 32, 64)  # N = 16 .. 4096
SIDES_QUICK = (4, 8, 16)  # N = 16 .. 256
D, HEADS, T, BATCH, DENSITY = 256, 16, 4, 1, 0.15


class _Root(nn.Module):
    """Counter root: its pre-hook reads ``[T, B, ...]`` from a 5-D input, so the block gets ``[T, B, 1, N, D]``."""

    def __init__(self, attn: nn.Module) -> None:
        super().__init__()
        self.attn = attn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attn(x.squeeze(2))  # [T, B, N, D]


def build(kind: str, side: int) -> nn.Module:
    from spikemask.models import TransformerConfig
    from spikemask.models.attention import ATTENTIONS

    cfg = TransformerConfig(img_size=side, sps_pool=(False,) * 4, embed_dim=D, num_heads=HEADS, T=T,
                            attention=kind, residual="membrane")
    torch.manual_seed(0)
    return ATTENTIONS[kind](cfg).eval()


def scores_bytes(n: int) -> int:
    return T * BATCH * HEADS * n * n * 4  # SSA's [T, B, H, N, N] float32 scores


def ssa_dense(n: int) -> float:
    """SSA's dense count per sample: Q, K, V and proj (N D² each) and the two products (N² D each), T steps."""
    return float(T * (4 * n * D * D + 2 * n * n * D))


def _inputs(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    s = (torch.rand(T, BATCH, n, D, generator=g) < DENSITY).float()  # [T, B, N, D] spikes
    return s, 3.0 * s  # membrane stream on which in_lif fires exactly at s


def _count(attn: nn.Module, x: torch.Tensor) -> dict[str, Any]:
    from spikemask.energy import EnergyConfig, EnergyCounter
    from spikemask.energy.report import build_report

    root = _Root(attn).eval()
    with EnergyCounter(root) as counter, torch.no_grad():
        root(x.unsqueeze(2))  # [T, B, 1, N, D]
    rep = build_report(counter, EnergyConfig(first_layer="as_input"))
    tot = rep["totals"]
    dense = sum(r["dense_macs_per_step"] * r["steps"] for r in rep["layers"])
    rates = {r["name"].removeprefix("attn."): r["firing_rate"] for r in rep["neurons"]}
    return {"sops": tot["sops"], "macs": tot["macs"], "counted": tot["sops"] + tot["macs"], "dense": dense,
            "rates": rates, "layers": {r["name"]: r["sops"] + r["macs"] for r in rep["layers"]}}


def set_qkv_rate(attn: nn.Module, x: torch.Tensor, target: float) -> None:
    """Shift the BN bias of every projection (one value for all channels, bisection) so that its neuron
    fires at ``target`` on ``x``: the BN statistics alone leave an untrained block at ~2 %."""
    with torch.no_grad():
        src = attn.in_lif(x) if attn.in_lif is not None else x
        for name in attn.projections:
            bn, lif = getattr(attn, f"{name}_bn"), getattr(attn, f"{name}_lif")
            pre = getattr(attn, name)(src)  # [T, B, N, D]
            lo, hi = -4.0, 4.0
            for _ in range(24):
                bn.bias.fill_((lo + hi) / 2)
                lo, hi = (bn.bias[0].item(), hi) if lif(bn(pre)).mean() < target else (lo, bn.bias[0].item())


def bench_n(side: int, repeat: int, max_scores: float, qkv_rate: float) -> dict[str, Any]:
    n = side * side
    s, x = _inputs(n)
    kinds = [k for k in KINDS if k != "ssa" or scores_bytes(n) <= max_scores]
    attns = {}
    for k in kinds:
        attn = build(k, side)
        calibrate_bn(attn, [x])
        if qkv_rate:
            set_qkv_rate(attn, x, qkv_rate)
        with torch.no_grad():
            if not torch.equal(attn.in_lif(x), s):
                raise RuntimeError(f"{k}: in_lif does not reproduce the input spikes at N={n}")
        attns[k] = attn

    def fwd(attn):
        def run():
            with torch.no_grad():
                return attn(x)

        return run

    t = interleaved({k: fwd(a) for k, a in attns.items()}, repeat=repeat, warmup=1)
    peak = {k: peak_alloc_bytes(fwd(a)) for k, a in attns.items()}
    counts = {k: _count(a, x) for k, a in attns.items()}
    if "ssa" in counts and counts["ssa"]["dense"] != ssa_dense(n):
        raise RuntimeError(f"SSA dense count {counts['ssa']['dense']} != formula {ssa_dense(n)} at N={n}")
    return {
        "N": n, "side": side, "kinds": kinds,
        "rounds_s": {k: v.rounds for k, v in t.items()},
        "median_s": {k: v.median for k, v in t.items()},
        "ssa_over": {k: ratio_stats(t["ssa"], t[k]) for k in kinds if k != "ssa"} if "ssa" in t else {},
        "peak_bytes": peak,
        "counts": counts,
        "ssa_scores_bytes": scores_bytes(n),
        "ssa_dense_formula": ssa_dense(n),
    }


def _series(results: list[dict[str, Any]], kind: str, what: str) -> dict[int, float]:
    out = {}
    for r in results:
        if kind not in r["kinds"]:
            continue
        out[r["N"]] = {"time": r["median_s"].get(kind), "peak": r["peak_bytes"].get(kind),
                       "counted": r["counts"][kind]["counted"], "dense": r["counts"][kind]["dense"]}[what]
    return out


def fit(series: dict[int, float]) -> tuple[float, float] | None:
    """(exponent over all points, slope between the last two) of log(cost) against log(N)."""
    pts = sorted((n, v) for n, v in series.items() if v and v > 0)
    if len(pts) < 2:
        return None
    ln, lv = np.log([p[0] for p in pts]), np.log([p[1] for p in pts])
    b_all = float(np.polyfit(ln, lv, 1)[0])
    b_last = float((lv[-1] - lv[-2]) / (ln[-1] - ln[-2]))
    return b_all, b_last


def crossover(cheaper: dict[int, bool]) -> str:
    """The smallest N from which ``cheaper`` holds at every larger measured N, in words."""
    ns = sorted(cheaper)
    if not ns:
        return "not measured"
    first = None
    for n in reversed(ns):
        if not cheaper[n]:
            break
        first = n
    if first is None:
        return f"none up to {ns[-1]}"
    if first == ns[0]:
        return f"N ≥ {first} (every N measured)"
    return f"N ≥ {first} (SSA cheaper at {ns[ns.index(first) - 1]})"


def summarise(results: list[dict[str, Any]]) -> dict[str, Any]:
    fits = {k: {w: fit(_series(results, k, w)) for w in ("time", "peak", "counted", "dense")} for k in KINDS}
    # the dense count of skipped SSA cells follows from the (checked) formula: include it in the dense fit
    ssa_dense_all = {r["N"]: r["ssa_dense_formula"] for r in results}
    fits["ssa"]["dense_formula"] = fit(ssa_dense_all)
    cross = {}
    for k in ("sdsa", "sasa"):
        time_ok = {r["N"]: r["ssa_over"][k][0] > 1 for r in results if "ssa" in r["kinds"]}
        ops_ok = {r["N"]: r["counts"][k]["counted"] < r["counts"]["ssa"]["counted"]
                  for r in results if "ssa" in r["kinds"]}
        dense_ok = {r["N"]: r["counts"][k]["dense"] < r["ssa_dense_formula"] for r in results}
        cross[k] = {"time": crossover(time_ok), "counted": crossover(ops_ok), "dense": crossover(dense_ok)}
    return {"fits": fits, "crossover": cross}


def fmt_count(v: float | None) -> str:
    if v is None:
        return "-"
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if v >= scale:
            return f"{v / scale:.3g} {unit}"
    return f"{v:.3g}"


def _b(f: tuple[float, float] | None) -> str:
    return "-" if f is None else f"{f[0]:.2f} / {f[1]:.2f}"


def tables(results: list[dict[str, Any]], summary: dict[str, Any], info: dict[str, Any], repeat: int,
           qkv_rate: float) -> str:
    head = (f"CPU {info['cpu']} ({info['logical_cpus']} logical), torch {info['torch']}, "
            f"{info['torch_threads']} thread(s), {repeat} rounds, {_dt.date.today().isoformat()}. "
            f"D {D}, {HEADS} heads, T {T}, batch {BATCH}, input spikes {DENSITY:.0%} i.i.d., eval, no_grad; "
            + (f"Q/K/V neurons set to fire at {qkv_rate:.0%}." if qkv_rate else "BN statistics only."))
    rows_t, rows_c = [], []
    for r in results:
        n, m, p, c = r["N"], r["median_s"], r["peak_bytes"], r["counts"]
        skip = f"skipped (N² scores need {r['ssa_scores_bytes'] / 1e9:.1f} GB)"
        has = "ssa" in r["kinds"]
        rows_t.append([
            n, fmt_ms(m["ssa"]) if has else skip, fmt_ms(m["sdsa"]), fmt_ms(m["sasa"]),
            fmt_ratio(*r["ssa_over"]["sdsa"]) if has else "-", fmt_ratio(*r["ssa_over"]["sasa"]) if has else "-",
            fmt_bytes(p["ssa"]) if has else "-", fmt_bytes(p["sdsa"]), fmt_bytes(p["sasa"]),
        ])
        q = sum(c[k]["rates"]["q_lif"] for k in r["kinds"]) / len(r["kinds"])
        a = "/".join(f"{c[k]['rates'][ATTN_NEURON[k]]:.2f}" if k in r["kinds"] else "-" for k in KINDS)
        rows_c.append([
            n, fmt_count(c["ssa"]["counted"]) if has else "-", fmt_count(c["sdsa"]["counted"]),
            fmt_count(c["sasa"]["counted"]),
            fmt_count(r["ssa_dense_formula"]) + ("" if has else " (formula)"), fmt_count(c["sdsa"]["dense"]),
            fmt_count(c["sasa"]["dense"]), f"{q:.3f}", a,
        ])
    f, x = summary["fits"], summary["crossover"]
    rows_f = [[NAMES[k], _b(f[k]["time"]), _b(f[k]["peak"]), _b(f[k]["counted"]),
               _b(f[k]["dense_formula"] if k == "ssa" else f[k]["dense"])] for k in KINDS]
    rows_x = [[NAMES[k], x[k]["time"], x[k]["counted"], x[k]["dense"]] for k in ("sdsa", "sasa")]
    out = [
        head,
        format_table(["N", "SSA ms", "SDSA ms", "SASA ms", "SSA/SDSA", "SSA/SASA", "SSA peak", "SDSA peak",
                      "SASA peak"], rows_t,
                     title="Forward time (median of rounds), SSA/x per-round ratio median (min-max), > 1 = x faster; "
                           "allocator peak of one forward"),
        format_table(["N", "SSA counted", "SDSA counted", "SASA counted", "SSA dense", "SDSA dense", "SASA dense",
                      "Q rate", "attn neuron rate SSA/SDSA/SASA"], rows_c,
                     title="Counted operations per sample (SOPs + MACs, spikemask EnergyCounter, first_layer "
                           "as_input) and dense count (every input firing)"),
        format_table(["attention", "time b", "peak b", "counted b", "dense b"], rows_f,
                     title="Exponent b of cost ~ N^b: least-squares fit over all measured N / slope between "
                           "the two largest (SSA dense: formula, all N)"),
        format_table(["cheaper than SSA", "time", "counted ops", "dense count"], rows_x,
                     title="Crossover: smallest N from which the linear attention costs less than SSA"),
    ]
    return "\n".join(out)


def plot(results: list[dict[str, Any]], path: Path, info: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    panels = (("time", "forward time (s)"), ("peak", "allocator peak (bytes)"), ("counted", "ops per sample"))
    colors = {"ssa": "tab:red", "sdsa": "tab:blue", "sasa": "tab:green"}
    for ax, (what, label) in zip(axes, panels):
        for k in KINDS:
            s = _series(results, k, what)
            ax.plot(list(s), list(s.values()), "o-", color=colors[k], label=f"{NAMES[k]}")
            if what == "counted":
                d = {r["N"]: r["ssa_dense_formula"] for r in results} if k == "ssa" else _series(results, k, "dense")
                name = f"{NAMES[k]} dense" + (" (formula)" if k == "ssa" else "")
                ax.plot(list(d), list(d.values()), "--", color=colors[k], alpha=0.6, label=name)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("tokens N")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"Spiking attention cost vs tokens (D {D}, T {T}, batch {BATCH}); "
                 f"{info['cpu']}, torch {info['torch']}, {info['torch_threads']} thread(s)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    def extra(ap):
        ap.add_argument("--max-scores-gb", type=float, default=2.0,
                        help="skip SSA where its N x N scores would exceed this (default 2)")
        ap.add_argument("--qkv-rate", type=float, default=DENSITY,
                        help=f"firing rate the Q/K/V neurons are set to (default {DENSITY}); "
                             "0: BN statistics only (untrained, ~2 %%)")

    args, threads, repeat = parse_bench_args(argv, __doc__.splitlines()[0], "N up to 256, fewer rounds", 7, extra,
                                             section=True, plot="attention_cost.png")
    start = time.perf_counter()
    info = machine_info()
    sides = SIDES_QUICK if args.quick else SIDES_FULL
    results = [bench_n(side, repeat, args.max_scores_gb * 1e9, args.qkv_rate) for side in sides]
    summary = summarise(results)
    text = tables(results, summary, info, repeat, args.qkv_rate)
    print(f"bench_attention: torch threads = {threads}, rounds = {repeat}")
    print(text)
    if args.plot:
        plot(results, Path(args.plot), info)
        print(f"\nwrote {args.plot}")
    return {"name": "attention", "threads": threads, "repeat": repeat, "results": results, "summary": summary,
            "table": text, "output": args.output, "seconds": time.perf_counter() - start}


if __name__ == "__main__":
    write_standalone(main(), SECTION, "bench_attention.py")
