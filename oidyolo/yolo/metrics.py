"""Detection metrics: COCO-style mAP with pycocotools (AP50 and AP50:95), per-class AP, PR curves and a PR plot.

Conventions and choices, so numbers can be compared with others:

* Boxes are ``x1, y1, x2, y2`` in image pixels; they are converted to COCO's ``x, y, w, h`` here. Classes are
  0-based ids into ``class_names``; COCO category ids are ``id + 1`` and annotation ids start at 1 (COCOeval
  treats a matched id of 0 as "unmatched").
* AP is COCOeval's 101-point interpolated AP over all object sizes with up to ``max_detections`` detections per
  image and class (100 by default). AP50 is at IoU 0.5, AP50_95 the mean over IoU 0.50:0.05:0.95.
* ``ignore`` ground truth (difficult / Open Images group-of) becomes COCO ``iscrowd``: it is never a miss, a
  detection on it is neither a true nor a false positive, and any number of detections may fall on it. Overlap
  with it is measured as intersection over the *detection's* area (COCO's crowd rule, which fits group-of boxes).
* A class with no (non-ignored) ground truth has no AP (COCOeval's -1): it is reported as ``None`` and left out of
  the means; its detections count nowhere. mAP = mean over classes with ground truth.
* Images without ground truth take part: detections on them are false positives.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from oidyolo.errors import ConfigError, DataFormatError


@dataclass(frozen=True)
class PRCurve:
    """Raw precision/recall for one class, one point per detection in descending score order."""

    precision: np.ndarray
    recall: np.ndarray
    scores: np.ndarray
    ap: float | None  # COCOeval's interpolated AP at this IoU (None: no ground truth)
    num_gt: int


def _as_boxes(value: Any, where: str) -> np.ndarray:
    boxes = np.asarray(value, dtype=np.float64).reshape(-1, 4) if len(value) else np.zeros((0, 4))
    if not np.isfinite(boxes).all() or (boxes[:, 2] < boxes[:, 0]).any() or (boxes[:, 3] < boxes[:, 1]).any():
        raise DataFormatError(f"{where}: boxes must be finite x1, y1, x2, y2 with x2 >= x1 and y2 >= y1")
    return boxes


def _xywh(b: np.ndarray) -> list[float]:
    return [float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])]


def _check_classes(classes: np.ndarray, n: int, num_classes: int, where: str) -> np.ndarray:
    classes = np.asarray(classes, dtype=np.int64).reshape(-1)
    if len(classes) != n:
        raise DataFormatError(f"{where}: {n} boxes but {len(classes)} classes")
    if len(classes) and (classes.min() < 0 or classes.max() >= num_classes):
        raise DataFormatError(f"{where}: class ids must be in 0..{num_classes - 1}")
    return classes


def _coco_datasets(
    ground_truth: Sequence[Mapping[str, Any]], detections: Sequence[Mapping[str, Any]], num_classes: int
) -> tuple[dict, dict, dict[str, Any]]:
    """COCO-format GT and detection dicts plus counts; validates the inputs."""
    img_ids: dict[str, int] = {}
    images, gt_anns = [], []
    gt_per_class = np.zeros(num_classes, np.int64)
    n_ignored = 0
    for rec in ground_truth:
        name = str(rec["image_id"])
        if name in img_ids:
            raise DataFormatError(f"ground truth lists image {name!r} twice")
        img_ids[name] = len(img_ids) + 1
        images.append({"id": img_ids[name], "width": int(rec["width"]), "height": int(rec["height"])})
        boxes = _as_boxes(rec["boxes"], f"ground truth {name}")
        classes = _check_classes(rec["classes"], len(boxes), num_classes, f"ground truth {name}")
        ignore = np.asarray(rec.get("ignore", np.zeros(len(boxes), bool)), dtype=bool).reshape(-1)
        if len(ignore) != len(boxes):
            raise DataFormatError(f"ground truth {name}: {len(boxes)} boxes but {len(ignore)} ignore flags")
        for b, c, ig in zip(boxes, classes, ignore, strict=True):
            xywh = _xywh(b)
            gt_anns.append(
                {
                    "id": len(gt_anns) + 1,
                    "image_id": img_ids[name],
                    "category_id": int(c) + 1,
                    "bbox": xywh,
                    "area": xywh[2] * xywh[3],
                    "iscrowd": int(ig),
                }
            )
            gt_per_class[c] += not ig
            n_ignored += int(ig)

    dt_anns = []
    for rec in detections:
        name = str(rec["image_id"])
        if name not in img_ids:
            raise DataFormatError(f"detections for image {name!r}, which has no ground-truth record")
        boxes = _as_boxes(rec["boxes"], f"detections {name}")
        classes = _check_classes(rec["classes"], len(boxes), num_classes, f"detections {name}")
        scores = np.asarray(rec["scores"], dtype=np.float64).reshape(-1)
        if len(scores) != len(boxes):
            raise DataFormatError(f"detections {name}: {len(boxes)} boxes but {len(scores)} scores")
        for b, c, s in zip(boxes, classes, scores, strict=True):
            xywh = _xywh(b)
            dt_anns.append(
                {
                    "id": len(dt_anns) + 1,
                    "image_id": img_ids[name],
                    "category_id": int(c) + 1,
                    "bbox": xywh,
                    "area": xywh[2] * xywh[3],
                    "iscrowd": 0,
                    "score": float(s),
                }
            )

    categories = [{"id": i + 1, "name": str(i)} for i in range(num_classes)]
    counts = {
        "images": len(images),
        "gt_boxes": int(gt_per_class.sum()),
        "gt_ignored": n_ignored,
        "detections": len(dt_anns),
        "gt_per_class": gt_per_class,
    }
    gt = {"images": images, "annotations": gt_anns, "categories": categories}
    dt = {"images": images, "annotations": dt_anns, "categories": categories}
    return gt, dt, counts


def _run_cocoeval(
    ground_truth: Sequence[Mapping[str, Any]],
    detections: Sequence[Mapping[str, Any]],
    num_classes: int,
    iou_thresholds: np.ndarray | None,
    max_detections: int,
) -> tuple[Any, dict[str, Any]]:
    """Evaluated and accumulated COCOeval (one area range: all; one maxDets), with pycocotools' prints swallowed."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt, dt, counts = _coco_datasets(ground_truth, detections, num_classes)
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt, coco_dt = COCO(), COCO()
        coco_gt.dataset, coco_dt.dataset = gt, dt  # built directly: loadRes fails on an empty detection list
        coco_gt.createIndex()
        coco_dt.createIndex()
        ev = COCOeval(coco_gt, coco_dt, iouType="bbox")
        ev.params.imgIds = [im["id"] for im in gt["images"]]
        ev.params.catIds = [c["id"] for c in gt["categories"]]
        ev.params.areaRng, ev.params.areaRngLbl = [[0.0, 1e10]], ["all"]
        ev.params.maxDets = [max_detections]
        if iou_thresholds is not None:
            ev.params.iouThrs = np.asarray(iou_thresholds, dtype=np.float64)
        ev.evaluate()
        ev.accumulate()
    return ev, counts


