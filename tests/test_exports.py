"""COCO and Ultralytics exports: against the keras-yolo3 lines they come from, pycocotools, OpenCV image sizes
and the Ultralytics layout rules (image -> label path by replacing the last /images/ with /labels/)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from test_eval_truth import _voc
from test_workflow import BASE, planned, snakemake

from oidyolo.data.coco_format import coco_dataset, write_coco
from oidyolo.data.ultralytics_format import write_ultralytics
from oidyolo.data.voc import read_voc
from oidyolo.data.yolo_format import read_annotations, read_classes
from oidyolo.data.yolo_lines import build_annotations

pytest.importorskip("pycocotools")
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

TARGETS = ["results/coco/train.json", "results/coco/val.json", "results/ultralytics"]


def label_path(image: str) -> str:
    """Ultralytics' rule: the last /images/ becomes /labels/, the suffix .txt."""
    sa, sb = f"{os.sep}images{os.sep}", f"{os.sep}labels{os.sep}"
    return sb.join(image.rsplit(sa, 1)).rsplit(".", 1)[0] + ".txt"


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("exports")
    (work / "config.yaml").write_text(yaml.safe_dump(BASE))
    snakemake(work, *TARGETS)
    return work


@pytest.mark.slow
def test_exports_are_outside_the_default_target(exported):
    rules = {rule for rule, _ in planned(exported)}
    assert "train" in rules and not {"coco", "ultralytics"} & rules


@pytest.mark.slow
@pytest.mark.parametrize("part", ["train", "val"])
def test_coco_json_loads_in_pycocotools_and_matches_the_lines(exported, part):
    lines = read_annotations(exported / f"results/yolo/{part}.txt")
    classes = read_classes(exported / "results/yolo/classes.txt")
    coco = COCO(str(exported / f"results/coco/{part}.json"))
    assert len(coco.getAnnIds()) == sum(len(ln.boxes) for ln in lines) > 0
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == classes
    images = coco.loadImgs(coco.getImgIds())
    assert [im["file_name"] for im in images] == [ln.path for ln in lines]
    for im, ln in zip(images, lines, strict=True):
        h, w = cv2.imread(str(exported / ln.path)).shape[:2]  # OpenCV, not our header reader
        assert (im["width"], im["height"]) == (w, h)
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[im["id"]]))
        got = [[*a["bbox"], a["category_id"] - 1] for a in anns]
        assert got == [[x1, y1, x2 - x1, y2 - y1, c] for x1, y1, x2, y2, c in ln.boxes.tolist()]
    # and it drives COCOeval: the ground truth as detections scores AP 1 (crowd boxes excluded from both)
    dets = [{**a, "score": 1.0} for a in coco.loadAnns(coco.getAnnIds()) if not a["iscrowd"]]
    ev = COCOeval(coco, coco.loadRes(dets), "bbox")
    ev.evaluate(), ev.accumulate(), ev.summarize()
    assert ev.stats[1] == pytest.approx(1.0)  # AP at IoU 0.5


@pytest.mark.slow
def test_ultralytics_layout_links_images_and_labels_match_the_lines(exported):
    root = exported / "results/ultralytics"
    data = yaml.safe_load((root / "data.yaml").read_text())
    assert data["names"] == dict(enumerate(read_classes(exported / "results/yolo/classes.txt")))
    assert Path(data["path"]) == root and Path(data["path"]).is_absolute()
    for part in ("train", "val"):
        lines = read_annotations(exported / f"results/yolo/{part}.txt")
        images = sorted((Path(data["path"]) / data[part]).iterdir())
        assert [p.name for p in images] == sorted(Path(ln.path).name for ln in lines)
        by_name = {Path(ln.path).name: ln for ln in lines}
        for image in images:
            line = by_name[image.name]
            assert image.is_symlink() and image.samefile(exported / line.path)  # linked, not copied
            h, w = cv2.imread(str(image)).shape[:2]
            rows = np.loadtxt(label_path(str(image)), ndmin=2).reshape(-1, 5)
            assert len(rows) == len(line.boxes)
            assert ((rows[:, 1:] >= 0) & (rows[:, 1:] <= 1)).all()
            cx, cy, bw, bh = rows[:, 1] * w, rows[:, 2] * h, rows[:, 3] * w, rows[:, 4] * h
            back = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], axis=1)
            np.testing.assert_allclose(back, line.boxes[:, :4], atol=1e-3 * max(w, h))
            np.testing.assert_array_equal(rows[:, 0], line.boxes[:, 4])


