"""Structured masks and time: does dropping whole tokens at ``mlp.hidden`` make inference faster?

``spikformer_2_64_ndigits`` (2 blocks, D 64, hidden 256, 16 tokens), untrained, BatchNorm statistics set
from the benchmark input (as in ``bench_energy.py``), eval, ``torch.no_grad``, T 8, batch 32, input
event counts ``~ Poisson(0.4)`` ``[8, 32, 2, 32, 32]``. Variants, all masking only ``mlp.hidden`` (the
input of fc2), masks seeded and per step:

* ``none``: no mask.
* ``element τ``: the papers' RSM (one Bernoulli per element).
* ``token τ``: ``MaskConfig(structure="token")``, whole tokens dropped (all 256 hidden features).
* ``token τ + skip``: the same, with fc2 a :class:`~spikemask.skipping.TokenSkipLinear`
  (``skip_dropped_tokens``): it multiplies only the token rows that hold a spike (gather, one smaller
  matmul, scatter back). Checked to give the same logits as ``token τ`` (same seeds) before timing.

Measured: the whole forward (median over interleaved rounds, ``none/x`` per-round ratio, > 1: x faster),
and fc2 alone on the hidden spikes the masked model actually feeds it (``dense`` ``nn.Linear`` vs the
skipping one): the layer whose work the mask removes. Counted fc2 events (spikemask ``EnergyCounter``) are
given as a fraction of the unmasked model's. The dense path never gets faster from a mask (a zero is
multiplied like any number); the saving in time needs work that skips, here by gathering whole tokens,
in general the event path (``spikemask.engine``, being written separately, not used here).

Run: ``.venv/bin/python benchmarks/bench_structured_masks.py [--quick] [--repeat N] [--threads N]``
(quick ~30 s on 2 shared vCPUs; writes its section of ``results.md`` / ``results-quick.md``).
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

import torch
from _common import (
    calibrate_bn,
    fmt_ms,
    fmt_ratio,
    format_table,
    interleaved,
    machine_info,
    parse_bench_args,
    ratio_stats,
    write_standalone,
)

HERE = Path(__file__).resolve().parent
SECTION = "Structured masks: token masking and time"
MODEL, T, BATCH, SITE = "spikformer_2_64_ndigits", 8, 32, "mlp.hidden"
RATIOS_FULL, RATIOS_QUICK = (0.5, 0.7), (0.5, 0.7)


def _variants(ratios: tuple[float, ...]) -> dict[str, dict[str, Any]]:
    out = {"none": {"ratio": 0.0, "structure": "element", "skip": False}}
    out[f"element {ratios[0]:g}"] = {"ratio": ratios[0], "structure": "element", "skip": False}
    for r in ratios:
        out[f"token {r:g}"] = {"ratio": r, "structure": "token", "skip": False}
        out[f"token {r:g} + skip"] = {"ratio": r, "structure": "token", "skip": True}
    return out


def build(variants: dict[str, dict[str, Any]], x: torch.Tensor) -> dict[str, torch.nn.Module]:
    import spikemask as sm
    from spikemask.skipping import skip_dropped_tokens

    torch.manual_seed(0)
    base = sm.create_model(MODEL, T=T).eval()
    calibrate_bn(base, [x])
    models = {}
    for name, v in variants.items():
        m = copy.deepcopy(base)
        if v["ratio"]:
            sm.apply_rsm(m, ratio=v["ratio"], sites=[SITE], structure=v["structure"], seed=0)
        if v["skip"]:
            skip_dropped_tokens(m)
        models[name] = m.eval()
    return models


def _fc2_inputs(model: torch.nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    seen, handles = [], []
    for name, mod in model.named_modules():
        if name.endswith("mlp.fc2"):
            handles.append(mod.register_forward_hook(lambda _m, a, _o: seen.append(a[0])))
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    return seen


def _fc2_events(model: torch.nn.Module, x: torch.Tensor) -> float:
    from spikemask.energy import EnergyCounter

    with EnergyCounter(model) as counter, torch.no_grad():
        model(x)
    return sum(s.exact for n, s in counter.layers.items() if n.endswith("mlp.fc2"))


def run(repeat: int, ratios: tuple[float, ...]) -> dict[str, Any]:
    from spikemask.masking import TokenSkipLinear

    torch.manual_seed(0)
    x = torch.poisson(torch.full((T, BATCH, 2, 32, 32), 0.4))  # event counts [T, B, 2, H, W]
    variants = _variants(ratios)
    models = build(variants, x)
    checks = {}
    for name, v in variants.items():  # equivalence before speed
        if v["skip"]:
            dense = models[name.removesuffix(" + skip")]
            with torch.no_grad():
                dense.reseed_masks(0)
                a = dense(x)
                models[name].reseed_masks(0)
                b = models[name](x)
            checks[name] = float((a - b).abs().max())
            if checks[name] > 1e-4:
                raise RuntimeError(f"{name}: logits differ from the dense path by {checks[name]:.2e}")

    def fwd(m):
        def call():
            with torch.no_grad():
                return m(x)
        return call

    t = interleaved({k: fwd(m) for k, m in models.items()}, repeat=repeat, warmup=1)
    events = {k: _fc2_events(m, x) for k, m in models.items()}
    # fc2 alone, on the hidden spikes of each token-masked model: dense Linear vs the row-skipping one
    layer = {}
    for name, v in variants.items():
        if v["structure"] != "token" or v["skip"]:
            continue
        hs = _fc2_inputs(models[name], x)  # one [T, B, N, hidden] per block
        fc = models[name].blocks[0].mlp.fc2
        skip = copy.deepcopy(fc)
        skip.__class__ = TokenSkipLinear

        def lin(mod, hs=hs):
            def call():
                with torch.no_grad():
                    return [mod(h) for h in hs]
            return call

        rows = sum(int(h.reshape(-1, h.shape[-1]).any(dim=1).sum()) for h in hs) / sum(
            h.numel() // h.shape[-1] for h in hs)
        lt = interleaved({"dense": lin(fc), "skip": lin(skip)}, repeat=repeat, warmup=1)
        layer[name] = {"dense_s": lt["dense"].median, "skip_s": lt["skip"].median,
                       "ratio": ratio_stats(lt["dense"], lt["skip"]), "live_rows": rows}
    base_rows = sum(int(h.reshape(-1, h.shape[-1]).any(dim=1).sum()) for h in _fc2_inputs(models["none"], x))
    base_rows /= sum(h.numel() // h.shape[-1] for h in _fc2_inputs(models["none"], x))
    return {"variants": variants, "median_s": {k: v.median for k, v in t.items()},
            "rounds_s": {k: v.rounds for k, v in t.items()},
            "none_over": {k: ratio_stats(t["none"], t[k]) for k in models if k != "none"},
            "fc2_events": events, "layer": layer, "checks": checks, "live_rows_unmasked": base_rows}


def tables(res: dict[str, Any], info: dict[str, Any], repeat: int) -> str:
    head = (f"CPU {info['cpu']} ({info['logical_cpus']} logical), torch {info['torch']}, "
            f"{info['torch_threads']} thread(s), {repeat} rounds, load {info.get('load_avg_1m', '?')}. "
            f"{MODEL}, untrained (BN statistics from the input), T {T}, batch {BATCH}, Poisson(0.4) events, "
            f"eval, no_grad; masks at {SITE} only, per step, seeded. Token rows of fc2's input holding a spike "
            f"without a mask: {res['live_rows_unmasked']:.0%}.")
    e0 = res["fc2_events"]["none"] or 1.0
    rows = []
    for k in res["variants"]:
        ratio = "1" if k == "none" else fmt_ratio(*res["none_over"][k])
        check = f"max |Δlogit| {res['checks'][k]:.1e}" if k in res["checks"] else ""
        rows.append([k, fmt_ms(res["median_s"][k]), ratio, f"{res['fc2_events'][k] / e0:.2f}", check])
    rows_l = [[k, f"{v['live_rows']:.0%}", fmt_ms(v["dense_s"]), fmt_ms(v["skip_s"]), fmt_ratio(*v["ratio"])]
              for k, v in res["layer"].items()]
    return "\n\n".join([
        head,
        format_table(["variant", "forward", "none/x", "fc2 events / unmasked", "check"], rows,
                     title="Whole forward (median of rounds); none/x per-round ratio median (min-max), > 1 = faster"),
        format_table(["mask", "live token rows", "fc2 dense", "fc2 skip", "dense/skip"], rows_l,
                     title="fc2 alone (both blocks) on the masked hidden spikes: nn.Linear vs TokenSkipLinear"),
    ])


def main(argv: list[str] | None = None) -> dict[str, Any]:
    def extra(ap):
        ap.add_argument("--output", default=None,
                        help="Markdown file whose section to replace when run as a script "
                             "(default results.md, results-quick.md with --quick; '-': none)")

    args, threads, repeat = parse_bench_args(argv, __doc__.splitlines()[0], "fewer rounds", 7, extra)
    start = time.perf_counter()
    info = machine_info()
    res = run(repeat, RATIOS_QUICK if args.quick else RATIOS_FULL)
    text = tables(res, info, repeat)
    print(f"bench_structured_masks: torch threads = {threads}, rounds = {repeat}")
    print(text)
    output = args.output or str(HERE / ("results-quick.md" if args.quick else "results.md"))
    return {"name": "structured_masks", "threads": threads, "repeat": repeat, "results": res, "table": text,
            "output": output, "seconds": time.perf_counter() - start}


if __name__ == "__main__":
    write_standalone(main(), SECTION, "bench_structured_masks.py")
