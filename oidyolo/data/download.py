"""Concurrent image download into one shared store, ``{store}/{split}/{ImageID}.jpg``.

An image selected by several classes is stored once. Each file is fetched with retries and backoff, verified as a
decodable JPEG, written under a temporary name and renamed into place, so no partial file ever sits at a final path
and an interrupted run resumes by skipping what is already stored. Images missing at the source (real Open Images
has some) are listed in the manifest; the step fails only past a configurable missing fraction. A request that
stalls for ``timeout`` seconds is abandoned and retried; a full disk stops the download with a
:class:`~oidyolo.errors.DiskFullError` (what is stored stays stored, and a rerun continues).
"""

from __future__ import annotations

import functools
import inspect
import re
import sys
import threading
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import fsspec

from oidyolo.atomic import atomic_write, remove_stale_parts, write_bytes_atomic
from oidyolo.data.boxes import IMAGE_ID
from oidyolo.data.imagecheck import header_size, looks_complete, verify_jpeg
from oidyolo.data.sources import DEFAULT_TIMEOUT, Remote, with_retries, with_timeout
from oidyolo.errors import DataFormatError, DiskFullError, DownloadError, disk_full, is_disk_full
from oidyolo.progress import Progress

MANIFEST_COLUMNS = ("ImageID", "path", "width", "height", "status", "reason")
# A split names a folder of the store and of the source: one plain path component, never "..", "/" or a NUL.
_SPLIT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")


@functools.cache
def _s3_has_max_concurrency() -> bool:
    """Whether the installed s3fs takes ``max_concurrency`` (imported only when an S3 remote is used)."""
    try:
        return "max_concurrency" in inspect.signature(fsspec.get_filesystem_class("s3").__init__).parameters
    except (ImportError, ValueError):
        return False


@dataclass(frozen=True)
class DownloadConfig:
    workers: int = 32
    retries: int = 5
    backoff: float = 0.5
    max_missing_fraction: float = 0.05
    progress_interval: float = 5.0
    timeout: float = DEFAULT_TIMEOUT  # seconds without a connection or without data before a request is retried


@dataclass(frozen=True)
class Entry:
    image_id: str
    path: str
    width: int
    height: int
    status: str  # stored (already there) or downloaded (this run), both "ok" in a manifest; missing; failed
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.status in ("ok", "stored", "downloaded")


def image_path(store: str | Path, split: str, image_id: str) -> Path:
    """The store path of an image; the ID is validated first so it can never escape the store or the URL."""
    check_image_id(image_id)
    return Path(store) / check_split(split) / f"{image_id}.jpg"


def check_split(split: str) -> str:
    if not isinstance(split, str) or not _SPLIT.fullmatch(split):
        raise DataFormatError(f"invalid split {split!r}: use a plain folder name such as train, validation or test")
    return split


def check_image_id(image_id: str) -> str:
    if not isinstance(image_id, str) or not IMAGE_ID.fullmatch(image_id):  # fullmatch: "$" passes a final "\n"
        raise DataFormatError(f"invalid ImageID {image_id!r}: Open Images IDs are 16 lowercase hex characters")
    return image_id


def download_images(
    image_ids: Iterable[str],
    *,
    split: str,
    remote: Remote,
    store: str | Path,
    config: DownloadConfig | None = None,
    label: str = "",
) -> list[Entry]:
    """Make every image present in the store; returns one manifest entry per ID (input order, deduplicated)."""
    config = config or DownloadConfig()
    check_split(split)
    ids = [check_image_id(i) for i in dict.fromkeys(image_ids)]
    folder = Path(store) / split
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        if is_disk_full(err):
            raise disk_full(folder, err) from err
        raise
    remove_stale_parts(folder)
    remote = with_timeout(remote, config.timeout)
    if remote.url.startswith("s3://"):
        opts = dict(remote.options)
        opts["config_kwargs"] = {"max_pool_connections": max(10, config.workers), **(opts.get("config_kwargs") or {})}
        if _s3_has_max_concurrency():
            # s3fs sends a HEAD before every whole-file GET to decide on a chunked download (only for files over
            # its 50 MB block size); images are far smaller, so skip that extra round trip per image.
            opts.setdefault("max_concurrency", 1)
        remote = Remote(remote.url, opts)
    fs, base = remote.filesystem()
    progress = Progress(f"images {label or split}", len(ids), unit="img", interval=config.progress_interval)
    full = threading.Event()  # set by the first full-disk write: the other workers stop instead of trying theirs

    def one(image_id: str) -> Entry | None:
        if full.is_set():
            return None
        try:
            entry = _ensure(
                image_id, fs, f"{base}/{split}/{image_id}.jpg", remote.where(f"{split}/{image_id}.jpg"), folder, config
            )
        except DiskFullError:
            full.set()
            raise
        progress.advance(1, **{entry.status: 1})
        return entry

    with ThreadPoolExecutor(max_workers=max(1, config.workers), thread_name_prefix="fetch") as pool:
        futures = [pool.submit(one, image_id) for image_id in ids]
        errors = [f.exception() for f in futures]
    for err in errors:
        if err is not None:
            raise err
    progress.finish()
    return [f.result() for f in futures]  # type: ignore[misc]


