"""Shared fixtures: real JPEGs, bbox CSVs in real layouts, and the paths of the real Open Images header fixtures."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))  # tests/servers.py

# Real Open Images rows (copies of ../shared/openimages-metadata; see fixtures/openimages/README.md).
OI_FIXTURES = Path(__file__).parent / "fixtures" / "openimages"
SHARED = ROOT.parent / "shared" / "openimages-metadata"
# Workflow configurations as files a user can also run (see configs/README.md).
CONFIGS = Path(__file__).parent / "configs"

V6_COLUMNS = (
    "ImageID,Source,LabelName,Confidence,XMin,XMax,YMin,YMax,IsOccluded,IsTruncated,IsGroupOf,IsDepiction,IsInside,"
    "XClick1X,XClick2X,XClick3X,XClick4X,XClick1Y,XClick2Y,XClick3Y,XClick4Y"
)
V5_COLUMNS = (
    "ImageID,Source,LabelName,Confidence,XMin,XMax,YMin,YMax,IsOccluded,IsTruncated,IsGroupOf,IsDepiction,IsInside"
)

APPLE, ORANGE, BANANA = "/m/014j1m", "/m/0cyhj_", "/m/09qck"


def make_jpeg(path: Path, size: tuple[int, int] = (64, 48), color: tuple[int, int, int] = (200, 30, 30)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path, "JPEG", quality=90)
    return path


def v5_row(image_id: str, mid: str, box=(0.1, 0.5, 0.2, 0.6), attrs=(0, 0, 0, 0, 0), source: str = "xclick") -> str:
    x1, x2, y1, y2 = box
    return f"{image_id},{source},{mid},1,{x1:.6f},{x2:.6f},{y1:.6f},{y2:.6f}," + ",".join(map(str, attrs))


def v6_row(image_id: str, mid: str, box=(0.1, 0.5, 0.2, 0.6), attrs=(0, 0, 0, 0, 0)) -> str:
    return v5_row(image_id, mid, box, attrs) + ",-1,-1,-1,-1,-1,-1,-1,-1"


def write_csv(path: Path, header: str, rows: list[str], *, newline: str = "\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes((newline.join([header, *rows]) + newline).encode())
    return path


def merge(base: dict, overlay: dict) -> dict:
    """``overlay`` over ``base`` the way Snakemake merges several ``--configfile``s: nested mappings key by key."""
    out = dict(base)
    for key, value in overlay.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def test_config(*names: str, **edits: object) -> dict:
    """``configs/demo.yaml`` with the named overlays (``configs/NAME.yaml``) and then ``edits`` merged over it."""
    config = yaml.safe_load((CONFIGS / "demo.yaml").read_text())
    for name in names:
        config = merge(config, yaml.safe_load((CONFIGS / f"{name}.yaml").read_text()))
    return merge(config, edits)


test_config.__test__ = False  # a helper, not a test


class Tmpfs:
    def __init__(self, path: Path) -> None:
        self.path = path

    def resize(self, size: str) -> None:
        """Free space (or take it away) without touching the files."""
        subprocess.run(["mount", "-o", f"remount,size={size}", str(self.path)], check=True, capture_output=True)


@pytest.fixture
def tmpfs(tmp_path):
    """``tmpfs(size)`` mounts a fresh tmpfs of that size under ``tmp_path``; all are unmounted afterwards."""
    mounted: list[Path] = []

    def mount(size: str) -> Tmpfs:
        path = tmp_path / f"tmpfs{len(mounted)}"
        path.mkdir()
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
        if proc.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({proc.stderr.decode().strip() or proc.returncode}); needs root")
        mounted.append(path)
        return Tmpfs(path)

    yield mount
    for path in reversed(mounted):
        subprocess.run(["umount", "-l", str(path)], capture_output=True)
