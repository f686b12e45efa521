"""Masking ratio against inference time, per masking mode: does a dropped spike save time?

``spikformer_2_64_ndigits`` trained on the bundled N-Digits (5 epochs, cached in ``benchmarks/.cache/``, as in
``bench_event.py``), fed 64 test clips (T 8), eval, ``torch.no_grad``; ``--quick``: untrained, BN calibrated on
Poisson(0.4) events, batch 16. Random Spike Masking applied at inference, seeded, per step, in these modes:

* ``element (papers' sites)``: the papers' RSM, one Bernoulli per element at the default sites (``attn.q``,
  ``attn.k``, ``attn.scores``, ``mlp.hidden``);
* ``element``, ``token``, ``channel`` at ``mlp.hidden`` (fc2's input): per element, whole tokens (all hidden
  features of a token), whole channels (a hidden feature for every token); and ``element`` drawn where spikes
  arrive (``draw="arriving"``: one random number per spike instead of per element; same distribution).

at τ 0.3, 0.5, 0.7, 0.9 (quick: 0.5, 0.7), all on the event engine (``spikemask.engine``: fc2 gathers only the
weight rows of the spikes that survive), plus the papers' mode on the dense engine at the same ratios, which
shows what masking does to time when every zero is still multiplied.

Measured per variant: the forward time against the unmasked model on the same engine (interleaved rounds,
median per-round ratio), and the operations (SOPs + MACs, spikemask's ``EnergyCounter``, same input and mask
seed) against the unmasked model's. ``time saved`` = 1 - t / t_unmasked, ``ops saved`` = 1 - ops / ops_unmasked.
The issue's target: at τ 0.7 (or structured at the same keep rate), time saved >= half the ops saved.

Full run only: models *trained* with each mode at ``mlp.hidden`` (τ 0.5, 5 epochs, seed 0, cached like the
unmasked one; the first run trains them, ~2 min each): test accuracy on the whole N-Digits test split against
inference time and operations on the event engine (the accuracy-and-time comparison of the masking modes).
Logits of every event variant are checked equal to the dense engine's with the same masks before timing.
Plot: ``mask_time.png`` (time and ops relative to unmasked, against τ, per mode).

Run: ``.venv/bin/python benchmarks/bench_structured_masks.py [--quick] [--repeat N] [--threads N]``
(full ~3 min on 2 vCPUs after the cached training, quick ~40 s; writes its section of ``results.md`` /
``results-quick.md``).
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
    trained_ndigits,
    write_standalone,
)

HERE = Path(__file__).resolve().parent
SECTION = "Masking ratio against inference time, per masking mode"
MODEL = "spikformer_2_64_ndigits"
PAPER_SITES = ("attn.q", "attn.k", "attn.scores", "mlp.hidden")
MODES = {  # label -> (engine, structure, sites, draw)
    "element (papers' sites)": ("event", "element", PAPER_SITES, "all"),
    "element mlp.hidden": ("event", "element", ("mlp.hidden",), "all"),
    "element mlp.hidden, drawn where spikes arrive": ("event", "element", ("mlp.hidden",), "arriving"),
    "token mlp.hidden": ("event", "token", ("mlp.hidden",), "all"),
    "channel mlp.hidden": ("event", "channel", ("mlp.hidden",), "all"),
    "element (papers' sites), dense engine": ("dense", "element", PAPER_SITES, "all"),
}
RATIOS_FULL, RATIOS_QUICK = (0.3, 0.5, 0.7, 0.9), (0.5, 0.7)


def model_and_input(quick: bool) -> tuple[torch.nn.Module, torch.Tensor, str]:
    import spikemask as sm

    if quick:
        torch.manual_seed(0)
        model = sm.create_model(MODEL)
        x = torch.poisson(torch.full((model.config.T, 16, 2, 32, 32), 0.4))
        calibrate_bn(model, [x])
        return model.eval(), x, "untrained, BN calibrated on Poisson(0.4) events"
    model, batches, _ = trained_ndigits(MODEL)
    return model, batches[0], "trained 5 epochs on N-Digits, 64 test clips"


def variant(base: torch.nn.Module, engine: str, structure: str, sites: tuple[str, ...], ratio: float,
            draw: str = "all"):
    import spikemask as sm
    from spikemask.engine import set_engine

    m = copy.deepcopy(base).eval()
    set_engine(m, engine)
    if ratio:
        sm.apply_rsm(m, ratio=ratio, sites=list(sites), structure=structure, seed=0, mode="always", draw=draw)
    return m


def ops(model: torch.nn.Module, x: torch.Tensor) -> float:
    from spikemask.energy import measure_energy

    totals = measure_energy(model, [x], mask_seeds=[0])["totals"]
    return float(totals["sops"] + totals["macs"])


def run(repeat: int, ratios: tuple[float, ...], quick: bool) -> dict[str, Any]:
    base, x, what = model_and_input(quick)
    refs = {e: variant(base, e, "element", PAPER_SITES, 0.0) for e in ("event", "dense")}
    ref_ops = ops(refs["event"], x)
    rows = []
    for label, (engine, structure, sites, draw) in MODES.items():
        for r in ratios:
            m = variant(base, engine, structure, sites, r, draw)
            check = None
            if engine == "event":  # the same masks on the dense engine: the same logits
                d = variant(base, "dense", structure, sites, r, draw)
                with torch.no_grad():
                    m.reseed_masks(0)
                    d.reseed_masks(0)
                    check = float((m(x) - d(x)).abs().max())
                if check > 1e-4:
                    raise RuntimeError(f"{label} τ={r}: event and dense logits differ by {check:.2e}")

            def fwd(model):
                def call():
                    with torch.no_grad():
                        return model(x)
                return call

            t = interleaved({"ref": fwd(refs[engine]), "masked": fwd(m)}, repeat=repeat, warmup=1)
            o = ops(m, x)
            rows.append({"mode": label, "engine": engine, "ratio": r, "ref_s": t["ref"].median,
                         "masked_s": t["masked"].median, "ratio_stats": ratio_stats(t["masked"], t["ref"]),
                         "ops": o, "ops_rel": o / ref_ops, "check": check})
    return {"rows": rows, "what": what, "ref_ops": ref_ops, "batch": int(x.shape[1]), "T": int(x.shape[0])}


TRAINED_RATIO = 0.5
TRAINED = {"unmasked": (), "element": ("element",), "token": ("token",), "channel": ("channel",)}


def trained_masked(repeat: int) -> list[dict[str, Any]]:
    """Accuracy and time of models trained with each masking mode at mlp.hidden (τ 0.5, masks on in training
    and inference, 5 epochs, seed 0; cached): the test accuracy of the whole N-Digits test split (one mask
    seed) and the forward time on 64 test clips, event engine, against the unmasked model in the same rounds."""
    from spikemask.engine import set_engine

    out, models = [], {}
    for label, structure in TRAINED.items():
        overrides = () if not structure else (f"model.mask.ratio={TRAINED_RATIO}", "model.mask.sites=[mlp.hidden]",
                                              f"model.mask.structure={structure[0]}", "model.mask.seed=0")
        model, batches, acc = trained_ndigits(MODEL, overrides=overrides, tag="" if not structure else
                                              f"{structure[0]}{TRAINED_RATIO:g}")
        set_engine(model, "event")
        models[label] = (model, acc)
    x = batches[0]

    def fwd(model):
        def call():
            with torch.no_grad():
                return model(x)
        return call

    t = interleaved({k: fwd(m) for k, (m, _) in models.items()}, repeat=repeat, warmup=1)
    ref_ops = ops(models["unmasked"][0], x)
    for label, (model, acc) in models.items():
        out.append({"mode": label, "acc": acc, "time_s": t[label].median,
                    "time_rel": ratio_stats(t[label], t["unmasked"]), "ops_rel": ops(model, x) / ref_ops})
    return out


def tables(res: dict[str, Any], info: dict[str, Any], repeat: int) -> str:
    head = (f"CPU {info['cpu']} ({info['logical_cpus']} logical), torch {info['torch']}, "
            f"{info['torch_threads']} thread(s), {repeat} rounds, load {info.get('load_avg_1m', '?')}. "
            f"{MODEL} ({res['what']}), T {res['T']}, batch {res['batch']}, eval, no_grad; masks seeded, per step. "
            f"time rel. = masked / unmasked forward on the same engine (median (min-max) of per-round ratios); "
            f"ops = SOPs + MACs (EnergyCounter); target: time saved >= ops saved / 2.")
    body = []
    for r in res["rows"]:
        time_saved, ops_saved = 1 - r["ratio_stats"][0], 1 - r["ops_rel"]
        met = "yes" if ops_saved > 0 and time_saved >= ops_saved / 2 else "no"
        body.append([r["mode"], f"{r['ratio']:g}", fmt_ms(r["ref_s"]), fmt_ms(r["masked_s"]),
                     fmt_ratio(*r["ratio_stats"]), f"{r['ops_rel']:.3f}", f"{time_saved:+.1%}",
                     f"{ops_saved:+.1%}", met,
                     "" if r["check"] is None else f"{r['check']:.1e}"])
    parts = [head, format_table(
        ["mode", "τ", "unmasked ms", "masked ms", "time rel.", "ops rel.", "time saved", "ops saved",
         "≥ half", "max |Δlogit| vs dense"], body,
        title="Masking ratio against inference time (whole forward)")]
    if res.get("trained"):
        rows = [[r["mode"], f"{r['acc']:.2f}", fmt_ms(r["time_s"]), fmt_ratio(*r["time_rel"]), f"{r['ops_rel']:.3f}"]
                for r in res["trained"]]
        parts.append(format_table(["trained with", "test acc %", "forward", "time rel.", "ops rel."], rows,
                                  title=f"Trained with the mask at mlp.hidden (τ {TRAINED_RATIO:g}, 5 epochs, seed 0), "
                                        "event engine, masks on at inference; time and ops against the unmasked "
                                        "model"))
    return "\n\n".join(parts)


def plot(res: dict[str, Any], path: Path, info: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    colors = ("tab:blue", "tab:orange", "tab:purple", "tab:green", "tab:red", "tab:gray")
    for (label, _), color in zip(MODES.items(), colors):
        rs = [r for r in res["rows"] if r["mode"] == label]
        taus = [0.0] + [r["ratio"] for r in rs]
        ax.plot(taus, [1.0] + [r["ratio_stats"][0] for r in rs], "o-", color=color, label=f"{label}: time")
        ax.plot(taus, [1.0] + [r["ops_rel"] for r in rs], "--", color=color, alpha=0.5, label=f"{label}: ops")
    ax.set_xlabel("masking ratio τ")
    ax.set_ylabel("relative to the unmasked model")
    ax.set_ylim(0, max(1.1, 1.05 * max(r["ratio_stats"][0] for r in res["rows"])))
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=6)
    fig.suptitle(f"{MODEL}: inference time and operations against τ; {info['torch_threads']} thread(s)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args, threads, repeat = parse_bench_args(argv, __doc__.splitlines()[0], "untrained model, 2 ratios", 7,
                                             section=True, plot="mask_time.png")
    start = time.perf_counter()
    info = machine_info()
    res = run(repeat, RATIOS_QUICK if args.quick else RATIOS_FULL, args.quick)
    if not args.quick:
        res["trained"] = trained_masked(repeat)
    text = tables(res, info, repeat)
    print(f"bench_structured_masks: torch threads = {threads}, rounds = {repeat}")
    print(text)
    if args.plot:
        plot(res, Path(args.plot), info)
        print(f"\nwrote {args.plot}")
    return {"name": "structured_masks", "threads": threads, "repeat": repeat, "results": res, "table": text,
            "output": args.output, "seconds": time.perf_counter() - start}


if __name__ == "__main__":
    write_standalone(main(), SECTION, "bench_structured_masks.py")
