"""Shared helpers of the benchmarks: interleaved timing, memory probes, tables, machine info.

Timing rule (the project's): every number that compares two implementations is a ratio taken in
the same process, with the implementations interleaved round by round, so that a background job
that slows the machine for a while slows both sides of the ratio. We report medians over rounds and
the spread (min..max of the per-round ratios), never a single run.
"""

from __future__ import annotations

import ast
import contextlib
import gc
import importlib.util
import logging
import math
import os
import platform
import re
import statistics
import struct
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Union

import numpy as np
import torch

# importing SpikingJelly registers triton ops; without triton torch warns once per op (noise, not news)
logging.getLogger("torch._library.triton").setLevel(logging.ERROR)

__all__ = [
    "Timing",
    "interleaved",
    "calibrate_bn",
    "ratio_stats",
    "saved_tensor_bytes",
    "peak_alloc_bytes",
    "format_table",
    "machine_info",
    "set_threads",
    "fmt_ms",
    "fmt_ratio",
    "fmt_bytes",
]


@dataclass
class Timing:
    """Per-call seconds of one implementation, one value per round."""

    name: str
    rounds: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.rounds)

    @property
    def spread(self) -> tuple[float, float]:
        return min(self.rounds), max(self.rounds)


HERE = Path(__file__).resolve().parent


def parse_bench_args(
    argv: list[str] | None, description: str, quick_help: str, full_repeat: int,
    extra: Callable[[Any], None] | None = None, *, section: bool = False, plot: str | None = None,
):
    """The options every benchmark takes (``extra(parser)`` adds its own); returns (args, threads set, timed rounds).

    ``section``: the script writes its own section of a results file when run alone (:func:`write_standalone`):
    ``--output``, resolved to ``results.md`` (``results-quick.md`` with ``--quick``; ``-``: nowhere).
    ``plot``: the script draws a figure, default file ``plot`` in this folder: ``--plot``, resolved to that
    path, or to None with ``--quick`` or ``-``.
    """
    import argparse

    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--quick", action="store_true", help=quick_help)
    ap.add_argument("--repeat", type=int, default=None, help=f"timed rounds (default {full_repeat}, quick 3)")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1: stable on a shared box)")
    if section:
        ap.add_argument("--output", default=None, help="Markdown file whose section to replace when run as a "
                        "script (default results.md, results-quick.md with --quick; '-': none)")
    if plot:
        ap.add_argument("--plot", default=None,
                        help=f"plot file (default {plot}; none with --quick unless given; '-': none)")
    if extra is not None:
        extra(ap)
    args = ap.parse_args(argv)
    if section:
        args.output = args.output or str(HERE / ("results-quick.md" if args.quick else "results.md"))
    if plot:
        args.plot = args.plot or (None if args.quick else str(HERE / plot))
        args.plot = None if args.plot == "-" else args.plot
    return args, set_threads(args.threads), args.repeat or (3 if args.quick else full_repeat)


def load_sj(module: str, names: tuple[str, ...]) -> dict[str, Callable]:
    """Functions ``names`` (and the constants) of ``spikingjelly/datasets/<module>.py``, without importing it."""
    spec = importlib.util.find_spec("spikingjelly")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("spikingjelly is not installed")
    src = Path(list(spec.submodule_search_locations)[0]) / "datasets" / f"{module}.py"
    tree = ast.parse(src.read_text(), filename=str(src))
    body = [n for n in tree.body if (isinstance(n, ast.FunctionDef) and n.name in names) or
            (isinstance(n, ast.Assign) and all(isinstance(t, ast.Name) for t in n.targets)
             and isinstance(n.value, ast.Constant))]
    missing = set(names) - {n.name for n in body if isinstance(n, ast.FunctionDef)}
    if missing:
        raise ImportError(f"{src} has no top-level {', '.join(sorted(missing))}")
    ns: dict[str, Any] = {"np": np, "struct": struct, "Union": Union, "Optional": Optional, "Path": Path,
                          "logger": logging.getLogger("spikingjelly-extract")}
    exec(compile(ast.Module(body=body, type_ignores=[]), str(src), "exec"), ns)
    return {n: ns[n] for n in names}


def set_threads(n: int | None) -> int:
    """Fix torch's intra-op threads (None: keep torch's default) and return the number in use."""
    if n is not None:
        torch.set_num_threads(int(n))
    return torch.get_num_threads()


