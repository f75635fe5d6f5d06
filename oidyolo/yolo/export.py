"""Export a detector for use outside this package: ``.keras``, TensorFlow SavedModel, TFLite (float32 / float16).

* ``keras``: a :class:`~oidyolo.yolo.model.YoloDetector` (body + anchors + class names + input size), opened by
  ``keras.saving.load_model`` after ``import oidyolo``; ``detect --weights model.keras`` takes it.
* ``saved_model``: ``serving_default`` takes ``image``, one uint8 ``[H, W, 3]`` RGB image of any size, and returns
  ``boxes`` ``(K, 4)`` x1, y1, x2, y2 in that image's pixels, ``scores`` ``(K,)`` and ``classes`` ``(K,)`` int32,
  ``K <= max_detections``, only scores at or above the export's threshold. Letterbox, decoding and per-class NMS
  run inside the graph, so a program that imports only TensorFlow can serve it. ``classes.txt`` lies inside.
* ``tflite``: a fixed input ``image`` float32 ``[1, in_h, in_w, 3]``, RGB in [0, 1], letterboxed by the caller
  (aspect-preserving resize, centred on gray 0.5); outputs ``count`` (int32 scalar) and, padded to the export's max
  detections, ``boxes`` ``(M, 4)`` in that input's pixels, ``scores`` ``(M,)``, ``classes`` ``(M,)`` int32 (-1 in
  the padding), after per-class NMS, best first: the first ``count`` rows are the detections. ``<out>.json`` beside
  it holds the class names, the input size and these conventions.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from oidyolo.errors import ConfigError
from oidyolo.yolo.augment import _letterbox_params_tf, letterbox_tf
from oidyolo.yolo.decode import decode_outputs
from oidyolo.yolo.model import YoloDetector
from oidyolo.yolo.modelspec import ModelSpec

FORMATS = ("keras", "saved_model", "tflite")
# Per-class NMS in TFLite as one NMS over (box, class) pairs: each class's boxes are moved this far apart, so
# boxes of different classes never overlap (detect's combined NMS also treats classes independently).
CLASS_OFFSET = 1.0e4


def export_keras(body: keras.Model, spec: ModelSpec, out: str | Path) -> Path:
    """Save body + anchors + names + input size as one ``.keras`` file."""
    out = Path(out)
    if out.suffix != ".keras":
        raise ConfigError(f"a Keras model file must end in '.keras', got {out}")
    detector = YoloDetector(
        body, spec.anchor_array, spec.num_classes,
        class_names=spec.classes, input_size=spec.input_size, masks=spec.mask_list,
    )  # fmt: skip
    detector(tf.zeros((1, 32, 32, 3)))  # built, so Keras knows its weights are all there
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.stem}.part.keras")
    detector.save(tmp)
    tmp.replace(out)
    return out


def load_keras_detector(path: str | Path) -> tuple[keras.Model, ModelSpec]:
    """``(body, spec)`` of a ``.keras`` file written by :func:`export_keras`."""
    from oidyolo.errors import DataFormatError

    try:
        detector = keras.saving.load_model(str(path), compile=False)
    except (ValueError, OSError, TypeError) as err:
        raise DataFormatError(f"{path}: not a .keras detector ({err})") from None
    if not isinstance(detector, YoloDetector) or detector.class_names is None or detector.input_size is None:
        raise DataFormatError(f"{path}: not a detector exported by 'python -m oidyolo export --format keras'")
    spec = ModelSpec(
        detector.variant,
        tuple(detector.class_names),
        tuple(tuple(float(v) for v in a) for a in detector.anchors),
        tuple(detector.input_size),  # type: ignore[arg-type]
        masks=tuple(tuple(m) for m in detector.masks),
    )
    return detector.body, spec


def _scores(body: keras.Model, spec: ModelSpec, images: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Letterboxed ``(1, h, w, 3)`` -> boxes ``(N, 4)`` in input pixels and scores ``(N, C)`` of image 0."""
    outputs = body(images, training=False)
    boxes, obj, cls = decode_outputs(outputs, spec.anchor_array, spec.mask_list, spec.num_classes, spec.input_size)
    return boxes[0], obj[0, :, None] * cls[0]


