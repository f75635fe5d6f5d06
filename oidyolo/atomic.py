"""Atomic file writes: every output is written under a temporary name beside it and renamed into place, so a kill,
a crash or a full disk never leaves a partial file at the final path.

The temporary name is unique to the host, process and thread (two jobs, or two threads, writing the same file never
clobber each other's temporary), starts with a dot (globs for outputs skip it) and ends in ``.part`` plus an optional
suffix for writers that insist on one (Keras' ``save_weights`` wants ``.weights.h5``). :func:`remove_stale_parts`
deletes the ones a killed run left behind.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

from oidyolo.errors import disk_full, is_disk_full

HOST = socket.gethostname().replace(".", "_")  # no dots: the fields of a temporary name are split on them


def temp_path(path: Path, suffix: str = "") -> Path:
    """The temporary name :func:`atomic_write` uses for ``path`` in this thread."""
    return path.with_name(f".{path.name}.{HOST}.{os.getpid()}.{threading.get_ident()}.part{suffix}")


def atomic_write(path: str | os.PathLike, write: Callable[[Path], object], *, suffix: str = "") -> None:
    """Call ``write(tmp)`` to write the whole file at a temporary path, then rename it to ``path``.

    On any failure (an exception, KeyboardInterrupt) the temporary is removed and ``path`` is left as it was; a full
    disk raises :class:`~oidyolo.errors.DiskFullError` naming ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path, suffix)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException as err:
        tmp.unlink(missing_ok=True)
        if is_disk_full(err):
            raise disk_full(path, err) from err  # type: ignore[arg-type]
        raise


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    atomic_write(path, lambda tmp: tmp.write_bytes(data))


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text))


def atomic_dir(path: str | os.PathLike, build: Callable[[Path], object]) -> None:
    """Call ``build(tmp)`` to fill a fresh temporary folder, then put it in place of the folder ``path``.

    Readers see the old folder or the new one, never a half-built one (between the two renames ``path`` is briefly
    absent); on failure the temporary folder is removed and the old one kept.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        build(tmp)
        if path.exists():
            old = temp_path(path, ".old")
            path.rename(old)
            tmp.rename(path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(path)
    except BaseException as err:
        shutil.rmtree(tmp, ignore_errors=True)
        if is_disk_full(err):
            raise disk_full(path, err) from err  # type: ignore[arg-type]
        raise


def remove_stale_parts(folder: Path, *, max_age_s: float = 86_400) -> int:
    """Delete temporaries left by killed runs in ``folder``: this host's whose process is gone, or any older than
    ``max_age_s``. Returns how many were removed."""
    removed = 0
    now = time.time()
    for part in folder.glob(".*.part*"):
        fields = part.name.split(".part")[0].split(".")
        host, pid = (fields[-3], fields[-2]) if len(fields) >= 5 else ("", "")
        stale = host == HOST and pid.isdigit() and not _alive(int(pid))
        try:
            if stale or now - part.stat().st_mtime > max_age_s:
                shutil.rmtree(part) if part.is_dir() else part.unlink()
                removed += 1
        except FileNotFoundError:
            pass
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True
