"""Spikformer-2-256 (DVS, 128², T 16): spikemask's model vs SpikingJelly 2.0's own Spikformer, and the dense bound.

Two independent implementations of one architecture, same weights, same input:

* ``ours``: ``spikemask.create_model("spikformer_2_256_dvs", T=T)`` (2 blocks, D 256, 16 heads, 2x128x128
  input, 10 classes; SPS stem with 4 pooled stages -> 8x8 = 64 tokens), input ``[T, B, 2, 128, 128]``,
  logits ``[B, 10]``.
* ``sj``: ``spikingjelly.activation_based.model.spikformer.Spikformer(T, in_channels=2, img_size 128,
  patch_size=16, num_classes=10, embed_dims=256, num_heads=16, mlp_ratio=4, depths=2)``, built in
  multi-step mode by its constructor (``step_mode='m'`` everywhere), input ``[T, B, 2, 128, 128]``,
  output ``[T, B, 10]`` (its head runs per step) averaged over T here, ``functional.reset_net`` before every
  forward. Same weights as ours (copied, see :func:`copy_weights`).

One real difference in the function computed: SpikingJelly's stem stages run conv -> BN -> MaxPool -> LIF,
ours (like the Spikformer authors' code) conv -> BN -> LIF -> MaxPool, so SpikingJelly's stem neurons see 4x
fewer elements (stage 1: 32x64x64 instead of 32x128x128 per step) and the whole-model logits differ. The
check printed before timing therefore feeds ours' stem tokens to both stacks of blocks and heads: outputs and
every parameter gradient of the blocks and head must agree (T 4 and T 16 at batch 1: outputs exactly, gradients
within 1.3e-7; T 16 batch 8: a few spikes flip, max |Δ| 2 in a token, gradients 7e-4, presumably float summation
order: BN statistics over ``[T*B*N, D]`` here, ``[T*B, D, N]`` there); the whole-model logit difference is printed
too, for the record.

Differences between the two models (printed as parameter counts): ours has a bias on the attention
projection, fc1 and fc2 (3 x 2 blocks: 3,072 parameters more), which a following BatchNorm makes redundant;
they are zeroed in ours so that the two compute the same function. Ours has separate Q, K, V projections and
BNs where SpikingJelly has one fused ``Conv1d(D, 3D)`` + BN + LIF (same parameters, same spikes). SpikingJelly
scales attention by 0.125, ours (spikformer_2_256_dvs) by 0.25: its instance attribute ``scale`` is set to
ours (a multiply either way, no effect on speed). SpikingJelly computes ``(V Kᵀ) Q`` (Cph x Cph first),
ours ``(Q Kᵀ) V`` (N x N first); at N 64, Cph 16 the attention products are ~1 % of the dense FLOPs.

Importing ``spikingjelly.activation_based.model.spikformer`` pulls in SpikingJelly's distributed-vision
package, whose ``inference.py`` does ``import h5py`` at top level (used only inside its HDF5 export
functions). When h5py is not installed an empty placeholder module ``h5py`` is put in ``sys.modules`` for the
import; nothing here calls those functions. No torchvision or timm is imported.

Timed per thread count (``--threads 1,2``), interleaved rounds with rotation: a training step (``zero_grad``,
forward in train mode, cross-entropy, backward, AdamW step) and an inference forward (eval, ``no_grad``),
reported per sample; peak allocator bytes of one steady-state training step. Ratios ``sj / ours`` round by
round (> 1: ours faster).

Dense bound: the best fp32 ``torch.mm`` throughput of this process at that thread count (1024³, best block of
``--gemm-rounds``, measured before and after each thread count's cells, best kept) and the model's dense
count from spikemask's counter (``dense_energy(model)["totals"]["dense_macs_per_step"]`` x T per sample,
1 MAC = 2 FLOPs; training taken as 3x the forward). Bound time = FLOPs / peak; ``ours/bound`` and
``sj/bound`` say how far each is from running its dense GEMMs at peak (BN, LIF, pooling and the optimizer are
not in the count, so neither can reach 1).

Run: ``.venv/bin/python benchmarks/bench_sj_spikformer.py [--quick] [--repeat N] [--threads 1,2]``; run as a
script it replaces its own section of ``results.md`` (``results-quick.md`` with ``--quick``; ``--output``).
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
import types
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from _common import (
    Timing,
    dense_flops_per_sample,
    fmt_bytes,
    fmt_ms,
    fmt_ratio,
    format_table,
    gemm_peak_flops,
    machine_info,
    ratio_stats,
    set_threads,
    time_train_infer,
    write_standalone,
)
from torch import nn

SECTION = "Spikformer-2-256 against SpikingJelly's own Spikformer, and the dense bound"
VARIANT = "spikformer_2_256_dvs"
HERE = Path(__file__).resolve().parent
# (T, batch) cells
CELLS_FULL = [(16, 1), (16, 4), (16, 8)]
CELLS_QUICK = [(4, 1)]


def sj_spikformer_module() -> types.ModuleType:
    """``spikingjelly.activation_based.model.spikformer``, with a placeholder ``h5py`` if it is missing."""
    if "h5py" not in sys.modules and importlib.util.find_spec("h5py") is None:
        sys.modules["h5py"] = types.ModuleType("h5py")  # only used inside SJ's HDF5 export functions
    from spikingjelly.activation_based.model import spikformer

    return spikformer


def build_pair(T: int) -> tuple[nn.Module, nn.Module]:
    """Ours and SpikingJelly's Spikformer with the settings of ``spikformer_2_256_dvs``, same weights."""
    from spikemask.models import create_model

    torch.manual_seed(0)
    ours = create_model(VARIANT, T=T)
    c = ours.config
    sj = sj_spikformer_module().Spikformer(
        T=T, in_channels=c.in_channels, img_size_h=c.img_size, img_size_w=c.img_size, patch_size=16,
        num_classes=c.num_classes, embed_dims=c.embed_dim, num_heads=c.num_heads, mlp_ratio=c.mlp_ratio,
        depths=c.depth,
    )
    for blk in sj.blocks:
        blk.attn.scale = float(c.attn_scale)
    copy_weights(ours, sj)
    return ours, sj


