"""Decoding raw outputs, undoing the letterbox, and per-class NMS."""

from __future__ import annotations

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from oidyolo.errors import ConfigError  # noqa: E402
from oidyolo.yolo.anchor_masks import masks_for  # noqa: E402
from oidyolo.yolo.decode import (  # noqa: E402
    decode_outputs,
    letterbox_boxes,
    letterbox_geometry,
    nms,
    postprocess,
    undo_letterbox,
)

TINY_ANCHORS = np.array([[10, 14], [23, 27], [37, 58], [81, 82], [135, 169], [344, 319]], np.float32)
C = 2


def _one_confident_anchor() -> list[np.ndarray]:
    """Tiny outputs for a 64x96 (h x w) input: everything off but layer 1, row 2, col 1, anchor slot 1."""
    outs = [np.full((1, 64 // s, 96 // s, 3, 5 + C), -12.0, np.float32) for s in (32, 16)]
    t = outs[1][0, 2, 1, 1]
    t[0:2] = [0.0, np.log(3.0)]  # sigmoid -> 0.5, 0.75
    t[2:4] = [np.log(2.0), 0.0]  # w = 2 * anchor w, h = anchor h
    t[4] = 8.0
    t[5:] = [-8.0, 8.0]
    return [o.reshape(1, o.shape[1], o.shape[2], -1) for o in outs]


def test_one_confident_anchor_decodes_to_its_box() -> None:
    outputs = _one_confident_anchor()
    boxes, obj, cls = decode_outputs(outputs, TINY_ANCHORS, masks_for("tiny"), C, (64, 96))
    n = (2 * 3 + 4 * 6) * 3
    assert boxes.shape == (1, n, 4) and obj.shape == (1, n) and cls.shape == (1, n, C)
    best = int(np.argmax(obj[0]))
    # Layer 1 comes after layer 0's 2*3*3 entries; then row-major cells, 3 anchors each.
    assert best == 2 * 3 * 3 + (2 * 6 + 1) * 3 + 1
    # anchor slot 1 of mask [0, 1, 2] is anchor 1 = (23, 27); stride 16 on a 4x6 grid.
    cx, cy = (1 + 0.5) / 6 * 96, (2 + 0.75) / 4 * 64
    w, h = 2 * 23, 27
    np.testing.assert_allclose(boxes[0, best], [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], rtol=1e-5)
    assert float(obj[0, best]) == pytest.approx(1 / (1 + np.exp(-8)))
    np.testing.assert_allclose(cls[0, best], 1 / (1 + np.exp([8.0, -8.0])), rtol=1e-5)

    ((b, s, c),) = nms(boxes, obj, cls, score_threshold=0.5)
    assert c.tolist() == [1] and s[0] == pytest.approx(float(obj[0, best] * cls[0, best, 1]))
    np.testing.assert_allclose(b[0], boxes[0, best], rtol=1e-5)


def test_postprocess_undoes_the_letterbox() -> None:
    outputs = _one_confident_anchor()
    boxes, obj, _ = decode_outputs(outputs, TINY_ANCHORS, masks_for("tiny"), C, (64, 96))
    expected = undo_letterbox(boxes[0, int(np.argmax(obj[0]))], (200, 150), (64, 96))
    ((b, _, _),) = postprocess(outputs, TINY_ANCHORS, masks_for("tiny"), C, (64, 96), [(200, 150)], score_threshold=0.5)
    np.testing.assert_allclose(b[0], expected, rtol=1e-5)


@pytest.mark.parametrize(
    ("image_hw", "input_hw"), [((480, 640), (416, 416)), ((333, 101), (96, 160)), ((64, 64), (64, 64))]
)
def test_undo_letterbox_round_trips(image_hw: tuple[int, int], input_hw: tuple[int, int]) -> None:
    h, w = image_hw
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, [w * 0.5, h * 0.5], (20, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(1, [w * 0.5, h * 0.5], (20, 2))], axis=1).astype(np.float32)
    inside = letterbox_boxes(boxes, image_hw, input_hw)
    assert inside.min() >= 0 and (inside[:, [0, 2]] <= input_hw[1] + 1e-3).all()
    assert (inside[:, [1, 3]] <= input_hw[0] + 1e-3).all()
    np.testing.assert_allclose(undo_letterbox(inside, image_hw, input_hw), boxes, rtol=1e-5, atol=1e-3)


def test_letterbox_geometry_centres_with_floor_padding() -> None:
    # 100 x 50 (w x h) into 64 x 64: resized to 64 x 32, padded 16 on top.
    assert letterbox_geometry((50, 100), (64, 64)) == (64, 32, 0, 16)
    # 3 spare columns: 1 left, 2 right.
    assert letterbox_geometry((64, 61), (64, 64)) == (61, 64, 1, 0)
    np.testing.assert_allclose(undo_letterbox([[0, 0, 64, 64]], (64, 61), (64, 64)), [[0, 0, 61, 64]])
    # Integer arithmetic as in the pipeline: 184 x 92 into 416 -> 416 x 208, where int(92 * (416 / 184)) gives 207.
    assert letterbox_geometry((92, 184), (416, 416)) == (416, 208, 0, 104)
    assert letterbox_geometry((821, 821), (416, 416)) == (416, 416, 0, 0)
    with pytest.raises(ConfigError):
        letterbox_geometry((0, 10), (64, 64))


@pytest.mark.parametrize("image_hw", [(427, 640), (333, 101), (50, 100), (97, 97)])
def test_undo_letterbox_inverts_the_input_pipeline(image_hw: tuple[int, int]) -> None:
    augment = pytest.importorskip("oidyolo.yolo.augment")
    boxes = np.array([[3, 5, 40, 30, 1], [10.5, 2, 90, 44.25, 0]], np.float32)
    boxes[:, [0, 2]] *= image_hw[1] / 100
    boxes[:, [1, 3]] *= image_hw[0] / 50
    image = tf.zeros((*image_hw, 3), tf.uint8)
    _, inside = augment.letterbox_tf(image, tf.constant(boxes), (96, 160))
    np.testing.assert_allclose(undo_letterbox(inside.numpy()[:, :4], image_hw, (96, 160)), boxes[:, :4], atol=1e-3)
    np.testing.assert_allclose(letterbox_boxes(boxes[:, :4], image_hw, (96, 160)), inside.numpy()[:, :4], atol=1e-3)


def test_nms_removes_duplicates_per_class_only() -> None:
    boxes = np.array([[[10, 10, 50, 50], [12, 11, 51, 50], [10, 10, 50, 50], [100, 100, 140, 130]]], np.float32)
    obj = np.array([[0.9, 0.8, 0.85, 0.2]], np.float32)
    cls = np.array([[[1, 0], [1, 0], [0, 1], [1, 0]]], np.float32)
    ((b, s, c),) = nms(boxes, obj, cls, score_threshold=0.3, iou_threshold=0.5)
    # box 1 duplicates box 0 (same class) and goes; box 2 is the same place but another class and stays;
    # box 3 scores 0.2 < 0.3.
    assert c.tolist() == [0, 1] and s.tolist() == pytest.approx([0.9, 0.85])
    np.testing.assert_array_equal(b, boxes[0, [0, 2]])
    ((b, s, c),) = nms(boxes, obj, cls, score_threshold=0.1, iou_threshold=0.5, max_detections=2)
    assert len(b) == 2
    ((b, _, _),) = nms(boxes, obj, cls, score_threshold=0.1, iou_threshold=0.99)
    assert len(b) == 4  # nothing overlaps that much


def test_nms_batches_and_empty_results() -> None:
    boxes = np.tile(np.array([[[0, 0, 10, 10]]], np.float32), (2, 1, 1))
    obj = np.array([[0.9], [0.05]], np.float32)
    out = nms(boxes, obj, np.ones((2, 1, 1), np.float32), score_threshold=0.5)
    assert [len(b) for b, _, _ in out] == [1, 0]
    assert out[1][0].shape == (0, 4) and out[1][2].dtype == np.int32
