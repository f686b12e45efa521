"""Channels-last tokenizer frames, the fused BN -> LIF -> MaxPool training node and the compiled neuron loop,
each on and off.

Spikformer-2-256 (``spikformer_2_256_dvs``, 128², T 16, batch 1; ``--quick``: T 4) with
``model.channels_last`` and ``model.fuse_bn_lif`` in the four combinations, and the default (both on) with the
neurons' PyTorch-op loop instead of the compiled one (``spikemask.kernels``, Numba), the same weights, Poisson(0.3)
event counts: a training step (forward, cross-entropy, backward, AdamW) and an inference forward, interleaved
rounds, ratios against both off (``off/x`` per round, > 1: faster), and the allocator peak of a training step.
Logits (eval) and gradients are checked against both-off first (channels-last changes the convolutions' sums:
float rounding; the fused node and the compiled loop are bit-identical).

Run: ``.venv/bin/python benchmarks/bench_layout.py [--quick] [--repeat N]`` (full ~3 min on 2 vCPUs, quick
~40 s); run as a script it replaces its section of ``results.md``.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from _common import (
    fmt_bytes,
    fmt_ms,
    fmt_ratio,
    format_table,
    inference,
    interleaved,
    machine_info,
    parse_bench_args,
    peak_alloc_bytes,
    ratio_stats,
    training_step,
    write_standalone,
)

HERE = Path(__file__).resolve().parent
SECTION = "Channels-last frames, the fused BN -> LIF training node and the compiled neuron loop"
VARIANTS = {"both off": (False, False), "channels-last": (True, False), "fused": (False, True),  # name: (cl, fuse)
            "both on (default)": (True, True), "both on, PyTorch neuron loop": (True, True)}
TORCH_LOOP = "both on, PyTorch neuron loop"


def torch_loop(fn):
    """``fn`` with the neurons' PyTorch-op loop (the compiled loop switched off for the call only)."""
    from spikemask import kernels

    def call() -> None:
        real = kernels.available
        kernels.available = lambda: False
        try:
            fn()
        finally:
            kernels.available = real

    return call


def variants(T: int) -> dict[str, torch.nn.Module]:
    import spikemask as sm

    torch.manual_seed(0)
    base = sm.create_model("spikformer_2_256_dvs", T=T)
    out = {}
    for name, (cl, fuse) in VARIANTS.items():
        m = copy.deepcopy(base)
        m.config.channels_last = cl
        for mod in m.sps.modules():
            if hasattr(mod, "fuse"):
                mod.fuse = fuse
        out[name] = m
    return out


def run(T: int, repeat: int) -> dict[str, Any]:
    models = variants(T)
    g = torch.Generator().manual_seed(0)
    x = torch.poisson(torch.full((T, 1, 2, 128, 128), 0.3), generator=g)
    y = torch.tensor([3])
    checks = {}
    ref = models["both off"]
    ref.train()
    F.cross_entropy(ref(x), y).backward()
    for name, m in models.items():
        if m is ref:
            continue
        m.train()
        backward = training_step(m, m, torch.optim.SGD(m.parameters(), lr=0.0), x, y)  # lr 0: weights kept
        (torch_loop(backward) if name == TORCH_LOOP else backward)()
        checks[name] = max(float((a.grad - b.grad).abs().max()) for a, b in zip(m.parameters(), ref.parameters()))
    for m in models.values():
        m.zero_grad(set_to_none=True)
    steps = {k: training_step(m, m, torch.optim.AdamW(m.parameters(), lr=1e-4), x, y) for k, m in models.items()}
    infer = {k: inference(m, m, x) for k, m in models.items()}
    steps[TORCH_LOOP], infer[TORCH_LOOP] = torch_loop(steps[TORCH_LOOP]), torch_loop(infer[TORCH_LOOP])
    train_t = interleaved(steps, repeat=repeat, warmup=1)
    infer_t = interleaved(infer, repeat=repeat, warmup=1)
    peaks = {k: peak_alloc_bytes(f) for k, f in steps.items()}
    return {"T": T, "checks": checks, "peaks": peaks,
            "train_s": {k: v.median for k, v in train_t.items()},
            "infer_s": {k: v.median for k, v in infer_t.items()},
            "train_ratio": {k: ratio_stats(train_t["both off"], v) for k, v in train_t.items()},
            "infer_ratio": {k: ratio_stats(infer_t["both off"], v) for k, v in infer_t.items()}}


def tables(res: dict[str, Any], info: dict[str, Any], repeat: int) -> str:
    head = (f"CPU {info['cpu']} ({info['logical_cpus']} logical), torch {info['torch']}, {info['torch_threads']} "
            f"thread(s), {repeat} rounds, load {info.get('load_avg_1m', '?')}. spikformer_2_256_dvs, T {res['T']}, "
            f"batch 1, 128², Poisson(0.3) events; off/x per-round ratio median (min-max), > 1 = faster than "
            f"both off.")
    rows = []
    for k in VARIANTS:
        rows.append([k, fmt_ms(res["train_s"][k]), fmt_ratio(*res["train_ratio"][k]), fmt_ms(res["infer_s"][k]),
                     fmt_ratio(*res["infer_ratio"][k]), fmt_bytes(res["peaks"][k]),
                     "" if k not in res["checks"] else f"{res['checks'][k]:.1e}"])
    return "\n\n".join([head, format_table(["variant", "train ms", "off/x", "infer ms", "off/x", "train peak",
                                            "max |Δgrad| vs off"], rows)])


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args, threads, repeat = parse_bench_args(argv, __doc__.splitlines()[0], "T 4, 3 rounds", 5, section=True)
    start = time.perf_counter()
    info = machine_info()
    res = run(4 if args.quick else 16, repeat)
    text = tables(res, info, repeat)
    print(f"bench_layout: torch threads = {threads}, rounds = {repeat}")
    print(text)
    return {"name": "layout", "threads": threads, "repeat": repeat, "results": res, "table": text,
            "output": args.output, "seconds": time.perf_counter() - start}


if __name__ == "__main__":
    write_standalone(main(), SECTION, "bench_layout.py")