def _class_ap(precision: np.ndarray) -> float | None:
    """Mean of COCOeval's interpolated precision over recall points (and IoUs); None where the class has no GT."""
    valid = precision[precision > -1]
    return float(valid.mean()) if valid.size else None


def _mean(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return float(np.mean(present)) if present else None


def evaluate_detections(
    ground_truth: Sequence[Mapping[str, Any]],
    detections: Sequence[Mapping[str, Any]],
    class_names: Sequence[str],
    iou_type: str = "bbox",
    *,
    max_detections: int = 100,
) -> dict[str, Any]:
    """COCO-style evaluation of box detections.

    ``ground_truth``: one dict per image ``{"image_id": str, "width": int, "height": int, "boxes": (N, 4) x1y1x2y2
    pixels, "classes": (N,) int, "ignore": (N,) bool}`` (``ignore`` optional). ``detections``: dicts
    ``{"image_id", "boxes", "scores", "classes"}`` for images in ``ground_truth`` (an image may be absent or
    repeated). Returns ``{"mAP50", "mAP50_95", "per_class_AP50": {name: float | None}, "per_class_AP50_95",
    "counts": {"images", "gt_boxes", "gt_ignored", "detections", "gt_per_class": {name: int}}}``; the means are
    ``None`` when no class has ground truth. See the module docstring for the conventions.
    """
    if iou_type != "bbox":
        raise ConfigError(f"only iou_type='bbox' is supported, got {iou_type!r}")
    ev, counts = _run_cocoeval(ground_truth, detections, len(class_names), None, max_detections)
    precision = ev.eval["precision"][:, :, :, 0, -1]  # (T IoUs, R recall points, K classes)
    iou50 = int(np.argmin(np.abs(ev.params.iouThrs - 0.5)))
    ap50 = [_class_ap(precision[iou50, :, k]) for k in range(len(class_names))]
    ap = [_class_ap(precision[:, :, k]) for k in range(len(class_names))]
    counts["gt_per_class"] = {name: int(n) for name, n in zip(class_names, counts["gt_per_class"], strict=True)}
    return {
        "mAP50": _mean(ap50),
        "mAP50_95": _mean(ap),
        "per_class_AP50": dict(zip(class_names, ap50, strict=True)),
        "per_class_AP50_95": dict(zip(class_names, ap, strict=True)),
        "counts": counts,
    }


def precision_recall_curves(
    ground_truth: Sequence[Mapping[str, Any]],
    detections: Sequence[Mapping[str, Any]],
    class_names: Sequence[str],
    *,
    iou_threshold: float = 0.5,
    max_detections: int = 100,
) -> dict[str, PRCurve]:
    """Per-class raw PR curves at one IoU, from COCOeval's matches (same matching as :func:`evaluate_detections`).

    Detections matched to ignored ground truth are left out. A class without ground truth gets empty arrays and
    ``ap=None``.
    """
    ev, counts = _run_cocoeval(ground_truth, detections, len(class_names), np.array([iou_threshold]), max_detections)
    n_img = len(ev.params.imgIds)
    curves = {}
    for k, name in enumerate(class_names):
        per_image = [e for e in ev.evalImgs[k * n_img : (k + 1) * n_img] if e is not None]
        num_gt = int(counts["gt_per_class"][k])
        if not per_image or num_gt == 0:
            curves[name] = PRCurve(np.zeros(0), np.zeros(0), np.zeros(0), None, num_gt)
            continue
        scores = np.concatenate([e["dtScores"] for e in per_image])
        matched = np.concatenate([e["dtMatches"][0] for e in per_image]) > 0
        ignored = np.concatenate([e["dtIgnore"][0] for e in per_image]).astype(bool)
        order = np.argsort(-scores, kind="mergesort")  # COCOeval's tie order
        scores, matched, ignored = scores[order], matched[order], ignored[order]
        keep = ~ignored
        tp = np.cumsum(matched[keep])
        fp = np.cumsum(~matched[keep])
        curves[name] = PRCurve(
            precision=tp / np.maximum(tp + fp, 1),
            recall=tp / num_gt,
            scores=scores[keep],
            ap=_class_ap(ev.eval["precision"][0, :, k, 0, -1]),
            num_gt=num_gt,
        )
    return curves


def plot_pr_curves(curves: Mapping[str, PRCurve], out_png: str | Path, *, title: str = "Precision-recall") -> Path:
    """Draw the curves into a PNG with the Agg canvas directly: pyplot and the caller's backend stay untouched."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 6), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for name, c in curves.items():
        if c.ap is None:
            continue
        # A monotone envelope (what AP integrates) reads better than the saw-tooth raw curve.
        envelope = np.maximum.accumulate(c.precision[::-1])[::-1] if len(c.precision) else c.precision
        ax.step(
            np.r_[0.0, c.recall],
            np.r_[1.0 if len(envelope) else 0.0, envelope],
            where="pre",
            label=f"{name} (AP {c.ap:.3f}, n={c.num_gt})",
        )
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02), title=title)
    ax.grid(alpha=0.3)
    if ax.lines:
        ax.legend(loc="lower left", fontsize="small")
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png)
    return out_png
