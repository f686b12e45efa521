"""Multi-step LIF / IF neurons: spikemask's fused autograd function vs SpikingJelly 2.0 on CPU.

What runs (all with the reset detached from the graph, sigmoid surrogate alpha 4, threshold 1):

* ``ours``: :class:`spikemask.neurons.LIF` / :class:`~spikemask.neurons.IF` (one autograd node for
  the whole sequence, saves only the membrane ``H``).
* ``sj``: ``neuron.LIFNode(tau=2., detach_reset=True, step_mode='m')`` /
  ``neuron.IFNode(v_reset=None, detach_reset=True, step_mode='m')`` (soft reset, as our IF).
  SpikingJelly 2.0 has no ``backend=`` argument any more: on CPU the neuron calls a registered
  operator (``torch.ops.sj_lif.forward``) whose CPU autograd kernel is the Torch reference, a
  per-step Python loop differentiated by autograd. Every ``LIFNode``/``IFNode`` takes this path on CPU.
* ``sj_simple``: ``neuron.SimpleLIFNode`` / ``SimpleIFNode``, SpikingJelly's other CPU path (the
  pure-PyTorch charge / fire / reset interface).

Measured per shape: ``fwd`` (inference forward under ``torch.no_grad``) and ``fwd+bwd`` (forward
with an input that requires grad, then ``backward`` of a fixed upstream gradient). Ratios are
``sj / ours`` round by round (> 1: ours faster). Memory:

* ``saved``: bytes autograd keeps for backward (``saved_tensors_hooks``, unique storages): the
  part of a model's training memory that a neuron layer is responsible for between forward and
  backward; shown also as a multiple of the input's size.
* ``peak``: peak extra bytes of the CPU allocator during forward + backward (``torch.profiler``
  memory events), temporaries and the ``dL/dx`` left in ``x.grad`` included; the input itself is
  allocated before the probe and not counted.

Run: ``.venv/bin/python benchmarks/bench_neurons.py [--quick] [--repeat N] [--threads N]``.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import torch
from _common import (
    fmt_bytes,
    fmt_ms,
    fmt_ratio,
    format_table,
    interleaved,
    parse_bench_args,
    peak_alloc_bytes,
    ratio_stats,
    saved_tensor_bytes,
    write_standalone,
)

SECTION = "Neurons (multi-step LIF / IF)"

# (label, shape): token tensors [T, B, N, D] and conv feature maps [T, B, C, H, W] of the
# Spikformer variants this project trains (N-Digits 2-64, event Spikformer-2-256)
SHAPES_FULL = [
    ("tokens ndigits T4", (4, 32, 16, 256)),
    ("tokens ndigits T8", (8, 32, 16, 256)),
    ("tokens dvs T16", (16, 16, 64, 256)),
    ("conv ndigits T8", (8, 32, 8, 32, 32)),
    ("conv dvs T4", (4, 2, 32, 128, 128)),
]
SHAPES_QUICK = [SHAPES_FULL[0], SHAPES_FULL[3]]


def _make_impls(kind: str) -> dict[str, Callable[[torch.Tensor], torch.Tensor]]:
    """name -> callable(x_seq) -> spikes; SpikingJelly nodes are reset before every call."""
    from spikingjelly.activation_based import functional, neuron, surrogate

    from spikemask.neurons import NeuronConfig, make_neuron

    ours = make_neuron(NeuronConfig(kind=kind, tau=2.0, surrogate="sigmoid", alpha=4.0))
    if kind == "lif":
        sj = neuron.LIFNode(tau=2.0, detach_reset=True, step_mode="m", surrogate_function=surrogate.Sigmoid(4.0))
        simple = neuron.SimpleLIFNode(tau=2.0, decay_input=True, detach_reset=True, step_mode="m",
                                      surrogate_function=surrogate.Sigmoid(4.0))
    else:  # reset by subtraction, starting from 0, as spikemask's IF
        sj = neuron.IFNode(v_reset=None, detach_reset=True, step_mode="m", surrogate_function=surrogate.Sigmoid(4.0))
        simple = neuron.SimpleIFNode(v_reset=None, detach_reset=True, step_mode="m",
                                     surrogate_function=surrogate.Sigmoid(4.0))

    def wrap(node):
        def run(x: torch.Tensor) -> torch.Tensor:
            functional.reset_net(node)
            return node(x)

        return run

    return {"ours": ours, "sj": wrap(sj), "sj_simple": wrap(simple)}


def _inputs(shape: tuple[int, ...], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g) * 1.5 + 0.5  # firing rates ~ 10-30 %
    grad = torch.randn(shape, generator=g)
    return x, grad


def _check(impls, x: torch.Tensor, grad: torch.Tensor) -> dict[str, tuple[float, float]]:
    """Max |Δ spikes| and max |Δ dL/dx| of every implementation against ours (sanity, not timing)."""
    ref = None
    out = {}
    for name, fn in impls.items():
        xi = x.clone().requires_grad_(True)
        s = fn(xi)
        s.backward(grad)
        if ref is None:
            ref = (s.detach(), xi.grad)
        out[name] = (float((s.detach() - ref[0]).abs().max()), float((xi.grad - ref[1]).abs().max()))
    return out


def bench_shape(kind: str, label: str, shape, repeat: int) -> dict[str, Any]:
    impls = _make_impls(kind)
    x, grad = _inputs(shape)
    x_leaf = x.clone().requires_grad_(True)

    def fwd(fn):
        def run():
            with torch.no_grad():
                return fn(x)

        return run

    def fwd_bwd(fn):
        def run():
            x_leaf.grad = None
            fn(x_leaf).backward(grad)

        return run

    t_fwd = interleaved({n: fwd(f) for n, f in impls.items()}, repeat=repeat, warmup=2)
    t_bwd = interleaved({n: fwd_bwd(f) for n, f in impls.items()}, repeat=repeat, warmup=2)

    saved = {}
    peak = {}
    for n, f in impls.items():
        xs = x.clone().requires_grad_(True)
        saved[n] = saved_tensor_bytes(lambda f=f, xs=xs: f(xs))

        xp = x.clone().requires_grad_(True)  # outside the probe: only the neuron's own memory counts

        def step(f=f, xp=xp):
            xp.grad = None
            f(xp).backward(grad)  # the gradient dL/dx it leaves behind is part of the peak

        step()  # first call may allocate caches; measure the second
        peak[n] = peak_alloc_bytes(step)
    with torch.no_grad():
        rate = float(impls["ours"](x).mean())
    return {
        "kind": kind,
        "label": label,
        "shape": list(shape),
        "input_bytes": x.numel() * x.element_size(),
        "firing_rate": rate,
        "fwd": {n: t.rounds for n, t in t_fwd.items()},
        "fwd_bwd": {n: t.rounds for n, t in t_bwd.items()},
        "fwd_median_s": {n: t.median for n, t in t_fwd.items()},
        "fwd_bwd_median_s": {n: t.median for n, t in t_bwd.items()},
        "fwd_ratio": {n: ratio_stats(t_fwd[n], t_fwd["ours"]) for n in impls if n != "ours"},
        "fwd_bwd_ratio": {n: ratio_stats(t_bwd[n], t_bwd["ours"]) for n in impls if n != "ours"},
        "saved_bytes": saved,
        "peak_bytes": peak,
        "check": _check(impls, x, grad),
    }


def tables(results: list[dict[str, Any]]) -> str:
    out = []
    for kind in ("lif", "if"):
        rows_t, rows_m = [], []
        for r in (r for r in results if r["kind"] == kind):
            shape = "x".join(map(str, r["shape"]))
            f, b = r["fwd_median_s"], r["fwd_bwd_median_s"]
            rows_t.append([
                r["label"], shape, f"{r['firing_rate']:.2f}",
                fmt_ms(f["ours"]), fmt_ms(f["sj"]), fmt_ratio(*r["fwd_ratio"]["sj"]),
                fmt_ms(b["ours"]), fmt_ms(b["sj"]), fmt_ratio(*r["fwd_bwd_ratio"]["sj"]),
                fmt_ratio(*r["fwd_ratio"]["sj_simple"]), fmt_ratio(*r["fwd_bwd_ratio"]["sj_simple"]),
            ])
            xb = r["input_bytes"]
            s, p = r["saved_bytes"], r["peak_bytes"]
            ck = r["check"]
            rows_m.append([
                r["label"], fmt_bytes(xb),
                f"{fmt_bytes(s['ours'])} ({s['ours'] / xb:.1f}x)", f"{fmt_bytes(s['sj'])} ({s['sj'] / xb:.1f}x)",
                f"{fmt_bytes(s['sj_simple'])} ({s['sj_simple'] / xb:.1f}x)",
                f"{fmt_bytes(p['ours'])} ({p['ours'] / xb:.1f}x)", f"{fmt_bytes(p['sj'])} ({p['sj'] / xb:.1f}x)",
                f"{fmt_bytes(p['sj_simple'])} ({p['sj_simple'] / xb:.1f}x)",
                f"{max(ck['sj'][0], ck['sj_simple'][0]):g} / {max(ck['sj'][1], ck['sj_simple'][1]):.1e}",
            ])
        if not rows_t:
            continue
        name = "LIF (tau 2, hard reset)" if kind == "lif" else "IF (reset by subtraction)"
        out.append(format_table(
            ["shape", "T x B x ...", "rate", "fwd ours ms", "fwd sj ms", "fwd sj/ours",
             "f+b ours ms", "f+b sj ms", "f+b sj/ours", "fwd simple/ours", "f+b simple/ours"],
            rows_t, title=f"{name}: time, median of rounds; ratio median (min-max) over rounds, >1 = ours faster"))
        out.append(format_table(
            ["shape", "input", "saved ours", "saved sj", "saved simple", "peak ours", "peak sj", "peak simple",
             "max |Δs| / |Δgrad|"],
            rows_m,
            title=f"{name}: memory of forward+backward (saved for backward; allocator peak), "
                  "x = multiple of input size"))
    return "\n".join(out)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args, threads, repeat = parse_bench_args(argv, __doc__.splitlines()[0], "two shapes, fewer rounds", 7,
                                             section=True)
    start = time.perf_counter()
    shapes = SHAPES_QUICK if args.quick else SHAPES_FULL
    results = []
    for kind in ("lif", "if"):
        for label, shape in shapes:
            results.append(bench_shape(kind, label, shape, repeat=repeat))
    text = tables(results)
    print(f"bench_neurons: torch threads = {threads}, rounds = {repeat}")
    print(text)
    return {"name": "neurons", "threads": threads, "repeat": repeat, "results": results, "table": text,
            "output": args.output, "seconds": time.perf_counter() - start}


if __name__ == "__main__":
    write_standalone(main(), SECTION, "bench_neurons.py")
