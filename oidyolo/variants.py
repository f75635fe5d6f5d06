"""The YOLO variants: one table that the rules, the adapters, the data wing (anchors) and the training wing (model,
loss, targets, darknet import) all read. Plain Python: importing it never loads TensorFlow.

Outputs are ordered stride 32 first, so mask 0 holds the largest anchors (anchors are sorted by area).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from oidyolo.errors import ConfigError

Variant = Literal["full", "tiny"]


@dataclass(frozen=True)
class YoloVariant:
    name: Variant
    masks: tuple[tuple[int, ...], ...]  # anchor indices per output, stride 32 first
    strides: tuple[int, ...]  # output strides, in output order
    ignore_thresh: float  # keras-yolo3's train.py: predictions above this IoU with a box are not "no object"
    coco_anchors: tuple[tuple[int, int], ...]  # darknet's cfg anchors (w, h) at 416, sorted by area
    darknet_cfg: str  # darknet's cfg, shipped in oidyolo/resources
    darknet_weights: str  # darknet's published COCO weights for that cfg
    darknet_partial: str  # darknet's `partial` backbone file, the usual start for custom training
    darknet_convs: int  # conv layers of the body (75 for YOLOv3, 13 for tiny)
    body_name: str  # the Keras model's name

    @property
    def num_anchors(self) -> int:
        return len(self.coco_anchors)

    def coco_anchor_array(self) -> np.ndarray:
        return np.array(self.coco_anchors, dtype=np.float32)


VARIANTS: dict[str, YoloVariant] = {
    "full": YoloVariant(
        name="full",
        masks=((6, 7, 8), (3, 4, 5), (0, 1, 2)),
        strides=(32, 16, 8),
        ignore_thresh=0.5,
        coco_anchors=((10, 13), (16, 30), (33, 23), (30, 61), (62, 45), (59, 119), (116, 90), (156, 198), (373, 326)),
        darknet_cfg="yolov3.cfg",
        darknet_weights="yolov3.weights",
        darknet_partial="darknet53.conv.74",
        darknet_convs=75,
        body_name="yolov3",
    ),
    "tiny": YoloVariant(
        name="tiny",
        masks=((3, 4, 5), (0, 1, 2)),
        strides=(32, 16),
        ignore_thresh=0.7,
        coco_anchors=((10, 14), (23, 27), (37, 58), (81, 82), (135, 169), (344, 319)),
        darknet_cfg="yolov3-tiny.cfg",
        darknet_weights="yolov3-tiny.weights",
        darknet_partial="yolov3-tiny.conv.15",
        darknet_convs=13,
        body_name="yolov3_tiny",
    ),
}


def get_variant(name: str) -> YoloVariant:
    try:
        return VARIANTS[name]
    except (KeyError, TypeError):
        raise ConfigError(f"model variant must be one of {', '.join(map(repr, VARIANTS))}, got {name!r}") from None


def variant_for_anchors(num_anchors: int) -> YoloVariant:
    """The variant an anchors file is for, by its anchor count (9: YOLOv3, 6: tiny)."""
    for v in VARIANTS.values():
        if v.num_anchors == num_anchors:
            return v
    counts = " or ".join(f"{v.num_anchors} ({v.name})" for v in VARIANTS.values())
    raise ConfigError(f"YOLOv3 needs {counts} anchors, got {num_anchors}")


def variant_for_outputs(num_outputs: int) -> YoloVariant:
    """The variant of a body or of a list of masks, by its number of outputs (3: YOLOv3, 2: tiny)."""
    for v in VARIANTS.values():
        if len(v.masks) == num_outputs:
            return v
    counts = " or ".join(f"{len(v.masks)} ({v.name})" for v in VARIANTS.values())
    raise ConfigError(f"a YOLOv3 body has {counts} outputs, got {num_outputs}")