def test_group_of_is_crowd_per_class_and_an_image_without_boxes_has_none(tmp_path):
    voc = tmp_path / "voc"
    voc.mkdir()
    _voc(voc / "a.xml", [("cat", (10, 10, 110, 110), 0, 0), ("dog", (10, 10, 110, 110), 0, 1)])
    _voc(voc / "b.xml", [("bird", (10, 10, 60, 60), 0, 0)])
    out = {k: tmp_path / f"{k}.txt" for k in ("train", "val", "classes")}
    build_annotations(train_voc=voc, val_voc=voc, classes=["cat", "dog"], out_train=out["train"],
                      out_val=out["val"], out_classes=out["classes"])  # fmt: skip
    data = coco_dataset(out["val"], out["classes"], [voc])
    assert [(a["category_id"], a["iscrowd"]) for a in data["annotations"]] == [(1, 0), (2, 1)]
    assert [im["file_name"] for im in data["images"]] == ["/data/a.jpg", "/data/b.jpg"]
    assert write_coco(tmp_path / "val.json", out["val"], out["classes"], [voc]) == {
        "images": 2, "annotations": 2, "crowd": 1}  # fmt: skip
    assert json.loads((tmp_path / "val.json").read_text()) == data
    assert read_voc(voc / "b.xml").objects  # b has a box, of a class not asked for


def test_ultralytics_background_image_gets_an_empty_label_file(tmp_path):
    voc = tmp_path / "voc"
    voc.mkdir()
    img = tmp_path / "store"
    img.mkdir()
    for stem in ("a", "b"):
        cv2.imwrite(str(img / f"{stem}.jpg"), np.zeros((200, 400, 3), np.uint8))
    _voc(voc / "a.xml", [("cat", (1, 1, 400, 100), 0, 0)])  # VOC edges are 1-based: the whole width, top half
    _voc(voc / "b.xml", [("bird", (10, 10, 60, 60), 0, 0)])
    for stem in ("a", "b"):  # the image paths the lines will carry
        xml = (voc / f"{stem}.xml").read_text().replace(f"/data/{stem}.jpg", str(img / f"{stem}.jpg"))
        (voc / f"{stem}.xml").write_text(xml)
    out = {k: tmp_path / f"{k}.txt" for k in ("train", "val", "classes")}
    build_annotations(train_voc=voc, val_voc=voc, classes=["cat"], out_train=out["train"], out_val=out["val"],
                      out_classes=out["classes"])  # fmt: skip
    counts = write_ultralytics(tmp_path / "u", train_txt=out["train"], val_txt=out["val"],
                               classes_txt=out["classes"], voc_dirs=[voc])  # fmt: skip
    assert counts == {"train_images": 1, "train_boxes": 1, "val_images": 2, "val_boxes": 1}
    assert (tmp_path / "u/labels/val/b.txt").read_text() == ""
    # a box over the whole width: cx 0.5, w 1; the top half: cy 0.25, h 0.5 (400 x 200 image)
    assert (tmp_path / "u/labels/val/a.txt").read_text().split() == ["0", "0.500000", "0.250000", "1.000000",
                                                                      "0.500000"]  # fmt: skip
    assert not list(tmp_path.glob(".u.*"))  # no temporary folder left beside it
