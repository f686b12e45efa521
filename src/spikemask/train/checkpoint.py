"""Checkpoints that carry their config: a model is rebuilt from the file alone.

A checkpoint is a dict of tensors and plain Python values only, written atomically (a crash
never leaves a half-written file or destroys the previous one) and read with
``torch.load(weights_only=True)``: loading never executes code from the file.
"""

from __future__ import annotations

import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..config import ConfigError, to_dict
from ..io import atomic_path
from ..models import build_model

__all__ = ["CheckpointError", "save_checkpoint", "load_checkpoint", "load_model", "FORMAT", "VERSION"]

FORMAT = "spikemask-checkpoint"
VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable, or not a spikemask checkpoint."""


def save_checkpoint(path: str | Path, model: nn.Module, **extra: Any) -> Path:
    """Write ``model`` (weights + family/variant/config) and ``extra`` entries to ``path`` atomically."""
    model = getattr(model, "module", model)  # unwrap DistributedDataParallel
    state = {
        "format": FORMAT,
        "version": VERSION,
        "family": model.family,
        "variant": model.variant,
        "model_config": to_dict(model.config),
        "model": model.state_dict(),
        **extra,
    }
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    return Path(path)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True``; clear errors for missing or corrupt files."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"checkpoint {str(path)!r} is a directory; pass the .pt file inside it, e.g. last.pt")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        unsafe = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
        if unsafe:  # a well-formed pickle of arbitrary objects: loading it would run code from the file
            raise CheckpointError(
                f"refusing to load {str(path)!r}: it holds a Python object ({unsafe.group(1)}) besides tensors and "
                f"plain values, which a spikemask checkpoint never does, and unpickling it could run code"
            ) from None
        # torch's message suggests weights_only=False; keep only the reason
        reason = str(exc).partition("WeightsUnpickler error:")[2].strip().split("\n")[0] or "unreadable pickle"
        raise CheckpointError(f"checkpoint {str(path)!r} is corrupt or not a PyTorch file ({reason})") from None
    # garbage bytes make the unpickler fail in many ways (a KeyError or IndexError as often as anything else)
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, LookupError) as exc:
        raise CheckpointError(
            f"checkpoint {str(path)!r} is corrupt or not a PyTorch file ({type(exc).__name__}: {exc})"
        ) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{str(path)!r} is a PyTorch file but not a spikemask checkpoint (no format tag)")
    if state.get("version", 0) > VERSION:
        raise CheckpointError(
            f"{str(path)!r} was written by a newer spikemask (checkpoint version {state['version']} > {VERSION}); "
            "upgrade spikemask to read it"
        )
    missing = [k for k in ("family", "model_config", "model") if k not in state]
    if missing:
        raise CheckpointError(f"checkpoint {str(path)!r} lacks {', '.join(missing)}")
    return state


def load_model(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model stored in ``path`` (config, masks included) and load its weights."""
    state = load_checkpoint(path, map_location)
    try:
        model = build_model(state["family"], state["model_config"], state.get("variant"))
    except (ConfigError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {str(path)!r} holds an invalid model config: {exc}") from None
    model.load_state_dict(state["model"])
    return model, state
