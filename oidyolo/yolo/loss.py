"""The YOLOv3 loss with keras-yolo3's semantics, vectorised over the batch and the padded ground-truth boxes.

Per output layer, with ``obj`` the target objectness and ``scale = 2 - w * h`` (small boxes weigh more):

* xy: ``obj * scale * BCE_logits(cx * grid - cell, t_xy)``
* wh: ``obj * scale * 0.5 * (log(w / anchor * input) - t_wh)^2`` (0 where the target size is 0)
* conf: ``obj * BCE(1, t_o) + (1 - obj) * BCE(0, t_o) * ignore``, where ``ignore`` is 1 unless the box predicted
  there overlaps some ground-truth box of the image with IoU >= ``ignore_thresh``
* class: ``obj * BCE_logits(one_hot, t_cls)`` (independent sigmoids)

Each term is summed over cells, anchors and channels and divided by the batch size; layers are added. Dividing by
the *batch* (not by the number of boxes) is keras-yolo3's normalisation: the loss scale grows with boxes per image.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import tensorflow as tf

from oidyolo.yolo.decode import box_iou, cell_grid, decode_layer, split_anchors

LOSS_COMPONENTS = ("xy_loss", "wh_loss", "conf_loss", "class_loss")


def _bce(labels: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
    return tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits)


IGNORE_CHUNK = 10  # ground-truth boxes per IoU block of the ignore mask


def ignore_mask(
    pred_xy: tf.Tensor, pred_wh: tf.Tensor, gt_boxes: tf.Tensor, ignore_thresh: float, chunk: int = IGNORE_CHUNK
) -> tf.Tensor:
    """``(B, gh, gw, 3, 1)``: 1 where the predicted box's best IoU with the image's GT boxes is below the threshold.

    ``pred_xy``/``pred_wh`` ``(B, gh, gw, 3, 2)`` and ``gt_boxes`` ``(B, M, 4)`` x1y1x2y2 are all normalised to the
    input size. Zero-size rows (padding) have IoU 0; an image without boxes ignores nothing.

    Memory: the IoU of every prediction with every box is ``B x P x M`` floats, times the few temporaries of
    :func:`box_iou` (full YOLOv3 at 416, batch 32, 100 boxes: P = 10,647, over 1 GB). So the boxes go ``chunk`` at
    a time through a sequential loop keeping the running maximum, and no gradient is recorded (the mask is a
    constant of the loss), which bounds the extra memory to ``B x P x chunk``.
    """
    shape = tf.shape(pred_xy)
    pred_xy, pred_wh, gt_boxes = (tf.stop_gradient(t) for t in (pred_xy, pred_wh, gt_boxes))
    pred = tf.concat([pred_xy - pred_wh / 2, pred_xy + pred_wh / 2], axis=-1)
    pred = tf.reshape(pred, [shape[0], -1, 4])
    m = tf.shape(gt_boxes)[1]
    blocks = (m + chunk - 1) // chunk
    gt = tf.pad(gt_boxes, [[0, 0], [0, blocks * chunk - m], [0, 0]])  # zero-size padding: IoU 0

    def step(i, best):
        block = gt[:, i * chunk : (i + 1) * chunk]
        return i + 1, tf.maximum(best, tf.reduce_max(box_iou(pred, block), axis=-1))

    # Starting from 0 (not -inf) means M == 0 gives 0.
    _, best = tf.while_loop(
        lambda i, _: i < blocks, step, (tf.constant(0), tf.zeros(tf.shape(pred)[:2])), parallel_iterations=1
    )
    mask = tf.cast(best < ignore_thresh, tf.float32)
    return tf.reshape(mask, tf.concat([shape[:4], [1]], axis=0))


def yolo_loss(
    outputs: Sequence[tf.Tensor],
    targets: Mapping[str, tf.Tensor],
    anchors: np.ndarray,
    masks: Sequence[Sequence[int]],
    num_classes: int,
    ignore_thresh: float = 0.5,
) -> dict[str, tf.Tensor]:
    """Loss terms for raw ``outputs`` (stride 32 first) and a ``targets`` dict (``boxes``, ``grid_0``, ...).

    Returns float32 scalars ``{"xy_loss", "wh_loss", "conf_loss", "class_loss", "loss"}``, ``loss`` their sum; all
    are per-image sums averaged over the batch. The input size is taken from the first output (stride 32).
    """
    if len(outputs) != len(masks):
        raise ValueError(f"{len(outputs)} model outputs but {len(masks)} anchor masks")
    missing = [k for k in ("boxes", *(f"grid_{i}" for i in range(len(outputs)))) if k not in targets]
    if missing:
        raise ValueError(f"targets lack {missing}; got keys {sorted(targets)}")
    anchors = np.asarray(anchors, dtype=np.float32)
    first = tf.shape(outputs[0])
    input_wh = tf.cast(tf.stack([first[2], first[1]]) * 32, tf.float32)
    batch = tf.maximum(tf.cast(first[0], tf.float32), 1.0)
    gt = tf.cast(targets["boxes"], tf.float32)[..., :4] / tf.concat([input_wh, input_wh], axis=0)

    terms = dict.fromkeys(LOSS_COMPONENTS, tf.constant(0.0))
    for layer, (output, mask) in enumerate(zip(outputs, masks, strict=True)):
        raw = split_anchors(output, num_classes)
        y_true = tf.cast(targets[f"grid_{layer}"], tf.float32)
        layer_anchors = tf.constant(anchors[list(mask)])
        shape = tf.shape(raw)
        grid_wh = tf.cast(tf.stack([shape[2], shape[1]]), tf.float32)

        obj = y_true[..., 4:5]
        true_xy, true_wh = y_true[..., 0:2], y_true[..., 2:4]
        raw_true_xy = true_xy * grid_wh - cell_grid(shape[1], shape[2])
        ratio = true_wh * input_wh / layer_anchors
        has_size = (ratio > 0) & (obj > 0)
        # log(0) guard: zero-size (or absent) targets regress nothing.
        raw_true_wh = tf.where(has_size, tf.math.log(tf.where(has_size, ratio, 1.0)), 0.0)
        box_scale = 2.0 - true_wh[..., 0:1] * true_wh[..., 1:2]

        pred_xy, pred_wh = decode_layer(raw, layer_anchors, input_wh)
        ignore = ignore_mask(pred_xy, pred_wh, gt, ignore_thresh)

        xy = obj * box_scale * _bce(raw_true_xy, raw[..., 0:2])
        wh = obj * box_scale * 0.5 * tf.square(raw_true_wh - raw[..., 2:4])
        conf_bce = _bce(obj, raw[..., 4:5])
        conf = obj * conf_bce + (1.0 - obj) * conf_bce * ignore
        cls = obj * _bce(y_true[..., 5:], raw[..., 5:])
        for name, value in zip(LOSS_COMPONENTS, (xy, wh, conf, cls), strict=True):
            terms[name] = terms[name] + tf.reduce_sum(value) / batch
    terms["loss"] = tf.add_n([terms[name] for name in LOSS_COMPONENTS])
    return terms
