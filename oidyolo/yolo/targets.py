"""YOLOv3 training targets: boxes in input pixels -> one ``(gh, gw, 3, 5 + C)`` grid per output layer.

Each box goes to the single best of all anchors by centred wh-IoU (keras-yolo3's ``preprocess_true_boxes``); the
anchor picks the layer and the slot in that layer's mask; the cell is ``floor(c * grid)`` clipped to the grid. The
slot holds ``[cx, cy, w, h]`` normalised by the input size, ``1`` and the one-hot class. Where two boxes claim the
same cell and slot the later one wins, as in keras-yolo3's loop; the TF version resolves that explicitly so the
result does not depend on scatter order.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from oidyolo.errors import ConfigError
from oidyolo.variants import variant_for_outputs


def _strides(masks: Sequence[Sequence[int]]) -> tuple[int, ...]:
    return variant_for_outputs(len(masks)).strides


def grid_shapes(input_shape: tuple[int, int], masks: Sequence[Sequence[int]]) -> list[tuple[int, int]]:
    """``(grid_h, grid_w)`` per output layer; the input must be a multiple of 32."""
    h, w = input_shape
    if h % 32 or w % 32 or h <= 0 or w <= 0:
        raise ConfigError(f"input_shape {input_shape} must be positive multiples of 32")
    return [(h // s, w // s) for s in _strides(masks)]


def _anchor_lookup(masks: Sequence[Sequence[int]], num_anchors: int) -> tuple[np.ndarray, np.ndarray]:
    """Per anchor index: its layer and its slot within the layer's mask."""
    layer = np.full(num_anchors, -1, dtype=np.int32)
    slot = np.full(num_anchors, -1, dtype=np.int32)
    for li, mask in enumerate(masks):
        for si, a in enumerate(mask):
            layer[a], slot[a] = li, si
    if (layer < 0).any():
        raise ConfigError(f"anchor masks {masks} do not cover all {num_anchors} anchors")
    return layer, slot


def encode_targets_numpy(
    boxes: np.ndarray,
    anchors: np.ndarray,
    masks: Sequence[Sequence[int]],
    num_classes: int,
    input_shape: tuple[int, int],
) -> dict[str, np.ndarray]:
    """Reference encoder for one image (a plain loop): ``boxes`` ``(N, 5)`` x1, y1, x2, y2, class in input pixels.

    Rows with zero width are padding and skipped. Returns ``{"grid_0": ..., "grid_1": ..., ["grid_2"]}``.
    """
    h, w = input_shape
    anchors = np.asarray(anchors, dtype=np.float32)
    layer_of, slot_of = _anchor_lookup(masks, len(anchors))
    strides = _strides(masks)
    shapes = grid_shapes(input_shape, masks)
    grids = [np.zeros((gh, gw, len(m), 5 + num_classes), np.float32) for (gh, gw), m in zip(shapes, masks, strict=True)]
    # float32 throughout, like the TF version, so near-ties in the anchor IoU resolve the same way.
    for x1, y1, x2, y2, cls in np.asarray(boxes, dtype=np.float32):
        bw, bh = x2 - x1, y2 - y1
        if bw <= 0 or bh <= 0:
            continue
        inter = np.minimum(bw, anchors[:, 0]) * np.minimum(bh, anchors[:, 1])
        best = int(np.argmax(inter / (bw * bh + anchors[:, 0] * anchors[:, 1] - inter)))
        li, slot = layer_of[best], slot_of[best]
        (gh, gw), stride = shapes[li], strides[li]
        cx, cy = (x1 + x2) / np.float32(2), (y1 + y2) / np.float32(2)
        # floor(cx / w * gw) == floor(cx / stride); the latter is exact for power-of-two strides.
        i = min(max(int(np.floor(cx / stride)), 0), gw - 1)
        j = min(max(int(np.floor(cy / stride)), 0), gh - 1)
        grids[li][j, i, slot] = 0
        grids[li][j, i, slot, :4] = [cx / w, cy / h, bw / w, bh / h]
        grids[li][j, i, slot, 4] = 1
        grids[li][j, i, slot, 5 + int(cls)] = 1
    return {f"grid_{li}": g for li, g in enumerate(grids)}


def encode_targets(
    boxes: tf.Tensor,
    anchors: np.ndarray,
    masks: Sequence[Sequence[int]],
    num_classes: int,
    input_shape: tuple[int, int],
) -> dict[str, tf.Tensor]:
    """Vectorised TF encoder for one image, same result as :func:`encode_targets_numpy`.

    ``boxes`` ``(N, 5)`` float32 with N dynamic; all rows must be real boxes (positive width and height).
    """
    h, w = input_shape
    anchors = np.asarray(anchors, dtype=np.float32)
    layer_lut, slot_lut = _anchor_lookup(masks, len(anchors))
    shapes = grid_shapes(input_shape, masks)

    boxes = tf.convert_to_tensor(boxes, tf.float32)
    xy1, xy2, cls = boxes[:, 0:2], boxes[:, 2:4], tf.cast(boxes[:, 4], tf.int32)
    wh = xy2 - xy1
    centre_px = (xy1 + xy2) / 2.0
    size = tf.constant([w, h], tf.float32)

    inter = tf.minimum(wh[:, None, 0], anchors[None, :, 0]) * tf.minimum(wh[:, None, 1], anchors[None, :, 1])
    union = (wh[:, None, 0] * wh[:, None, 1]) + (anchors[None, :, 0] * anchors[None, :, 1]) - inter
    best = tf.argmax(inter / union, axis=1, output_type=tf.int32)
    layer = tf.gather(layer_lut, best)
    slot = tf.gather(slot_lut, best)

    grid_hw = tf.gather(tf.constant(shapes, tf.int32), layer)  # (N, 2) as (gh, gw)
    stride = tf.gather(tf.constant(_strides(masks), tf.float32), layer)
    cell = tf.cast(tf.floor(centre_px / stride[:, None]), tf.int32)  # == floor(c / size * grid), exactly
    col = tf.clip_by_value(cell[:, 0], 0, grid_hw[:, 1] - 1)
    row = tf.clip_by_value(cell[:, 1], 0, grid_hw[:, 0] - 1)

    # Later box wins a shared (layer, row, col, slot): keep a box only if no later box has the same key.
    key = ((layer * 1024 + row) * 1024 + col) * 4 + slot
    n = tf.shape(key)[0]
    same = tf.equal(key[:, None], key[None, :])
    later = tf.range(n)[None, :] > tf.range(n)[:, None]
    keep = tf.logical_not(tf.reduce_any(same & later, axis=1))

    values = tf.concat([centre_px / size, wh / size, tf.ones_like(wh[:, :1]), tf.one_hot(cls, num_classes)], axis=1)
    out = {}
    for li, ((gh, gw), mask) in enumerate(zip(shapes, masks, strict=True)):
        sel = keep & tf.equal(layer, li)
        idx = tf.stack([tf.boolean_mask(row, sel), tf.boolean_mask(col, sel), tf.boolean_mask(slot, sel)], axis=1)
        grid = tf.scatter_nd(idx, tf.boolean_mask(values, sel), [gh, gw, len(mask), 5 + num_classes])
        out[f"grid_{li}"] = grid
    return out
