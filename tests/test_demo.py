"""The demo source: Open Images layout, valid CSVs, boxes that match what is drawn, determinism."""

from __future__ import annotations

import csv
import importlib.resources
import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from oidyolo import atomic
from oidyolo.data import demo
from oidyolo.data.demo import (
    BOX_COLUMNS,
    TARGET_CLASSES,
    XCLICK_COLUMNS,
    DemoSpec,
    generate_demo,
    plan_images,
    render_image,
)
from oidyolo.data.versions import version_files
from oidyolo.errors import ConfigError

SMALL = DemoSpec(version="v6", seed=3, images={"train": 30, "validation": 10}, missing={"train": 2})
SHIPPED_CLASSES = (importlib.resources.files("oidyolo") / "resources" / "class-descriptions-boxable.csv").read_bytes()
SHIPPED_HIERARCHY = (importlib.resources.files("oidyolo") / "resources" / "bbox_labels_600_hierarchy.json").read_bytes()
NAMES = dict(line.split(",", 1) for line in SHIPPED_CLASSES.decode().splitlines())  # MID -> display name
COORD = re.compile(r"^(0|1)\.\d{6}$")


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, demo.DemoSummary]:
    out = tmp_path_factory.mktemp("demo")
    return out, generate_demo(out, SMALL)


def read_rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    data = path.read_bytes()
    assert b"\r" not in data
    reader = csv.DictReader(data.decode().splitlines())
    return list(reader.fieldnames or []), list(reader)


def all_files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def boxes_csv(root: Path, spec: DemoSpec, split: str) -> Path:
    return root / "openimages" / version_files(spec.version).boxes_path(split)


# ---------------------------------------------------------------------------------------------------------------------
# Layout


def test_v6_layout(small: tuple[Path, demo.DemoSummary]) -> None:
    root, summary = small
    meta = root / "openimages"
    assert (meta / "v5/class-descriptions-boxable.csv").read_bytes() == SHIPPED_CLASSES
    assert (meta / "2018_04/bbox_labels_600_hierarchy.json").read_bytes() == SHIPPED_HIERARCHY
    train_cols, _ = read_rows(meta / "v6/oidv6-train-annotations-bbox.csv")
    val_cols, _ = read_rows(meta / "v5/validation-annotations-bbox.csv")
    assert train_cols == BOX_COLUMNS + XCLICK_COLUMNS and len(train_cols) == 21
    assert val_cols == BOX_COLUMNS and len(val_cols) == 13
    images = {f"open-images-dataset/{s}/{i}.jpg" for s in ("train", "validation") for i in ids_of(root, SMALL, s)}
    images -= {f"open-images-dataset/train/{i}.jpg" for i in summary.splits["train"].missing_ids}
    expected = {
        "openimages/v5/class-descriptions-boxable.csv",
        "openimages/2018_04/bbox_labels_600_hierarchy.json",
        "openimages/v6/oidv6-train-annotations-bbox.csv",
        "openimages/v5/validation-annotations-bbox.csv",
    } | images
    assert all_files(root) == expected  # nothing else, no temporary files, no empty test split


def ids_of(root: Path, spec: DemoSpec, split: str) -> set[str]:
    return {r["ImageID"] for r in read_rows(boxes_csv(root, spec, split))[1]}


def test_v4_layout_has_13_columns_everywhere(tmp_path: Path) -> None:
    spec = DemoSpec(version="v4", images={"train": 3, "validation": 2, "test": 2}, missing={}, max_side=300)
    generate_demo(tmp_path, spec)
    meta = tmp_path / "openimages"
    assert (meta / "2018_04/class-descriptions-boxable.csv").read_bytes() == SHIPPED_CLASSES
    for split in ("train", "validation", "test"):
        cols, rows = read_rows(meta / f"2018_04/{split}/{split}-annotations-bbox.csv")
        assert cols == BOX_COLUMNS
        assert {r["ImageID"] for r in rows} == {p.stem for p in (tmp_path / "open-images-dataset" / split).iterdir()}


