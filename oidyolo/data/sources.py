"""One code path for every source: a base URL plus fsspec storage options.

``https://storage.googleapis.com/openimages`` (real metadata), ``s3://open-images-dataset`` (anonymous, or any
S3-compatible endpoint), ``https://open-images-dataset.s3.amazonaws.com``, a local mirror directory and the demo
source are all the same :class:`Remote`; only the URL and options differ.
"""

from __future__ import annotations

import hashlib
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import fsspec

from oidyolo.data.versions import Known
from oidyolo.errors import DownloadError, IntegrityError
from oidyolo.progress import Progress

T = TypeVar("T")

# Errors that no retry can fix: the object is not there, or we may not read it.
_PERMANENT = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)


@dataclass(frozen=True)
class Remote:
    """A base URL (``s3://bucket``, ``https://host/prefix``, ``/local/dir``) and its fsspec storage options."""

    url: str
    options: dict[str, Any] = field(default_factory=dict)

    def join(self, relpath: str) -> str:
        return f"{self.url.rstrip('/')}/{relpath.lstrip('/')}"

    def filesystem(self) -> tuple[fsspec.AbstractFileSystem, str]:
        fs, path = fsspec.core.url_to_fs(self.url, **_options_for(self.url, self.options))
        return fs, path.rstrip("/")

    def __str__(self) -> str:
        return self.url


def _options_for(url: str, options: dict[str, Any]) -> dict[str, Any]:
    opts = dict(options)
    if url.startswith("s3://"):
        # Open Images is a public bucket: unsigned requests, so a local AWS profile can never cause a 403/404.
        opts.setdefault("anon", True)
    return opts


def with_retries(
    fn: Callable[[], T],
    *,
    what: str,
    retries: int = 5,
    backoff: float = 0.5,
    max_backoff: float = 30.0,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Call ``fn``; retry transient failures with exponential backoff and jitter. Missing objects fail at once."""
    for attempt in range(retries + 1):
        try:
            return fn()
        except _PERMANENT:
            raise
        except (DownloadError, IntegrityError):
            if attempt == retries:
                raise
        except Exception as err:
            if attempt == retries:
                raise DownloadError(f"{what}: {type(err).__name__}: {err} (gave up after {retries + 1} tries)") from err
        sleep(min(max_backoff, backoff * 2**attempt) * random.uniform(0.5, 1.5))
    raise AssertionError("unreachable")


@dataclass(frozen=True)
class FetchResult:
    path: Path
    size: int
    md5: str
    resumed_from: int
    downloaded: int


def fetch_file(
    remote: Remote,
    relpath: str,
    dest: str | Path,
    *,
    known: Known | None = None,
    chunk_size: int = 16 << 20,
    retries: int = 5,
    progress_interval: float = 5.0,
) -> FetchResult:
    """Copy ``remote/relpath`` to ``dest`` with resume and an integrity check.

    Bytes go to ``dest.part`` in ranged chunks, so an interrupted fetch resumes where it stopped; ``dest`` appears
    (atomically) only once the size, and the md5 where known, match. A mismatch deletes the partial file and raises.
    """
    known = known or Known()
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    fs, base = remote.filesystem()
    path = f"{base}/{relpath}"
    url = remote.join(relpath)
    size = _remote_size(fs, path, url, retries)
    if known.size is not None and size is not None and size != known.size:
        raise IntegrityError(f"{url}: the source holds {size:,} bytes, but Open Images publishes {known.size:,}")

    md5 = hashlib.md5()
    offset = part.stat().st_size if part.exists() else 0
    if size is not None and offset > size:
        part.unlink()
        offset = 0
    if offset:
        with open(part, "rb") as fh:  # re-hash what we already have so the final md5 covers the whole file
            while block := fh.read(chunk_size):
                md5.update(block)
    resumed_from = offset
    progress = Progress(f"fetch {relpath}", size, as_bytes=True, interval=progress_interval)
    progress.done = offset
    with open(part, "ab") as out:
        if size is None:  # no length (some HTTP servers): one streamed read, no resume
            out.truncate(0)
            md5 = hashlib.md5()
            data = with_retries(lambda: fs.cat_file(path), what=url, retries=retries)
            out.write(data)
            md5.update(data)
            offset = len(data)
        while size is not None and offset < size:
            end = min(offset + chunk_size, size)
            data = with_retries(lambda o=offset, e=end: _range(fs, path, url, o, e), what=url, retries=retries)
            out.write(data)
            out.flush()
            md5.update(data)
            offset = end
            progress.advance(len(data))
        out.flush()
        os.fsync(out.fileno())
    progress.finish()

    digest = md5.hexdigest()
    final_size = part.stat().st_size
    expected = known.size if known.size is not None else size
    problem = None
    if expected is not None and final_size != expected:
        problem = f"got {final_size:,} bytes, expected {expected:,}"
    elif known.md5 and digest != known.md5:
        problem = f"md5 {digest} differs from the published {known.md5}"
    if problem:
        part.unlink(missing_ok=True)
        raise IntegrityError(f"{url}: {problem}; the partial file was deleted, run again to refetch")
    part.replace(dest)
    return FetchResult(dest, final_size, digest, resumed_from, final_size - resumed_from)


def _remote_size(fs: fsspec.AbstractFileSystem, path: str, url: str, retries: int) -> int | None:
    # fsspec's HTTP info() reports any failed HEAD/GET (a 503 too) as FileNotFoundError, so over HTTP a "not
    # found" is retried a few times before it is believed.
    tries = 3 if url.startswith(("http://", "https://")) else 1
    try:
        for attempt in range(tries):
            try:
                info = with_retries(lambda: fs.info(path), what=url, retries=retries)
                break
            except FileNotFoundError:
                if attempt == tries - 1:
                    raise
                time.sleep(0.5 * 2**attempt)
    except FileNotFoundError:
        raise DownloadError(f"{url}: not found at the source (check the source URL and version)") from None
    except PermissionError:
        raise DownloadError(f"{url}: access denied by the source") from None
    if info.get("type") == "directory":
        raise DownloadError(f"{url}: is a directory, not a file")
    size = info.get("size")
    return int(size) if size is not None else None


def _range(fs: fsspec.AbstractFileSystem, path: str, url: str, start: int, end: int) -> bytes:
    data = fs.cat_file(path, start=start, end=end)
    if len(data) != end - start:
        # A server that ignores Range (200 with the whole body) or a short read: never append it blindly.
        raise DownloadError(f"{url}: asked for bytes {start}-{end - 1}, got {len(data)} bytes")
    return data