def serving_function(
    body: keras.Model, spec: ModelSpec, *, score: float, iou: float, max_detections: int
) -> Callable[[tf.Tensor], dict[str, tf.Tensor]]:
    """uint8 ``[H, W, 3]`` -> ``{"boxes", "scores", "classes"}`` in the image's pixels (the SavedModel's graph)."""
    input_hw = tuple(spec.input_size)

    def serve(image: tf.Tensor) -> dict[str, tf.Tensor]:
        hw = tf.shape(image)[:2]
        letterboxed, _ = letterbox_tf(image, tf.zeros((0, 5), tf.float32), input_hw)
        boxes, scores = _scores(body, spec, letterboxed[None])
        # The same NMS call as detect's (oidyolo.yolo.decode.nms), so the two agree exactly.
        b, s, c, valid = tf.image.combined_non_max_suppression(
            boxes[None, :, None, :], scores[None], max_detections, max_detections,
            iou_threshold=iou, score_threshold=score, clip_boxes=False,
        )  # fmt: skip
        k = valid[0]
        b, s, c = b[0, :k], s[0, :k], c[0, :k]
        p = _letterbox_params_tf(hw, input_hw)
        ih, iw = tf.cast(hw[0], tf.float32), tf.cast(hw[1], tf.float32)
        nw, nh = tf.cast(p.nw, tf.float32), tf.cast(p.nh, tf.float32)
        dx, dy = tf.cast(p.dx, tf.float32), tf.cast(p.dy, tf.float32)
        b = (b - tf.stack([dx, dy, dx, dy])) / tf.stack([nw / iw, nh / ih, nw / iw, nh / ih])
        b = tf.clip_by_value(b, 0.0, tf.stack([iw, ih, iw, ih]))
        return {"boxes": b, "scores": s, "classes": tf.cast(c, tf.int32)}

    return serve


def tflite_function(
    body: keras.Model, spec: ModelSpec, *, score: float, iou: float, max_detections: int
) -> Callable[[tf.Tensor], dict[str, tf.Tensor]]:
    """Letterboxed float32 ``[1, h, w, 3]`` -> boxes (input pixels), scores, classes, with TFLite's builtin NMS."""
    n_cls = spec.num_classes

    def run(image: tf.Tensor) -> dict[str, tf.Tensor]:
        boxes, scores = _scores(body, spec, image)
        flat = tf.reshape(scores, [-1])  # (N * C): pair i is box i // C, class i % C
        pairs = tf.range(tf.size(flat))
        box_of, cls_of = pairs // n_cls, pairs % n_cls
        pair_boxes = tf.gather(boxes, box_of) + tf.cast(cls_of, tf.float32)[:, None] * CLASS_OFFSET
        # NonMaxSuppressionV4 with padding is TFLite's builtin NON_MAX_SUPPRESSION_V4: fixed-size outputs + count.
        keep, count = tf.raw_ops.NonMaxSuppressionV4(
            boxes=pair_boxes, scores=flat, max_output_size=max_detections, iou_threshold=iou,
            score_threshold=score, pad_to_max_output_size=True,
        )  # fmt: skip
        valid = tf.range(max_detections) < count
        return {
            "boxes": tf.where(valid[:, None], tf.gather(boxes, tf.gather(box_of, keep)), 0.0),
            "scores": tf.where(valid, tf.gather(flat, keep), 0.0),
            "classes": tf.where(valid, tf.gather(cls_of, keep), -1),
            "count": count,
        }

    return run


def _write_saved_model(body: keras.Model, fn: Callable, signature: tf.TensorSpec, out: Path) -> None:
    archive = keras.export.ExportArchive()
    archive.track(body)
    archive.add_endpoint("serving_default", fn, input_signature=[signature])
    archive.write_out(str(out), verbose=False)


