"""The ``spikemask`` command line (a thin layer over the library)."""

from __future__ import annotations

from typing import Sequence

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    # imported on call, so that `python -m spikemask.cli.main` (torchrun) does not find the module loaded already
    from .main import main as _main

    return _main(argv)
