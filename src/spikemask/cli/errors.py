"""Every exception a command can meet, as the one line a user reads (``--debug`` shows the traceback instead).

User errors (bad configs, files, data, arguments) carry messages written for users already: they are
shown as they are, folded onto one line. Operating-system errors are explained by their errno (disk
full, permission denied, a file where a directory should be), naming the path. Anything else is a bug
in spikemask and says so, with how to get the traceback.
"""

from __future__ import annotations

import errno

__all__ = ["describe_error", "exit_code"]

USER_ERROR, BUG = 2, 1

_ERRNO_HINTS = {
    errno.ENOSPC: ("no space left on the device", "free some space or write elsewhere (out_dir / --out / data.root)"),
    errno.EDQUOT: ("disk quota exceeded", "free some space or write elsewhere"),
    errno.EACCES: ("permission denied", "choose a directory you can write to, or fix its permissions"),
    errno.EPERM: ("operation not permitted", "choose a directory you can write to, or fix its permissions"),
    errno.EROFS: ("read-only file system", "write to another directory (out_dir / --out / SPIKEMASK_DATA)"),
    errno.ENOTDIR: ("a file is in the way where a directory is needed", "move the file or choose another path"),
    errno.EISDIR: ("is a directory, a file was expected", "give the path of a file"),
    errno.EEXIST: ("exists but is not a directory", "move it or choose another path"),
    errno.ENOENT: ("no such file or directory", "check the path"),
    errno.ENAMETOOLONG: ("file name too long", "choose a shorter name"),
    errno.EMFILE: ("too many open files", "lower data.num_workers or raise the limit (ulimit -n)"),
    errno.EIO: ("input/output error (failing disk or network mount?)", "check the device, then retry"),
    errno.EFBIG: ("file too large for this file system or limit", "write elsewhere or raise the limit"),
}


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _os_error(exc: OSError) -> str:
    path = exc.filename if exc.filename is not None else None
    where = f"{path}: " if path is not None else ""
    if exc.errno in _ERRNO_HINTS:
        what, fix = _ERRNO_HINTS[exc.errno]
        return f"{where}{what}; {fix}"
    reason = exc.strerror or _one_line(exc) or type(exc).__name__
    return f"{where}{reason}"


def _user_error_types() -> tuple[type[BaseException], ...]:
    from ..config import ConfigError
    from ..data.events import EventFileError
    from ..data.formats.image_folder import ImageFileError
    from ..io import LockedError
    from ..train import CheckpointError, NonFiniteLossError

    return ConfigError, CheckpointError, EventFileError, ImageFileError, NonFiniteLossError, LockedError, ValueError


def exit_code(exc: BaseException) -> int:
    if isinstance(exc, (OSError, MemoryError) + _user_error_types()):
        return USER_ERROR
    return BUG


def describe_error(exc: BaseException) -> str:
    """The message for ``exc``: one line, naming the file or key, what was expected and how to fix it."""
    from ..data.event_dataset import DatasetNotFoundError

    if isinstance(exc, DatasetNotFoundError):  # the expected layout follows on indented lines: keep them
        return str(exc)
    if isinstance(exc, OSError) and not isinstance(exc, _user_error_types()):
        return _os_error(exc)
    if isinstance(exc, MemoryError):
        return ("out of memory; lower data.batch_size / --batch-size, the frame size (data.size / --size) or T, "
                "or use a smaller model")
    if isinstance(exc, _user_error_types()):
        return _one_line(exc)
    cause = exc.__cause__ or exc.__context__
    if isinstance(cause, OSError):  # e.g. torch wrapping a failed write
        return _os_error(cause)
    return (f"unexpected {type(exc).__name__}: {_one_line(exc)[:300]} - this is a bug in spikemask; "
            f"rerun with --debug for the traceback and report it")
