import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from oidyolo.data.anchors import (
    COCO_ANCHORS,
    COCO_TINY_ANCHORS,
    anchor_masks,
    anchors_from_annotations,
    box_sizes_for_input,
    kmeans_anchors,
    mean_iou,
    read_anchors,
    wh_iou,
    write_anchors,
)
from oidyolo.data.yolo_format import AnnotationLine
from oidyolo.errors import DataFormatError

CENTRES = np.array([[12.0, 20.0], [60.0, 40.0], [200.0, 180.0]])


def _clusters(seed: int = 1, n: int = 200) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.concatenate([c * rng.uniform(0.95, 1.05, size=(n, 2)) for c in CENTRES])


def test_wh_iou_by_hand():
    # 10x20 vs 20x10 at a common centre: intersection 10x10 = 100, union 200 + 200 - 100 = 300.
    assert wh_iou(np.array([[10, 20]]), np.array([[20, 10], [10, 20]])) == pytest.approx(np.array([[1 / 3, 1.0]]))


@pytest.mark.parametrize("update", ["median", "mean"])
def test_kmeans_recovers_separated_clusters(update):
    anchors = kmeans_anchors(_clusters(), 3, seed=0, update=update)
    assert anchors.dtype == np.float32 and anchors.shape == (3, 2)
    np.testing.assert_allclose(anchors, CENTRES, rtol=0.03)
    assert mean_iou(_clusters(), anchors) > 0.9


def test_kmeans_is_seeded_and_sorted_by_area():
    wh = np.random.default_rng(3).lognormal(3.5, 0.8, size=(500, 2))
    a, b = kmeans_anchors(wh, 9, seed=7), kmeans_anchors(wh, 9, seed=7)
    np.testing.assert_array_equal(a, b)
    area = a[:, 0] * a[:, 1]
    assert (np.diff(area) >= 0).all()
    # More anchors serve the boxes at least as well as the k-means of fewer.
    assert mean_iou(wh, a) > mean_iou(wh, kmeans_anchors(wh, 3, seed=7))


def test_too_few_distinct_boxes_is_a_clear_error():
    wh = np.array([[10, 10], [10, 10], [20, 30], [40, 40]] * 5, dtype=float)
    with pytest.raises(DataFormatError, match="at least k=9 distinct box sizes but the data has 3"):
        kmeans_anchors(wh, 9, seed=0)


def test_box_sizes_scaled_into_letterbox_frame():
    lines = [
        AnnotationLine("wide.jpg", np.array([[0, 0, 100, 50, 0], [10, 10, 810, 410, 1]], np.int32)),
        AnnotationLine("tall.jpg", np.array([[5, 5, 35, 65, 0]], np.int32)),
        AnnotationLine("empty.jpg", np.zeros((0, 5), np.int32)),
    ]
    sizes = {"wide.jpg": (800, 400), "tall.jpg": (300, 600), "empty.jpg": (10, 10)}
    wh = box_sizes_for_input(lines, sizes.__getitem__, (416, 416))
    # wide: min(416/800, 416/400) = 0.52; tall: min(416/300, 416/600) = 416/600.
    expected = [[52.0, 26.0], [416.0, 208.0], [30 * 416 / 600, 60 * 416 / 600]]
    np.testing.assert_allclose(wh, expected)
    # Same with a size list, and a non-square input (h=320, w=640): wide scale = min(640/800, 320/400) = 0.8.
    wh2 = box_sizes_for_input(lines[:1], [(800, 400)], (320, 640))
    np.testing.assert_allclose(wh2, [[80.0, 40.0], [640.0, 320.0]])


def test_anchors_from_annotations_reads_jpeg_headers(tmp_path):
    rng = np.random.default_rng(0)
    rows = []
    for i, (w, h) in enumerate([(800, 400), (104, 208)]):
        path = tmp_path / f"im{i}.jpg"
        Image.new("RGB", (w, h), (90, 90, 90)).save(path)
        boxes = []
        for _ in range(20):  # small boxes ~ 10% and big ~ 50% of the image side
            f = 0.1 if rng.random() < 0.5 else 0.5
            bw, bh = int(w * f * rng.uniform(0.97, 1.03)), int(h * f * rng.uniform(0.97, 1.03))
            boxes.append(f"0,0,{bw},{bh},0")
        rows.append(f"im{i}.jpg " + " ".join(boxes))
    ann = tmp_path / "train.txt"
    ann.write_text("\n".join(rows) + "\n")
    anchors, miou = anchors_from_annotations(ann, (416, 416), k=2, seed=0, image_root=tmp_path)
    # Letterbox scales 0.52 and 2: in the input frame the small boxes are ~(42, 21)/(21, 42) and the big ones
    # ~(208, 104)/(104, 208); in raw pixels (keras-yolo3 #682) they would be (80, 40)/(10, 21) and (400, 200)/(52, 104).
    assert anchors.shape == (2, 2)
    assert 20 < np.sqrt(anchors[0].prod()) < 45 and 100 < np.sqrt(anchors[1].prod()) < 210
    assert 0.4 < miou <= 1.0
    ann.write_text("missing.jpg 0,0,5,5,0\n")
    with pytest.raises(DataFormatError, match=r"missing\.jpg does not exist"):
        anchors_from_annotations(ann, (416, 416), k=1, seed=0, image_root=tmp_path)


def test_write_read_round_trip(tmp_path):
    path = tmp_path / "anchors.txt"
    write_anchors(path, COCO_ANCHORS)
    assert path.read_text() == "10,13, 16,30, 33,23, 30,61, 62,45, 59,119, 116,90, 156,198, 373,326\n"
    np.testing.assert_array_equal(read_anchors(path), COCO_ANCHORS)
    write_anchors(path, COCO_TINY_ANCHORS + 0.3)  # whole pixels on disk, like darknet cfgs
    np.testing.assert_array_equal(read_anchors(path), COCO_TINY_ANCHORS)


def test_read_anchors_sorts_keras_yolo3_width_order(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("10,13,  16,30,  30,61,  33,23\n")  # kmeans.py sorts by width; area order swaps the last two
    np.testing.assert_array_equal(read_anchors(path), [[10, 13], [16, 30], [33, 23], [30, 61]])
    path.write_text("10,13, 16\n")
    with pytest.raises(DataFormatError, match="even number"):
        read_anchors(path)


def test_masks_and_standard_anchors():
    assert anchor_masks(9) == [[6, 7, 8], [3, 4, 5], [0, 1, 2]]
    assert anchor_masks(6) == [[3, 4, 5], [0, 1, 2]]
    with pytest.raises(DataFormatError):
        anchor_masks(5)
    for a in (COCO_ANCHORS, COCO_TINY_ANCHORS):
        assert a.dtype == np.float32 and (np.diff(a[:, 0] * a[:, 1]) > 0).all()


def test_data_wing_module_does_not_import_tensorflow():
    code = "import sys, oidyolo.data.anchors; sys.exit('tensorflow' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
