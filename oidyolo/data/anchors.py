"""YOLO anchor boxes: k-means on box sizes (distance 1 - IoU), keras-yolo3's anchor file format, anchor masks.

Fixes over keras-yolo3's ``kmeans.py``: box sizes are measured in the letterboxed network input frame (its
issue #682: it clustered raw image pixels), the run is seeded, and the anchors are sorted by area, which is the
order the anchor masks assume. Numpy and Pillow only: the data wing never imports TensorFlow.

Conventions: anchors are ``(k, 2)`` float32 ``(w, h)`` in input pixels, sorted ascending by area; ``input_shape``
is ``(height, width)`` as in keras-yolo3.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from oidyolo.data.imagecheck import header_size
from oidyolo.data.yolo_format import AnnotationLine, read_annotations
from oidyolo.errors import ConfigError, DataFormatError
from oidyolo.variants import VARIANTS, variant_for_anchors

# darknet's anchors, from the variants table.
COCO_ANCHORS = VARIANTS["full"].coco_anchor_array()
COCO_TINY_ANCHORS = VARIANTS["tiny"].coco_anchor_array()


def anchor_masks(num_anchors: int) -> list[list[int]]:
    """Anchor indices per output layer (strides 32, 16[, 8]): 9 anchors = full YOLOv3, 6 = tiny."""
    try:
        return [list(m) for m in variant_for_anchors(num_anchors).masks]
    except ConfigError as err:  # here the count comes from an anchors file
        raise DataFormatError(str(err)) from None


def output_strides(num_anchors: int) -> list[int]:
    """Strides of the output layers, in the order of :func:`anchor_masks`."""
    anchor_masks(num_anchors)
    return list(variant_for_anchors(num_anchors).strides)


def wh_iou(wh: np.ndarray, anchors: np.ndarray) -> np.ndarray:
    """IoU of boxes and anchors aligned at a common centre: ``(N, 2), (K, 2) -> (N, K)``."""
    wh = np.asarray(wh, dtype=np.float64)[:, None, :]
    anchors = np.asarray(anchors, dtype=np.float64)[None, :, :]
    inter = np.minimum(wh[..., 0], anchors[..., 0]) * np.minimum(wh[..., 1], anchors[..., 1])
    union = wh[..., 0] * wh[..., 1] + anchors[..., 0] * anchors[..., 1] - inter
    return inter / union


def mean_iou(wh: np.ndarray, anchors: np.ndarray) -> float:
    """Mean over boxes of the IoU with their best anchor (keras-yolo3's "Accuracy")."""
    return float(wh_iou(wh, anchors).max(axis=1).mean())


def sort_by_area(anchors: np.ndarray) -> np.ndarray:
    """Anchors sorted ascending by area (stable), as float32 ``(k, 2)``."""
    anchors = np.asarray(anchors, dtype=np.float32).reshape(-1, 2)
    return anchors[np.argsort(anchors[:, 0] * anchors[:, 1], kind="stable")]


def _check_wh(wh: np.ndarray, k: int) -> np.ndarray:
    wh = np.asarray(wh, dtype=np.float64)
    if wh.ndim != 2 or wh.shape[1] != 2:
        raise DataFormatError(f"box sizes must be an (N, 2) array of (w, h), got shape {wh.shape}")
    if not np.isfinite(wh).all() or (wh <= 0).any():
        raise DataFormatError("box sizes must be finite and positive")
    n_distinct = len(np.unique(wh, axis=0))
    if k < 1 or n_distinct < k:
        raise DataFormatError(
            f"k-means needs at least k={k} distinct box sizes but the data has {n_distinct} "
            f"({len(wh)} boxes): annotate more images or use the default COCO anchors"
        )
    return wh


def _kmeans_pp_init(wh: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeding with the 1 - IoU distance: spread-out starts make runs stable."""
    centres = [wh[rng.integers(len(wh))]]
    for _ in range(1, k):
        d = (1.0 - wh_iou(wh, np.array(centres))).min(axis=1) ** 2
        if d.sum() <= 0:  # every box coincides with a centre; pick any box not yet used
            d = np.ones(len(wh))
        centres.append(wh[rng.choice(len(wh), p=d / d.sum())])
    return np.array(centres)


def kmeans_anchors(wh: np.ndarray, k: int, seed: int = 0, *, update: str = "median", max_iter: int = 300) -> np.ndarray:
    """Cluster box sizes ``(N, 2)`` into ``k`` anchors with distance 1 - IoU.

    k-means++ init from ``seed``, then ``median`` (keras-yolo3, robust to outliers) or ``mean`` updates until the
    assignments stop changing. An emptied cluster is restarted on the box worst served by the others. Returns
    float32 ``(k, 2)`` sorted ascending by area.
    """
    if update not in ("median", "mean"):
        raise ConfigError(f"update must be 'median' or 'mean', got {update!r}")
    wh = _check_wh(wh, k)
    rng = np.random.default_rng(seed)
    reduce = np.median if update == "median" else np.mean
    centres = _kmeans_pp_init(wh, k, rng)
    assign = np.full(len(wh), -1)
    for _ in range(max_iter):
        new_assign = wh_iou(wh, centres).argmax(axis=1)
        if np.array_equal(new_assign, assign):
            break
        assign = new_assign
        for j in range(k):
            members = wh[assign == j]
            if len(members):
                centres[j] = reduce(members, axis=0)
            else:
                centres[j] = wh[wh_iou(wh, centres).max(axis=1).argmin()]
    return sort_by_area(centres)


def letterbox_scale(image_wh: tuple[int, int], input_shape: tuple[int, int]) -> float:
    """Factor that fits an image of ``(w, h)`` into ``input_shape`` ``(h, w)`` keeping its aspect ratio."""
    w, h = image_wh
    in_h, in_w = input_shape
    if w <= 0 or h <= 0:
        raise DataFormatError(f"image size must be positive, got {w}x{h}")
    return min(in_w / w, in_h / h)


def box_sizes_for_input(
    lines: Sequence[AnnotationLine],
    image_sizes: Sequence[tuple[int, int]] | Callable[[str], tuple[int, int]],
    input_shape: tuple[int, int],
) -> np.ndarray:
    """Box ``(w, h)`` in the letterboxed input frame, ``(N, 2)`` float64 over all lines.

    ``image_sizes`` is one ``(w, h)`` per line or a function from image path to ``(w, h)``. A box's input size is its
    pixel size times ``min(in_w / w, in_h / h)``, the letterbox scale the training pipeline applies.
    """
    if not callable(image_sizes) and len(image_sizes) != len(lines):
        raise DataFormatError(f"{len(image_sizes)} image sizes for {len(lines)} annotation lines")
    out = []
    for i, line in enumerate(lines):
        if not len(line.boxes):
            continue
        size = image_sizes(line.path) if callable(image_sizes) else image_sizes[i]
        scale = letterbox_scale(size, input_shape)
        b = line.boxes[:, :4].astype(np.float64)
        out.append(np.stack([b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]], axis=1) * scale)
    return np.concatenate(out) if out else np.zeros((0, 2))


# ``(w, h)`` from the image header: no decode, no EXIF rotation (boxes refer to the stored pixels).
image_size = header_size


def resolve_image_path(path: str, image_root: str | Path | None) -> str:
    """Relative annotation paths are taken from ``image_root`` if given, else from the working directory."""
    if image_root is None or Path(path).is_absolute():
        return path
    return str(Path(image_root) / path)


def anchors_from_annotations(
    annotation_path: str | Path,
    input_shape: tuple[int, int] = (416, 416),
    k: int = 9,
    seed: int = 0,
    *,
    image_root: str | Path | None = None,
    update: str = "median",
) -> tuple[np.ndarray, float]:
    """k-means anchors for an annotation file, image sizes read from the image headers. Returns (anchors, mean IoU)."""
    lines = read_annotations(annotation_path)
    wh = box_sizes_for_input(lines, lambda p: image_size(resolve_image_path(p, image_root)), input_shape)
    if not len(wh):
        raise DataFormatError(f"{annotation_path}: no boxes to cluster")
    anchors = kmeans_anchors(wh, k, seed, update=update)
    return anchors, mean_iou(wh, anchors)


def write_anchors(path: str | Path, anchors: np.ndarray) -> None:
    """keras-yolo3's anchor file: ``w,h, w,h, ...`` on one line, whole pixels (as darknet cfgs and kmeans.py)."""
    anchors = np.asarray(anchors, dtype=np.float64).reshape(-1, 2)
    rounded = sort_by_area(np.maximum(np.round(anchors), 1.0)).astype(np.int64)
    Path(path).write_text(", ".join(f"{w},{h}" for w, h in rounded) + "\n", encoding="utf-8")


def read_anchors(path: str | Path) -> np.ndarray:
    """Anchors from a keras-yolo3 anchor file as float32 ``(k, 2)``, sorted by area.

    keras-yolo3's own kmeans.py writes them sorted by width; the anchor masks assume area order, so they are
    re-sorted here (a no-op for the standard files).
    """
    text = Path(path).read_text(encoding="utf-8").strip()
    try:
        values = [float(v) for v in text.replace("\n", ",").split(",") if v.strip()]
    except ValueError:
        raise DataFormatError(f"{path}: anchors must be numbers 'w,h, w,h, ...'") from None
    if not values or len(values) % 2:
        raise DataFormatError(f"{path}: expected an even number of values 'w,h, w,h, ...', got {len(values)}")
    anchors = np.array(values, dtype=np.float32).reshape(-1, 2)
    if not np.isfinite(anchors).all() or (anchors <= 0).any():
        raise DataFormatError(f"{path}: anchor sizes must be positive")
    return sort_by_area(anchors)
