"""From raw YOLO outputs to boxes: decoding, letterbox undo and per-class NMS.

Raw output ``(B, gh, gw, 3 * (5 + C))`` holds, per cell and anchor, ``tx, ty, tw, th, to, class logits``. As in the
paper and keras-yolo3: centre = ``(sigmoid(t_xy) + cell) / grid``, size = ``exp(t_wh) * anchor``, objectness and
class probabilities are independent sigmoids, and a detection's score is objectness x class probability.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from oidyolo.errors import ConfigError
from oidyolo.yolo.augment import letterbox_size
from oidyolo.yolo.head import ANCHORS_PER_OUTPUT

# exp() overflows float32 above ~88; no real box is e^10 anchors wide, so clip before exp where only values are used.
MAX_LOG_WH = 10.0


def cell_grid(grid_h: tf.Tensor | int, grid_w: tf.Tensor | int) -> tf.Tensor:
    """``(gh, gw, 1, 2)`` float32 holding each cell's ``(column, row)``."""
    rows, cols = tf.meshgrid(tf.range(grid_h), tf.range(grid_w), indexing="ij")
    return tf.cast(tf.stack([cols, rows], axis=-1)[:, :, None, :], tf.float32)


def split_anchors(raw: tf.Tensor, num_classes: int) -> tf.Tensor:
    """``(B, gh, gw, 3 * (5 + C))`` -> float32 ``(B, gh, gw, 3, 5 + C)``."""
    raw = tf.cast(raw, tf.float32)
    shape = tf.shape(raw)
    return tf.reshape(raw, [shape[0], shape[1], shape[2], ANCHORS_PER_OUTPUT, 5 + num_classes])


