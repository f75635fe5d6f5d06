"""Evaluation bookkeeping: ignore regions per class, images without boxes kept, on a case whose mAP is derived by
hand below (and computed by pycocotools' COCOeval through :func:`evaluate_detections`)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pycocotools")

from oidyolo.data.yolo_format import read_annotations
from oidyolo.data.yolo_lines import build_annotations, evaluation_truth
from oidyolo.yolo.metrics import evaluate_detections

CLASSES = ["cat", "dog"]


def _voc(path, objects, size=(400, 200)):
    """A standard Pascal VOC file (another writer's layout, read by the generic path), Open Images' group-of."""
    objs = "".join(
        f"<object><name>{name}</name><difficult>{int(difficult)}</difficult>"
        f"<bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin><xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox>"
        f"<openimages><IsGroupOf>{int(group_of)}</IsGroupOf></openimages></object>"
        for name, (x1, y1, x2, y2), difficult, group_of in objects
    )
    path.write_text(
        f"<annotation><path>/data/{path.stem}.jpg</path><size><width>{size[0]}</width><height>{size[1]}</height>"
        f"<depth>3</depth></size>{objs}</annotation>"
    )


@pytest.fixture
def case(tmp_path):
    voc = tmp_path / "voc"
    voc.mkdir()
    # Corners >= 1, so the case holds in the 0-based and the 1-based (devkit) VOC convention alike.
    _voc(voc / "a.xml", [("cat", (10, 10, 110, 110), 0, 0),   # C1
                         ("dog", (10, 10, 110, 110), 0, 1),   # D1: group-of, at C1's corners
                         ("cat", (210, 10, 310, 110), 0, 0)])  # C2  # fmt: skip
    _voc(voc / "b.xml", [("bird", (10, 10, 60, 60), 0, 0)])  # no box of our classes
    _voc(voc / "c.xml", [("dog", (10, 10, 110, 110), 0, 0)])  # D2
    out = {k: tmp_path / f"{k}.txt" for k in ("train", "val", "classes")}
    build_annotations(train_voc=voc, val_voc=voc, classes=CLASSES, out_train=out["train"], out_val=out["val"],
                      out_classes=out["classes"])  # fmt: skip
    lines = {ln.path.rsplit("/", 1)[1][0]: ln for ln in read_annotations(out["val"], num_classes=2)}
    train = [ln.path for ln in read_annotations(out["train"])]
    return voc, lines, train


def _truth(voc, lines, per_class=True):
    truth = []
    for key, ln in sorted(lines.items()):
        boxes, classes, ignore = evaluation_truth(ln, voc / f"{key}.xml", CLASSES)
        if not per_class:  # the old rule: a box is ignored if any marked VOC object has its corners
            marked = {tuple(b) for b, i in zip(boxes.tolist(), ignore, strict=True) if i}
            ignore = np.array([tuple(b) in marked for b in boxes.tolist()], bool)
        truth.append({"image_id": key, "width": 400, "height": 200, "boxes": boxes.astype(float),
                      "classes": classes, "ignore": ignore})  # fmt: skip
    return truth


def _det(key, box, cls, score):
    return {"image_id": key, "boxes": np.array([box], float), "classes": np.array([cls]), "scores": np.array([score])}


def test_hand_computed_map_counts_false_positives_on_empty_images_and_ignores_per_class(case):
    voc, lines, train = case
    assert sorted(lines) == ["a", "b", "c"] and len(lines["b"].boxes) == 0  # b kept in val.txt as a bare path
    assert sorted(p.rsplit("/", 1)[1] for p in train) == ["a.jpg", "c.jpg"]  # train.txt drops it
    c1, d1, _c2 = (tuple(b[:4]) for b in lines["a"].boxes)  # the line's own pixels, whatever the VOC convention
    (d2,) = (tuple(b[:4]) for b in lines["c"].boxes)
    dets = [
        _det("a", c1, 0, 0.8),  # cat on C1: a hit
        _det("a", (d1[0] + 8, d1[1] + 8, d1[2] - 8, d1[3] - 8), 1, 0.7),  # dog inside group-of D1: ignored
        _det("b", (10, 10, 60, 60), 0, 0.9),  # cat on the image without boxes: a false positive
        _det("c", d2, 1, 0.6),  # dog on D2: a hit
    ]
    # cat: 2 GT (C1, C2; C1 is not ignored although the group-of dog box has its corners). Ranked by score:
    # 0.9 FP -> P 0/1 R 0; 0.8 TP -> P 1/2 R 1/2. COCO interpolates at the 101 recalls 0, 0.01, ..., 1: the best
    # precision at recall >= r is 1/2 for the 51 points r <= 0.5, 0 above. AP = 51 * 0.5 / 101.
    cat = 51 * 0.5 / 101
    # dog: 1 GT (D2; D1 is an ignore region). 0.7 lies inside D1 (intersection / detection area = 1): neither
    # TP nor FP; 0.6 TP -> P 1 R 1 at all 101 points. AP = 1. Every hit has IoU 1, so AP50:95 is the same.
    dog = 1.0
    expected = (cat + dog) / 2  # 0.6262...
    r = evaluate_detections(_truth(voc, lines), dets, CLASSES)
    assert r["per_class_AP50"] == pytest.approx({"cat": cat, "dog": dog})
    assert r["mAP50"] == pytest.approx(expected) and r["mAP50_95"] == pytest.approx(expected)
    assert r["counts"]["images"] == 3 and r["counts"]["gt_boxes"] == 3 and r["counts"]["gt_ignored"] == 1
    # What the old bookkeeping gave, so the case tells them apart:
    # coordinates only: C1 ignored too -> cat GT = C2 only, 0.8 lands on an ignore region, 0.9 FP: cat AP 0.
    old = evaluate_detections(_truth(voc, lines, per_class=False), dets, CLASSES)
    assert old["per_class_AP50"]["cat"] == pytest.approx(0.0) and old["mAP50"] == pytest.approx(0.5)
    # image b dropped: the FP vanishes, cat: 0.8 TP first -> P 1 up to R 0.5 -> AP 51 / 101.
    no_b = evaluate_detections(
        [t for t in _truth(voc, lines) if t["image_id"] != "b"], [d for d in dets if d["image_id"] != "b"], CLASSES
    )
    assert no_b["per_class_AP50"]["cat"] == pytest.approx(51 / 101)


def test_marked_boxes_left_out_of_val_txt_are_still_ignore_regions(tmp_path):
    voc = tmp_path / "voc"
    voc.mkdir()
    _voc(voc / "a.xml", [("cat", (10, 10, 110, 110), 0, 0), ("cat", (210, 10, 310, 110), 1, 0)])  # 2nd: difficult
    out = {k: tmp_path / f"{k}.txt" for k in ("train", "val", "classes")}
    # only "cat": a class with no training boxes is refused before training
    build_annotations(train_voc=voc, val_voc=voc, classes=CLASSES[:1], out_train=out["train"], out_val=out["val"],
                      out_classes=out["classes"], include_difficult=False)  # fmt: skip
    (line,) = read_annotations(out["val"])
    assert len(line.boxes) == 1
    boxes, classes, ignore = evaluation_truth(line, voc / "a.xml", CLASSES)
    assert classes.tolist() == [0, 0] and ignore.tolist() == [False, True]
    truth = [{"image_id": "a", "width": 400, "height": 200, "boxes": boxes.astype(float), "classes": classes,
              "ignore": ignore}]  # fmt: skip
    # a detection on the difficult box, ranked first, is no false positive: AP 1 (it would be 0.5 otherwise)
    dets = [_det("a", tuple(boxes[1]), 0, 0.9), _det("a", tuple(boxes[0]), 0, 0.8)]
    assert evaluate_detections(truth, dets, CLASSES)["mAP50"] == pytest.approx(1.0)
    plain = [{**truth[0], "boxes": truth[0]["boxes"][:1], "classes": classes[:1], "ignore": ignore[:1]}]
    assert evaluate_detections(plain, dets, CLASSES)["mAP50"] == pytest.approx(0.5)
