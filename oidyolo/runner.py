"""Running one workflow step: its output goes to the rule's log, and a user error ends it with one clear line."""

from __future__ import annotations

import contextlib
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path

from oidyolo.errors import OidyoloError


@contextlib.contextmanager
def logged_step(log: str | Path | None, name: str) -> Iterator[None]:
    """Redirect stdout/stderr to ``log``. An :class:`OidyoloError` becomes ``error: ...`` in the log and on the
    console and exit status 1 (no traceback: it is the input's fault, not the code's); any other exception is a
    bug and keeps its traceback."""
    console = sys.__stderr__
    handle = open(log, "w", encoding="utf-8") if log else None  # noqa: SIM115 - closed below
    try:
        with contextlib.redirect_stdout(handle or sys.stdout), contextlib.redirect_stderr(handle or sys.stderr):
            try:
                yield
            except OidyoloError as err:
                message = f"error in {name}: {err}"
                print(message, file=sys.stderr)
                if handle and console:
                    print(message, file=console)
                raise SystemExit(1) from None
            except Exception:
                traceback.print_exc()
                raise
    finally:
        if handle:
            handle.close()
