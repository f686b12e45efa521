"""Conversion speed: one step of a converted SNN, and a whole T = 32 run, against one forward of its QCFS ANN.

spikemask converts a QCFS ANN to a spiking network (``spikemask.conversion.convert``): every QCFS
activation becomes a single-step IF neuron (``StepIF``, threshold λ, reset by subtraction) and the
converted model's ``forward_steps(x, T)`` (``run_steps``) feeds the same analog image at every step,
calling the network's ``forward_ann`` once per step and averaging the logits. Nothing is skipped: every
layer (convolutions, linears, BatchNorm, attention matmuls, softmax) runs at every step on dense tensors
that happen to hold spikes (0 or λ), and the neuron replaces the QCFS function. So **one step costs
about one ANN forward**, give or take the difference between the neuron (add the input to the
membrane, compare, scale, subtract: ~5 elementwise kernels plus a membrane tensor kept per activation)
and QCFS (divide, multiply, add, floor, divide, clamp, multiply: ~7 kernels; on CPU the neuron's compare to
a bool tensor and bool-to-float cast are each ~3x a float multiply, so where activations outweigh the
matmuls a step can cost a little more than a forward, elsewhere a little less); and a T-step run costs
about T ANN forwards. The ratio ``T x step / ANN`` is the price of conversion on dense hardware (CPU, GPU);
the energy argument for SNNs rests on sparse, event-driven hardware instead (``bench_energy.py``).

Measured per model and batch, eval mode, ``torch.no_grad``, one seeded uniform random image batch:

* ``ANN``: one forward of the QCFS ANN.
* ``step``: one SNN step, the time of ``forward_steps(x, 8)`` / 8 (a block of 8 steps from fresh
  membranes: ``run_steps`` resets the neurons before and after, so the block includes allocating the
  membranes at its first step, the running mean of the logits and the final stack).
* ``step/ANN``: median (min-max) over interleaved rounds of the per-round ratio.
* ``T=32 run`` and ``run/ANN``: one ``forward_steps(x, 32)`` (the variants' T), and its per-round ratio
  to one ANN forward (32 would be exactly T forwards).
* memory (``peak_alloc_bytes``: the CPU allocator's peak above the level at the start, input and weights
  excluded): one ANN forward; the first SNN step (``forward_steps(x, 1)``: it allocates every membrane);
  a later step (membranes already there, so only its temporaries); and the membranes themselves (the
  state a run keeps between steps, one float per activation). A run's memory does not grow with T
  beyond the ``[T, B, classes]`` running means.
* the mean SNN firing rate over a T = 32 run (spikes / (neurons x steps), all ``StepIF`` together, and
  how many neuron layers never fired), the ANN's fraction of non-zero QCFS outputs, and how close the
  SNN's T = 32 logits are to the ANN's (mean |SNN - ANN| / mean |ANN|, and argmax agreement), so the
  reader knows the timed network is neither silent nor computing something else.

The models are untrained, so the ANN is first made to run in a sensible regime (``set_activity``):
during one pass over a calibration batch (the timed batch, completed to 8 images when it is smaller)
in train mode, a pre-hook sets each QCFS λ to the 99th percentile of its input (the usual
percentile choice of a conversion threshold), and ``calibrate_bn`` sets every BatchNorm's running
statistics to that batch's exact statistics. Each layer therefore sees inputs spread over [0, λ] and
its neurons fire at a moderate rate (reported). Swin's stochastic depth is set to 0 (in train mode it
would drop blocks during the calibration pass); no Random Spike Masking.

Models: ``swin_small_digits`` and ``resnet_small_digits`` (``[B, 1, 32, 32]``) at batch 1 and 32 (quick:
the same, fewer rounds); the full run adds the paper-sized ``resnet18_cifar`` and ``vgg16_cifar`` at
``[8, 3, 32, 32]``, with 3 rounds (``--large-repeat``): a T = 32 run of either takes 6-7 s on one core, the
whole case 40-50 s. ``--no-large`` leaves them out. MST's ``swin_t_bn_cifar`` (``[1, 3, 224, 224]``, 124
neurons) is left out of the full run: at 3 rounds it took about 90 s on one core (11 s per T = 32 run);
``--swin-t`` adds it. Timed rounds interleave the ANN, the 8-step block and the T = 32 run (order rotating
every round); a callable shorter than 30 ms is repeated within its timed block.

Run: ``.venv/bin/python benchmarks/bench_conversion.py [--quick] [--repeat N] [--threads N] [--no-large]
[--swin-t]`` (full ~2.5 min on 2 vCPUs, quick ~40 s; writes the section "Conversion: SNN step against one ANN
forward" of ``results.md``, or of ``results-quick.md`` with ``--quick``).
"""

