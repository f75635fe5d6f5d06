"""The training input pipeline: keras-yolo3 annotation file -> ``tf.data.Dataset`` of ``(images, targets)``.

Per element, all in TF ops inside one parallel ``map``: decode (any JPEG/PNG/GIF/BMP as RGB, so grayscale and CMYK
JPEGs work), augment (keras-yolo3 semantics, :mod:`oidyolo.yolo.augment`) or letterbox, shuffle and cap the boxes,
encode the YOLO targets (:mod:`oidyolo.yolo.targets`). Randomness is stateless: each element's seed comes from
``tf.data.Dataset.random(seed)``, which draws a fresh stream each iteration (epoch) but the same streams every run,
so a seeded pipeline is reproducible regardless of parallelism.

Batches are ``images`` ``(B, H, W, 3)`` float32 in [0, 1] and ``targets`` = ``{"boxes": (B, max_boxes, 5),
"grid_0": (B, H/32, W/32, 3, 5+C), "grid_1": (.., H/16, ..), ["grid_2": (.., H/8, ..)]}`` (no ``grid_2`` for tiny).

:func:`reference_generator` is the single-threaded PIL/numpy baseline (what keras-yolo3 does), for benchmarks only.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import tensorflow as tf

from oidyolo.data.anchors import anchor_masks, resolve_image_path
from oidyolo.data.yolo_format import AnnotationLine, read_annotations
from oidyolo.errors import ConfigError, DataFormatError
from oidyolo.yolo.augment import (
    AugmentConfig,
    apply_params_numpy,
    letterbox_numpy,
    letterbox_tf,
    random_augment_tf,
    sample_params_numpy,
)
from oidyolo.yolo.targets import encode_targets, encode_targets_numpy, grid_shapes

__all__ = [
    "AugmentConfig",
    "build_dataset",
    "encode_targets_numpy",
    "load_annotations",
    "reference_generator",
    "verify_images",
]

# What tf.io.decode_image reads (Pillow format names).
_TF_FORMATS = {"JPEG", "MPO", "PNG", "GIF", "BMP"}


def verify_images(lines: Sequence[AnnotationLine]) -> None:
    """Check up front that every image exists, has a header TF can decode, and holds its boxes.

    Catches missing, empty, truncated-at-header or non-image files with a message naming the file, instead of an
    opaque TF error mid-epoch. Reads headers only (Pillow, no decode), so a file corrupted past its header still
    fails later, in TF.
    """
    from PIL import Image, UnidentifiedImageError

    problems = []
    for line in lines:
        try:
            with Image.open(line.path) as im:
                fmt, (w, h) = im.format, im.size
        except FileNotFoundError:
            problems.append(f"{line.path}: missing")
            continue
        except (UnidentifiedImageError, OSError) as e:
            problems.append(f"{line.path}: unreadable ({e})")
            continue
        if fmt not in _TF_FORMATS:
            problems.append(f"{line.path}: format {fmt} is not one TF decodes (JPEG, PNG, GIF, BMP)")
        elif len(line.boxes) and ((line.boxes[:, 2] > w).any() or (line.boxes[:, 3] > h).any()):
            problems.append(f"{line.path}: a box lies outside the {w}x{h} image")
    if problems:
        more = f" (and {len(problems) - 10} more)" if len(problems) > 10 else ""
        raise DataFormatError(f"{len(problems)} bad image(s): " + "; ".join(problems[:10]) + more)


def load_annotations(
    annotation_path: str | Path, *, num_classes: int, image_root: str | Path | None = None
) -> list[AnnotationLine]:
    """Annotation lines with image paths resolved (relative paths from ``image_root`` or the working directory)."""
    lines = read_annotations(annotation_path, num_classes=num_classes)
    if not lines:
        raise DataFormatError(f"{annotation_path}: no images")
    return [AnnotationLine(resolve_image_path(ln.path, image_root), ln.boxes) for ln in lines]


def _decode(path: tf.Tensor) -> tf.Tensor:
    image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
    return tf.ensure_shape(image, [None, None, 3])


def _element_fn(
    *,
    num_classes: int,
    anchors: np.ndarray,
    input_shape: tuple[int, int],
    augment: bool,
    max_boxes: int,
    cfg: AugmentConfig,
    decoded: bool,
):
    masks = anchor_masks(len(anchors))

    def fn(element, rand):
        item, boxes = element
        image = item if decoded else _decode(item)
        if augment:
            seeds = tf.random.experimental.stateless_split(tf.stack([rand, tf.constant(0, tf.int64)]), 2)
            image, boxes = random_augment_tf(image, boxes, seeds[0], input_shape, cfg)
            # keras-yolo3 shuffles before the cap, so a box-dense image keeps a random subset each epoch.
            order = tf.argsort(tf.random.stateless_uniform([tf.shape(boxes)[0]], seed=seeds[1]))
            boxes = tf.gather(boxes, order)
        else:
            image, boxes = letterbox_tf(image, boxes, input_shape)
        boxes = boxes[:max_boxes]
        targets = encode_targets(boxes, anchors, masks, num_classes, input_shape)
        targets["boxes"] = tf.ensure_shape(tf.pad(boxes, [[0, max_boxes - tf.shape(boxes)[0]], [0, 0]]), [max_boxes, 5])
        return image, targets

    return fn


def build_dataset(
    annotation_path: str | Path,
    *,
    num_classes: int,
    anchors: np.ndarray,
    input_shape: tuple[int, int] = (416, 416),
    batch_size: int = 8,
    augment: bool = True,
    shuffle: bool = True,
    seed: int = 0,
    max_boxes: int = 100,
    repeat: bool = False,
    cache_decoded: bool = False,
    augment_config: AugmentConfig = AugmentConfig(),  # noqa: B008 (frozen dataclass, safe as a default)
    image_root: str | Path | None = None,
    check_images: bool = True,
    deterministic: bool = True,
    drop_remainder: bool = False,
) -> tf.data.Dataset:
    """A batched, prefetched ``tf.data.Dataset`` of ``(images, targets)`` for YOLOv3 training or validation.

    ``input_shape`` is ``(height, width)``, multiples of 32. ``augment=False`` gives the deterministic letterbox
    (validation). ``shuffle`` reshuffles images each epoch. ``repeat`` makes it infinite. ``cache_decoded`` keeps
    decoded images in memory (small sets only). ``check_images`` reads every image header first
    (:func:`verify_images`). ``deterministic=False`` lets the parallel map return out of order (faster, not
    reproducible). Boxes with width or height <= 1 px after the transform are dropped, in validation too (they
    break the loss's log); more than ``max_boxes`` are cut (after a random shuffle when augmenting, else the first).
    """
    anchors = np.asarray(anchors, dtype=np.float32)
    masks = anchor_masks(len(anchors))
    grid_shapes(input_shape, masks)  # validates input_shape
    if max_boxes < 1 or batch_size < 1:
        raise ConfigError("max_boxes and batch_size must be >= 1")
    lines = load_annotations(annotation_path, num_classes=num_classes, image_root=image_root)
    if check_images:
        verify_images(lines)

    paths = tf.constant([ln.path for ln in lines])
    flat = np.concatenate([ln.boxes for ln in lines]).astype(np.float32).reshape(-1, 5)
    boxes = tf.RaggedTensor.from_row_lengths(flat, [len(ln.boxes) for ln in lines])
    ds = tf.data.Dataset.from_tensor_slices((paths, boxes))
    if cache_decoded:
        ds = ds.map(lambda p, b: (_decode(p), b), num_parallel_calls=tf.data.AUTOTUNE).cache()
    if shuffle:
        ds = ds.shuffle(len(lines), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    rand = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
    ds = tf.data.Dataset.zip(ds, rand)
    fn = _element_fn(
        num_classes=num_classes,
        anchors=anchors,
        input_shape=input_shape,
        augment=augment,
        max_boxes=max_boxes,
        cfg=augment_config,
        decoded=cache_decoded,
    )
    ds = ds.map(fn, num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)
    return ds.batch(batch_size, drop_remainder=drop_remainder).prefetch(tf.data.AUTOTUNE)


def reference_generator(
    annotation_path: str | Path,
    *,
    num_classes: int,
    anchors: np.ndarray,
    input_shape: tuple[int, int] = (416, 416),
    batch_size: int = 8,
    augment: bool = True,
    seed: int = 0,
    max_boxes: int = 100,
    augment_config: AugmentConfig = AugmentConfig(),  # noqa: B008
    image_root: str | Path | None = None,
) -> Iterator[tuple[np.ndarray, dict[str, np.ndarray]]]:
    """BASELINE ONLY: the same work done per image, single-threaded, with PIL + matplotlib HSV + numpy, as
    keras-yolo3's generator does. One shuffled pass; same batch structure as :func:`build_dataset`. Not used in
    training; it exists so benchmarks can compare the tf.data pipeline against it."""
    from PIL import Image

    anchors = np.asarray(anchors, dtype=np.float32)
    masks = anchor_masks(len(anchors))
    lines = load_annotations(annotation_path, num_classes=num_classes, image_root=image_root)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(lines)) if augment else np.arange(len(lines))
    for start in range(0, len(order), batch_size):
        images, targets = [], []
        for k in order[start : start + batch_size]:
            line = lines[k]
            with Image.open(line.path) as im:
                if augment:
                    params = sample_params_numpy(rng, im.size, input_shape, augment_config)
                    image, boxes = apply_params_numpy(im, line.boxes, params, input_shape)
                    boxes = boxes[rng.permutation(len(boxes))]
                else:
                    image, boxes = letterbox_numpy(im, line.boxes, input_shape)
            boxes = boxes[:max_boxes]
            t = encode_targets_numpy(boxes, anchors, masks, num_classes, input_shape)
            t["boxes"] = np.zeros((max_boxes, 5), np.float32)
            t["boxes"][: len(boxes)] = boxes
            images.append(image)
            targets.append(t)
        yield np.stack(images), {key: np.stack([t[key] for t in targets]) for key in targets[0]}