def _ensure(image_id: str, fs, path: str, url: str, folder: Path, config: DownloadConfig) -> Entry:
    dest = folder / f"{image_id}.jpg"
    if dest.exists():
        try:
            if not looks_complete(dest):  # not written by us (we rename only verified files): check it fully
                verify_jpeg(dest.read_bytes(), where=str(dest))
            width, height = header_size(dest)
            return Entry(image_id, str(dest), width, height, "stored")
        except DataFormatError as err:
            print(f"warning: {err}; fetching it again", file=sys.stderr)
            dest.unlink(missing_ok=True)

    def fetch() -> tuple[bytes, tuple[int, int]]:
        data = fs.cat_file(path)
        try:
            return data, verify_jpeg(data, where=url)
        except DataFormatError as err:  # a truncated or garbled body is retried like a network error
            raise DownloadError(str(err)) from None

    try:
        data, (width, height) = with_retries(
            fetch, what=url, retries=config.retries, backoff=config.backoff, timeout=config.timeout
        )
    except FileNotFoundError:
        return Entry(image_id, str(dest), 0, 0, "missing", "not found at the source")
    except PermissionError as err:
        return Entry(image_id, str(dest), 0, 0, "failed", f"access denied: {err}")
    except (IsADirectoryError, NotADirectoryError) as err:  # a local mirror with a folder where a file should be
        return Entry(image_id, str(dest), 0, 0, "failed", f"not a file at the source: {err}")
    except DownloadError as err:
        return Entry(image_id, str(dest), 0, 0, "failed", str(err).replace("\t", " ").replace("\n", " "))
    write_bytes_atomic(dest, data)
    return Entry(image_id, str(dest), width, height, "downloaded")


def write_manifest(entries: list[Entry], path: str | Path) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write("\t".join(MANIFEST_COLUMNS) + "\n")
            for e in entries:
                # "ok", not which job happened to fetch a shared image first: manifests are the same on every run.
                status = "ok" if e.ok else e.status
                fh.write(f"{e.image_id}\t{e.path}\t{e.width}\t{e.height}\t{status}\t{e.reason}\n")

    atomic_write(path, write)


def read_manifest(path: str | Path) -> list[Entry]:
    with open(path, encoding="utf-8") as fh:
        header = fh.readline().rstrip("\n").split("\t")
        if tuple(header) != MANIFEST_COLUMNS:
            raise DataFormatError(f"{path}: not an image manifest (header {header})")
        out = []
        for n, line in enumerate(fh, 2):
            fields = line.rstrip("\n").split("\t")
            if len(fields) != len(MANIFEST_COLUMNS):
                raise DataFormatError(f"{path}:{n}: expected {len(MANIFEST_COLUMNS)} tab-separated fields")
            image_id, p, w, h, status, reason = fields
            out.append(Entry(check_image_id(image_id), p, int(w), int(h), status, reason))
    return out


def check_missing(entries: list[Entry], max_fraction: float, *, label: str) -> str:
    """A summary line; raises :class:`DownloadError` if more than ``max_fraction`` of the images are unavailable."""
    bad = [e for e in entries if not e.ok]
    counts = {s: sum(e.status == s for e in entries) for s in ("stored", "downloaded", "missing", "failed")}
    line = f"{label}: " + ", ".join(f"{n} {s}" for s, n in counts.items())
    if entries and len(bad) / len(entries) > max_fraction:
        examples = "; ".join(f"{e.image_id}: {e.reason}" for e in bad[:5])
        raise DownloadError(
            f"{line}: {len(bad)}/{len(entries)} images unavailable, more than the allowed "
            f"{max_fraction:.1%} (download.max_missing_fraction). First: {examples}"
        )
    return line