from __future__ import annotations

import datetime as _dt
import math
import time
from pathlib import Path
from typing import Any, Callable

import torch
from _common import (
    Timing,
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
SECTION = "Conversion: SNN step against one ANN forward"
SMALL = [("swin_small_digits", 1), ("swin_small_digits", 32), ("resnet_small_digits", 1), ("resnet_small_digits", 32)]
LARGE = [("resnet18_cifar", 8), ("vgg16_cifar", 8)]  # paper-sized, in the full run
SWIN_T = ("swin_t_bn_cifar", 1)  # ~90 s at 3 rounds on one core: only with --swin-t
T_RUN, BLOCK = 32, 8  # the variants' T; steps per timed block
LAMBDA_Q = 0.99  # QCFS λ = this quantile of the activation's input
CALIB_MIN = 8  # images in the calibration batch at least
MIN_CALL_S = 0.03  # a timed call shorter than this is repeated within its block


def _quantile(t: torch.Tensor, q: float, max_n: int = 1 << 20) -> float:
    flat = t.detach().flatten().float()
    if flat.numel() > max_n:  # torch.quantile refuses huge inputs; a fixed strided sample is plenty
        flat = flat[:: math.ceil(flat.numel() / max_n)]
    return float(torch.quantile(flat, q))


def set_activity(model: nn.Module, batch: torch.Tensor, q: float = LAMBDA_Q) -> dict[str, float]:
    """λ of every QCFS := the ``q`` quantile of its input, and BatchNorm statistics from ``batch``, in one pass.

    The pass runs in train mode (``calibrate_bn``), so each BatchNorm normalises with the batch's own
    statistics, which it also stores as its running statistics: the λ a pre-hook sets from the input it
    sees is the λ the eval-mode model will see too. A layer whose inputs are never positive keeps λ.
    """
    from spikemask.conversion import QCFS

    lams: dict[str, float] = {}

    def hook(name: str) -> Callable[[nn.Module, tuple[torch.Tensor, ...]], None]:
        def pre(mod: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
            lam = _quantile(args[0], q)
            if not lam > 0:
                lam = float(args[0].max())
            if lam > 0:
                with torch.no_grad():
                    mod.lam.fill_(lam)
            lams[name] = float(mod.lam)

        return pre

    handles = [m.register_forward_pre_hook(hook(n)) for n, m in model.named_modules() if isinstance(m, QCFS)]
    try:
        calibrate_bn(model, [batch])
    finally:
        for h in handles:
            h.remove()
    return lams


def build(name: str, batch: int) -> tuple[nn.Module, nn.Module, torch.Tensor, dict[str, float]]:
    """The calibrated QCFS ANN, its conversion (T 32), the timed input ``[B, C, S, S]``, and the λ set."""
    from spikemask.conversion import convert
    from spikemask.models import create_model

    torch.manual_seed(0)
    ann = create_model(name, **({"drop_path": 0.0} if name.startswith("swin") else {}))
    c = ann.config
    g = torch.Generator().manual_seed(0)
    calib = torch.rand(max(batch, CALIB_MIN), c.in_channels, c.img_size, c.img_size, generator=g)
    lams = set_activity(ann, calib)
    ann.eval()
    snn = convert(ann, T=T_RUN)
    return ann, snn, calib[:batch].contiguous(), lams


def _step_fn(snn: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """One step of the converted network (what ``run_steps`` calls T times)."""
    return snn.forward_ann if hasattr(snn, "forward_ann") else snn.net


def activity(ann: nn.Module, snn: nn.Module, x: torch.Tensor) -> dict[str, Any]:
    """Firing rates over a T = 32 run, the ANN's non-zero QCFS outputs, and the SNN-ANN agreement."""
    from spikemask.conversion import QCFS, StepIF

    spikes, sites, per_layer = [0], [0], []

    def count(mod: nn.Module, args: Any, out: torch.Tensor) -> None:
        n = int((out != 0).sum())
        spikes[0] += n
        sites[0] += out.numel()
        per_layer.append((id(mod), n))

    handles = [m.register_forward_hook(count) for m in snn.modules() if isinstance(m, StepIF)]
    with torch.no_grad():
        steps = snn.forward_steps(x, T_RUN)
    for h in handles:
        h.remove()
    fired = {k for k, n in per_layer if n}
    neurons = [m for m in snn.modules() if isinstance(m, StepIF)]

    nz, tot = [0], [0]

    def ann_count(mod: nn.Module, args: Any, out: torch.Tensor) -> None:
        nz[0] += int((out != 0).sum())
        tot[0] += out.numel()

    handles = [m.register_forward_hook(ann_count) for m in ann.modules() if isinstance(m, QCFS)]
    with torch.no_grad():
        logits = ann(x)
    for h in handles:
        h.remove()
    final = steps[-1]
    return {
        "snn_rate": spikes[0] / sites[0], "neuron_layers": len(neurons),
        "silent_layers": sum(id(m) not in fired for m in neurons),
        "ann_nonzero": nz[0] / tot[0],
        "rel_err": float((final - logits).abs().mean() / logits.abs().mean().clamp_min(1e-12)),
        "argmax_agree": float((final.argmax(-1) == logits.argmax(-1)).float().mean()),
    }


def memory(ann: nn.Module, snn: nn.Module, x: torch.Tensor) -> dict[str, int]:
    """Allocator peaks of one ANN forward, the first SNN step, a later step; the membranes' bytes."""
    from spikemask.conversion import StepIF, reset_neurons

    step = _step_fn(snn)

    def ann_fwd() -> torch.Tensor:
        with torch.no_grad():
            return ann(x)

    def later_step() -> torch.Tensor:
        with torch.no_grad():
            return step(x)

    out = {"ann": peak_alloc_bytes(ann_fwd), "first_step": peak_alloc_bytes(lambda: snn.forward_steps(x, 1))}
    reset_neurons(snn)
    later_step()  # membranes now exist
    out["later_step"] = peak_alloc_bytes(later_step)
    out["membranes"] = sum(m.v.nbytes for m in snn.modules() if isinstance(m, StepIF) and m.v is not None)
    reset_neurons(snn)
    return out


def _repeated(fn: Callable[[], Any], k: int) -> Callable[[], None]:
    def run() -> None:
        for _ in range(k):
            fn()

    return run


def bench_case(name: str, batch: int, repeat: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    ann, snn, x, lams = build(name, batch)

    def ann_fwd() -> torch.Tensor:
        with torch.no_grad():
            return ann(x)

    calls = {"ann": ann_fwd, "block": lambda: snn.forward_steps(x, BLOCK), "run": lambda: snn.forward_steps(x, T_RUN)}
    # how often each callable runs per timed block (a short one is repeated, so that no block is dominated
    # by timer and scheduler noise), from two untimed ANN forwards (a step costs about one; interleaved()
    # then warms every callable up once)
    ann_fwd()
    s = time.perf_counter()
    ann_fwd()
    t_ann = max(time.perf_counter() - s, 1e-9)
    reps = {k: max(1, math.ceil(MIN_CALL_S / (t_ann * steps))) for k, steps in (("ann", 1), ("block", BLOCK),
                                                                                  ("run", T_RUN))}
    raw = interleaved({k: _repeated(fn, reps[k]) for k, fn in calls.items()}, repeat=repeat, number=1, warmup=1)
    t = {
        "ann": Timing("ann", [r / reps["ann"] for r in raw["ann"].rounds]),
        "step": Timing("step", [r / reps["block"] / BLOCK for r in raw["block"].rounds]),
        "run": Timing("run", [r / reps["run"] for r in raw["run"].rounds]),
    }
    act = activity(ann, snn, x)
    mem = memory(ann, snn, x)
    params = sum(p.numel() for p in ann.parameters())
    return {
        "model": name, "batch": batch, "input": list(x.shape), "params": params, "T": T_RUN, "block": BLOCK,
        "reps": reps, "rounds_s": {k: v.rounds for k, v in t.items()}, "median_s": {k: v.median for k, v in t.items()},
        "step_over_ann": ratio_stats(t["step"], t["ann"]), "run_over_ann": ratio_stats(t["run"], t["ann"]),
        "activity": act, "memory": mem, "lambda_range": (min(lams.values()), max(lams.values())),
        "seconds": time.perf_counter() - t0,
    }


def tables(results: list[dict[str, Any]], info: dict[str, Any], repeat: int, large_repeat: int | None) -> str:
    rounds = f"{repeat} rounds" + (f" ({large_repeat} for the paper-sized models)" if large_repeat else "")
    head = (f"CPU {info['cpu']} ({info['logical_cpus']} logical), torch {info['torch']}, "
            f"{info['torch_threads']} thread(s), {rounds}, {_dt.date.today().isoformat()}, 1-min load average "
            f"{info.get('load_avg_1m', '?')} at the start. "
            f"Untrained models, QCFS λ = p{LAMBDA_Q * 100:g} of each activation's input, BN statistics from a seeded "
            f"uniform random batch; eval, no_grad. step = forward_steps(x, {BLOCK}) / {BLOCK}; run = "
            f"forward_steps(x, {T_RUN}).")
    rows_t, rows_m = [], []
    for r in results:
        m, a, mem = r["median_s"], r["activity"], r["memory"]
        shape = "x".join(str(s) for s in r["input"])
        rows_t.append([r["model"], shape, fmt_ms(m["ann"]), fmt_ms(m["step"]), fmt_ratio(*r["step_over_ann"]),
                       fmt_ms(m["run"]), fmt_ratio(*r["run_over_ann"])])
        rows_m.append([r["model"], shape, fmt_bytes(mem["ann"]), fmt_bytes(mem["first_step"]),
                       fmt_bytes(mem["later_step"]), fmt_bytes(mem["membranes"]),
                       f"{a['snn_rate']:.3f}", f"{a['silent_layers']}/{a['neuron_layers']}",
                       f"{a['ann_nonzero']:.3f}", f"{a['rel_err']:.3f}", f"{a['argmax_agree']:.2f}"])
    return "\n".join([
        head,
        format_table(["model", "input", "ANN ms", "step ms", "step/ANN", f"T={T_RUN} run ms", "run/ANN"], rows_t,
                     title="Time: one ANN forward, one SNN step, a whole run (medians of rounds); ratios: median "
                           f"(min-max) of per-round ratios (step/ANN ~1: a step runs every layer; run/ANN ~{T_RUN})"),
        format_table(["model", "input", "ANN peak", "step 1 peak", "later step peak", "membranes", "SNN rate",
                      "silent layers", "ANN non-zero", "logit error", "argmax agree"], rows_m,
                     title="Memory (allocator peak above the start, input and weights excluded; step 1 allocates the "
                           f"membranes) and activity over a T={T_RUN} run (SNN rate: spikes / (neurons x steps); "
                           f"logit error: mean abs(SNN - ANN) / mean abs(ANN) after {T_RUN} steps)"),
    ])


def main(argv: list[str] | None = None) -> dict[str, Any]:
    def extra(ap):
        ap.add_argument("--no-large", action="store_true",
                        help="leave out the paper-sized resnet18_cifar and vgg16_cifar (full run)")
        ap.add_argument("--swin-t", action="store_true",
                        help="add MST's swin_t_bn_cifar at batch 1 (~90 s on one core at 3 rounds; also with --quick)")
        ap.add_argument("--large-repeat", type=int, default=3,
                        help="timed rounds for the paper-sized models (default 3, at most --repeat)")

    args, threads, repeat = parse_bench_args(argv, __doc__.splitlines()[0],
                                             "small digits models only, fewer rounds", 7, extra, section=True)
    start = time.perf_counter()
    info = machine_info()
    large = [] if (args.quick or args.no_large) else list(LARGE)
    large += [SWIN_T] if args.swin_t else []
    large_repeat = min(repeat, args.large_repeat) if large else None
    results = []
    for name, batch in SMALL + large:
        rep = large_repeat if (name, batch) in large else repeat
        print(f"  {name} batch {batch}, {rep} rounds ...", flush=True)
        results.append(bench_case(name, batch, rep))
    text = tables(results, info, repeat, large_repeat)
    print(f"bench_conversion: torch threads = {threads}, rounds = {repeat}")
    print(text)
    return {"name": "conversion", "threads": threads, "repeat": repeat, "results": results, "table": text,
            "output": args.output, "seconds": time.perf_counter() - start}


if __name__ == "__main__":
    write_standalone(main(), SECTION, "bench_conversion.py")
