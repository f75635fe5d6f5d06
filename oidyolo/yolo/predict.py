"""Inference on image and video files: letterbox, run the body, decode, per-class NMS, map back to the image's pixels.

Used by evaluation (low score threshold, the whole validation set) and by ``python -m oidyolo detect``, whose
``--weights`` is a trained/converted ``.weights.h5`` (with ``model.json`` beside it), a darknet ``.weights`` file
(converted once into a cache) or an exported ``.keras`` detector (:func:`load_detector`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf

from oidyolo.data.imagecheck import MAX_PIXELS, header_size
from oidyolo.errors import DataFormatError
from oidyolo.yolo.augment import letterbox_tf
from oidyolo.yolo.decode import postprocess
from oidyolo.yolo.modelspec import ModelSpec, load_body

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv")


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


def load_detector(weights: str | Path, *, variant: str | None = None):
    """``(body, spec)`` from a ``.weights.h5`` (+ ``model.json``), a darknet ``.weights`` or a ``.keras`` export."""
    name = str(weights)
    if not Path(weights).is_file():
        raise DataFormatError(f"{weights}: no such weights file")
    if name.endswith(".keras"):
        from oidyolo.yolo.export import load_keras_detector

        return load_keras_detector(weights)
    if name.endswith(".weights") or ".conv." in Path(name).name:
        from oidyolo.yolo.darknet import cached_conversion

        return load_body(cached_conversion(weights, variant))
    return load_body(weights)


def detect_batch(
    body, spec: ModelSpec, images: tf.Tensor, image_hws: Sequence[tuple[int, int]], **nms_kwargs
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per-image ``(boxes, scores, classes)`` in original pixels for a batch of letterboxed float images."""
    outputs = body(images, training=False)
    return postprocess(
        outputs, spec.anchor_array, spec.mask_list, spec.num_classes, tuple(spec.input_size), image_hws, **nms_kwargs
    )


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
    i = 0
    for images, hws in ds:
        image_hws = [tuple(int(v) for v in hw) for hw in hws.numpy()]
        dets = detect_batch(
            body, spec, images, image_hws,
            score_threshold=score_threshold, iou_threshold=iou_threshold, max_detections=max_detections,
        )  # fmt: skip
        for (boxes, scores, classes), (h, w) in zip(dets, image_hws, strict=True):
            yield Detections(paths[i], w, h, boxes, scores, classes)
            i += 1


def is_video(path: str | Path) -> bool:
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def detect_video(
    body,
    spec: ModelSpec,
    path: str | Path,
    out_video: str | Path,
    out_jsonl: str | Path,
    *,
    batch_size: int = 4,
    score_threshold: float = 0.3,
    iou_threshold: float = 0.45,
    max_detections: int = 100,
    progress_interval: float = 5.0,
) -> int:
    """Annotate a video (read with OpenCV): an ``.mp4``/``.avi`` with drawn boxes plus one JSON line per frame.

    Writes both under temporary names and renames them at the end, so an interrupted run leaves no half file.
    Returns the number of frames.
    """
    import json

    import cv2

    from oidyolo.progress import Progress

    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise DataFormatError(f"{path}: OpenCV cannot open this video")
    fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) or None
    width, height = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    out_video, out_jsonl = Path(out_video), Path(out_jsonl)
    out_video.parent.mkdir(parents=True, exist_ok=True)
    tmp_video = out_video.with_name(f".{out_video.stem}.part{out_video.suffix}")
    tmp_jsonl = out_jsonl.with_name(out_jsonl.name + ".part")
    fourcc = cv2.VideoWriter_fourcc(*("mp4v" if out_video.suffix.lower() == ".mp4" else "MJPG"))
    writer = cv2.VideoWriter(str(tmp_video), fourcc, fps, (width, height))
    if not writer.isOpened():
        cap.release()
        raise DataFormatError(f"{out_video}: OpenCV cannot write this video format")
    progress = Progress(f"video {Path(path).name}", total, unit="frames", interval=progress_interval)
    input_hw = tuple(spec.input_size)
    frame_no = 0
    try:
        with open(tmp_jsonl, "w", encoding="utf-8") as lines:
            while True:
                frames = []
                while len(frames) < batch_size:
                    ok, frame = cap.read()
                    if not ok:
                        break
                    frames.append(frame)
                if not frames:
                    break
                rgb = [tf.convert_to_tensor(f[..., ::-1]) for f in frames]  # OpenCV decodes BGR
                images = tf.stack([letterbox_tf(im, tf.zeros((0, 5), tf.float32), input_hw)[0] for im in rgb])
                hws = [f.shape[:2] for f in frames]
                dets = detect_batch(
                    body, spec, images, hws,
                    score_threshold=score_threshold, iou_threshold=iou_threshold, max_detections=max_detections,
                )  # fmt: skip
                for frame, (boxes, scores, classes) in zip(frames, dets, strict=True):
                    record = Detections(f"{path}#{frame_no}", frame.shape[1], frame.shape[0], boxes, scores, classes)
                    row = {"frame": frame_no, "time": round(frame_no / fps, 3), **record.to_json(spec.classes)}
                    del row["image"]
                    lines.write(json.dumps(row) + "\n")
                    writer.write(_draw_cv2(frame, record, spec.classes))
                    frame_no += 1
                progress.advance(len(frames))
        progress.finish()
    finally:
        cap.release()
        writer.release()
    if frame_no == 0:
        tmp_video.unlink(missing_ok=True)
        tmp_jsonl.unlink(missing_ok=True)
        raise DataFormatError(f"{path}: no frames could be read")
    tmp_video.replace(out_video)
    tmp_jsonl.replace(out_jsonl)
    return frame_no


def _draw_cv2(frame: np.ndarray, dets: Detections, class_names: Sequence[str]) -> np.ndarray:
    import cv2

    out = frame.copy()
    for box, score, cls in zip(dets.boxes, dets.scores, dets.classes, strict=True):
        x1, y1, x2, y2 = (round(float(v)) for v in box)
        color = _PALETTE[int(cls) % len(_PALETTE)][::-1]  # RGB -> BGR
        cv2.rectangle(out, (x1, y1), (x2, y2), color, 2)
        cv2.putText(out, f"{class_names[int(cls)]} {score:.2f}", (x1, max(10, y1 - 3)), 0, 0.4, color, 1)
    return out


_PALETTE = [(230, 25, 75), (60, 120, 216), (255, 165, 0), (145, 30, 180), (70, 240, 240), (240, 50, 230)]


def draw(path: str, dets: Detections, class_names: Sequence[str], out_path: str | Path, truth=None) -> None:
    """Save the image with labelled predicted boxes (and, if given, true boxes as thin green frames)."""
    from PIL import Image, ImageDraw

    palette = _PALETTE
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
