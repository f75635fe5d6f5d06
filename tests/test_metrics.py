import numpy as np
import pytest

pytest.importorskip("pycocotools")

from oidyolo.errors import ConfigError, DataFormatError
from oidyolo.yolo.metrics import evaluate_detections, plot_pr_curves, precision_recall_curves

NAMES = ["cat", "dog"]


def _gt(image_id, boxes, classes, ignore=None, size=(200, 200)):
    boxes = np.asarray(boxes, float).reshape(-1, 4)
    ignore = np.zeros(len(boxes), bool) if ignore is None else np.asarray(ignore, bool)
    return {"image_id": image_id, "width": size[0], "height": size[1], "boxes": boxes,
            "classes": np.asarray(classes, int), "ignore": ignore}  # fmt: skip


def _dt(image_id, boxes, classes, scores):
    return {"image_id": image_id, "boxes": np.asarray(boxes, float).reshape(-1, 4),
            "classes": np.asarray(classes, int), "scores": np.asarray(scores, float)}  # fmt: skip


GT = [
    _gt("a", [[10, 10, 110, 110], [120, 20, 180, 90]], [0, 1]),
    _gt("b", [[50, 60, 150, 160]], [0]),
    _gt("empty", [], []),
]


def test_perfect_detections_score_one():
    dets = [_dt(g["image_id"], g["boxes"], g["classes"], np.full(len(g["boxes"]), 0.9)) for g in GT]
    r = evaluate_detections(GT, dets, NAMES)
    assert r["mAP50"] == pytest.approx(1.0) and r["mAP50_95"] == pytest.approx(1.0)
    assert r["per_class_AP50"] == pytest.approx({"cat": 1.0, "dog": 1.0})
    assert r["counts"] == {"images": 3, "gt_boxes": 3, "gt_ignored": 0, "detections": 3,
                           "gt_per_class": {"cat": 2, "dog": 1}}  # fmt: skip


def test_iou_062_passes_ap50_but_only_three_of_ten_thresholds():
    # 100x100 boxes shifted by 23 px: IoU = 77 * 100 / (2 * 10000 - 7700) = 0.626, matched at 0.50, 0.55, 0.60.
    gt = [_gt("a", [[0, 0, 100, 100]], [0])]
    r = evaluate_detections(gt, [_dt("a", [[23, 0, 123, 100]], [0], [0.8])], NAMES)
    assert r["mAP50"] == pytest.approx(1.0)
    assert r["mAP50_95"] == pytest.approx(0.3)
    assert r["per_class_AP50"]["dog"] is None and r["per_class_AP50_95"]["dog"] is None  # no GT: excluded


def test_missed_object_halves_recall():
    gt = [_gt("a", [[0, 0, 50, 50]], [0]), _gt("b", [[20, 20, 90, 90]], [0])]
    dets = [_dt("a", [[0, 0, 50, 50]], [0], [0.7])]
    r = evaluate_detections(gt, dets, NAMES)
    # Precision 1 up to recall 0.5, then nothing: 51 of COCO's 101 recall points (0, 0.01, ..., 0.5).
    assert r["mAP50"] == pytest.approx(51 / 101)
    curve = precision_recall_curves(gt, dets, NAMES)["cat"]
    np.testing.assert_allclose(curve.recall, [0.5])
    np.testing.assert_allclose(curve.precision, [1.0])
    assert curve.num_gt == 2 and curve.ap == pytest.approx(51 / 101)


def test_false_positive_ranked_first_costs_precision():
    gt = [_gt("a", [[0, 0, 50, 50]], [0]), _gt("empty", [], [])]
    dets = [_dt("a", [[0, 0, 50, 50]], [0], [0.5]), _dt("empty", [[10, 10, 60, 60]], [0], [0.9])]
    r = evaluate_detections(gt, dets, NAMES)
    assert r["mAP50"] == pytest.approx(0.5)  # the only TP comes second: precision 1/2 at recall 1
    curve = precision_recall_curves(gt, dets, NAMES)["cat"]
    np.testing.assert_allclose(curve.precision, [0.0, 0.5])
    np.testing.assert_allclose(curve.scores, [0.9, 0.5])


def test_ignored_gt_is_neither_a_miss_nor_a_false_positive():
    gt = [_gt("a", [[0, 0, 50, 50], [100, 100, 190, 190]], [0, 0], ignore=[False, True])]
    on_ignored = _dt("a", [[0, 0, 50, 50], [110, 110, 150, 150]], [0, 0], [0.5, 0.9])
    r = evaluate_detections(gt, [on_ignored], NAMES)
    assert r["mAP50"] == pytest.approx(1.0)
    assert r["counts"]["gt_boxes"] == 1 and r["counts"]["gt_ignored"] == 1
    # Unmatched ignored box: still no miss.
    r = evaluate_detections(gt, [_dt("a", [[0, 0, 50, 50]], [0], [0.5])], NAMES)
    assert r["mAP50"] == pytest.approx(1.0)
    # The same layout without the ignore flag: the higher-scored detection (IoU 0.2) is a false positive and the
    # second box a miss.
    plain = [_gt("a", gt[0]["boxes"], [0, 0])]
    assert evaluate_detections(plain, [on_ignored], NAMES)["mAP50"] == pytest.approx(0.5 * 51 / 101)


def test_no_detections_and_bad_input():
    r = evaluate_detections(GT, [], NAMES)
    assert r["mAP50"] == 0.0 and r["mAP50_95"] == 0.0 and r["counts"]["detections"] == 0
    with pytest.raises(DataFormatError, match="no ground-truth record"):
        evaluate_detections(GT, [_dt("zzz", [[0, 0, 1, 1]], [0], [1.0])], NAMES)
    with pytest.raises(DataFormatError, match="class ids"):
        evaluate_detections(GT, [_dt("a", [[0, 0, 1, 1]], [5], [1.0])], NAMES)
    with pytest.raises(ConfigError, match="bbox"):
        evaluate_detections(GT, [], NAMES, iou_type="segm")


def test_pr_plot_written_without_touching_the_backend(tmp_path):
    import matplotlib

    before = matplotlib.get_backend()
    dets = [
        _dt("a", [[10, 10, 110, 110], [0, 0, 5, 5]], [0, 1], [0.9, 0.8]),
        _dt("b", [[50, 60, 150, 160]], [0], [0.4]),
    ]
    curves = precision_recall_curves(GT, dets, NAMES)
    out = plot_pr_curves(curves, tmp_path / "plots" / "pr.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 5000
    assert matplotlib.get_backend() == before
