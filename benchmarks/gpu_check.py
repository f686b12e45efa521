"""The CUDA paths, checked and measured in one prepared run, for a session that is lent a GPU.

No GPU has been available to this project so far: these paths are written and their CPU fallbacks tested, and
this script is what a session with a device runs once (``python benchmarks/gpu_check.py``, about 3-4 minutes
on one H200 after the first CUDA initialisation; ``--quick``: T 4, batch 2, under a minute). On a machine
without CUDA it says so and exits 0 without measuring anything.

Checks (each a line ``ok`` / ``FAILED: why``; the script exits 1 if any failed):

* neurons: LIF and IF spikes on CUDA equal to CPU, gradients to 1e-5;
* the event engine on a CUDA input runs dense (``last_path``) and equals ``F.linear``;
* ``spikformer_2_256_dvs`` logits on CUDA vs CPU (same weights, atol 1e-3: other kernels, other sums);
* the fused BN -> LIF -> max-pool training node (``spikemask.fused``) against the modules, on CUDA;
* AMP: a bf16-autocast training step gives a finite loss, its logits within 5 % of fp32's scale;
* DDP over NCCL: a one-process group (``world_size`` 1), one training step through ``DistributedDataParallel``;
* pinned memory: N-Digits batches from a ``DataLoader(pin_memory=True)`` are pinned and copy ``non_blocking``.

Measurements (CUDA events, interleaved rounds, median; per sample): Spikformer-2-256 (T 16, 128², batch 8 and
32) training step and inference, fp32 and bf16 autocast, ours against SpikingJelly 2.0's own Spikformer (its
CUDA neuron kernels, when they load: the error is reported otherwise), peak memory
(``torch.cuda.max_memory_allocated``), and the dense bound (the model's dense FLOPs over the best fp32 / bf16
GEMM throughput measured here). Output: Markdown on stdout and in ``--output`` (default ``$OUT/gpu_results.md``
when ``$OUT`` is set, else ``benchmarks/results-gpu.md``).
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent


def _check(name: str, fn: Callable[[], str | None], lines: list[str]) -> bool:
    try:
        problem = fn()
    except Exception as exc:  # a check that crashes is a failed check, with its reason
        problem = f"{type(exc).__name__}: {exc}"
    lines.append(f"- {name}: " + ("ok" if problem is None else f"FAILED: {problem}"))
    return problem is None


def check_neurons() -> str | None:
    from spikemask.neurons import NeuronConfig, make_neuron

    for kind in ("lif", "if"):
        neuron = make_neuron(NeuronConfig(kind=kind))
        x = (torch.randn(8, 4, 1024) * 1.5).requires_grad_()
        xc = x.detach().cuda().requires_grad_()
        s, sc = neuron(x), neuron(xc)
        g = torch.randn_like(s)
        s.backward(g)
        sc.backward(g.cuda())
        if not torch.equal(s, sc.cpu()):
            return f"{kind}: spikes differ on CUDA"
        if not torch.allclose(x.grad, xc.grad.cpu(), atol=1e-5):
            return f"{kind}: gradients differ by {float((x.grad - xc.grad.cpu()).abs().max()):.1e}"
    return None


def check_engine_fallback() -> str | None:
    from spikemask.engine import Linear

    m = Linear(64, 32, engine="event").cuda().eval()
    x = (torch.rand(16, 64, device="cuda") < 0.1).float()
    with torch.no_grad():
        y = m(x)
    if m.last_path != "dense":
        return f"a CUDA input took the {m.last_path} path"
    return None if torch.allclose(y, F.linear(x, m.weight, m.bias)) else "outputs differ from F.linear"


def _model(T: int):
    import spikemask as sm

    torch.manual_seed(0)
    return sm.create_model("spikformer_2_256_dvs", T=T)


def _input(T: int, B: int, device: str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.poisson(torch.full((T, B, 2, 128, 128), 0.3), generator=g)
    return x.to(device), torch.arange(B, device=device) % 10


def check_logits(T: int) -> str | None:
    model = _model(T).eval()
    x, _ = _input(T, 2)
    with torch.no_grad():
        ref = model(x)
        out = copy.deepcopy(model).cuda()(x.cuda()).cpu()
    diff = float((ref - out).abs().max())
    return None if diff <= 1e-3 else f"max |Δlogit| {diff:.2e}"


def check_fused(T: int) -> str | None:
    fused = _model(T).cuda().train()
    plain = copy.deepcopy(fused)
    for m in plain.sps.modules():
        if hasattr(m, "fuse"):
            m.fuse = False
    x, y = _input(T, 2, "cuda")
    for model in (fused, plain):
        F.cross_entropy(model(x), y).backward()
    worst = max(float((a.grad - b.grad).abs().max()) for a, b in zip(fused.parameters(), plain.parameters()))
    return None if worst <= 1e-4 else f"gradients differ by {worst:.1e}"


def check_amp(T: int) -> str | None:
    model = _model(T).cuda()
    x, y = _input(T, 2, "cuda")
    with torch.no_grad():
        ref = model.eval()(x)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            low = model(x).float()
    model.train()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss = F.cross_entropy(model(x).float(), y)
    loss.backward()
    if not torch.isfinite(loss):
        return f"loss {loss.item()}"
    rel = float((ref - low).abs().max() / ref.abs().max().clamp_min(1e-6))
    return None if rel <= 0.05 else f"bf16 logits differ by {rel:.1%} of fp32's scale"


def check_ddp_nccl(T: int) -> str | None:
    import torch.distributed as dist

    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29531")
    dist.init_process_group("nccl", rank=0, world_size=1)
    try:
        model = torch.nn.parallel.DistributedDataParallel(_model(T).cuda(), device_ids=[0])
        x, y = _input(T, 2, "cuda")
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        return None if grads and all(torch.isfinite(g).all() for g in grads) else "no finite gradients"
    finally:
        dist.destroy_process_group()


def check_pinned() -> str | None:
    from torch.utils.data import DataLoader, Subset

    from spikemask.data import get_dataset

    ds = get_dataset("ndigits", split="test", T=8)
    x, _ = next(iter(DataLoader(Subset(ds, range(16)), batch_size=16, pin_memory=True)))
    if not x.is_pinned():
        return "the batch is not pinned"
    xc = x.to("cuda", non_blocking=True)
    torch.cuda.synchronize()
    return None if torch.equal(xc.cpu(), x) else "the non_blocking copy differs"


def cuda_time(fns: dict[str, Callable[[], Any]], repeat: int, number: int = 3) -> dict[str, float]:
    """Median seconds per call of each function over ``repeat`` interleaved rounds (CUDA events)."""
    for fn in fns.values():
        fn()
    torch.cuda.synchronize()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for r in range(repeat):
        order = list(fns)[r % len(fns):] + list(fns)[:r % len(fns)]
        for k in order:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(number):
                fns[k]()
            end.record()
            torch.cuda.synchronize()
            times[k].append(start.elapsed_time(end) / 1e3 / number)
    return {k: statistics.median(v) for k, v in times.items()}


def gemm_peak(dtype: torch.dtype, n: int = 8192) -> float:
    a, b = torch.randn(n, n, device="cuda", dtype=dtype), torch.randn(n, n, device="cuda", dtype=dtype)
    t = cuda_time({"mm": lambda: a @ b}, repeat=5)["mm"]
    return 2.0 * n ** 3 / t


def peak_memory(fn: Callable[[], Any]) -> int:
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    fn()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - base


def measure(T: int, batches: tuple[int, ...], repeat: int) -> list[dict[str, Any]]:
    sys.path.insert(0, str(HERE))
    from _common import dense_flops_per_sample, inference, training_step
    from bench_sj_spikformer import _sj_call, build_pair, copy_weights

    ours, sj = build_pair(T)
    sj_error = None
    try:
        copy_weights(ours, sj)
        sj = sj.cuda()
    except Exception as exc:
        sj, sj_error = None, f"{type(exc).__name__}: {exc}"
    ours = ours.cuda()
    flops = dense_flops_per_sample(ours, T)
    peaks = {"fp32": gemm_peak(torch.float32), "bf16": gemm_peak(torch.bfloat16)}
    rows = []
    for B in batches:
        x, y = _input(T, B, "cuda")
        for precision in ("fp32", "bf16"):
            def amp(fn, low=precision == "bf16"):
                def run():
                    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=low):
                        fn()
                return run

            models = {"ours": (ours, ours)}
            if sj is not None:
                models["sj"] = (sj, _sj_call(sj))
            fns = {}
            for name, (module, call) in models.items():
                opt = torch.optim.AdamW(module.parameters(), lr=1e-4)
                fns[f"train {name}"] = amp(training_step(module, call, opt, x, y))
                fns[f"infer {name}"] = amp(inference(module, call, x))
            try:
                t = cuda_time(fns, repeat)
                mem = {k: peak_memory(f) for k, f in fns.items() if k.startswith("train")}
            except Exception as exc:  # SJ's kernels may not run here: measure ours alone then
                if sj is None:
                    raise
                sj, sj_error = None, f"{type(exc).__name__}: {exc}"
                fns = {k: f for k, f in fns.items() if k.endswith("ours")}
                t = cuda_time(fns, repeat)
                mem = {k: peak_memory(f) for k, f in fns.items() if k.startswith("train")}
            bound = flops / peaks[precision]
            rows.append({"B": B, "precision": precision, "times": {k: v / B for k, v in t.items()}, "mem": mem,
                         "bound_train": 3 * bound, "bound_infer": bound, "sj_error": sj_error})
    return rows


def render(lines: list[str], rows: list[dict[str, Any]], T: int) -> str:
    out = [f"# GPU checks and measurements ({torch.cuda.get_device_name(0)}, torch {torch.__version__})", "",
           "## Checks", "", *lines, ""]
    if rows:
        out += [f"## Spikformer-2-256, T {T}, 128², per sample (ms); x/bound = time / dense bound", "",
                "| batch | precision | train ours | train sj | sj/ours | infer ours | infer sj | sj/ours "
                "| train ours/bound | peak train ours | peak train sj |",
                "|--:|:--|--:|--:|--:|--:|--:|--:|--:|--:|--:|"]
        for r in rows:
            t, mem = r["times"], r["mem"]

            def ms(k, t=t):
                return f"{t[k] * 1e3:.2f}" if k in t else "-"

            def ratio(a, b, t=t):
                return f"{t[a] / t[b]:.2f}" if a in t and b in t else "-"

            def mib(k, mem=mem):
                return f"{mem[k] / 2**20:.0f} MiB" if k in mem else "-"

            out.append(f"| {r['B']} | {r['precision']} | {ms('train ours')} | {ms('train sj')} | "
                       f"{ratio('train sj', 'train ours')} | {ms('infer ours')} | {ms('infer sj')} | "
                       f"{ratio('infer sj', 'infer ours')} | {t['train ours'] / r['bound_train']:.1f} | "
                       f"{mib('train ours')} | {mib('train sj')} |")
        errors = {r["sj_error"] for r in rows if r["sj_error"]}
        out += ["", *(f"SpikingJelly could not run on CUDA here: {e}" for e in errors)]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="T 4, batch 2, 3 rounds")
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--output", default=None, help="Markdown file to write ('-': none)")
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        print(f"gpu_check: no CUDA device here (torch {torch.__version__}, CUDA build: "
              f"{torch.version.cuda or 'none'}); nothing measured. Run it on a machine with a GPU.")
        return 0
    T, batches, repeat = (4, (2,), 3) if args.quick else (16, (8, 32), args.repeat)
    lines: list[str] = []
    ok = all([_check("neurons on CUDA equal CPU", check_neurons, lines),
              _check("event engine falls back to dense on CUDA", check_engine_fallback, lines),
              _check("Spikformer logits CUDA vs CPU", lambda: check_logits(T), lines),
              _check("fused BN -> LIF -> pool equals the modules on CUDA", lambda: check_fused(T), lines),
              _check("bf16 autocast training step", lambda: check_amp(T), lines),
              _check("DDP over NCCL (one process)", lambda: check_ddp_nccl(T), lines),
              _check("pinned-memory loader", check_pinned, lines)])
    start = time.perf_counter()
    rows = measure(T, batches, repeat)
    text = render(lines, rows, T) + f"\nMeasured in {time.perf_counter() - start:.0f} s.\n"
    print(text)
    out = args.output or (str(Path(os.environ["OUT"]) / "gpu_results.md") if os.environ.get("OUT")
                          else str(HERE / "results-gpu.md"))
    if out != "-":
        Path(out).write_text(text, encoding="utf-8")
        print(f"wrote {out}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