def _bn_pairs(ours_bns: list[nn.Module], sj_bn: nn.Module) -> list[tuple[list[torch.Tensor], torch.Tensor]]:
    return [([getattr(b, n) for b in ours_bns], getattr(sj_bn, n))
            for n in ("weight", "bias", "running_mean", "running_var")]


def tensor_pairs(ours: nn.Module, sj: nn.Module) -> list[tuple[list[torch.Tensor], torch.Tensor]]:
    """(ours' tensors, SJ's tensor) for every parameter and BN buffer: SJ's = cat(ours) reshaped."""
    pairs = []
    convs = list(ours.sps.stages) + [ours.sps.rpe]
    sj_convs = list(sj.patch_embed.stages) + [sj.patch_embed.positional_encoding]
    for a, b in zip(convs, sj_convs):
        pairs.append(([a.conv.weight], b.conv_bn.block[0].weight))
        pairs += _bn_pairs([a.bn], b.conv_bn.block[1])
    for a, b in zip(ours.blocks, sj.blocks):
        at, st = a.attn, b.attn
        pairs.append(([at.q.weight, at.k.weight, at.v.weight], st.qkv_conv_bn[0].weight))
        pairs += _bn_pairs([at.q_bn, at.k_bn, at.v_bn], st.qkv_conv_bn[1])
        pairs.append(([at.proj.weight], st.proj_conv_bn[0].weight))
        pairs += _bn_pairs([at.proj_bn], st.proj_conv_bn[1])
        for fc in ("fc1", "fc2"):
            pairs.append(([getattr(a.mlp, fc).weight], getattr(b.mlp, fc)[0].weight))
            pairs += _bn_pairs([getattr(a.mlp, f"{fc}_bn")], getattr(b.mlp, fc)[1])
    pairs += [([ours.head.weight], sj.head.weight), ([ours.head.bias], sj.head.bias)]
    return pairs


def copy_weights(ours: nn.Module, sj: nn.Module) -> None:
    """Copy ours into SJ's model; zero ours' redundant pre-BN biases (SJ's convs have none)."""
    with torch.no_grad():
        for blk in ours.blocks:
            for lin in (blk.attn.proj, blk.mlp.fc1, blk.mlp.fc2):
                lin.bias.zero_()
        for src, dst in tensor_pairs(ours, sj):
            dst.copy_(torch.cat([t.reshape(t.shape[0], -1) for t in src]).view_as(dst))


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _sj_call(model: nn.Module):
    from spikingjelly.activation_based import functional

    def call(x: torch.Tensor) -> torch.Tensor:
        functional.reset_net(model)
        return model(x).mean(0)  # [T, B, classes] -> [B, classes]: SJ's head runs per step

    return call


