"""Atomic file writes shared by checkpoints, caches and run outputs.

A reader must never see a half-written file, and a crash must never destroy the previous good
copy: every writer goes to a temporary file in the same directory, is flushed to disk, then
renamed over the target (``os.replace`` is atomic on POSIX and Windows).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import IO, Any, Callable, Iterator

__all__ = [
    "atomic_path", "atomic_write_bytes", "atomic_write_text", "atomic_write_json", "append_jsonl", "private_dir",
]


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def _file_mode() -> int:
    """The mode ``open()`` would give a new file (0666 minus the umask); mkstemp's is a private 0600."""
    return 0o666 & ~_umask()


def private_dir(parent: Path, name: str) -> Path:
    """A fresh temporary directory in ``parent`` to build something in before renaming it into place;
    it gets the mode ``mkdir`` would give (mkdtemp's 0700 would make the published result private)."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".tmp", dir=parent))
    tmp.chmod(0o777 & ~_umask())
    return tmp


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``target``; on success it replaces ``target`` atomically.

    On any exception the temporary file is removed and ``target`` is left untouched.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    os.chmod(tmp, _file_mode())  # the published file looks like one open() made
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:  # the writer may have closed it; fsync the bytes it wrote
            os.fsync(fh.fileno())
        os.replace(tmp_path, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def _atomic_write(target: str | os.PathLike, mode: str, write: Callable[[IO[Any]], None]) -> Path:
    with atomic_path(target) as tmp:
        with open(tmp, mode) as fh:
            write(fh)
    return Path(target)


def atomic_write_bytes(target: str | os.PathLike, data: bytes) -> Path:
    return _atomic_write(target, "wb", lambda fh: fh.write(data))


def atomic_write_text(target: str | os.PathLike, text: str) -> Path:
    return _atomic_write(target, "w", lambda fh: fh.write(text))


def atomic_write_json(target: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_text(target, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def append_jsonl(target: str | os.PathLike, record: dict) -> None:
    """Append one JSON line (metrics logs); a single ``write`` of one line keeps lines whole."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target, "a") as fh:
        fh.write(json.dumps(record) + "\n")
        fh.flush()
