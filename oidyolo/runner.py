"""Running one workflow step: its output goes to the rule's log, and a user error ends it with one clear line."""

from __future__ import annotations

import contextlib
import io
import os
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path

from oidyolo.errors import OidyoloError, disk_full, is_disk_full


@contextlib.contextmanager
def _fd_redirect(target: int) -> Iterator[int]:
    """Point file descriptors 1 and 2 at ``target``, so output from C/C++ code (TensorFlow's logging) lands in the
    log too; yields a descriptor of the original stderr."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved_out, saved_err = os.dup(1), os.dup(2)
    os.dup2(target, 1)
    os.dup2(target, 2)
    try:
        yield saved_err
    finally:
        with contextlib.suppress(OSError):  # the log's disk may be full: restoring the console must still happen
            sys.stdout.flush()
        with contextlib.suppress(OSError):
            sys.stderr.flush()
        os.dup2(saved_out, 1)
        os.dup2(saved_err, 2)
        os.close(saved_out)
        os.close(saved_err)


def _failed_path(err: OSError) -> str | None:
    """The file a full-disk error struck: the error's own file name, else (a failed ``write`` names none) a file
    object open for writing in the frame that raised it; else ``None``."""
    if err.filename:
        return str(err.filename)
    tb = err.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    for value in tb.tb_frame.f_locals.values() if tb is not None else ():
        if isinstance(value, io.IOBase) and isinstance(getattr(value, "name", None), str):
            mode = getattr(value, "mode", "")
            if any(c in mode for c in "wax+"):
                return value.name
    return None


_CONSOLE: list[int] = []  # the console (original stderr) of each logged_step running in this process


def warn(message: str) -> None:
    """``warning: MESSAGE`` into the step's log and, inside :func:`logged_step`, on the console too (Snakemake's
    stderr): something the user must see although the step succeeds."""
    line = f"warning: {message}"
    print(line, file=sys.stderr, flush=True)
    if _CONSOLE:
        with contextlib.suppress(OSError):
            os.write(_CONSOLE[-1], (line + "\n").encode())


@contextlib.contextmanager
def logged_step(log: str | Path | None, name: str) -> Iterator[None]:
    """Send everything the step prints to ``log``. An :class:`OidyoloError` becomes ``error in NAME: ...`` in the
    log and on the console and exit status 1 (no traceback: the input is at fault, not the code), and so does a full
    disk wherever it strikes (an ``OSError`` ENOSPC/EDQUOT becomes a :class:`DiskFullError` naming the file); any
    other exception is a bug and keeps its traceback."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")  # TensorFlow's INFO chatter, if a step imports it
    if not log:
        yield
        return
    with open(log, "w", encoding="utf-8") as handle, _fd_redirect(handle.fileno()) as console:
        _CONSOLE.append(console)
        try:
            yield
        except Exception as caught:
            err: Exception = caught
            if is_disk_full(caught):
                err = disk_full(_failed_path(caught), caught)  # type: ignore[arg-type]
            if not isinstance(err, OidyoloError):  # a bug: keep the traceback
                with contextlib.suppress(OSError):
                    traceback.print_exc()
                    sys.stderr.flush()
                os.write(console, f"error in {name}: an unexpected failure, see {log}\n".encode())
                raise
            message = f"error in {name}: {err}"
            with contextlib.suppress(OSError):  # the log may sit on the full disk
                print(message, file=sys.stderr, flush=True)
            os.write(console, (message + "\n").encode())
            raise SystemExit(1) from None
        finally:
            _CONSOLE.remove(console)
