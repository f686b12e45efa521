"""Atomic file writes, stale-temporary cleanup and directory locks shared by runs, checkpoints and caches.

A reader must never see a half-written file, and a crash must never destroy the previous good
copy: every writer goes to a temporary file in the same directory, is flushed to disk, then
renamed over the target (``os.replace`` is atomic on POSIX and Windows), and the directory itself
is flushed so that the rename survives a power loss.

Temporary names carry their owner (``.<name>.<host>-<pid>.<random>.tmp``), so a later process can
remove the leftovers of a killed one without ever touching a temporary that a live process owns.
A directory that two processes must not write at once (a run directory, a results database) is
guarded by :func:`lock_dir`, an advisory ``flock`` the kernel releases when its holder dies.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, Any, Callable, Iterator

__all__ = [
    "atomic_path", "atomic_write_bytes", "atomic_write_text", "atomic_write_json", "append_jsonl", "private_dir",
    "fsync_dir", "clean_stale_temps", "lock_dir", "LockedError",
]

log = logging.getLogger(__name__)

# the host part of temporary names: no dots or dashes, so the name parses back unambiguously
_HOST = re.sub(r"[^A-Za-z0-9_]", "_", socket.gethostname())[:40] or "host"
_TEMP = re.compile(r"^\..+\.(?P<host>[A-Za-z0-9_]+)-(?P<pid>\d+)\.[^.]+\.tmp$")


def _owner_prefix(name: str) -> str:
    return f".{name}.{_HOST}-{os.getpid()}."


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)  # signal 0: existence check only
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    except OSError:
        return True  # unknown: assume alive, never remove what might be in use
    return True


def fsync_dir(directory: str | os.PathLike) -> None:
    """Flush a directory's entries (a rename into it) to disk; a no-op where directories cannot be opened."""
    if sys.platform.startswith("win"):
        return
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems refuse fsync on directories; the rename itself already happened
        pass
    finally:
        os.close(fd)


def clean_stale_temps(directory: str | os.PathLike) -> list[Path]:
    """Remove temporaries in ``directory`` left by dead processes of this host; return what was removed.

    Only names this module creates are considered; a temporary whose owner is alive, or that was made
    on another host (whose processes cannot be checked), is left alone.
    """
    directory = Path(directory)
    removed: list[Path] = []
    try:
        entries = list(directory.iterdir())
    except OSError:
        return removed
    for entry in entries:
        m = _TEMP.match(entry.name)
        if m is None or m["host"] != _HOST or _pid_alive(int(m["pid"])):
            continue
        try:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        except FileNotFoundError:
            continue  # another process cleaned it first
        except OSError as exc:
            log.warning("could not remove stale temporary %s: %s", entry, exc)
            continue
        removed.append(entry)
    if removed:
        log.info("removed %d stale temporar%s left by interrupted writes in %s: %s", len(removed),
                 "y" if len(removed) == 1 else "ies", directory, ", ".join(p.name for p in removed))
    return removed


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
    tmp = Path(tempfile.mkdtemp(prefix=_owner_prefix(name), suffix=".tmp", dir=parent))
    tmp.chmod(0o777 & ~_umask())
    return tmp


def _name_file(exc: BaseException, target: Path) -> None:
    """A failed write (a full disk) names no file: give the OSError the one that was being written."""
    if isinstance(exc, OSError) and exc.filename is None:
        exc.filename = str(target)


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``target``; on success it replaces ``target`` atomically.

    On any exception the temporary file is removed and ``target`` is left untouched; a process killed
    outright leaves the temporary behind, for :func:`clean_stale_temps` to remove later.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=_owner_prefix(target.name), suffix=".tmp", dir=target.parent)
    os.close(fd)
    os.chmod(tmp, _file_mode())  # the published file looks like one open() made
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:  # the writer may have closed it; fsync the bytes it wrote
            os.fsync(fh.fileno())
        os.replace(tmp_path, target)
        fsync_dir(target.parent)  # the rename itself must reach the disk too
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        _name_file(exc, target)
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
    try:
        with open(target, "a") as fh:
            fh.write(json.dumps(record) + "\n")
            fh.flush()
    except OSError as exc:
        _name_file(exc, target)
        raise


class LockedError(RuntimeError):
    """Another live process holds the lock; the message names it and says what to do."""


def _holder(lock_file: Path) -> str:
    try:
        info = json.loads(lock_file.read_text() or "{}")
    except (OSError, ValueError):
        return "another process"
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info.get("since", 0)))
    return f"process {info.get('pid', '?')} on {info.get('host', '?')} ({info.get('command', '?')}, since {since})"


@contextlib.contextmanager
def lock_dir(directory: str | os.PathLike, what: str = "directory", *, lock_name: str = ".lock") -> Iterator[Path]:
    """Hold an exclusive advisory lock on ``directory`` (created if needed) for the ``with`` block.

    A second process asking for it gets :class:`LockedError` naming the holder (pid, host, command,
    start time) at once instead of waiting. The kernel drops the lock when its holder exits, even by
    ``kill -9``, so a crash never leaves the directory locked. Where ``fcntl`` does not exist
    (Windows) the lock is not taken, and a warning says so.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    lock_file = directory / lock_name
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        log.warning("no file locking on this platform: nothing stops two processes from writing %s", directory)
        yield lock_file
        return
    fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o666 & ~_umask())
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LockedError(
                f"{what} {str(directory)!r} is in use by {_holder(lock_file)}; wait for it to finish, stop it, "
                f"or use another directory"
            ) from None
        info = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time(),
                "command": " ".join(Path(sys.argv[0]).name.split() + sys.argv[1:])[:200] or "python"}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        yield lock_file
    finally:
        os.close(fd)  # closing the descriptor releases the flock