def interleaved(
    fns: dict[str, Callable[[], Any]], *, repeat: int, number: int | None = None, warmup: int = 1,
    min_block_s: float = 0.03,
) -> dict[str, Timing]:
    """Time every callable ``repeat`` rounds; in each round each one runs ``number`` times back to back.

    The order of the callables is rotated every round (no implementation always goes first, in a
    cache warmed by the other). ``warmup`` untimed calls of each come first (at least one).
    ``number=None`` picks it from the slowest warm-up call so that a timed block lasts at least
    ``min_block_s`` (short calls are timed in blocks, where the timer's and the scheduler's noise
    matter less). Garbage is collected before every timed block so that a collection triggered by
    one side is not billed to the other.
    """
    names = list(fns)
    slowest = 0.0
    for _ in range(max(1, warmup)):
        for n in names:
            t0 = time.perf_counter()
            fns[n]()
            slowest = max(slowest, time.perf_counter() - t0)
    if number is None:
        number = max(1, math.ceil(min_block_s / max(slowest, 1e-9)))
    rounds: dict[str, list[float]] = {n: [] for n in names}
    for r in range(repeat):
        order = names[r % len(names):] + names[: r % len(names)]
        for n in order:
            gc.collect()
            fn = fns[n]
            t0 = time.perf_counter()
            for _ in range(number):
                fn()
            rounds[n].append((time.perf_counter() - t0) / number)
    return {n: Timing(n, rounds[n]) for n in names}


def calibrate_bn(model: torch.nn.Module, batches: list[torch.Tensor]) -> None:
    """Set every BatchNorm's running mean/var to the exact average over ``batches`` (no gradients).

    An untrained model with default statistics is nearly silent in eval mode; a silent network makes
    meaningless counts. Leaves the model in eval mode.
    """
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average
    model.train()
    with torch.no_grad():
        for x in batches:
            model(x)
    for m, mom in zip(bns, saved):
        m.momentum = mom
    model.eval()


def ratio_stats(num: Timing, den: Timing) -> tuple[float, float, float]:
    """Median, min and max over rounds of ``num / den`` (round-by-round, same conditions)."""
    rs = [a / b for a, b in zip(num.rounds, den.rounds)]
    return statistics.median(rs), min(rs), max(rs)


def saved_tensor_bytes(fn: Callable[[], Any]) -> int:
    """Bytes of the tensors that autograd saves for backward while ``fn`` runs.

    Counted once per underlying storage (several saved views of one buffer cost one buffer),
    with the storage's full size. This is the memory the backward graph keeps alive between the
    forward and the backward pass: the part that grows with T x batch x layers in a model.
    The return value of ``fn`` is kept alive until the count is taken, then released.
    """
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        st = t.untyped_storage()
        storages[st.data_ptr()] = st.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    del out
    return sum(storages.values())


@contextlib.contextmanager
def _quiet_stderr():
    """Silence C-level stderr (kineto prints a line at every profiler start/stop)."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(devnull)
        os.close(saved)


def peak_alloc_bytes(fn: Callable[[], Any]) -> int:
    """Peak of the CPU allocator's live bytes while ``fn`` runs, above the level at its start.

    Uses ``torch.profiler`` with ``profile_memory=True``: every allocation and free of the CPU
    allocator is an event with a signed size; the running sum in time order, maximised, is the peak
    of the extra memory ``fn`` needed (temporaries included). Tensors alive before ``fn`` are not
    counted; if ``fn`` frees one of them the running sum drops below zero, which can only lower
    the peak (never inflate it).
    """
    from torch.profiler import ProfilerActivity, profile

    gc.collect()
    with _quiet_stderr():
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            out = fn()
            del out
    events = [(e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    events.sort(key=lambda e: e[0])
    live = peak = 0
    for _, nbytes in events:
        live += nbytes
        peak = max(peak, live)
    return peak


def format_table(headers: list[str], rows: list[list[Any]], title: str | None = None) -> str:
    """A plain-text table that is also a Markdown table (pipes, header rule)."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    def line(r: list[str]) -> str:
        return "| " + " | ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))) + " |"
    rule = "|" + "|".join("-" * (w + 1) + ":" if i else ":" + "-" * (w + 1) for i, w in enumerate(widths)) + "|"
    out = [line(cells[0]), rule] + [line(r) for r in cells[1:]]
    if title:
        out.insert(0, f"\n{title}\n")
    return "\n".join(out)


def fmt_ms(seconds: float) -> str:
    return f"{seconds * 1e3:.2f}" if seconds < 10 else f"{seconds * 1e3:.0f}"


def fmt_ratio(med: float, lo: float, hi: float) -> str:
    return f"{med:.2f} ({lo:.2f}-{hi:.2f})"


def fmt_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict[str, Any]:
    import numpy as np

    info = {
        "cpu": _cpu_model(),
        "logical_cpus": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
    }
    try:
        from importlib.metadata import version

        info["spikingjelly"] = version("spikingjelly")
    except Exception:  # noqa: BLE001 - informational only
        info["spikingjelly"] = "not installed"
    try:
        info["load_avg_1m"] = round(os.getloadavg()[0], 2)
    except OSError:
        pass
    return info


