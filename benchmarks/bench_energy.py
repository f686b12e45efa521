"""Cost of counting energy: ``spikemask.energy.measure_energy`` vs a plain forward and vs SpikingJelly.

On the same model and the same batches, timed round by round in one process:

* ``plain``: eval mode, ``torch.no_grad``, ``model(x)`` for every batch (what inference costs).
* ``ours``: ``measure_energy(model, batches)`` (forward hooks counting exact weight uses, border-aware
  conv covers, coincidences of the attention matmuls, masks and neurons; then the report).
* ``sj``: SpikingJelly 2.0's ``op_counter.SynOpCounter`` under ``op_counter.DispatchCounterMode``
  (a ``TorchDispatchMode`` that inspects every aten op), eval mode, ``torch.no_grad``.

Overheads are ``ours / plain`` and ``sj / plain`` (how many plain forwards a counted pass costs),
and ``sj / ours`` (> 1: ours cheaper).

Cross-check (printed, never asserted): for every synaptic layer, our exact count of weight uses
(``LayerStats.exact``: non-zero inputs x fan-out, or coincident non-zero pairs for a matmul) next to
SpikingJelly's SynOps for the same module scope. They follow the same rule where a layer's
activation input is binary and its other operand is a weight, so they should be equal there. Where
they differ, the table says why: SpikingJelly counts 0 for a layer whose input is not binary (the
first conv on event counts, the linears fed by Spikformer's integer residual stream), and for the
attention product ``scores @ V`` (integer scores, binary V) it charges every row of the scores for
each spike of V, while we count only pairs whose two factors are non-zero.

The BatchNorm running statistics of the (untrained) model are first set from the benchmark batches
(cumulative average in train mode, no gradients): with default statistics the network is nearly
silent in eval mode, and a silent network makes a meaningless cross-check.

Run: ``.venv/bin/python benchmarks/bench_energy.py [--quick] [--repeat N] [--threads N]``.
"""

from __future__ import annotations

from typing import Any

import torch
from _common import calibrate_bn, fmt_ms, fmt_ratio, format_table, interleaved, parse_bench_args, ratio_stats
from torch import nn

# (label, variant, T, batch, side, batches, mask ratio)
CASES_FULL = [
    ("ndigits T8", "spikformer_2_64_ndigits", 8, 32, 32, 2, 0.0),
    ("ndigits T8 RSM 0.5", "spikformer_2_64_ndigits", 8, 32, 32, 2, 0.5),
    ("dvs T4", "spikformer_2_256_dvs", 4, 2, 128, 2, 0.0),
]
CASES_QUICK = [("ndigits T4", "spikformer_2_64_ndigits", 4, 16, 32, 1, 0.0)]


def _make_case(variant: str, T: int, B: int, side: int, n_batches: int, ratio: float):
    from spikemask.masking import MaskConfig
    from spikemask.models import create_model

    torch.manual_seed(0)
    mask = MaskConfig(ratio=ratio, seed=1) if ratio else MaskConfig()
    model = create_model(variant, T=T, mask=mask)
    g = torch.Generator().manual_seed(0)
    batches = [torch.poisson(torch.full((T, B, model.config.in_channels, side, side), 0.3), generator=g)
               for _ in range(n_batches)]  # [T, B, C, H, W] event counts
    calibrate_bn(model, batches)
    return model, batches


def _sj_counts(model: nn.Module, batches: list[torch.Tensor]) -> dict[str, int]:
    """SynOps per module scope (``Spikformer.blocks.0.attn.q`` ...) over all batches."""
    from spikingjelly.activation_based.op_counter import DispatchCounterMode, SynOpCounter

    counter = SynOpCounter()
    model.eval()
    with torch.no_grad(), DispatchCounterMode([counter]):
        for x in batches:
            model(x)
    return {scope: sum(v.values()) for scope, v in counter.get_counts().items()}


