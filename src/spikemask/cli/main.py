"""``spikemask`` command line: each subcommand parses, loads a config, calls the library, renders.

Subcommands: models, train, eval, energy, data, demo, convert, import-weights, sweep, results, report,
search. ``main(argv) -> int``
returns the exit status: 0 ok, 2 bad input or an operating-system error (one line: what is wrong and how
to fix it), 1 a bug in spikemask, 130 interrupted. ``--debug`` shows the traceback instead of the one line.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
from pathlib import Path
from typing import Any, Sequence

__all__ = ["main", "build_parser"]

log = logging.getLogger("spikemask")

_TORCH_FREE = {"report": "report_cmd", "results": "sweep_cmd"}
MAX_SIDE = 4096  # = spikemask.data.event_dataset.MAX_SIDE (a test checks), not imported: the parser needs no torch


class _Parser(argparse.ArgumentParser):
    """argparse with its errors on one line, like every other error of the CLI."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _int_in(low: int, high: int | None = None, what: str = "an integer"):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if value < low or (high is not None and value > high):
            bound = f">= {low}" if high is None else f"in {low}..{high}"
            raise argparse.ArgumentTypeError(f"must be {bound}, got {value}")
        return value

    return parse


positive = _int_in(1)


def _ratio(text: str) -> float:
    from ..masking import check_ratio

    try:
        return check_ratio(float(text), "the masking ratio")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _add_set(p: argparse.ArgumentParser) -> None:
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set model.mask.ratio=0.5 (repeatable)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="spikemask", description="Energy-efficient spiking transformers "
                     "with Random Spike Masking and honest energy accounting.")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and results")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser("models", help="list registered models and their parameter counts")
    p.add_argument("--json", action="store_true", help="print a JSON list of {name, params, family, summary}")
    p.add_argument("pattern", nargs="?", help="shell glob, e.g. 'spikformer_*'")

    p = sub.add_parser("train", help="train one run from a YAML config or preset")
    p.add_argument("--config", help="YAML file or preset name (see `spikemask train --list-presets`)")
    p.add_argument("--resume", nargs="?", const=True, default=False, metavar="CHECKPOINT",
                   help="continue a run: from <run_dir>/last.pt, or from the checkpoint given "
                        "(its stored config is used unless --config is given)")
    p.add_argument("--overwrite", action="store_true",
                   help="delete the run already in the run directory and start again (without it, an existing "
                        "run is never touched)")
    p.add_argument("--allow-config-change", action="store_true",
                   help="with --resume: continue under a config that differs from the checkpoint's; the change "
                        "is recorded in the run's config_changes.jsonl")
    p.add_argument("--list-presets", action="store_true", help="list the packaged presets")
    _add_set(p)

    p = sub.add_parser("eval", help="accuracy of a checkpoint, mean ± std over mask seeds")
    p.add_argument("--engine", choices=("dense", "event", "auto"),
                   help="spike-reading linears: dense GEMM, event-driven gather-adds, or by input density "
                        "(same numbers; default: as the model config says)")
    p.add_argument("checkpoint")
    p.add_argument("--mask-ratio", type=_ratio, help="override the stored masking ratio τ (default: as trained)")
    p.add_argument("--seeds", type=positive, default=5, help="mask seeds (default 5)")
    p.add_argument("--data", help="data set (default: the one it was trained on)")
    p.add_argument("--root", help="data root")
    p.add_argument("--batch-size", type=positive, default=64)
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("energy", help="energy report of a model measured on data, or counted densely")
    p.add_argument("--engine", choices=("dense", "event", "auto"),
                   help="spike-reading linears: dense GEMM, event-driven gather-adds, or by input density "
                        "(same numbers; default: as the model config says)")
    p.add_argument("--model", help="registered model name (or use --checkpoint)")
    p.add_argument("--checkpoint", help="use this trained model (its config, masks included)")
    p.add_argument("--T", type=positive, help="time steps (default: the model's)")
    p.add_argument("--mask-ratio", type=_ratio, help="masking ratio τ on the model's mask sites")
    p.add_argument("--sites", help="comma-separated mask sites (default: the model's)")
    p.add_argument("--mask-draw", choices=("all", "arriving"),
                   help="where masks draw random numbers: every element (all, the papers' RSM) or only where a "
                        "spike arrives (default: the model's setting)")
    p.add_argument("--data", default=None, help="data set to measure on (default: ndigits)")
    p.add_argument("--root", help="data root")
    p.add_argument("--samples", type=positive, default=256, help="test samples to measure on (default 256)")
    p.add_argument("--seeds", type=positive, default=3, help="mask seeds (default 3)")
    p.add_argument("--dense", action="store_true", help="deterministic dense count: every input treated as firing")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    _add_set(p)

    p = sub.add_parser("data", help="list, inspect and prepare data sets (nothing is ever downloaded)")
    dsub = p.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    q = dsub.add_parser("list", help="registered data sets")
    q.add_argument("--json", action="store_true")
    q = dsub.add_parser("info", help="samples per split and class, event statistics")
    q.add_argument("name")
    q.add_argument("--root", help="the data set's folder (default $SPIKEMASK_DATA/<name>)")
    q.add_argument("--samples", type=positive, default=64, help="samples per split read for the event statistics")
    q.add_argument("--json", action="store_true")
    q = dsub.add_parser("prepare", help="frame a data set and cache the frames (with a progress bar)")
    q.add_argument("name")
    q.add_argument("--root", help="the data set's folder (default $SPIKEMASK_DATA/<name>)")
    q.add_argument("--T", type=positive, default=16, help="time steps (frames per sample, default 16)")
    q.add_argument("--split-by", choices=("number", "time"), default="number")
    q.add_argument("--size", type=_int_in(1, MAX_SIDE, "a size in pixels"), nargs=2, metavar=("H", "W"),
                   help=f"resize by scaling event coordinates (1..{MAX_SIDE} pixels per side)")
    q.add_argument("--binarize", action="store_true")
    q.add_argument("--splits", nargs="+", default=["train", "test"])

    p = sub.add_parser("convert", help="convert a QCFS ANN checkpoint to an SNN: accuracy at every step, energy")
    p.add_argument("checkpoint", help="a QCFS ANN checkpoint (families swin_bn, resnet, vgg)")
    p.add_argument("--T", type=positive, default=64, help="time steps of the SNN (default 64)")
    p.add_argument("--mask-ratio", type=_ratio, help="masking ratio τ for the ANN and the SNN (default: as saved)")
    p.add_argument("--seeds", type=positive, default=3, help="mask seeds (default 3)")
    p.add_argument("--data", help="data set (default: the one it was trained on)")
    p.add_argument("--root", help="data root")
    p.add_argument("--batch-size", type=positive, default=64)
    p.add_argument("--samples", type=positive, help="evaluate a random sample of this many test inputs")
    p.add_argument("--energy-samples", type=positive, default=32, help="test inputs the energy is measured on")
    p.add_argument("--out", help="output folder (default: <checkpoint folder>/conversion_T<T>)")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")

    p = sub.add_parser("import-weights", help="convert the authors' Spikformer / Spikingformer / MST checkpoint "
                                              "into a spikemask one (the layout is detected)")
    p.add_argument("source", help="the authors' checkpoint (.pth / .pth.tar)")
    p.add_argument("--out", required=True, metavar="CHECKPOINT", help="spikemask checkpoint to write")
    p.add_argument("--variant", help="spikemask variant to load into (default: the registered one the weights fit)")
    p.add_argument("--num-classes", type=positive, help="check that the file's classifier has this many classes")
    p.add_argument("--num-heads", type=positive, help="attention heads, when the file does not record them")
    p.add_argument("--ema", action="store_true", help="load the EMA weights (state_dict_ema) instead")
    p.add_argument("--mask-ratio", type=_ratio,
                   help="MST only: masking ratio at attn.q/k/scores (default: the file's config, else 0)")
    p.add_argument("--levels", type=positive, default=16,
                   help="MST only: QCFS levels L (the authors' main.py uses 16; no file records it)")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.add_argument("--json", action="store_true", help="print the import report as JSON")

    from .sweep_cmd import add_results_arguments, add_sweep_arguments

    p = sub.add_parser("sweep", help="train and measure a grid of runs into one results database (resumable)")
    add_sweep_arguments(p, positive)
    _add_set(p)
    p = sub.add_parser("results", help="results databases: merge, export (CSV), query, show")
    add_results_arguments(p)
    from . import report_cmd, search_cmd

    report_cmd.add_arguments(sub.add_parser("report", help="figures, Markdown and one HTML page from a results "
                                                           "database alone"))

    search_cmd.add_arguments(sub.add_parser("search", help="search per-site / per-block masking ratios of a "
                                                           "trained model: the accuracy-energy front (Optuna)"))

    p = sub.add_parser("demo", help="the main job: a Masked Spikformer τ x T study on the bundled N-Digits")
    p.add_argument("--config", default="demo_ndigits", help="study YAML or preset (default demo_ndigits)")
    p.add_argument("--out", help="output directory (default runs/)")
    p.add_argument("--overwrite", action="store_true",
                   help="retrain cells whose run directory holds a run made with another config (deletes it)")
    p.add_argument("--engine", choices=("dense", "event", "auto"),
                   help="how the evaluations compute (same numbers; MST conversion studies compute densely)")
    _add_set(p)
    return parser


def _setup_logging(quiet: bool) -> None:
    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s" if quiet else "%(message)s")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, or a bad argument (already explained on one line): a status, not an exit
        return exc.code if isinstance(exc.code, int) else 2
    if args.version:
        from .. import __version__

        print(__version__)
        return 0
    if args.command is None:
        parser.print_help()
        return 0
    _setup_logging(args.quiet)
    from .errors import describe_error, exit_code

    try:
        # reports and results databases need no torch: their commands live apart from the others
        module = _TORCH_FREE.get(args.command, "commands")
        commands = importlib.import_module(f".{module}", __package__)
        return getattr(commands, f"cmd_{args.command.replace('-', '_')}")(args)
    except KeyboardInterrupt:
        done = " finished epochs are in the run's last.pt (resume with --resume)" if args.command == "train" else ""
        print(f"spikemask {args.command}: interrupted;{done or ' nothing was left half-written'}", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the CLI's one place that turns every error into one line
        if args.debug:
            raise
        print(f"spikemask {args.command}: error: {describe_error(exc)}", file=sys.stderr)
        return exit_code(exc)


def emit_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2, default=lambda o: str(o) if isinstance(o, Path) else None))


if __name__ == "__main__":
    raise SystemExit(main())
