"""What a run directory holds, and the rules that keep it: never overwritten implicitly, never resumed under
another config without saying so (the change is recorded), stale temporaries cleaned at the start.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ..config import ConfigError, flatten
from ..io import clean_stale_temps
from .checkpoint import CheckpointError

__all__ = ["RUN_OUTPUTS", "RESUME_FREE_KEYS", "RunExistsError", "config_changes", "check_resume", "existing_run",
           "claim_run_dir"]

log = logging.getLogger(__name__)

# what a run writes into its directory; a fresh run must never delete these implicitly
RUN_OUTPUTS = ("last.pt", "best.pt", "metrics.jsonl", "final.json", "config_changes.jsonl")
# keys that say where and how a run executes, not what it computes: free to change on resume
RESUME_FREE_KEYS = ("name", "out_dir", "device", "data.root", "data.num_workers")


class RunExistsError(ConfigError):
    """The run directory already holds a run that this call would overwrite."""


def config_changes(stored: dict[str, Any], current: dict[str, Any]) -> dict[str, list[Any]]:
    """``{dotted key: [stored value, current value]}`` for every key that changes what a run computes."""
    a, b = flatten(stored), flatten(current)
    return {k: [a.get(k), b.get(k)] for k in sorted(set(a) | set(b))
            if a.get(k) != b.get(k) and not any(k == f or k.startswith(f + ".") for f in RESUME_FREE_KEYS)}


_TRAINING_STATE = ("epoch", "optimizer", "best_acc", "history", "rng")


def check_resume(state: dict[str, Any], resolved: dict[str, Any], path: Path, allow_change: bool) -> dict[str, Any]:
    """Refuse to resume from a checkpoint that cannot continue this run; return the config changes allowed."""
    missing = [k for k in _TRAINING_STATE if k not in state]
    if missing:
        raise CheckpointError(
            f"cannot resume from {str(path)!r}: it holds weights but no training state ({', '.join(missing)} "
            f"missing), so the run cannot continue where it stopped; start a new run instead"
        )
    stored = state.get("run_config") or {"model": {"name": resolved["model"]["name"], **state["model_config"]}}
    current = resolved if "run_config" in state else {"model": resolved["model"]}
    changes = config_changes(stored, current)
    if changes and not allow_change:
        shown = "; ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in list(changes.items())[:6])
        more = f" and {len(changes) - 6} more" if len(changes) > 6 else ""
        raise ConfigError(
            f"cannot resume from {str(path)!r} with another config ({shown}{more}): the run would no longer be "
            f"the one its checkpoint started; resume with the stored config (drop the changes), or pass "
            f"--allow-config-change to continue under the new one (the change is recorded in config_changes.jsonl)"
        )
    return changes


def existing_run(run_dir: Path) -> str | None:
    """A one-phrase description of the run ``run_dir`` holds (``"finished run"``), or None if it holds none.

    A run is its checkpoints and final result; metrics lines of epochs whose checkpoint was never written
    (a kill between the two) are not a run anyone can resume or use.
    """
    if not any((run_dir / n).is_file() for n in ("last.pt", "best.pt", "final.json")):
        return None
    if (run_dir / "final.json").is_file():
        return "finished run"
    try:
        epochs = sum(1 for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip())
    except OSError:
        epochs = 0
    return f"partial run ({epochs} epoch{'s' if epochs != 1 else ''} done)" if epochs else "partial run"


def claim_run_dir(run_dir: Path, resume: bool, overwrite: bool) -> None:
    """Make sure starting here destroys nothing the user did not ask to destroy (under the directory lock)."""
    clean_stale_temps(run_dir)
    if resume:
        return
    held = existing_run(run_dir)
    if held is None:
        for name in RUN_OUTPUTS:  # only logs of a run that never saved a checkpoint can be left
            (run_dir / name).unlink(missing_ok=True)
        return
    if not overwrite:
        raise RunExistsError(
            f"{run_dir} already holds a {held}; continue it with --resume, start it over with --overwrite "
            f"(deletes it), or train into a new directory with --set name=NEW_NAME"
        )
    log.warning("--overwrite: deleting the %s in %s", held, run_dir)
    for name in RUN_OUTPUTS:
        (run_dir / name).unlink(missing_ok=True)