def cross_check(model: nn.Module, batches: list[torch.Tensor]) -> list[dict[str, Any]]:
    """Per synaptic layer: our encoding and exact count vs SpikingJelly's SynOps on the same batches."""
    from spikemask.energy import EnergyCounter

    model.eval()
    if hasattr(model, "reseed_masks") and model.config.mask.active:
        model.reseed_masks(model.config.mask.seed)  # same masks in both passes
    with EnergyCounter(model) as ec, torch.no_grad():
        for x in batches:
            model(x)
    if hasattr(model, "reseed_masks") and model.config.mask.active:
        model.reseed_masks(model.config.mask.seed)
    sj = _sj_counts(model, batches)
    root = type(model).__name__
    rows = []
    for st in sorted(ec.layers.values(), key=lambda s: s.order):
        if st.op not in ("conv2d", "conv1d", "linear", "matmul"):
            continue
        theirs = sj.get(f"{root}.{st.name}", 0)
        ours = int(round(st.exact))
        binary_rule = st.encoding == "binary" and not (st.op == "matmul" and st.input_sum != st.input_nnz)
        if ours == theirs:
            verdict = "equal"
        elif st.encoding != "binary":
            verdict = f"differs: input {st.encoding}, SJ counts only binary inputs"
        elif st.op == "matmul":
            verdict = "differs: one factor integer; SJ charges it dense"
        else:
            verdict = "MISMATCH"
        rows.append({"layer": st.name, "op": st.op, "encoding": st.encoding, "ours_exact": ours,
                     "sj_synops": int(theirs), "binary_rule": binary_rule, "verdict": verdict,
                     "input_rate": st.input_nnz / st.input_numel if st.input_numel else 0.0})
    return rows


def bench_case(label, variant, T, B, side, n_batches, ratio, repeat, warmup) -> dict[str, Any]:
    from spikingjelly.activation_based.op_counter import DispatchCounterMode, SynOpCounter

    from spikemask.energy import measure_energy

    model, batches = _make_case(variant, T, B, side, n_batches, ratio)
    seeds = (model.config.mask.seed,) if model.config.mask.active else (0,)

    def plain():
        model.eval()
        with torch.no_grad():
            for x in batches:
                model(x)

    def ours():
        measure_energy(model, batches, mask_seeds=seeds)

    def sj():
        counter = SynOpCounter()
        model.eval()
        with torch.no_grad(), DispatchCounterMode([counter]):
            for x in batches:
                model(x)

    t = interleaved({"plain": plain, "ours": ours, "sj": sj}, repeat=repeat, warmup=warmup)
    checks = cross_check(model, batches)
    return {
        "label": label, "variant": variant, "T": T, "batch": B, "batches": n_batches, "mask_ratio": ratio,
        "rounds_s": {n: x.rounds for n, x in t.items()},
        "median_s": {n: x.median for n, x in t.items()},
        "ours_over_plain": ratio_stats(t["ours"], t["plain"]),
        "sj_over_plain": ratio_stats(t["sj"], t["plain"]),
        "sj_over_ours": ratio_stats(t["sj"], t["ours"]),
        "cross_check": checks,
    }


def tables(results: list[dict[str, Any]]) -> str:
    rows = []
    for r in results:
        m = r["median_s"]
        rows.append([r["label"], f"{r['batches']} x [{r['T']}, {r['batch']}, ...]",
                     fmt_ms(m["plain"]), fmt_ms(m["ours"]), fmt_ms(m["sj"]),
                     fmt_ratio(*r["ours_over_plain"]), fmt_ratio(*r["sj_over_plain"]), fmt_ratio(*r["sj_over_ours"])])
    out = [format_table(
        ["case", "batches", "plain ms", "ours ms", "sj ms", "ours/plain", "sj/plain", "sj/ours"], rows,
        title="Energy counting overhead, median of rounds; ratios median (min-max); sj/ours > 1 = ours cheaper")]
    for r in results:
        rows = [[c["layer"], c["op"], c["encoding"], f"{c['input_rate']:.3f}", f"{c['ours_exact']:,}",
                 f"{c['sj_synops']:,}", c["verdict"]] for c in r["cross_check"]]
        n_bin = sum(c["binary_rule"] for c in r["cross_check"])
        n_eq = sum(c["binary_rule"] and c["verdict"] == "equal" for c in r["cross_check"])
        out.append(format_table(
            ["layer", "op", "our encoding", "input nz rate", "ours exact", "SJ SynOps", "agreement"], rows,
            title=f"Cross-check {r['label']}: {n_eq}/{n_bin} binary-input layers equal "
                  f"(exact weight uses vs SynOpCounter, totals over {r['batches']} batch(es))"))
    return "\n".join(out)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args, threads, repeat = parse_bench_args(argv, __doc__.splitlines()[0], "one small case, fewer rounds", 5)
    cases = CASES_QUICK if args.quick else CASES_FULL
    results = [bench_case(*c, repeat=repeat, warmup=1) for c in cases]
    text = tables(results)
    print(f"bench_energy: torch threads = {threads}, rounds = {repeat}")
    print(text)
    return {"name": "energy", "threads": threads, "repeat": repeat, "results": results, "table": text}


if __name__ == "__main__":
    main()