def export_saved_model(
    body: keras.Model, spec: ModelSpec, out: str | Path, *, score: float = 0.3, iou: float = 0.45,
    max_detections: int = 100,
) -> Path:  # fmt: skip
    """A SavedModel directory whose ``serving_default`` detects in one uint8 image of any size."""
    out = Path(out)
    fn = serving_function(body, spec, score=score, iou=iou, max_detections=max_detections)
    tmp = out.with_name(f".{out.name}.part")
    shutil.rmtree(tmp, ignore_errors=True)
    _write_saved_model(body, fn, tf.TensorSpec([None, None, 3], tf.uint8, name="image"), tmp)
    (tmp / "classes.txt").write_text("\n".join(spec.classes) + "\n", encoding="utf-8")
    shutil.rmtree(out, ignore_errors=True)
    tmp.replace(out)
    return out


def export_tflite(
    body: keras.Model, spec: ModelSpec, out: str | Path, *, score: float = 0.3, iou: float = 0.45,
    max_detections: int = 100, quantize: str | None = None,
) -> Path:  # fmt: skip
    """A ``.tflite`` file (float32, or float16 weights with ``quantize="float16"``) plus ``<out>.json``."""
    if quantize not in (None, "float16"):
        raise ConfigError(f"--quantize must be float16 (or omitted for float32), got {quantize!r}")
    out = Path(out)
    h, w = spec.input_size
    fn = tflite_function(body, spec, score=score, iou=iou, max_detections=max_detections)
    with tempfile.TemporaryDirectory() as tmp:
        saved = Path(tmp) / "saved"
        _write_saved_model(body, fn, tf.TensorSpec([1, h, w, 3], tf.float32, name="image"), saved)
        converter = tf.lite.TFLiteConverter.from_saved_model(str(saved), signature_keys=["serving_default"])
        if quantize == "float16":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.target_spec.supported_types = [tf.float16]
        flat = converter.convert()
    out.parent.mkdir(parents=True, exist_ok=True)
    part = out.with_name(f".{out.name}.part")
    part.write_bytes(flat)
    part.replace(out)
    meta = {
        "classes": list(spec.classes),
        "input": {"name": "image", "shape": [1, h, w, 3], "dtype": "float32", "range": [0, 1], "letterbox": True},
        "outputs": {
            "count": "int32: the first count rows below are the detections, best first",
            "boxes": f"({max_detections}, 4) float32 x1 y1 x2 y2 in input pixels",
            "scores": f"({max_detections},) float32",
            "classes": f"({max_detections},) int32, -1 in the padding",
        },
        "score_threshold": score,
        "iou_threshold": iou,
        "max_detections": max_detections,
        "weights": quantize or "float32",
    }
    Path(f"{out}.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return out


def export(
    weights: str | Path, fmt: str, out: str | Path, *, variant: str | None = None, score: float = 0.3,
    iou: float = 0.45, max_detections: int = 100, quantize: str | None = None,
) -> Path:  # fmt: skip
    """Load any detector :func:`~oidyolo.yolo.predict.load_detector` takes and write it in ``fmt``."""
    from oidyolo.yolo.predict import load_detector

    if fmt not in FORMATS:
        raise ConfigError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if not 0 <= score <= 1 or not 0 <= iou <= 1:
        raise ConfigError(f"--score and --iou must lie in [0, 1], got {score} and {iou}")
    if max_detections < 1:
        raise ConfigError(f"max detections must be >= 1, got {max_detections}")
    if quantize and fmt != "tflite":
        raise ConfigError("--quantize applies to --format tflite only")
    body, spec = load_detector(weights, variant=variant)
    if fmt == "keras":
        return export_keras(body, spec, out)
    kwargs = dict(score=score, iou=iou, max_detections=max_detections)
    if fmt == "saved_model":
        return export_saved_model(body, spec, out, **kwargs)
    return export_tflite(body, spec, out, quantize=quantize, **kwargs)


def letterbox_for_tflite(image: np.ndarray, input_hw: tuple[int, int]) -> np.ndarray:
    """The TFLite model's input for one uint8 RGB image: ``(1, h, w, 3)`` float32, exactly as ``detect`` does it."""
    letterboxed, _ = letterbox_tf(tf.convert_to_tensor(image), tf.zeros((0, 5), tf.float32), input_hw)
    return letterboxed.numpy()[None]