def test_v7_reads_the_v5_class_file(tmp_path: Path) -> None:
    spec = DemoSpec(version="v7", images={"train": 2}, missing={}, max_side=300)
    generate_demo(tmp_path, spec)
    classes = (tmp_path / "openimages/v5/class-descriptions-boxable.csv").read_bytes()
    assert classes == SHIPPED_CLASSES  # as FiftyOne's v7 loader reads it: no header row
    assert not (tmp_path / "openimages/v7").exists()
    cols, _ = read_rows(tmp_path / "openimages/v6/oidv6-train-annotations-bbox.csv")
    assert len(cols) == 21
    assert not (tmp_path / "openimages/v5/validation-annotations-bbox.csv").exists()


# ---------------------------------------------------------------------------------------------------------------------
# CSV content


@pytest.mark.parametrize("split", ["train", "validation"])
def test_rows_are_valid_and_sorted(small: tuple[Path, demo.DemoSummary], split: str) -> None:
    root, _ = small
    cols, rows = read_rows(boxes_csv(root, SMALL, split))
    assert rows
    keys = [(r["ImageID"], r["LabelName"], *(float(r[c]) for c in ("XMin", "XMax", "YMin", "YMax"))) for r in rows]
    assert keys == sorted(keys)
    for r in rows:
        assert re.fullmatch(r"[0-9a-f]{16}", r["ImageID"])
        assert r["Source"] in ("xclick", "activemil") and r["Confidence"] == "1"
        assert NAMES[r["LabelName"]] in demo.ALL_CLASSES
        assert all(COORD.match(r[c]) for c in ("XMin", "XMax", "YMin", "YMax"))
        x0, x1, y0, y1 = (float(r[c]) for c in ("XMin", "XMax", "YMin", "YMax"))
        assert 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1
        assert all(r[c] in ("-1", "0", "1") for c in BOX_COLUMNS[8:])
        if "XClick1X" in cols:
            clicks = [r[c] for c in XCLICK_COLUMNS]
            if r["Source"] != "xclick":
                assert clicks == ["-1"] * 8
                continue
            xs, ys = [float(v) for v in clicks[:4]], [float(v) for v in clicks[4:]]
            # Extreme points: they reach each side of the box and stay inside it.
            assert (min(xs), max(xs), min(ys), max(ys)) == (x0, x1, y0, y1)
    assert Counter(r["Source"] for r in rows)["xclick"] > 0.8 * len(rows)


def test_classes_and_attributes_occur(small: tuple[Path, demo.DemoSummary]) -> None:
    root, summary = small
    rows = read_rows(boxes_csv(root, SMALL, "train"))[1] + read_rows(boxes_csv(root, SMALL, "validation"))[1]
    labels = Counter(NAMES[r["LabelName"]] for r in rows)
    assert all(labels[c] >= 10 for c in TARGET_CLASSES)
    assert labels.keys() - set(TARGET_CLASSES), "other classes too, as in real files"
    for column in ("IsOccluded", "IsTruncated", "IsGroupOf"):
        assert any(r[column] == "1" for r in rows), column
    assert any(r["IsOccluded"] == "-1" for r in rows), "some unknown attributes"
    train = read_rows(boxes_csv(root, SMALL, "train"))[1]
    assert summary.splits["train"].boxes == dict(sorted(Counter(NAMES[r["LabelName"]] for r in train).items()))


def test_truncated_boxes_touch_the_border(small: tuple[Path, demo.DemoSummary]) -> None:
    root, _ = small
    rows = read_rows(boxes_csv(root, SMALL, "train"))[1]
    truncated = [r for r in rows if r["IsTruncated"] == "1"]
    assert truncated
    for r in truncated:
        assert r["XMin"] == "0.000000" or r["YMin"] == "0.000000" or r["XMax"] == "1.000000" or r["YMax"] == "1.000000"


def test_many_images_hold_several_target_classes(small: tuple[Path, demo.DemoSummary]) -> None:
    root, summary = small
    rows = read_rows(boxes_csv(root, SMALL, "train"))[1]
    per_image: dict[str, set[str]] = {}
    for r in rows:
        per_image.setdefault(r["ImageID"], set()).add(NAMES[r["LabelName"]])
    multi = sum(len(labels & set(TARGET_CLASSES)) >= 2 for labels in per_image.values())
    assert len(per_image) == SMALL.images["train"]
    assert multi >= 0.25 * len(per_image)
    assert summary.splits["train"].multi_class_images == multi