def _check(ours: nn.Module, sj: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """Max |Δ| of the blocks' output and of every mapped gradient on ours' stem tokens; max |Δ logits| overall.

    The stems differ (SJ pools before its LIF, ours after, as the Spikformer code does), so whole-model
    logits differ; the blocks and the head are fed the same tokens and must agree exactly.
    """
    from spikingjelly.activation_based import functional

    ours.train()
    sj.train()
    with torch.no_grad():
        d_logits = float((ours(x) - _sj_call(sj)(x)).abs().max())
        tok = ours.sps(x)  # [T, B, N, D]
    T, B, N, D = tok.shape
    side = int(round(N ** 0.5))
    ours.zero_grad(set_to_none=True)
    sj.zero_grad(set_to_none=True)
    functional.reset_net(sj)
    a, s = tok, tok.transpose(2, 3).reshape(T, B, D, side, side)  # [T, B, D, h, w]: SJ's block layout
    for ob, sb in zip(ours.blocks, sj.blocks):
        a, s = ob(a), sb(s)
    s = s.flatten(3).transpose(2, 3)  # [T, B, N, D]
    d_tokens = float((a - s).detach().abs().max())
    la, ls = ours.head(ours.pool(a)), sj.head(s.mean(2)).mean(0)  # [B, classes]
    F.cross_entropy(la, y).backward()
    F.cross_entropy(ls, y).backward()
    dg = 0.0
    for src, dst in tensor_pairs(ours, sj):
        if dst.grad is not None:
            g = torch.cat([t.grad.reshape(t.shape[0], -1) for t in src]).view_as(dst)
            dg = max(dg, float((g - dst.grad).abs().max()))
    ours.zero_grad(set_to_none=True)
    sj.zero_grad(set_to_none=True)
    return {"blocks_out": d_tokens, "grad": dg, "logits": d_logits}


def bench_cell(T: int, B: int, repeat: int, warmup: int) -> dict[str, Any]:
    ours, sj = build_pair(T)
    g = torch.Generator().manual_seed(0)
    x = torch.poisson(torch.full((T, B, ours.config.in_channels, 128, 128), 0.3), generator=g)  # [T, B, C, H, W]
    y = torch.randint(0, ours.config.num_classes, (B,), generator=g)
    check = _check(ours, sj, x, y)
    calls = {"ours": ours, "sj": _sj_call(sj)}
    t_train, t_infer, peak = time_train_infer({"ours": ours, "sj": sj}, calls, x, y, repeat, warmup)
    per = {k: {n: Timing(n, [s / B for s in t.rounds]) for n, t in d.items()}
           for k, d in (("train", t_train), ("infer", t_infer))}
    return {
        "T": T, "batch": B, "input": list(x.shape), "repeat": repeat,
        "train_sample_s": {n: t.rounds for n, t in per["train"].items()},
        "infer_sample_s": {n: t.rounds for n, t in per["infer"].items()},
        "train_median_s": {n: t.median for n, t in per["train"].items()},
        "infer_median_s": {n: t.median for n, t in per["infer"].items()},
        "train_ratio": ratio_stats(t_train["sj"], t_train["ours"]),
        "infer_ratio": ratio_stats(t_infer["sj"], t_infer["ours"]),
        "train_peak_bytes": peak,
        "params": {"ours": n_params(ours), "sj": n_params(sj)},
        "dense_flops_per_sample": dense_flops_per_sample(ours, T),
        "check_max_abs": check,
    }


def tables(results: list[dict[str, Any]]) -> str:
    rows, brows = [], []
    for r in results:
        tr, inf = r["train_median_s"], r["infer_median_s"]
        rows.append([
            r["threads"], r["T"], r["batch"],
            fmt_ms(tr["ours"]), fmt_ms(tr["sj"]), fmt_ratio(*r["train_ratio"]),
            fmt_ms(inf["ours"]), fmt_ms(inf["sj"]), fmt_ratio(*r["infer_ratio"]),
            fmt_bytes(r["train_peak_bytes"]["ours"]), fmt_bytes(r["train_peak_bytes"]["sj"]),
            "{blocks_out:.1e} / {grad:.1e} / {logits:.2f}".format(**r["check_max_abs"]),
        ])
        fwd = r["dense_flops_per_sample"]
        peak = r["gemm_flops"]
        b_inf, b_tr = fwd / peak, 3 * fwd / peak
        brows.append([
            r["threads"], r["T"], r["batch"], f"{peak / 1e9:.1f}", f"{fwd / 1e9:.2f}",
            fmt_ms(b_tr), f"{tr['ours'] / b_tr:.1f}", f"{tr['sj'] / b_tr:.1f}",
            fmt_ms(b_inf), f"{inf['ours'] / b_inf:.1f}", f"{inf['sj'] / b_inf:.1f}",
        ])
    r0 = results[0]
    return "\n".join([
        f"Parameters: ours {r0['params']['ours']:,}, SpikingJelly {r0['params']['sj']:,} (ours has a bias on "
        "proj, fc1, fc2: zeroed here, as BN follows). SJ's stem pools before its LIFs, ours after. "
        "Input [T, B, 2, 128, 128], Poisson counts, mean 0.3.",
        format_table(
            ["threads", "T", "B", "train ours ms", "train sj ms", "train sj/ours", "infer ours ms", "infer sj ms",
             "infer sj/ours", "train peak ours", "train peak sj",
             "max abs Δ blocks / grad / logits"],
            rows, title="Per sample (step time / B), median of rounds; ratio median (min-max) over rounds, "
                        ">1 = ours faster; peak = allocator peak of one training step"),
        format_table(
            ["threads", "T", "B", "GEMM GFLOP/s", "dense fwd GFLOP/sample", "train bound ms", "ours/bound",
             "sj/bound", "infer bound ms", "ours/bound", "sj/bound"],
            brows, title="Dense bound per sample: FLOPs / best fp32 1024³ torch.mm throughput (training = 3x "
                         "forward); x/bound = measured / bound"),
    ])


def _threads(text: str) -> list[int]:
    return [int(t) for t in str(text).split(",") if t.strip()]


def _cells(text: str) -> list[tuple[int, int]]:
    """``"16x1,16x4"`` -> [(T 16, batch 1), (T 16, batch 4)]."""
    return [(int(t), int(b)) for t, b in (c.lower().split("x") for c in text.split(",") if c.strip())]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="T 4, batch 1 only")
    ap.add_argument("--repeat", type=int, default=None, help="timed rounds (default 5, quick 3)")
    ap.add_argument("--big-repeat", type=int, default=3, help="at most this many rounds for batch >= 4 (default 3)")
    ap.add_argument("--threads", type=_threads, default=[1, 2], help="comma-separated thread counts (default 1,2)")
    ap.add_argument("--cells", type=_cells, default=None,
                    help="comma-separated TxB cells instead of the default grid (full 16x1,16x4,16x8; quick 4x1)")
    ap.add_argument("--gemm-rounds", type=int, default=5, help="timed blocks of the GEMM peak (default 5)")
    ap.add_argument("--output", default=None,
                    help="Markdown file whose section to replace when run as a script "
                         "(default results.md, results-quick.md with --quick; '-': none)")
    args = ap.parse_args(argv)
    repeat = args.repeat or (3 if args.quick else 5)
    cells = args.cells or (CELLS_QUICK if args.quick else CELLS_FULL)
    start = time.perf_counter()
    load_before = machine_info().get("load_avg_1m")
    results = []
    for threads in args.threads:
        set_threads(threads)
        gemm = gemm_peak_flops(rounds=args.gemm_rounds)
        cell_results = []
        for T, B in cells:
            rep = min(repeat, args.big_repeat) if B >= 4 else repeat
            print(f"  threads {threads}, T {T}, batch {B}, {rep} rounds ...", flush=True)
            cell_results.append({"threads": threads, **bench_cell(T, B, rep, warmup=1)})
        gemm = max(gemm, gemm_peak_flops(rounds=args.gemm_rounds))
        for r in cell_results:
            r["gemm_flops"] = gemm
        results += cell_results
    set_threads(args.threads[0])
    text = tables(results)
    load_after = machine_info().get("load_avg_1m")
    text = (f"Load average (1 min) {load_before} before, {load_after} after; rounds {repeat} "
            f"(batch >= 4: {min(repeat, args.big_repeat)}).\n\n" + text)
    print(f"bench_sj_spikformer: torch threads = {args.threads}, rounds = {repeat}")
    print(text)
    output = args.output or str(HERE / ("results-quick.md" if args.quick else "results.md"))
    return {"name": "sj_spikformer", "threads": ",".join(map(str, args.threads)), "repeat": repeat,
            "results": results, "table": text, "output": output, "seconds": time.perf_counter() - start}


if __name__ == "__main__":
    write_standalone(main(), SECTION, "bench_sj_spikformer.py")
