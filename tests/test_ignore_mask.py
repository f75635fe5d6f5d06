"""The chunked ignore mask equals the IoU of every prediction with every box, computed independently in numpy."""

from __future__ import annotations

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from oidyolo.yolo.loss import ignore_mask  # noqa: E402


def _numpy_best_iou(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """(B, P, 4) x (B, M, 4) x1y1x2y2 -> (B, P) best IoU, by explicit loops over boxes."""
    best = np.zeros(pred.shape[:2])
    for b in range(pred.shape[0]):
        for j in range(gt.shape[1]):
            g = gt[b, j]
            area_g = max(g[2] - g[0], 0) * max(g[3] - g[1], 0)
            iw = np.clip(np.minimum(pred[b, :, 2], g[2]) - np.maximum(pred[b, :, 0], g[0]), 0, None)
            ih = np.clip(np.minimum(pred[b, :, 3], g[3]) - np.maximum(pred[b, :, 1], g[1]), 0, None)
            inter = iw * ih
            area_p = (pred[b, :, 2] - pred[b, :, 0]) * (pred[b, :, 3] - pred[b, :, 1])
            union = area_p + area_g - inter
            iou = np.where(union > 0, inter / np.where(union > 0, union, 1), 0)
            best[b] = np.maximum(best[b], iou)
    return best


@pytest.mark.parametrize(("boxes", "chunk"), [(0, 10), (7, 10), (23, 10), (23, 1), (23, 100)])
def test_chunked_ignore_mask_matches_numpy(boxes, chunk):
    rng = np.random.default_rng(boxes * 100 + chunk)
    xy = rng.random((2, 4, 5, 3, 2)).astype(np.float32)
    wh = rng.uniform(0.05, 0.5, (2, 4, 5, 3, 2)).astype(np.float32)
    c = rng.random((2, boxes, 2)).astype(np.float32)
    s = rng.uniform(0.05, 0.5, (2, boxes, 2)).astype(np.float32)
    gt = np.concatenate([c - s / 2, c + s / 2], axis=-1)
    gt[:, boxes // 2 :] = 0  # padding rows, as the pipeline writes them
    pred = np.concatenate([xy - wh / 2, xy + wh / 2], axis=-1).reshape(2, -1, 4)
    for thresh in (0.1, 0.3):
        want = (_numpy_best_iou(pred, gt) < thresh).astype(np.float32).reshape(2, 4, 5, 3, 1)
        got = ignore_mask(tf.constant(xy), tf.constant(wh), tf.constant(gt), thresh, chunk=chunk).numpy()
        np.testing.assert_array_equal(got, want)
    if boxes // 2:
        assert got.min() == 0  # some predictions do overlap a box: the comparison is not all ones


def test_ignore_mask_records_no_gradient():
    xy = tf.Variable(tf.random.uniform((1, 2, 2, 3, 2)))
    wh = tf.constant(tf.fill((1, 2, 2, 3, 2), 0.3))
    gt = tf.constant([[[0.2, 0.2, 0.6, 0.6]]])
    with tf.GradientTape() as tape:
        mask = ignore_mask(xy, wh, gt, 0.5)
        total = tf.reduce_sum(mask * xy[..., :1])
    grad = tape.gradient(total, xy).numpy()
    np.testing.assert_array_equal(grad[..., 0:1], mask.numpy())  # d(mask * x)/dx = mask: the mask is a constant
