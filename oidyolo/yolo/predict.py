"""Inference on image files: letterbox, run the body, decode, per-class NMS, map back to the image's pixels.

Used by evaluation (low score threshold, the whole validation set) and by ``python -m oidyolo detect``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf

from oidyolo.data.imagecheck import MAX_PIXELS, header_size
from oidyolo.errors import DataFormatError
from oidyolo.yolo.anchor_masks import masks_for
from oidyolo.yolo.augment import letterbox_tf
from oidyolo.yolo.decode import postprocess
from oidyolo.yolo.modelspec import ModelSpec


@dataclass(frozen=True)
class Detections:
    path: str
    width: int
    height: int
    boxes: np.ndarray  # (K, 4) x1y1x2y2 in the image's pixels
    scores: np.ndarray  # (K,)
    classes: np.ndarray  # (K,) int

    def to_json(self, class_names: Sequence[str]) -> dict:
        return {
            "image": self.path,
            "width": self.width,
            "height": self.height,
            "detections": [
                {
                    "class": class_names[c],
                    "class_id": int(c),
                    "score": round(float(s), 4),
                    "box": [round(float(v), 1) for v in b],
                }
                for b, s, c in zip(self.boxes, self.scores, self.classes, strict=True)
            ],
        }


def _load(path: tf.Tensor, input_hw: tuple[int, int]) -> tuple[tf.Tensor, tf.Tensor]:
    image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
    image = tf.ensure_shape(image, [None, None, 3])
    letterboxed, _ = letterbox_tf(image, tf.zeros((0, 5), tf.float32), input_hw)
    return letterboxed, tf.shape(image)[:2]


def image_files(target: str | Path) -> list[str]:
    """An image file, or the JPEG/PNG files of a directory (sorted)."""
    target = Path(target)
    if target.is_dir():
        files = sorted(str(p) for p in target.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
        if not files:
            raise DataFormatError(f"{target}: no .jpg/.jpeg/.png images in this directory")
        return files
    if not target.is_file():
        raise DataFormatError(f"{target}: no such image or directory")
    return [str(target)]


def _check_readable(paths: Sequence[str]) -> None:
    for p in paths:
        width, height = header_size(p)
        if width * height > MAX_PIXELS:
            raise DataFormatError(f"{p}: {width}x{height} exceeds the {MAX_PIXELS:,}-pixel limit")


def detect(
    body,
    spec: ModelSpec,
    paths: Sequence[str],
    *,
    batch_size: int = 8,
    score_threshold: float = 0.3,
    iou_threshold: float = 0.45,
    max_detections: int = 100,
) -> Iterator[Detections]:
    """Detections for each image, in input order."""
    _check_readable(paths)
    input_hw = tuple(spec.input_size)
    ds = tf.data.Dataset.from_tensor_slices(list(paths))
    ds = ds.map(lambda p: _load(p, input_hw), num_parallel_calls=tf.data.AUTOTUNE).batch(batch_size).prefetch(2)
    masks = masks_for(spec.variant)
    i = 0
    for images, hws in ds:
        outputs = body(images, training=False)
        image_hws = [tuple(int(v) for v in hw) for hw in hws.numpy()]
        dets = postprocess(
            outputs, spec.anchor_array, masks, spec.num_classes, input_hw, image_hws,
            score_threshold=score_threshold, iou_threshold=iou_threshold, max_detections=max_detections,
        )  # fmt: skip
        for (boxes, scores, classes), (h, w) in zip(dets, image_hws, strict=True):
            yield Detections(paths[i], w, h, boxes, scores, classes)
            i += 1


def draw(path: str, dets: Detections, class_names: Sequence[str], out_path: str | Path, truth=None) -> None:
    """Save the image with labelled predicted boxes (and, if given, true boxes as thin green frames)."""
    from PIL import Image, ImageDraw

    palette = [(230, 25, 75), (60, 120, 216), (255, 165, 0), (145, 30, 180), (70, 240, 240), (240, 50, 230)]
    with Image.open(path) as im:
        canvas = im.convert("RGB")
    pen = ImageDraw.Draw(canvas)
    if truth is not None:
        for x1, y1, x2, y2, _ in truth:
            pen.rectangle([x1, y1, x2, y2], outline=(0, 200, 0), width=1)
    for box, score, cls in zip(dets.boxes, dets.scores, dets.classes, strict=True):
        color = palette[int(cls) % len(palette)]
        x1, y1, x2, y2 = (float(v) for v in box)
        pen.rectangle([x1, y1, x2, y2], outline=color, width=2)
        label = f"{class_names[int(cls)]} {score:.2f}"
        tx, ty = x1, max(0.0, y1 - 11)
        pen.rectangle(pen.textbbox((tx, ty), label), fill=color)
        pen.text((tx, ty), label, fill=(255, 255, 255))
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(out_path, quality=90)
