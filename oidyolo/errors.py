"""User-facing errors: each says what is wrong and what to do, and the CLI prints it without a traceback."""

from __future__ import annotations

import errno
import os
import shutil


class OidyoloError(Exception):
    """Base class of every error caused by input, configuration or the environment, not by a bug."""


class ConfigError(OidyoloError):
    """A configuration value is invalid."""


class UnknownClassError(OidyoloError):
    """A requested class name is not in the catalogue."""


class DataFormatError(OidyoloError):
    """An input file (CSV, JSON, XML, image, annotation line) is malformed."""


class DownloadError(OidyoloError):
    """A remote file could not be fetched or failed its integrity check."""


class IntegrityError(DownloadError):
    """A fetched file has the wrong size or checksum."""


class DiskFullError(OidyoloError):
    """The device (or the quota) holding a file being written is full."""


# ENOSPC: no space left on the device; EDQUOT: the user's quota is used up. Both are fixed the same way.
_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})


def is_disk_full(err: BaseException) -> bool:
    return isinstance(err, OSError) and err.errno in _FULL


def disk_full(path: str | os.PathLike | None, err: OSError, *, kept: str = "") -> DiskFullError:
    """The :class:`DiskFullError` for ``err`` (ENOSPC or EDQUOT) raised while writing ``path`` (``None``: unknown)."""
    reason = "quota exceeded" if err.errno == errno.EDQUOT else "no space left on device"
    if path is None:
        what = f"disk full while writing a file ({reason}; the system did not say which)"
    else:
        try:
            free = f"{shutil.disk_usage(os.path.dirname(os.path.abspath(path))).free:,} bytes free there"
        except OSError:
            free = "free space unknown"
        what = f"disk full while writing {path} ({reason}, {free})"
    detail = f"; {kept}" if kept else ""
    return DiskFullError(
        f"{what}{detail}; free some space (or write elsewhere) and run again: finished files are kept and the run "
        "continues where it stopped"
    )
