"""``spikemask sweep`` and ``spikemask results merge|export|query|show``: thin layers over
:mod:`spikemask.results`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

__all__ = ["add_sweep_arguments", "add_results_arguments", "cmd_sweep", "cmd_results", "sweep_config_from_args"]


def _ratios(text: str) -> tuple[float, ...]:
    from ..masking import check_ratio

    try:
        return tuple(check_ratio(float(v), "--eval-ratios") for v in text.split(",") if v.strip())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_sweep_arguments(p: argparse.ArgumentParser, positive) -> None:
    p.add_argument("--config", required=True, help="the run every grid cell starts from: YAML file or preset")
    p.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2",
                   help="a config key and its values, e.g. --grid model.T=4,8 (repeatable: every combination)")
    p.add_argument("--train-seeds", type=positive, default=1, help="training seeds per cell (default 1)")
    p.add_argument("--mask-seeds", type=positive, default=3, help="mask seeds per masked evaluation (default 3)")
    p.add_argument("--workers", type=positive, default=1, help="runs trained at once, in separate processes")
    p.add_argument("--eval-ratios", type=_ratios, default=(), metavar="R1,R2",
                   help="also mask every unmasked run at inference at these ratios, attention and MLP apart")
    p.add_argument("--blocks", action="store_true",
                   help="also mask every unmasked run in its first k blocks, k = 1..depth (at --block-ratio)")
    p.add_argument("--block-ratio", type=float, default=0.5, help="ratio of --blocks (default 0.5)")
    p.add_argument("--energy-samples", type=positive, default=64, help="test samples the energy is measured on")
    p.add_argument("--no-probes", action="store_true", help="do not store spike maps and histograms per run")
    p.add_argument("--name", help="sweep name (default: the config's name + _sweep)")
    p.add_argument("--out", help="parent directory (default runs/)")
    p.add_argument("--engine", choices=("dense", "event", "auto"), default="dense",
                   help="how the evaluations compute: dense GEMMs or event-driven gather-adds (same numbers)")
    p.add_argument("--report", action="store_true", help="build the report (PNG, Markdown, HTML) afterwards")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")


def add_results_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="results_command", metavar="ACTION", required=True)
    m = sub.add_parser("merge", help="merge results databases (e.g. from several machines) into a new one")
    m.add_argument("sources", nargs="+", help="results.db files (or sweep directories)")
    m.add_argument("--out", required=True, help="the merged database to write (must not be a source)")
    for name, what in (("export", "every evaluation as CSV"), ("query", "evaluations whose config matches")):
        q = sub.add_parser(name, help=what)
        q.add_argument("db", help="a results.db or a sweep directory")
        q.add_argument("--where", action="append", default=[], metavar="KEY=VALUE",
                       help="keep runs whose config has KEY=VALUE, e.g. --where model.T=8 (repeatable)")
        if name == "export":
            q.add_argument("--out", help="CSV file to write (default: standard output)")
        else:
            q.add_argument("--json", action="store_true")
    s = sub.add_parser("show", help="runs, their status and evaluations")
    s.add_argument("db", help="a results.db or a sweep directory")


def sweep_config_from_args(args: argparse.Namespace):
    from ..config import apply_overrides, from_dict, load_yaml
    from ..results.sweep import SweepConfig, parse_grid
    from ..train.config import preset_path

    base = apply_overrides(load_yaml(preset_path(args.config)), list(getattr(args, "overrides", [])))
    return from_dict(SweepConfig, {
        "name": args.name or f"{base.get('name', 'run')}_sweep", "out_dir": args.out or "runs", "base": base,
        "grid": parse_grid(args.grid), "train_seeds": args.train_seeds, "mask_seeds": args.mask_seeds,
        "workers": args.workers, "energy_samples": args.energy_samples, "eval_ratios": list(args.eval_ratios),
        "blocks_eval": args.blocks, "block_ratio": args.block_ratio, "probes": not args.no_probes,
        "engine": args.engine,
    }, where="sweep")


def cmd_sweep(args: argparse.Namespace) -> int:
    from ..results.sweep import run_sweep
    from .main import emit_json
    from .progress import tqdm_progress

    cfg = sweep_config_from_args(args)
    summary = run_sweep(cfg, progress=tqdm_progress)
    if args.report:
        from ..results.report import build_report

        summary["report"] = {k: str(v) for k, v in build_report(cfg.db_path, cfg.sweep_dir / "report").items()
                             if isinstance(v, (str, Path))}
    if args.json:
        emit_json(summary)
    else:
        print(f"sweep {cfg.name}: {summary['runs']} runs ({summary['skipped']} were already done, "
              f"{summary['done']} run now, {len(summary['failed'])} failed) -> {summary['db']}")
        for rid, why in summary["failed"].items():
            print(f"  failed {rid}: {why}")
        if args.report:
            print(f"report: {summary['report'].get('html', cfg.sweep_dir / 'report')}")
        else:
            print(f"report: spikemask report {cfg.sweep_dir}")
    return 2 if summary["failed"] else 0


def _db_path(path: str) -> Path:
    from ..results.db import DB_NAME

    p = Path(path)
    return p / DB_NAME if p.is_dir() else p


def _where(items: list[str]) -> dict[str, Any]:
    from ..config import parse_overrides

    return {".".join(k): v for k, v in parse_overrides(items)}


def cmd_results(args: argparse.Namespace) -> int:
    from ..results import ResultsDB, merge_databases
    from .main import emit_json
    from .tables import format_table

    action = args.results_command
    if action == "merge":
        out = Path(args.out)
        if out.exists():
            raise ValueError(f"{out} exists: merge into a new file (the sources are never changed)")
        stats = merge_databases(out, [_db_path(s) for s in args.sources])
        print(f"merged {len(args.sources)} databases into {out}: {stats['counts']['done']} finished runs, "
              f"{stats['counts']['evaluations']} evaluations ({stats['duplicates']} runs found in more than one"
              + (f"; {len(stats['conflicts'])} with different results, the first kept: "
                 f"{', '.join(stats['conflicts'])}" if stats["conflicts"] else "") + ")")
        return 0
    with ResultsDB(_db_path(args.db), create=False) as db:
        if action == "show":
            counts = db.counts()
            rows = [[r["run_id"], r["status"], r["model"], r["T"], r["mask_ratio"], r["train_seed"],
                     "" if r["wall_s"] is None else f"{r['wall_s']:.0f}", (r["error"] or "")[:60]]
                    for r in db.runs(status=None)]
            print(format_table(["run", "status", "model", "T", "τ", "seed", "wall (s)", "error"], rows))
            print(f"{counts['done']} done, {counts['running']} running or interrupted, {counts['failed']} failed; "
                  f"{counts['evaluations']} evaluations")
            return 0
        where = _where(args.where)
        if action == "export":
            text = db.export_csv(where)
            if args.out:
                from ..io import atomic_write_text

                atomic_write_text(args.out, text)
                print(f"{text.count(chr(10)) - 1} evaluations -> {args.out}")
            else:
                sys.stdout.write(text)
            return 0
        rows = db.query(where)
        if args.json:
            emit_json([{k: v for k, v in r.items() if k != "config"} for r in rows])
            return 0
        print(format_table(["run", "model", "T", "trained τ", "evaluation", "seed", "acc (%)", "E (µJ)"],
                           [[r["run_id"], r["model"], r["T"], r["trained_ratio"], r["name"], r["mask_seed"],
                             f"{r['acc']:.2f}", "" if r["energy_mj"] is None else f"{r['energy_mj'] * 1e3:.2f}"]
                            for r in rows]))
        return 0
