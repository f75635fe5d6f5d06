"""The training input pipeline: keras-yolo3 annotation file -> ``tf.data.Dataset`` of ``(images, targets)``.

Per element, all in TF ops inside one parallel ``map``: decode (any JPEG/PNG/GIF/BMP as RGB, so grayscale and CMYK
JPEGs work), augment (keras-yolo3 semantics, :mod:`oidyolo.yolo.augment`) or letterbox, shuffle and cap the boxes,
encode the YOLO targets (:mod:`oidyolo.yolo.targets`). Randomness is stateless: each epoch's order and each
element's draws are keyed by ``(seed, epoch, image index)``, so a seeded pipeline is reproducible regardless of
parallelism, and a resumed training sees the epochs an uninterrupted one would. Images can be cached decoded and
shrunk to the largest size the transform needs (memory or JPEGs on disk), so memory stays bounded.

Batches are ``images`` ``(B, H, W, 3)`` float32 in [0, 1] and ``targets`` = ``{"boxes": (B, max_boxes, 5),
"grid_0": (B, H/32, W/32, 3, 5+C), "grid_1": (.., H/16, ..), ["grid_2": (.., H/8, ..)]}`` (no ``grid_2`` for tiny).

:func:`reference_generator` is the single-threaded PIL/numpy baseline (what keras-yolo3 does), for benchmarks only.
"""

from __future__ import annotations

import math
import os
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
    "CACHE_MODES",
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


CACHE_MODES = ("auto", "memory", "disk", "none")


def cache_side(input_shape: tuple[int, int], augment: bool, cfg: AugmentConfig = AugmentConfig()) -> int:  # noqa: B008
    """The longest side any transform can resize an image to: ``scale[1] * max(h, w)`` when augmenting (the
    aspect jitter never makes a side longer than that), ``max(h, w)`` for the letterbox. Caching images at this
    size loses no pixel the pipeline would use."""
    return math.ceil((max(cfg.scale[1], 1.0) if augment else 1.0) * max(input_shape))


def _header_sizes(lines: Sequence[AnnotationLine]) -> np.ndarray:
    """``(N, 2)`` (height, width) of every image, from its header (Pillow, no decode)."""
    from PIL import Image

    sizes = np.zeros((len(lines), 2), np.int64)
    for i, line in enumerate(lines):
        with Image.open(line.path) as im:
            sizes[i] = im.size[::-1]
    return sizes


def cached_sizes(sizes: np.ndarray, side: int) -> np.ndarray:
    """Sizes after shrinking (never enlarging) each image so its longer side is at most ``side``."""
    factor = np.minimum(1.0, side / np.maximum(sizes.max(axis=1), 1))
    return np.maximum(1, np.round(sizes * factor[:, None])).astype(np.int64)


def choose_cache(mode: str, sizes: np.ndarray, budget_mb: float) -> str:
    """``auto``: ``memory`` when the resized images fit ``budget_mb``, else ``disk``; other modes as given."""
    if mode not in CACHE_MODES:
        raise ConfigError(f"train.cache must be one of {', '.join(CACHE_MODES)}, got {mode!r}")
    if mode != "auto":
        return mode
    return "memory" if float(np.prod(sizes, axis=1).sum()) * 3 <= budget_mb * 2**20 else "disk"


