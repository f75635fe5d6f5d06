"""One code path for every source: a base URL plus fsspec storage options.

``https://storage.googleapis.com/openimages`` (real metadata), ``s3://open-images-dataset`` (anonymous, or any
S3-compatible endpoint), ``https://open-images-dataset.s3.amazonaws.com``, a local mirror directory and the demo
source are all the same :class:`Remote`; only the URL and options differ.
"""

from __future__ import annotations

import contextlib
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
from oidyolo.errors import DiskFullError, DownloadError, IntegrityError, disk_full, is_disk_full
from oidyolo.progress import Progress

T = TypeVar("T")

# Errors that no retry can fix: the object is not there, or we may not read it.
_PERMANENT = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)

# Seconds a request may wait for a connection or for the next bytes of a response (download.timeout). A stalled
# request is abandoned and retried; a slow but moving transfer is not cut off.
DEFAULT_TIMEOUT = 60.0


@dataclass(frozen=True)
class Remote:
    """A base URL (``s3://bucket``, ``https://host/prefix``, ``/local/dir``) and its fsspec storage options."""

    url: str
    options: dict[str, Any] = field(default_factory=dict)

    def join(self, relpath: str) -> str:
        return f"{self.url.rstrip('/')}/{relpath.lstrip('/')}"

    def filesystem(self) -> tuple[fsspec.AbstractFileSystem, str]:
        fs, path = fsspec.core.url_to_fs(self.url, **_options_for(self.url, self.options))
        if hasattr(fs, "retries") and fs.protocol[0] in ("s3", "s3a"):
            # s3fs retries every call (twice nested for a read: 5 x 5 tries) from a class attribute that no storage
            # option reaches; every caller here retries through with_retries, so s3fs makes one try.
            fs.retries = 1
        return fs, path.rstrip("/")

    def where(self, relpath: str) -> str:
        """``join(relpath)``, naming the endpoint too where an S3-compatible one is set (errors say what was asked)."""
        endpoint = self.options.get("endpoint_url") or (self.options.get("client_kwargs") or {}).get("endpoint_url")
        return f"{self.join(relpath)} at {endpoint}" if endpoint else self.join(relpath)

    def __str__(self) -> str:
        return self.url


def _options_for(url: str, options: dict[str, Any]) -> dict[str, Any]:
    opts = dict(options)
    if url.startswith("s3://"):
        # Open Images is a public bucket: unsigned requests, so a local AWS profile can never cause a 403/404.
        opts.setdefault("anon", True)
    return opts


def with_timeout(remote: Remote, timeout: float | None) -> Remote:
    """``remote`` under our one retry policy: each request is one attempt that gives up after ``timeout`` seconds
    without a connection or without data, and :func:`with_retries` alone decides on another attempt.

    S3 (botocore): ``config_kwargs`` connect and read timeouts, and ``retries`` of one attempt in total (botocore's
    legacy mode would retry a timed-out request 4 more times; s3fs's own loop is turned off in
    :meth:`Remote.filesystem`). HTTP(S) (fsspec, aiohttp): a ``ClientTimeout`` on the connection and on each socket
    read (no total limit, so a big chunk on a slow link still completes) and a session that does not silently resend
    a request whose reused connection was dropped. Local paths need none. Options the user set explicitly win.
    """
    opts = dict(remote.options)
    if remote.url.startswith(("s3://", "s3a://")):
        config = dict(opts.get("config_kwargs") or {})
        if timeout:
            config.setdefault("connect_timeout", timeout)
            config.setdefault("read_timeout", timeout)
        config.setdefault("retries", {"total_max_attempts": 1, "mode": "standard"})
        opts["config_kwargs"] = config
    elif remote.url.startswith(("http://", "https://")):
        client = dict(opts.get("client_kwargs") or {})
        if timeout:
            import aiohttp

            client.setdefault("timeout", aiohttp.ClientTimeout(total=None, sock_connect=timeout, sock_read=timeout))
        opts["client_kwargs"] = client
        opts.setdefault("get_client", _single_attempt_session)
    else:
        return remote
    return Remote(remote.url, opts)


async def _single_attempt_session(**kwargs: Any):
    """fsspec's HTTP session factory, less aiohttp's one silent resend of a request on a dropped keep-alive
    connection (``_retry_connection``; aiohttp's own test client turns it off the same way)."""
    import aiohttp

    session = aiohttp.ClientSession(**kwargs)
    if hasattr(session, "_retry_connection"):
        session._retry_connection = False
    return session


def _gave_up(retries: int) -> str:
    return f"gave up after {retries + 1} tries" if retries else "gave up after 1 try, retries: 0"


def _describe(err: BaseException, timeout: float | None) -> str:
    text = f"{type(err).__name__}: {err}".rstrip(": ")
    # botocore's and urllib3's timeouts are not builtin TimeoutErrors; their class names say what they are.
    timed_out = isinstance(err, TimeoutError) or any("Timeout" in c.__name__ for c in type(err).__mro__)
    if timed_out and timeout:
        text += f" (no connection or no data for {timeout:g} s, download.timeout)"
    return text


