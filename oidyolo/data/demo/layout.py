"""Writing the Open Images layout: metadata files, one bbox CSV per split and the bucket's JPEGs."""

from __future__ import annotations

import importlib.resources
from pathlib import Path

import numpy as np

from oidyolo.atomic import write_bytes_atomic
from oidyolo.data.demo.scene import RenderedImage, render_image
from oidyolo.data.demo.spec import (
    ALL_CLASSES,
    BOX_COLUMNS,
    IMAGES_DIR,
    METADATA_DIR,
    TARGET_CLASSES,
    XCLICK_COLUMNS,
    DemoSpec,
    DemoSummary,
    SplitSummary,
    plan_images,
)
from oidyolo.data.versions import SPLITS, version_files
from oidyolo.errors import DataFormatError


def _resource(name: str) -> bytes:
    return (importlib.resources.files("oidyolo") / "resources" / name).read_bytes()


def class_mids() -> dict[str, str]:
    """Display name -> MID of the demo's classes, from the shipped class descriptions."""
    mids: dict[str, str] = {}
    for line in _resource("class-descriptions-boxable.csv").decode().splitlines():
        mid, _, name = line.partition(",")
        if name in ALL_CLASSES:
            mids[name] = mid
    if missing := [c for c in ALL_CLASSES if c not in mids]:
        raise DataFormatError(f"shipped class-descriptions-boxable.csv lacks {', '.join(missing)}")
    return mids


def _fmt(v: float) -> str:
    return f"{v:.6f}"


def box_rows(rendered: RenderedImage, mids: dict[str, str], xclick: bool) -> list[list[str]]:
    """The CSV rows of one image (unsorted)."""
    rows = []
    for obj in rendered.objects:
        x0, y0, x1, y1 = obj.box_px
        coords = [x0 / rendered.width, x1 / rendered.width, y0 / rendered.height, y1 / rendered.height]
        row = [rendered.plan.image_id, obj.source, mids[obj.label], "1", *map(_fmt, coords)]
        row += [str(a) for a in obj.attributes()]
        if xclick:
            row += list(map(_fmt, obj.clicks())) if obj.source == "xclick" else ["-1"] * 8
        rows.append(row)
    return rows


def _row_key(row: list[str]) -> tuple:
    # Real files are sorted by ImageID, then label, then coordinates.
    return (row[0], row[2], *map(float, row[4:8]))


def _split_summary(rendered: list[RenderedImage]) -> SplitSummary:
    s = SplitSummary(images=len(rendered))
    for r in rendered:
        plan = r.plan
        if plan.missing:
            s.missing_ids.append(plan.image_id)
        else:
            s.written += 1
        if plan.mode == "L":
            s.grayscale_ids.append(plan.image_id)
        elif plan.mode == "CMYK":
            s.cmyk_ids.append(plan.image_id)
        s.multi_class_images += len({o.label for o in r.objects} & set(TARGET_CLASSES)) >= 2
        for o in r.objects:
            s.boxes[o.label] = s.boxes.get(o.label, 0) + 1
            attrs = o.attributes()
            s.occluded += attrs[0] == 1
            s.truncated += attrs[1] == 1
            s.group_of += attrs[2] == 1
            s.depiction += attrs[3] == 1
            s.unknown_attributes += o.unknown
    s.boxes = dict(sorted(s.boxes.items()))
    return s


def _write_metadata(root: Path, spec: DemoSpec) -> None:
    vf = version_files(spec.version)
    write_bytes_atomic(root / vf.classes, _resource("class-descriptions-boxable.csv"))
    write_bytes_atomic(root / vf.hierarchy, _resource("bbox_labels_600_hierarchy.json"))


def generate_demo(out_dir: Path, spec: DemoSpec | None = None) -> DemoSummary:
    """Write the demo source under ``out_dir`` (see the package docstring for the layout); ``None``: the defaults."""
    out_dir = Path(out_dir)
    spec = spec or DemoSpec()
    meta = out_dir / METADATA_DIR
    vf = version_files(spec.version)
    mids = class_mids()
    _write_metadata(meta, spec)
    summary = DemoSummary(spec.version, spec.seed)
    for split in SPLITS:
        if spec.count(split) == 0:
            continue
        xclick = spec.version in ("v6", "v7") and split == "train"
        rows: list[list[str]] = []
        rendered: list[RenderedImage] = []
        for plan in plan_images(spec, split):
            r = render_image(spec, plan)
            if not plan.missing:
                write_bytes_atomic(out_dir / IMAGES_DIR / split / f"{plan.image_id}.jpg", r.jpeg(spec.quality))
            rows += box_rows(r, mids, xclick)
            r.pixels = np.empty((0, 0, 3), np.uint8)  # keep only the annotations in memory
            rendered.append(r)
        rows.sort(key=_row_key)
        header = BOX_COLUMNS + (XCLICK_COLUMNS if xclick else [])
        text = "\n".join(",".join(r) for r in [header, *rows]) + "\n"
        write_bytes_atomic(meta / vf.boxes_path(split), text.encode())
        summary.splits[split] = _split_summary(rendered)
    return summary