def replace_section(path: Path, section: str, script: str, text: str, seconds: float) -> None:
    """Replace (or append) the section ``## <section>`` of the Markdown file ``path``; the others stay."""
    body = f"## {section}\n\n`benchmarks/{script}`, {seconds:.0f} s wall.\n\n{text.strip()}\n"
    old = path.read_text() if path.exists() else "# spikemask benchmark results\n"
    pattern = re.compile(rf"^## {re.escape(section)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(old):
        new = pattern.sub(lambda _: body + "\n", old).rstrip() + "\n"
    else:
        new = old.rstrip() + "\n\n" + body
    path.write_text(new)


def write_standalone(res: dict[str, Any], section: str, script: str) -> None:
    """A benchmark run on its own (not through run_all, which writes the whole file itself) replaces its own
    section of ``res["output"]`` ('-': nowhere)."""
    if res["output"] != "-":
        replace_section(Path(res["output"]), section, script, res["table"], res["seconds"])
        print(f"wrote section '{section}' of {res['output']}")


def training_step(model: torch.nn.Module, call: Callable[[Any], Any], opt: Any, x: Any, y: Any) -> Callable[[], None]:
    """One timed training step: train mode, zero grads, cross-entropy of ``call(x)`` against ``y``, backward, step."""
    import torch.nn.functional as F

    def step() -> None:
        model.train()
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(call(x), y).backward()
        opt.step()

    return step


def inference(model: torch.nn.Module, call: Callable[[Any], Any], x: Any) -> Callable[[], None]:
    """One timed inference pass: eval mode, ``call(x)`` without autograd."""
    def run() -> None:
        model.eval()
        with torch.no_grad():
            call(x)

    return run


def time_train_infer(models: dict[str, torch.nn.Module], calls: dict[str, Callable[[Any], Any]], x: Any, y: Any,
                     repeat: int, warmup: int) -> tuple[dict[str, Timing], dict[str, Timing], dict[str, int]]:
    """(training-step timings, inference timings, allocator peak of a training step) of each named model, the
    models interleaved round by round; ``calls[name](x)`` gives its logits; AdamW (lr 1e-4) per model. The
    peak is taken after the timed steps, when the optimizer state exists: a steady-state step's."""
    opts = {n: torch.optim.AdamW(m.parameters(), lr=1e-4) for n, m in models.items()}
    steps = {n: training_step(models[n], calls[n], opts[n], x, y) for n in calls}
    t_train = interleaved(steps, repeat=repeat, warmup=warmup)
    t_infer = interleaved({n: inference(models[n], calls[n], x) for n in calls}, repeat=repeat, warmup=warmup)
    return t_train, t_infer, {n: peak_alloc_bytes(steps[n]) for n in calls}


def gemm_peak_flops(n: int = 1024, rounds: int = 5, min_block_s: float = 0.2) -> float:
    """Best fp32 ``torch.mm`` throughput (FLOP/s) of an ``n``³ product over ``rounds`` timed blocks."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    out = torch.empty(n, n)
    torch.mm(a, b, out=out)
    t0 = time.perf_counter()
    torch.mm(a, b, out=out)
    number = max(1, int(min_block_s / max(time.perf_counter() - t0, 1e-9)))
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(number):
            torch.mm(a, b, out=out)
        best = min(best, (time.perf_counter() - t0) / number)
    return 2.0 * n ** 3 / best


def dense_flops_per_sample(model: torch.nn.Module, T: int) -> float:
    """Forward FLOPs of one sample, every input treated as firing (spikemask's dense count, 2 per MAC)."""
    from spikemask.energy import dense_energy

    return 2.0 * T * float(dense_energy(model, T=T)["totals"]["dense_macs_per_step"])


CACHE = HERE / ".cache"  # trained benchmark models (git-ignored)


def trained_ndigits(name: str, epochs: int = 5, overrides: tuple[str, ...] = (),
                    tag: str = "") -> tuple[torch.nn.Module, Any, float]:
    """(model in eval mode, its test batches [T, B, ...] of 64, final test accuracy %) of ``name`` trained on
    the bundled N-Digits by spikemask's own loop (preset ``spikformer_ndigits`` with ``model.name=name``,
    ``epochs`` epochs, seed 0, unmasked unless ``overrides`` say otherwise, e.g. ``model.mask.ratio=0.5``;
    ``tag`` names that variant), so benchmarks see a trained model's real firing rates. Trained once (a few
    minutes on 2 cores; the data set is built on first use) and cached in ``benchmarks/.cache/``."""
    import json

    from torch.utils.data import DataLoader, Subset

    from spikemask.data import get_dataset
    from spikemask.train import fit, load_model, load_run_config
    from spikemask.train.evaluate import TimeFirstBatches

    run = f"{name}_e{epochs}{'_' + tag if tag else ''}"
    if not (CACHE / run / "final.json").exists():
        print(f"training {run} on N-Digits (cached in {CACHE / run}) ...", flush=True)
        cfg = load_run_config("spikformer_ndigits", [f"model.name={name}", f"schedule.epochs={epochs}",
                                                     f"out_dir={CACHE}", f"name={run}", "train.eval_mask_seeds=1",
                                                     "device=cpu", *overrides])
        fit(cfg, overwrite=True)
    model, _ = load_model(CACHE / run / "last.pt")
    acc = float(json.loads((CACHE / run / "final.json").read_text())["final"]["acc"])
    ds = get_dataset("ndigits", split="test", T=model.config.T)
    loader = DataLoader(Subset(ds, range(0, len(ds), max(1, len(ds) // 64))[:64]), batch_size=64)
    return model.eval(), [x for x, _ in TimeFirstBatches(loader, None)], acc
