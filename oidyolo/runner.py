"""Running one workflow step: its output goes to the rule's log, and a user error ends it with one clear line."""

from __future__ import annotations

import contextlib
import os
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path

from oidyolo.errors import OidyoloError


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
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved_out, 1)
        os.dup2(saved_err, 2)
        os.close(saved_out)
        os.close(saved_err)


@contextlib.contextmanager
def logged_step(log: str | Path | None, name: str) -> Iterator[None]:
    """Send everything the step prints to ``log``. An :class:`OidyoloError` becomes ``error in NAME: ...`` in the
    log and on the console and exit status 1 (no traceback: the input is at fault, not the code); any other
    exception is a bug and keeps its traceback."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")  # TensorFlow's INFO chatter, if a step imports it
    if not log:
        yield
        return
    with open(log, "w", encoding="utf-8") as handle, _fd_redirect(handle.fileno()) as console:
        try:
            yield
        except OidyoloError as err:
            message = f"error in {name}: {err}"
            print(message, file=sys.stderr, flush=True)
            os.write(console, (message + "\n").encode())
            raise SystemExit(1) from None
        except Exception:
            traceback.print_exc()
            sys.stderr.flush()
            os.write(console, f"error in {name}: an unexpected failure, see {log}\n".encode())
            raise
