"""Checkpoints that carry their config: a model is rebuilt from the file alone.

A checkpoint is a dict of tensors and plain Python values only, written atomically (a crash
never leaves a half-written file or destroys the previous one) and read with
``torch.load(weights_only=True)``: loading never executes code from the file.
"""

from __future__ import annotations

import contextlib
import io
import pickle
import pickletools
import re
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..config import ConfigError, to_dict
from ..io import atomic_path
from ..models import build_model

__all__ = ["CheckpointError", "save_checkpoint", "load_checkpoint", "load_model", "load_weights", "read_torch_file",
           "FORMAT", "VERSION"]

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
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        torch.save(state, fh)  # through a Python file, a full disk surfaces as OSError(ENOSPC), not a bare RuntimeError
    return Path(path)


def _pickled_code(path: Path, allowed: frozenset[str] = frozenset()) -> str | None:
    """The first global (a callable or class) the pickle in ``path`` refers to, or None if it holds none.

    Reads opcodes only (:mod:`pickletools` never executes anything). A spikemask checkpoint's pickle
    names only torch's tensor-rebuild helpers; anything else could run code when unpickled.
    """
    try:
        raw = path.read_bytes()
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as zf:
                name = next((n for n in zf.namelist() if n.endswith("data.pkl")), None)
                if name is None:
                    return None
                raw = zf.read(name)
        strings: list[str] = []
        for op, arg, _ in pickletools.genops(io.BytesIO(raw)):
            if isinstance(arg, str):
                strings.append(arg)
            if op.name in ("GLOBAL", "INST"):
                found = str(arg).replace(" ", ".")
            elif op.name == "STACK_GLOBAL":
                found = ".".join(strings[-2:])
            else:
                continue
            if not found.startswith(("torch.", "collections.OrderedDict")) and found not in allowed:
                return found
    except Exception:  # noqa: BLE001 - a pickle too broken to scan is reported as corrupt by the caller
        return None
    return None


def read_torch_file(
    path: str | Path,
    *,
    map_location: str | torch.device = "cpu",
    what: str = "checkpoint",
    error: type[ValueError] = CheckpointError,
    allow: tuple[Any, ...] = (),
    allow_names: frozenset[str] = frozenset(),
    holds: str = "a spikemask checkpoint never does",
) -> Any:
    """``torch.load(path, weights_only=True)`` with one clear line for every way it can fail.

    ``allow``: classes the file may also hold (``torch.serialization.safe_globals``; ``allow_names`` are
    their pickled names). Anything else the pickle refers to is code, refused without being run; ``holds``
    ends that message. Raises ``error`` naming ``what`` and the file.
    """
    path = Path(path)
    if path.is_dir():
        raise error(f"{what} {str(path)!r} is a directory; pass the file inside it (e.g. last.pt)")
    if not path.is_file():
        raise error(f"{what} {str(path)!r} does not exist")
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols on the way to its own error
            warnings.simplefilter("ignore", UserWarning)
            allowed = torch.serialization.safe_globals(list(allow)) if allow else contextlib.nullcontext()
            with allowed:
                return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        unsafe = re.search(r"GLOBAL (\S+)", str(exc))
        code = unsafe.group(1) if unsafe else _pickled_code(path, allow_names)
        if code and code not in allow_names:  # a pickle of arbitrary objects: loading it would run code
            raise error(
                f"refused to load {str(path)!r}: it holds code (a reference to {code}) besides tensors and plain "
                f"values, which {holds}; unpickling it could run that code"
            ) from None
        # torch's message suggests weights_only=False; keep only the reason
        reason = str(exc).partition("WeightsUnpickler error:")[2].strip().split("\n")[0] or "unreadable pickle"
        raise error(f"{what} {str(path)!r} is corrupt or not a PyTorch file ({reason})") from None
    # garbage bytes make the unpickler fail in many ways (a KeyError or IndexError as often as anything else)
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, LookupError) as exc:
        reason = " ".join(str(exc).split())[:200]
        raise error(f"{what} {str(path)!r} is corrupt or not a PyTorch file ({type(exc).__name__}: {reason})") \
            from None
    except OSError as exc:
        raise error(f"{what} {str(path)!r} cannot be read: {exc.strerror or exc}") from None


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True``; clear errors for missing or corrupt files."""
    state = read_torch_file(path, map_location=map_location)
    path = Path(path)
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
    except (ConfigError, ValueError, TypeError) as exc:
        raise CheckpointError(f"checkpoint {str(path)!r} holds an invalid model config: {exc}") from None
    load_weights(model, state["model"], path)
    return model, state


def load_weights(model: nn.Module, weights: Any, path: str | Path) -> None:
    """``model.load_state_dict(weights)`` with one clear line when the two do not fit each other."""
    if not isinstance(weights, dict):
        raise CheckpointError(f"checkpoint {str(path)!r}: its 'model' entry is not a state dict")
    own = model.state_dict()
    missing = [k for k in own if k not in weights]
    unexpected = [k for k in weights if k not in own]
    shapes = [k for k in own if k in weights and hasattr(weights[k], "shape") and weights[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        if shapes:
            k = shapes[0]
            parts.append(f"{len(shapes)} of another shape (e.g. {k}: {tuple(weights[k].shape)} in the file, "
                         f"{tuple(own[k].shape)} for its config)")
        raise CheckpointError(f"checkpoint {str(path)!r}: its weights do not fit its model config: "
                              f"{'; '.join(parts)} tensors; the file was edited or written by another model")
    model.load_state_dict(weights)