def test_missing_images_are_listed_but_not_written(small: tuple[Path, demo.DemoSummary]) -> None:
    root, summary = small
    missing = summary.splits["train"].missing_ids
    assert len(missing) == 2
    listed = ids_of(root, SMALL, "train")
    bucket = {p.stem for p in (root / "open-images-dataset/train").iterdir()}
    assert set(missing) <= listed
    assert bucket == listed - set(missing)
    assert summary.splits["train"].written == 28 and summary.splits["validation"].missing_ids == []


def test_summary_json_round_trips(small: tuple[Path, demo.DemoSummary]) -> None:
    _, summary = small
    data = json.loads(summary.to_json())
    assert data["version"] == "v6" and data["splits"]["validation"]["images"] == 10
    assert set(data["splits"]["train"]) >= {"boxes", "truncated", "occluded", "group_of", "depiction", "missing_ids"}


# ---------------------------------------------------------------------------------------------------------------------
# Images and boxes against what is drawn


def test_images_decode_with_the_rendered_size(small: tuple[Path, demo.DemoSummary]) -> None:
    root, _ = small
    for split in ("train", "validation"):
        for plan in plan_images(SMALL, split):
            path = root / "open-images-dataset" / split / f"{plan.image_id}.jpg"
            if plan.missing:
                continue
            rendered = render_image(SMALL, plan)
            with Image.open(path) as im:
                im.load()
                assert im.format == "JPEG" and im.mode == plan.mode
                assert im.size == (rendered.width, rendered.height)
            assert min(im.size) >= 256 and max(im.size) <= 512


def dilate(mask: np.ndarray, k: int) -> np.ndarray:
    out = mask.copy()
    for _ in range(k):
        grown = out.copy()
        grown[1:] |= out[:-1]
        grown[:-1] |= out[1:]
        grown[:, 1:] |= out[:, :-1]
        grown[:, :-1] |= out[:, 1:]
        out = grown
    return out


def test_boxes_are_the_extents_of_the_drawn_masks(small: tuple[Path, demo.DemoSummary]) -> None:
    root, _ = small
    mids = {v: k for k, v in NAMES.items()}
    rows = read_rows(boxes_csv(root, SMALL, "train"))[1]
    checked_edges = 0
    for plan in plan_images(SMALL, "train"):
        r = render_image(SMALL, plan, with_background=True)
        assert r.background is not None
        h, w = r.height, r.width
        diff = np.abs(r.pixels.astype(int) - r.background.astype(int)).max(axis=2)
        # Nothing is drawn outside the objects' masks (widened by the blur's reach).
        union = np.zeros((h, w), dtype=bool)
        for obj in r.objects:
            union |= obj.mask
        assert diff[~dilate(union, 3)].max() <= 3, plan.image_id
        expected = Counter()
        for obj in r.objects:
            mask = obj.mask
            ys, xs = np.nonzero(mask)
            x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
            expected[(mids[obj.label], f"{x0 / w:.6f}", f"{x1 / w:.6f}", f"{y0 / h:.6f}", f"{y1 / h:.6f}")] += 1
            # The object is really drawn where its mask says ...
            assert diff[mask].mean() > 15, obj.label
            if obj.occluded or obj.truncated or obj.group_of or int(mask.sum()) < 80:
                continue
            # ... right up to each side of its box.
            for edge in (np.s_[:, x0 : x0 + 2], np.s_[:, x1 - 2 : x1], np.s_[y0 : y0 + 2, :], np.s_[y1 - 2 : y1, :]):
                assert mask[edge].any()
                assert diff[edge][mask[edge]].mean() > 4, obj.label
                checked_edges += 1
        got = Counter(
            (row["LabelName"], row["XMin"], row["XMax"], row["YMin"], row["YMax"])
            for row in rows
            if row["ImageID"] == plan.image_id
        )
        assert got == expected, plan.image_id
    assert checked_edges > 100


