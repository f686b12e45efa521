"""``spikemask report RUNS_DIR``: a thin layer over :func:`spikemask.results.report.build_report`.

Reads the results database alone (no model, no torch), writes the figures, ``report.md`` and ``report.html``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

__all__ = ["add_arguments", "cmd_report"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("runs_dir", metavar="RUNS_DIR",
                   help="a sweep directory holding results.db, or a results database file")
    p.add_argument("--out", metavar="DIR", help="where to write the report (default: RUNS_DIR/report, or "
                                                "report/ next to the database file)")
    p.add_argument("--title", help="the report's title")
    p.add_argument("--json", action="store_true", help="print what was written as JSON")


def _summary(result: dict[str, Any]) -> dict[str, Any]:
    return {"out_dir": str(result["out_dir"]), "html": str(result["html"]), "markdown": str(result["markdown"]),
            "figures": {k: str(v) for k, v in result["figures"].items()}, "missing": result["missing"],
            "rows": len(result["rows"])}


def cmd_report(args: argparse.Namespace) -> int:
    from ..results.report import build_report

    result = build_report(Path(args.runs_dir), args.out, title=getattr(args, "title", None))
    summary = _summary(result)
    if args.json:
        print(json.dumps(summary, indent=2, ensure_ascii=False))
        return 0
    print(f"report of {summary['rows']} table rows and {len(summary['figures'])} figures -> {summary['out_dir']}")
    print(f"  {summary['html']}  (one self-contained page)")
    print(f"  {summary['markdown']}")
    for path in summary["figures"].values():
        print(f"  {path}")
    for key, why in summary["missing"].items():
        print(f"  left out {key}: {why}")
    return 0
