"""``spikemask`` command line: each subcommand parses, loads a config, calls the library, renders.

Subcommands: models, train, eval, energy, demo. ``main(argv) -> int`` returns the exit status
(0 ok, 2 bad input: the message says what is wrong and how to fix it).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any, Sequence

__all__ = ["main", "build_parser"]

log = logging.getLogger("spikemask")


def _add_set(p: argparse.ArgumentParser) -> None:
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set model.mask.ratio=0.5 (repeatable)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="spikemask", description="Energy-efficient spiking transformers "
                                     "with Random Spike Masking and honest energy accounting.")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and results")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("models", help="list registered models and their parameter counts")
    p.add_argument("--json", action="store_true", help="print a JSON list of {name, params, family, summary}")
    p.add_argument("pattern", nargs="?", help="shell glob, e.g. 'spikformer_*'")

    p = sub.add_parser("train", help="train one run from a YAML config or preset")
    p.add_argument("--config", help="YAML file or preset name (see `spikemask train --list-presets`)")
    p.add_argument("--resume", nargs="?", const=True, default=False, metavar="CHECKPOINT",
                   help="continue a run: from <run_dir>/last.pt, or from the checkpoint given "
                        "(its stored config is used unless --config is given)")
    p.add_argument("--list-presets", action="store_true", help="list the packaged presets")
    _add_set(p)

    p = sub.add_parser("eval", help="accuracy of a checkpoint, mean ± std over mask seeds")
    p.add_argument("checkpoint")
    p.add_argument("--mask-ratio", type=float, help="override the stored masking ratio τ (default: as trained)")
    p.add_argument("--seeds", type=int, default=5, help="mask seeds (default 5)")
    p.add_argument("--data", help="data set (default: the one it was trained on)")
    p.add_argument("--root", help="data root")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("energy", help="energy report of a model measured on data, or counted densely")
    p.add_argument("--model", help="registered model name (or use --checkpoint)")
    p.add_argument("--checkpoint", help="use this trained model (its config, masks included)")
    p.add_argument("--T", type=int, help="time steps (default: the model's)")
    p.add_argument("--mask-ratio", type=float, help="masking ratio τ on the model's mask sites")
    p.add_argument("--sites", help="comma-separated mask sites (default: the model's)")
    p.add_argument("--data", default=None, help="data set to measure on (default: ndigits)")
    p.add_argument("--root", help="data root")
    p.add_argument("--samples", type=int, default=256, help="test samples to measure on (default 256)")
    p.add_argument("--seeds", type=int, default=3, help="mask seeds (default 3)")
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
    q.add_argument("--samples", type=int, default=64, help="samples per split read for the event statistics")
    q.add_argument("--json", action="store_true")
    q = dsub.add_parser("prepare", help="frame a data set and cache the frames (with a progress bar)")
    q.add_argument("name")
    q.add_argument("--root", help="the data set's folder (default $SPIKEMASK_DATA/<name>)")
    q.add_argument("--T", type=int, default=16, help="time steps (frames per sample, default 16)")
    q.add_argument("--split-by", choices=("number", "time"), default="number")
    q.add_argument("--size", type=int, nargs=2, metavar=("H", "W"), help="resize by scaling event coordinates")
    q.add_argument("--binarize", action="store_true")
    q.add_argument("--splits", nargs="+", default=["train", "test"])

    p = sub.add_parser("demo", help="the main job: a Masked Spikformer τ x T study on the bundled N-Digits")
    p.add_argument("--config", default="demo_ndigits", help="study YAML or preset (default demo_ndigits)")
    p.add_argument("--out", help="output directory (default runs/)")
    _add_set(p)
    return parser


def _setup_logging(quiet: bool) -> None:
    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s" if quiet else "%(message)s")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        from .. import __version__

        print(__version__)
        return 0
    if args.command is None:
        parser.print_help()
        return 0
    _setup_logging(args.quiet)
    from ..config import ConfigError
    from ..data import EventFileError
    from ..train import CheckpointError, NonFiniteLossError
    from . import commands

    try:
        return getattr(commands, f"cmd_{args.command}")(args)
    except (ConfigError, CheckpointError, EventFileError, NonFiniteLossError, ValueError, FileNotFoundError) as exc:
        print(f"spikemask {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; finished epochs are in the run's last.pt (resume with --resume)", file=sys.stderr)
        return 130


def emit_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2, default=lambda o: str(o) if isinstance(o, Path) else None))


if __name__ == "__main__":
    raise SystemExit(main())
