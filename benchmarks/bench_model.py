"""Spikformer training step and inference forward: spikemask's neurons vs SpikingJelly's LIFNode.

Two copies of one model, same weights, same input, same everything except the neuron:

* ``ours``: the model as :func:`spikemask.models.create_model` builds it (fused multi-step LIF).
* ``sj``: a deep copy in which every :class:`spikemask.neurons.LIF` is replaced by
  :class:`SJLIF`, an adapter around ``spikingjelly.activation_based.neuron.LIFNode(tau=2.,
  detach_reset=True, step_mode='m')`` with the replaced neuron's threshold and reset (the
  attention neuron keeps its threshold 0.5). ``functional.reset_net`` runs before every forward,
  as SpikingJelly models require. SpikingJelly 2.0 has no ``backend=`` choice; on CPU its
  ``LIFNode`` runs its registered Torch reference (see ``bench_neurons.py``).

Timed: a training step (``zero_grad``, forward in train mode, cross-entropy, backward, AdamW step)
and an inference forward (eval mode, ``torch.no_grad``). Inputs are event-count frames
``[T, B, 2, H, W]`` (Poisson counts, mean 0.3 per pixel and polarity). The two models are checked to
give the same logits and gradients before timing (printed, not asserted). Ratios ``sj / ours`` are
taken round by round in this process (> 1: ours faster).

Run: ``.venv/bin/python benchmarks/bench_model.py [--quick] [--repeat N] [--threads N]``.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn.functional as F
from _common import (
    fmt_bytes,
    fmt_ms,
    fmt_ratio,
    format_table,
    parse_bench_args,
    ratio_stats,
    time_train_infer,
)
from torch import nn

# (variant, T, batch, image side)
CASES_FULL = [
    ("spikformer_2_64_ndigits", 4, 32, 32),
    ("spikformer_2_64_ndigits", 8, 32, 32),
    ("spikformer_2_256_dvs", 4, 2, 128),
]
CASES_QUICK = [CASES_FULL[0]]


class SJLIF(nn.Module):
    """SpikingJelly's multi-step ``LIFNode`` standing in for a :class:`spikemask.neurons.LIF`."""

    def __init__(self, cfg) -> None:
        super().__init__()
        from spikingjelly.activation_based import neuron, surrogate

        if cfg.surrogate != "sigmoid" or not cfg.detach_reset or cfg.v_init not in (None, cfg.v_reset):
            raise ValueError(f"SJLIF mirrors sigmoid / detach_reset / v_init = v_reset neurons only, got {cfg}")
        self.node = neuron.LIFNode(
            tau=float(cfg.tau), v_threshold=float(cfg.v_threshold), v_reset=float(cfg.v_reset),
            surrogate_function=surrogate.Sigmoid(alpha=cfg.surrogate_alpha), detach_reset=True, step_mode="m",
        )

    def forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        return self.node(x_seq)


def with_sj_neurons(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` with every spikemask LIF replaced by :class:`SJLIF` (same weights)."""
    from spikemask.neurons import LIF

    clone = copy.deepcopy(model)
    targets = [(name, m) for name, m in clone.named_modules() if isinstance(m, LIF)]
    if not targets:
        raise ValueError("model has no spikemask LIF neurons to replace")
    for name, m in targets:
        parent_name, _, attr = name.rpartition(".")
        parent = clone.get_submodule(parent_name) if parent_name else clone
        setattr(parent, attr, SJLIF(m.cfg))
    return clone


def _sj_call(model: nn.Module):
    from spikingjelly.activation_based import functional

    def call(x: torch.Tensor) -> torch.Tensor:
        functional.reset_net(model)
        return model(x)

    return call


def _check(ours: nn.Module, sj: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """Max |Δ logits| (train mode) and max |Δ grad| over all parameters between the two models."""
    call = _sj_call(sj)
    ours.zero_grad(set_to_none=True)
    sj.zero_grad(set_to_none=True)
    a, b = ours(x), call(x)
    F.cross_entropy(a, y).backward()
    F.cross_entropy(b, y).backward()
    dg = max(float((p.grad - q.grad).abs().max()) for p, q in zip(ours.parameters(), sj.parameters())
             if p.grad is not None)
    ours.zero_grad(set_to_none=True)
    sj.zero_grad(set_to_none=True)
    return float((a - b).detach().abs().max()), dg


def bench_case(variant: str, T: int, B: int, side: int, repeat: int, warmup: int) -> dict[str, Any]:
    from spikemask.models import create_model

    torch.manual_seed(0)
    ours = create_model(variant, T=T)
    sj = with_sj_neurons(ours)
    g = torch.Generator().manual_seed(0)
    x = torch.poisson(torch.full((T, B, ours.config.in_channels, side, side), 0.3), generator=g)  # [T, B, C, H, W]
    y = torch.randint(0, ours.config.num_classes, (B,), generator=g)
    # BN running stats move in train mode: both models see the same batches, so they stay equal
    d_logits, d_grad = _check(ours, sj, x, y)

    calls = {"ours": ours, "sj": _sj_call(sj)}
    t_train, t_infer, peak = time_train_infer({"ours": ours, "sj": sj}, calls, x, y, repeat, warmup)
    return {
        "variant": variant, "T": T, "batch": B, "input": list(x.shape),
        "train_s": {n: t.rounds for n, t in t_train.items()},
        "infer_s": {n: t.rounds for n, t in t_infer.items()},
        "train_median_s": {n: t.median for n, t in t_train.items()},
        "infer_median_s": {n: t.median for n, t in t_infer.items()},
        "train_ratio": ratio_stats(t_train["sj"], t_train["ours"]),
        "infer_ratio": ratio_stats(t_infer["sj"], t_infer["ours"]),
        "train_peak_bytes": peak,
        "check_max_abs_dlogits": d_logits,
        "check_max_abs_dgrad": d_grad,
    }


def table(results: list[dict[str, Any]]) -> str:
    rows = []
    for r in results:
        tr, inf = r["train_median_s"], r["infer_median_s"]
        rows.append([
            r["variant"], r["T"], r["batch"],
            fmt_ms(tr["ours"]), fmt_ms(tr["sj"]), fmt_ratio(*r["train_ratio"]),
            fmt_ms(inf["ours"]), fmt_ms(inf["sj"]), fmt_ratio(*r["infer_ratio"]),
            fmt_bytes(r["train_peak_bytes"]["ours"]), fmt_bytes(r["train_peak_bytes"]["sj"]),
            f"{r['check_max_abs_dlogits']:.1e} / {r['check_max_abs_dgrad']:.1e}",
        ])
    return format_table(
        ["model", "T", "B", "train ours ms", "train sj ms", "train sj/ours",
         "infer ours ms", "infer sj ms", "infer sj/ours", "train peak ours", "train peak sj",
         "max |Δlogit| / |Δgrad|"],
        rows, title="Spikformer step time, median of rounds; ratio median (min-max) over rounds, >1 = ours faster")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args, threads, repeat = parse_bench_args(argv, __doc__.splitlines()[0], "N-Digits T 4 only, fewer rounds", 7)
    cases = CASES_QUICK if args.quick else CASES_FULL
    results = [bench_case(*c, repeat=repeat, warmup=1 if args.quick else 2) for c in cases]
    text = table(results)
    print(f"bench_model: torch threads = {threads}, rounds = {repeat}")
    print(text)
    return {"name": "model", "threads": threads, "repeat": repeat, "results": results, "table": text}


if __name__ == "__main__":
    main()