def decode_layer(raw: tf.Tensor, layer_anchors: tf.Tensor, input_wh: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Box centres and sizes, normalised to 0..1 of the input, from one layer's ``(B, gh, gw, 3, 5 + C)``.

    ``layer_anchors`` ``(3, 2)`` and ``input_wh`` ``(2,)`` are in input pixels.
    """
    shape = tf.shape(raw)
    grid_wh = tf.cast(tf.stack([shape[2], shape[1]]), tf.float32)
    xy = (tf.sigmoid(raw[..., 0:2]) + cell_grid(shape[1], shape[2])) / grid_wh
    wh = tf.exp(tf.minimum(raw[..., 2:4], MAX_LOG_WH)) * layer_anchors / input_wh
    return xy, wh


def box_iou(a: tf.Tensor, b: tf.Tensor) -> tf.Tensor:
    """Pairwise IoU of x1y1x2y2 boxes ``(..., N, 4)`` and ``(..., M, 4)`` -> ``(..., N, M)``; 0 where undefined."""
    a, b = a[..., :, None, :], b[..., None, :, :]
    inter_wh = tf.maximum(tf.minimum(a[..., 2:4], b[..., 2:4]) - tf.maximum(a[..., 0:2], b[..., 0:2]), 0.0)
    inter = inter_wh[..., 0] * inter_wh[..., 1]
    area_a = tf.maximum(a[..., 2] - a[..., 0], 0.0) * tf.maximum(a[..., 3] - a[..., 1], 0.0)
    area_b = tf.maximum(b[..., 2] - b[..., 0], 0.0) * tf.maximum(b[..., 3] - b[..., 1], 0.0)
    return tf.math.divide_no_nan(inter, area_a + area_b - inter)


def _check_layers(outputs: Sequence[tf.Tensor], anchors: np.ndarray, masks: Sequence[Sequence[int]]) -> np.ndarray:
    anchors = np.asarray(anchors, dtype=np.float32)
    if anchors.ndim != 2 or anchors.shape[1] != 2:
        raise ConfigError(f"anchors must have shape (k, 2), got {anchors.shape}")
    if len(outputs) != len(masks):
        raise ConfigError(f"{len(outputs)} model outputs but {len(masks)} anchor masks")
    if any(len(m) != ANCHORS_PER_OUTPUT for m in masks) or max(max(m) for m in masks) >= len(anchors):
        raise ConfigError(f"anchor masks {masks} do not fit {len(anchors)} anchors with 3 per output")
    return anchors


def decode_outputs(
    outputs: Sequence[tf.Tensor | np.ndarray],
    anchors: np.ndarray,
    masks: Sequence[Sequence[int]],
    num_classes: int,
    input_shape: tuple[int, int],
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Raw outputs -> ``boxes (B, N, 4)`` x1y1x2y2 in input pixels, ``objectness (B, N)``, ``class_probs (B, N, C)``.

    ``input_shape`` is the network input ``(height, width)``. N runs over layers (in output order), then rows,
    columns and the 3 anchors of each cell. All float32 tensors.
    """
    anchors = _check_layers(outputs, anchors, masks)
    in_h, in_w = input_shape
    input_wh = tf.constant([in_w, in_h], tf.float32)
    all_boxes, all_obj, all_cls = [], [], []
    for raw, mask in zip(outputs, masks, strict=True):
        raw = split_anchors(raw, num_classes)
        xy, wh = decode_layer(raw, tf.constant(anchors[list(mask)]), input_wh)
        xy, wh = xy * input_wh, wh * input_wh
        boxes = tf.concat([xy - wh / 2, xy + wh / 2], axis=-1)
        batch = tf.shape(raw)[0]
        all_boxes.append(tf.reshape(boxes, [batch, -1, 4]))
        all_obj.append(tf.reshape(tf.sigmoid(raw[..., 4]), [batch, -1]))
        all_cls.append(tf.reshape(tf.sigmoid(raw[..., 5:]), [batch, -1, num_classes]))
    return tf.concat(all_boxes, 1), tf.concat(all_obj, 1), tf.concat(all_cls, 1)


def letterbox_geometry(image_hw: tuple[int, int], input_hw: tuple[int, int]) -> tuple[int, int, int, int]:
    """``(new_w, new_h, dx, dy)`` of the letterbox that fits an image of ``image_hw`` into ``input_hw``.

    The input pipeline's rule (``oidyolo.yolo.augment``, keras-yolo3's): scale by ``min(in_w / w, in_h / h)`` in
    integer arithmetic (the bound side fills the input exactly, the other is floored), centre the image, and split
    the padding with the odd pixel on the right/bottom (``dx = (in_w - new_w) // 2``). A point maps as
    ``x_in = x * new_w / w + dx``.
    """
    h, w = (int(v) for v in image_hw)
    in_h, in_w = (int(v) for v in input_hw)
    if h <= 0 or w <= 0:
        raise ConfigError(f"image size must be positive, got {h}x{w} (h x w)")
    return letterbox_size((h, w), (in_h, in_w))  # the pipeline's own rule, so the two can never disagree


def _letterbox_affine(image_hw: tuple[int, int], input_hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    new_w, new_h, dx, dy = letterbox_geometry(image_hw, input_hw)
    h, w = image_hw
    scale = np.array([new_w / w, new_h / h] * 2, dtype=np.float32)
    return scale, np.array([dx, dy, dx, dy], dtype=np.float32)


def letterbox_boxes(boxes: np.ndarray, image_hw: tuple[int, int], input_hw: tuple[int, int]) -> np.ndarray:
    """x1y1x2y2 boxes ``(..., 4)`` in original image pixels -> letterboxed input pixels (inverse of undo_letterbox)."""
    scale, offset = _letterbox_affine(image_hw, input_hw)
    return np.asarray(boxes, dtype=np.float32) * scale + offset


def undo_letterbox(
    boxes: np.ndarray | tf.Tensor, image_hw: tuple[int, int], input_hw: tuple[int, int], *, clip: bool = True
) -> np.ndarray:
    """x1y1x2y2 boxes ``(..., 4)`` in letterboxed input pixels -> original image pixels, clipped to the image."""
    scale, offset = _letterbox_affine(image_hw, input_hw)
    out = (np.asarray(boxes, dtype=np.float32) - offset) / scale
    if clip:
        h, w = image_hw
        out = np.clip(out, 0, np.array([w, h, w, h], dtype=np.float32))
    return out


def nms(
    boxes: tf.Tensor | np.ndarray,
    objectness: tf.Tensor | np.ndarray,
    class_probs: tf.Tensor | np.ndarray,
    *,
    score_threshold: float = 0.3,
    iou_threshold: float = 0.45,
    max_detections: int = 100,
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per-class NMS with score = objectness x class probability (defaults: keras-yolo3's yolo.py).

    Inputs as returned by :func:`decode_outputs`. Returns, per image, ``(boxes (K, 4) float32, scores (K,) float32,
    classes (K,) int32)`` sorted by descending score, ``K <= max_detections``. A box may be kept for several
    classes, as in keras-yolo3.
    """
    if not 0.0 <= iou_threshold <= 1.0:
        raise ConfigError(f"iou_threshold must be in [0, 1], got {iou_threshold}")
    if max_detections < 1:
        raise ConfigError(f"max_detections must be >= 1, got {max_detections}")
    boxes = tf.convert_to_tensor(boxes, tf.float32)
    scores = tf.convert_to_tensor(objectness, tf.float32)[..., None] * tf.convert_to_tensor(class_probs, tf.float32)
    # combined_non_max_suppression only uses coordinate pairs consistently, so x1y1x2y2 works as y1x1y2x2 does;
    # clip_boxes=False because the boxes are in pixels, not 0..1.
    nmsed_boxes, nmsed_scores, nmsed_classes, valid = tf.image.combined_non_max_suppression(
        boxes[:, :, None, :],
        scores,
        max_output_size_per_class=max_detections,
        max_total_size=max_detections,
        iou_threshold=iou_threshold,
        score_threshold=score_threshold,
        clip_boxes=False,
    )
    out = []
    for b, s, c, n in zip(nmsed_boxes.numpy(), nmsed_scores.numpy(), nmsed_classes.numpy(), valid.numpy(), strict=True):
        out.append((b[:n].astype(np.float32), s[:n].astype(np.float32), c[:n].astype(np.int32)))
    return out


def postprocess(
    outputs: Sequence[tf.Tensor | np.ndarray],
    anchors: np.ndarray,
    masks: Sequence[Sequence[int]],
    num_classes: int,
    input_shape: tuple[int, int],
    image_hws: Sequence[tuple[int, int]] | None = None,
    **nms_kwargs: Any,
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """decode -> NMS -> (optionally) undo the letterbox of each image (``image_hws`` = original ``(h, w)``)."""
    dets = nms(*decode_outputs(outputs, anchors, masks, num_classes, input_shape), **nms_kwargs)
    if image_hws is None:
        return dets
    if len(image_hws) != len(dets):
        raise ConfigError(f"{len(image_hws)} image sizes for a batch of {len(dets)}")
    return [(undo_letterbox(b, hw, input_shape), s, c) for (b, s, c), hw in zip(dets, image_hws, strict=True)]