def with_retries(
    fn: Callable[[], T],
    *,
    what: str,
    retries: int = 5,
    backoff: float = 0.5,
    max_backoff: float = 30.0,
    sleep: Callable[[float], None] = time.sleep,
    timeout: float | None = None,
) -> T:
    """Call ``fn``; retry transient failures with exponential backoff and jitter. Missing objects fail at once, and
    so does a full disk (no retry frees space). ``timeout`` only words the message of a request that timed out."""
    for attempt in range(retries + 1):
        try:
            return fn()
        except (*_PERMANENT, DiskFullError):
            raise
        except DownloadError as err:  # IntegrityError too: a bad body, retried like a failed request
            if attempt == retries:
                raise type(err)(f"{err} ({_gave_up(retries)})") from err
        except Exception as err:
            if is_disk_full(err):
                raise
            if attempt == retries:
                raise DownloadError(f"{what}: {_describe(err, timeout)} ({_gave_up(retries)})") from err
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
    timeout: float | None = DEFAULT_TIMEOUT,
    backoff: float = 0.5,
) -> FetchResult:
    """Copy ``remote/relpath`` to ``dest`` with resume and an integrity check.

    Bytes go to ``dest.part`` in ranged chunks, so an interrupted fetch resumes where it stopped; ``dest`` appears
    (atomically) only once the size, and the md5 where known, match. A mismatch deletes the partial file and raises.
    A request that stalls for ``timeout`` seconds is abandoned and retried. A full disk raises
    :class:`DiskFullError` and keeps ``dest.part`` cut back to its last chunk known to be on disk, so the fetch
    resumes from there once space is freed.
    """
    known = known or Known()
    dest = Path(dest)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        if is_disk_full(err):
            raise disk_full(dest.parent, err) from err
        raise
    part = dest.with_name(dest.name + ".part")
    remote = with_timeout(remote, timeout)
    fs, base = remote.filesystem()
    path = f"{base}/{relpath}"
    url = remote.where(relpath)
    size = _remote_size(fs, path, url, retries, timeout, backoff)
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
    durable = offset  # bytes of the part known to be on disk (written, flushed and fsynced)
    try:
        with open(part, "ab") as out:
            if size is None:  # no length (some HTTP servers): one streamed read, no resume
                out.truncate(0)
                durable = 0
                md5 = hashlib.md5()
                data = with_retries(
                    lambda: fs.cat_file(path), what=url, retries=retries, backoff=backoff, timeout=timeout
                )
                out.write(data)
                md5.update(data)
                offset = len(data)
            while size is not None and offset < size:
                end = min(offset + chunk_size, size)
                data = with_retries(
                    lambda o=offset, e=end: _range(fs, path, url, o, e),
                    what=url, retries=retries, backoff=backoff, timeout=timeout,
                )  # fmt: skip
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
                durable = offset = end
                md5.update(data)
                progress.advance(len(data))
            out.flush()
            os.fsync(out.fileno())
    except BaseException as err:
        if is_disk_full(err):
            raise _keep_durable(part, durable if size is not None else 0, err) from err  # type: ignore[arg-type]
        with contextlib.suppress(OSError):  # keep a part only if it holds something to resume from
            if part.stat().st_size == 0:
                part.unlink()
        raise
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


def _keep_durable(part: Path, durable: int, err: OSError) -> DiskFullError:
    """After a full disk: cut the part back to the bytes known to be on disk (a truncate needs no space), so a
    rerun resumes from a part that is exactly a prefix of the remote file; with nothing to keep, delete it."""
    try:
        if durable:
            os.truncate(part, durable)
            kept = f"kept the first {durable:,} bytes in {part}; the fetch resumes from there"
        else:
            part.unlink(missing_ok=True)
            kept = f"deleted {part} (nothing in it could be resumed)"
    except OSError:
        kept = f"{part} could not be cut back; delete it before running again"
    return disk_full(part, err, kept=kept)


def _info(fs: fsspec.AbstractFileSystem, path: str, url: str) -> dict:
    """``fs.info(path)``, telling a missing file from a failed request.

    fsspec's HTTP ``info()`` reports any failed HEAD and GET (a 503, a reset connection) as FileNotFoundError; its
    cause says which. Only a 404 or 410 is "not found"; anything else is a transient error to retry.
    """
    try:
        return fs.info(path)
    except FileNotFoundError as err:
        cause = err.__cause__
        http = url.startswith(("http://", "https://"))
        if not http or cause is None or getattr(cause, "status", None) in (404, 410):
            raise
        raise DownloadError(f"{url}: {type(cause).__name__}: {cause}") from cause


def _remote_size(
    fs: fsspec.AbstractFileSystem, path: str, url: str, retries: int, timeout: float | None, backoff: float
) -> int | None:
    try:
        info = with_retries(lambda: _info(fs, path, url), what=url, retries=retries, backoff=backoff, timeout=timeout)
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