def test_group_of_box_covers_a_cluster(small: tuple[Path, demo.DemoSummary]) -> None:
    groups = [obj for plan in plan_images(SMALL, "train") for obj in render_image(SMALL, plan).objects if obj.group_of]
    assert groups
    for g in groups:
        assert len(g.pieces) >= 5
        assert g.attributes()[2] == 1 and g.source == "xclick"


def test_depictions_are_outlined_in_black() -> None:
    found = 0
    for plan in plan_images(SMALL, "train") + plan_images(SMALL, "validation"):
        r = render_image(SMALL, plan)
        for obj in r.objects:
            # Small ones are too blurred for a clear outline.
            if not obj.depiction or obj.occluded or obj.truncated or obj.mask.sum() < 1000:
                continue
            mask = obj.mask
            interior = ~dilate(~mask, 2)
            band = mask & ~interior
            grey = r.pixels.mean(axis=2)
            assert grey[band].mean() < 0.6 * grey[interior].mean(), obj.label
            found += 1
    assert found >= 2


# ---------------------------------------------------------------------------------------------------------------------
# Modes, determinism, atomic writes, spec validation


def test_grayscale_and_cmyk_images_in_large_splits(tmp_path: Path) -> None:
    spec = DemoSpec(images={"train": 40, "validation": 12}, missing={}, min_side=128, max_side=160)
    summary = generate_demo(tmp_path, spec)
    modes: dict[str, Counter] = {}
    for split in ("train", "validation"):
        for path in (tmp_path / "open-images-dataset" / split).iterdir():
            with Image.open(path) as im:
                modes.setdefault(split, Counter())[im.mode] += 1
    assert modes["train"] == Counter({"RGB": 37, "L": 2, "CMYK": 1})
    assert modes["validation"] == Counter({"RGB": 12})
    assert len(summary.splits["train"].grayscale_ids) == 2 and len(summary.splits["train"].cmyk_ids) == 1


def test_same_spec_gives_identical_bytes(tmp_path: Path, small: tuple[Path, demo.DemoSummary]) -> None:
    root, summary = small
    again = generate_demo(tmp_path / "again", SMALL)
    files = all_files(root)
    assert files == all_files(tmp_path / "again")
    for f in files:
        assert (root / f).read_bytes() == (tmp_path / "again" / f).read_bytes(), f
    assert again.to_json() == summary.to_json()
    # A different seed really changes the images and the IDs.
    other = DemoSpec(version="v6", seed=4, images={"train": 2}, missing={})
    assert {p.image_id for p in plan_images(other, "train")}.isdisjoint(ids_of(root, SMALL, "train"))


def test_rendering_does_not_depend_on_order() -> None:
    plans = plan_images(SMALL, "validation")
    forward = [render_image(SMALL, p).pixels for p in plans[:3]]
    backward = [render_image(SMALL, p).pixels for p in reversed(plans[:3])][::-1]
    assert all(np.array_equal(a, b) for a, b in zip(forward, backward, strict=True))
    assert not np.array_equal(forward[0][:64, :64], forward[1][:64, :64])


def test_ids_are_unique_across_splits() -> None:
    spec = DemoSpec(images={"train": 200, "validation": 100, "test": 100}, missing={})
    ids = [p.image_id for s in ("train", "validation", "test") for p in plan_images(spec, s)]
    assert len(set(ids)) == 400 and all(re.fullmatch(r"[0-9a-f]{16}", i) for i in ids)


def test_interrupted_write_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(src: object, dst: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(atomic.os, "replace", fail)
    with pytest.raises(KeyboardInterrupt):
        generate_demo(tmp_path / "out", DemoSpec(images={"train": 1}, missing={}))
    assert all_files(tmp_path) == set()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"version": "v8"},
        {"images": {"dev": 3}},
        {"images": {"train": -1}},
        {"images": {"train": 1}, "missing": {"train": 2}},
        {"min_side": 600},
        {"quality": 0},
    ],
)
def test_bad_specs_are_rejected(kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        DemoSpec(**kwargs)


def test_class_mids_are_the_real_ones() -> None:
    assert demo.class_mids()["Apple"] == "/m/014j1m"
    assert demo.class_mids()["Banana"] == "/m/09qck"
    assert demo.class_mids()["Orange"] == "/m/0cyhj_"
