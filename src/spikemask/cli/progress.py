"""tqdm progress bars for the library's progress callbacks (stderr; hidden when not a terminal)."""

from __future__ import annotations

import os
import sys
from typing import Any

from tqdm.auto import tqdm

__all__ = ["tqdm_progress"]


def tqdm_progress(**kwargs: Any):
    # SPIKEMASK_PROGRESS=1 forces bars on (e.g. under `make`), =0 forces them off
    force = os.environ.get("SPIKEMASK_PROGRESS")
    disable = None if force is None else force == "0"
    return tqdm(file=sys.stderr, disable=disable, dynamic_ncols=True, **kwargs)