def _return_big_buffers() -> None:
    """Make glibc serve (and give back) every buffer of 128 KiB or more with mmap. By default it raises that
    threshold to the size of the largest buffer freed, so the full-size decodes of a cache fill land on the heap,
    between the small cached images that stay, and the heap cannot shrink: RSS grew ~4x the cache's size."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    libc = ctypes.CDLL(name) if name else None
    if libc is not None and hasattr(libc, "mallopt"):
        libc.mallopt(-3, 128 * 1024)  # M_MMAP_THRESHOLD (a fixed value also stops the dynamic raise)


def _shrink(image: tf.Tensor, size: tf.Tensor) -> tf.Tensor:
    """uint8 image resized (area, i.e. anti-aliased) to ``size`` unless it is that size already."""
    same = tf.reduce_all(tf.shape(image)[:2] == tf.cast(size, tf.int32))
    return tf.cond(
        same,
        lambda: image,
        lambda: tf.cast(tf.round(tf.image.resize(image, tf.cast(size, tf.int32), method="area")), tf.uint8),
    )


def write_disk_cache(paths: Sequence[str], sizes: np.ndarray, cache_dir: str | Path) -> list[str]:
    """Decode each image once, shrink it to ``sizes`` and store it as a quality-95 JPEG under ``cache_dir``
    (named by a hash of the source path and size, so a changed size or file name is a new entry); returns the
    cached paths. Entries already there are reused; each is written under a temporary name, then renamed."""
    import hashlib

    folder = Path(cache_dir)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for path, (h, w) in zip(paths, sizes, strict=True):
        key = hashlib.sha1(f"{os.path.abspath(path)}:{os.path.getmtime(path)}:{h}x{w}".encode()).hexdigest()
        out.append(str(folder / f"{key}.jpg"))
    todo = [i for i, p in enumerate(out) if not os.path.exists(p)]
    if todo:
        src = tf.data.Dataset.from_tensor_slices(
            ([paths[i] for i in todo], sizes[todo], [out[i] + ".part" for i in todo])
        )

        def encode(path, size, dest):
            jpeg = tf.io.encode_jpeg(_shrink(_decode(path), size), quality=95)
            tf.io.write_file(dest, jpeg)
            return dest

        for dest in src.map(encode, num_parallel_calls=tf.data.AUTOTUNE):
            part = dest.numpy().decode()
            os.replace(part, part.removesuffix(".part"))
    return out


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

    def fn(index, item, boxes, epoch_seed):
        image = item if decoded else _decode(item)
        if augment:
            # Stateless and keyed by (seed, epoch, image): the same draws whatever the parallelism or a resume.
            key = tf.stack([epoch_seed, tf.cast(index, tf.int64)])
            seeds = tf.random.experimental.stateless_split(key, 2)
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


def epoch_seed(seed: int, epoch: int | tf.Tensor) -> tf.Tensor:
    """The seed of one epoch's order and augmentation: a function of (seed, epoch) only."""
    return tf.cast(seed, tf.int64) * 1_000_003 + tf.cast(epoch, tf.int64)


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
    cache: str = "none",
    cache_dir: str | Path | None = None,
    cache_budget_mb: float = 512,
    first_epoch: int = 0,
    skip_batches: int = 0,
    augment_config: AugmentConfig = AugmentConfig(),  # noqa: B008 (frozen dataclass, safe as a default)
    image_root: str | Path | None = None,
    check_images: bool = True,
    deterministic: bool = True,
    drop_remainder: bool = False,
) -> tf.data.Dataset:
    """A batched, prefetched ``tf.data.Dataset`` of ``(images, targets)`` for YOLOv3 training or validation.

    ``input_shape`` is ``(height, width)``, multiples of 32. ``augment=False`` gives the deterministic letterbox
    (validation). The dataset is one epoch, or with ``repeat`` the epochs ``first_epoch, first_epoch + 1, ...``
    without end; batches never straddle two epochs. Each epoch's order (``shuffle``) and augmentation draws depend
    only on ``(seed, epoch)``, so a training resumed at epoch k sees exactly what an uninterrupted one would;
    ``skip_batches`` starts that many batches in (cheaply: before decoding). A non-repeating dataset iterated twice
    gives epoch ``first_epoch`` twice.

    ``cache``: ``memory`` keeps every image decoded once and shrunk to :func:`cache_side` (the largest size the
    transform can need) in memory; ``disk`` stores the shrunk images as JPEGs in ``cache_dir`` (decoding those is
    cheap); ``auto`` picks ``memory`` when the shrunk images fit ``cache_budget_mb``, else ``disk`` (or ``none``
    without a ``cache_dir``); ``none`` decodes the original files every epoch. ``check_images`` reads every image
    header first (:func:`verify_images`). ``deterministic=False`` lets the parallel map return out of order
    (faster, not reproducible). Boxes with width or height <= 1 px after the transform are dropped, in validation
    too (they break the loss's log); more than ``max_boxes`` are cut (after a random shuffle when augmenting, else
    the first).
    """
    anchors = np.asarray(anchors, dtype=np.float32)
    masks = anchor_masks(len(anchors))
    grid_shapes(input_shape, masks)  # validates input_shape
    if max_boxes < 1 or batch_size < 1:
        raise ConfigError("max_boxes and batch_size must be >= 1")
    if first_epoch < 0 or skip_batches < 0:
        raise ConfigError("first_epoch and skip_batches must be >= 0")
    lines = load_annotations(annotation_path, num_classes=num_classes, image_root=image_root)
    if check_images:
        verify_images(lines)

    paths = [ln.path for ln in lines]
    flat = np.concatenate([ln.boxes for ln in lines]).astype(np.float32).reshape(-1, 5)
    mode = choose_cache(cache, np.zeros((0, 2)), 0) if cache != "auto" else "auto"
    if mode != "none":
        sizes = _header_sizes(lines)
        small = cached_sizes(sizes, cache_side(input_shape, augment, augment_config))
        mode = choose_cache(mode, small, cache_budget_mb)
        if mode == "disk" and cache_dir is None:
            if cache == "disk":
                raise ConfigError("cache 'disk' needs a cache_dir")
            mode = "none"
    if mode != "none":
        # Boxes follow the shrink (x by the width ratio, y by the height ratio).
        ratio = np.repeat(small / sizes, [len(ln.boxes) for ln in lines], axis=0).astype(np.float32)
        flat = flat.copy()
        flat[:, [0, 2]] *= ratio[:, 1:2]
        flat[:, [1, 3]] *= ratio[:, 0:1]
        if mode == "disk":
            paths = write_disk_cache(paths, small, cache_dir)  # type: ignore[arg-type]
    boxes = tf.RaggedTensor.from_row_lengths(flat, [len(ln.boxes) for ln in lines])
    base = tf.data.Dataset.from_tensor_slices((tf.range(len(lines), dtype=tf.int64), tf.constant(paths), boxes))
    decoded = mode == "memory"
    if decoded:
        _return_big_buffers()
        sizes_t = tf.constant(small)
        base = base.map(
            lambda i, p, b: (i, _shrink(_decode(p), sizes_t[i]), b), num_parallel_calls=tf.data.AUTOTUNE
        ).cache()
    fn = _element_fn(
        num_classes=num_classes,
        anchors=anchors,
        input_shape=input_shape,
        augment=augment,
        max_boxes=max_boxes,
        cfg=augment_config,
        decoded=decoded,
    )
    per_epoch = math.ceil(len(lines) / batch_size) if not drop_remainder else len(lines) // batch_size
    first_epoch += skip_batches // max(per_epoch, 1)
    skip_elements = (skip_batches % max(per_epoch, 1)) * batch_size

    def one_epoch(epoch: tf.Tensor) -> tf.data.Dataset:
        es = epoch_seed(seed, epoch)
        # A global seed (keras.utils.set_random_seed) would mix into the shuffle's and fails on a tensor seed; the
        # order must depend on (seed, epoch) alone anyway. This is the flat_map function's own graph.
        tf.compat.v1.get_default_graph().seed = None
        ds = base.shuffle(len(lines), seed=es) if shuffle else base
        # Only the epoch a resume starts in skips; first_epoch is a Python int, epoch a tensor.
        ds = ds.skip(tf.where(epoch == first_epoch, tf.constant(skip_elements, tf.int64), 0))
        ds = ds.map(lambda i, x, b: fn(i, x, b, es), num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)
        return ds.batch(batch_size, drop_remainder=drop_remainder)

    if repeat:  # flat_map's cardinality is unknown; Keras must know the stream does not end
        epochs = tf.data.Dataset.counter(start=first_epoch)
        ds = epochs.flat_map(one_epoch).apply(tf.data.experimental.assert_cardinality(tf.data.INFINITE_CARDINALITY))
    else:
        ds = tf.data.Dataset.from_tensors(tf.constant(first_epoch, tf.int64)).flat_map(one_epoch)
        left = len(lines) - skip_elements
        ds = ds.apply(
            tf.data.experimental.assert_cardinality(left // batch_size if drop_remainder else -(-left // batch_size))
        )
    return ds.prefetch(tf.data.AUTOTUNE)


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
