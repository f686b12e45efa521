"""Where data sets live on disk: one function, so every reader and the CLI agree."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["default_data_root"]


def default_data_root() -> Path:
    """``$SPIKEMASK_DATA`` if set (and non-empty), else ``~/.cache/spikemask``; resolved at call time."""
    env = os.environ.get("SPIKEMASK_DATA", "").strip()
    return Path(env).expanduser() if env else Path.home() / ".cache" / "spikemask"
