"""``spikemask search``: per-layer masking ratios of a trained model, the accuracy–energy front.

A thin wrapper over :mod:`spikemask.search`: arguments -> :class:`SearchConfig` -> :func:`run_search` ->
:func:`write_search` -> a table of the front.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .tables import format_table

__all__ = ["add_arguments", "cmd_search", "render_front"]


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _samples(text: str) -> int | None:
    return None if text == "all" else _positive(text)


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The arguments of ``spikemask search`` (bounds are checked by :class:`SearchConfig`, with its messages)."""
    p.add_argument("checkpoint", metavar="CHECKPOINT", help="trained model (e.g. runs/x/last.pt)")
    p.add_argument("--trials", type=_positive, default=40,
                   help="configurations to measure, the unmasked reference first (default 40)")
    p.add_argument("--params", choices=("sites", "blocks", "both"), default="sites",
                   help="one τ per mask site, per block, or per block with sites free to take their own "
                        "(default sites)")
    p.add_argument("--sites", help="comma-separated mask sites to search (default: every site of the model; "
                                   "with --params blocks the model's default sites)")
    p.add_argument("--max-ratio", type=_number, default=0.9, help="largest τ tried (default 0.9)")
    p.add_argument("--step", type=_number, default=0.05, help="τ grid step (default 0.05)")
    p.add_argument("--budget-mj", type=_number, help="energy budget per sample in mJ: points above it are "
                                                     "infeasible (default: none)")
    p.add_argument("--sampler", choices=("tpe", "nsga2"), default="tpe",
                   help="Optuna sampler: tpe (tens of trials, default) or nsga2 (hundreds)")
    p.add_argument("--mask-seeds", type=_positive, default=2, help="mask seeds per measurement (default 2)")
    p.add_argument("--samples", type=_samples, default=128,
                   help="test samples for accuracy, a seeded draw, or 'all' (default 128)")
    p.add_argument("--energy-samples", type=_samples, default=16,
                   help="test samples for energy, or 'all' (default 16)")
    p.add_argument("--batch-size", type=_positive, default=64)
    p.add_argument("--seed", type=int, default=0, help="sampler seed: the same seed gives the same trials")
    p.add_argument("--data", help="data set (default: the one it was trained on)")
    p.add_argument("--root", help="data root")
    p.add_argument("--device", default="cpu", help="cpu (default, bit-for-bit reproducible), cuda or auto")
    p.add_argument("--engine", choices=("dense", "event", "auto"), default="dense",
                   help="how the trials compute: dense GEMMs or event-driven gather-adds (same numbers)")
    p.add_argument("--out", help="output directory (default: search/ next to the checkpoint)")
    p.add_argument("--json", action="store_true", help="print the whole result as one JSON object")


_FLAGS = {"energy_budget_mj": "--budget-mj", "max_ratio": "--max-ratio", "step": "--step", "seed": "--seed",
          "sites": "--sites", "device": "--device"}


def _config(args: argparse.Namespace):
    """A :class:`SearchConfig` from the arguments; its messages name the flags (``--budget-mj``) as typed."""
    from ..config import ConfigError
    from ..search import SearchConfig

    try:
        return _build(SearchConfig, args)
    except ConfigError as exc:
        message = str(exc)
        for key, flag in _FLAGS.items():
            message = message.replace(f"search.{key}", flag)
        raise ConfigError(message) from None


def _build(SearchConfig, args: argparse.Namespace):
    sites = tuple(s.strip() for s in args.sites.split(",") if s.strip()) if args.sites is not None else None
    return SearchConfig(checkpoint=args.checkpoint, params=args.params, sites=sites, max_ratio=args.max_ratio,
                        step=args.step, trials=args.trials, energy_budget_mj=args.budget_mj, sampler=args.sampler,
                        mask_seeds=args.mask_seeds, samples=args.samples, energy_samples=args.energy_samples,
                        batch_size=args.batch_size, seed=args.seed, data=args.data, root=args.root,
                        device=args.device, engine=args.engine)


def render_front(result: dict[str, Any]) -> str:
    """The front as a table: one row per point, its numbers, then its τ per searched site / block."""
    front = result["front"]
    energies = [result["reference"]["energy_mj"]] + [p["energy_mj"] for p in front]
    scale, unit = (1e3, "µJ") if max(energies) < 0.1 else (1.0, "mJ")
    keys = [k for k in result["searched"]["keys"] if any(k in p["ratios"] for p in front)]
    ref = result["reference"]
    rows = [["ref", 0, f"{ref['acc']:.2f}", f"{ref['energy_mj'] * scale:.4g}", "0.0", "+0.00"]
            + ["0" for _ in keys]]
    for p in front:
        rows.append([p["point"], p["number"], f"{p['acc']:.2f}", f"{p['energy_mj'] * scale:.4g}",
                     f"{p['delta_e_pct']:.1f}", f"{p['delta_acc']:+.2f}"]
                    + [f"{p['ratios'][k]:g}" if k in p["ratios"] else "blk" for k in keys])
    budget = result["energy_budget_mj"]
    title = (f"{result['model']} on {result['data']}: accuracy–energy front of {len(result['trials'])} trials "
             f"({result['feasible_trials']} within the budget of {budget * scale:.4g} {unit})" if budget is not None
             else f"{result['model']} on {result['data']}: accuracy–energy front of {len(result['trials'])} trials")
    table = format_table(["point", "trial", "acc (%)", f"energy ({unit})", "ΔE (%)", "Δacc"]
                         + [f"τ {k}" for k in keys], rows, title=title)
    foot = (f"accuracy on {result['samples']} test samples, energy per sample on {result['energy_samples']}, "
            f"means over mask seeds {result['mask_seeds']}; masks at inference only (no retraining)")
    if result["searched"]["params"] == "both" and any(k not in p["ratios"] for p in front for k in keys):
        foot += "; blk: the site follows its block's τ"
    return f"{table}\n{foot}"


def cmd_search(args: argparse.Namespace) -> int:
    from ..io import lock_dir
    from ..search import run_search, write_search
    from .main import emit_json
    from .progress import tqdm_progress

    cfg = _config(args)
    out = Path(args.out) if args.out else Path(args.checkpoint).parent / "search"
    result = run_search(cfg, progress=tqdm_progress)
    with lock_dir(out, "search directory"):  # two searches writing one directory would mix their points
        paths = write_search(result, out)
    if args.json:
        emit_json(result)
    else:
        if result["front"]:
            print(render_front(result))
        points = [p for k, p in paths.items() if k.startswith("point_")]
        print(f"\nwrote {paths['json']}, {paths['csv']}, {paths['plot']}"
              + (f" and {len(points)} run configs ({points[0].name} .. {points[-1].name})" if points else ""))
        if points:
            print(f"train a point:     spikemask train --config {points[0]}\n"
                  f"fine-tune a point: spikemask train --config {points[0]} --set train.init_from={args.checkpoint}")
    return 2 if result["note"] else 0  # no point within the budget: the library's warning said why
