"""Evaluation on the held-out test annotation file: COCO mAP@0.5 and mAP@[.5:.95] (pycocotools), per-class AP50,
counts, a precision-recall plot and a few test images with predicted and true boxes; the validation set's mAP
beside it, labelled (it chose the checkpoint, so it is not held out).

Detections are kept down to a low score threshold (0.001) so the precision-recall curve is not cut short. Ground
truth comes from the annotation file (images without boxes included); with the VOC folder given, boxes marked
group-of or difficult there, per class, are "ignore" regions (a detection on them is neither a hit nor a false
positive): :func:`oidyolo.data.yolo_lines.evaluation_truth`.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from oidyolo.data.yolo_format import read_annotations
from oidyolo.data.yolo_lines import evaluation_truth
from oidyolo.yolo.metrics import evaluate_detections, plot_pr_curves, precision_recall_curves
from oidyolo.yolo.modelspec import load_body
from oidyolo.yolo.predict import detect, draw


def _score(body, spec, annotations: str | Path, voc: Path | None, *, score_threshold, iou_threshold, max_detections,
           batch_size):  # fmt: skip
    """Detections and COCO metrics of one annotation file: ``(metrics, lines, dets, truth, found, seconds)``."""
    lines = read_annotations(annotations, num_classes=spec.num_classes)
    started = time.monotonic()
    dets = list(
        detect(
            body, spec, [ln.path for ln in lines], batch_size=batch_size, score_threshold=score_threshold,
            iou_threshold=iou_threshold, max_detections=max_detections,
        )
    )  # fmt: skip
    seconds = time.monotonic() - started
    truth, found = [], []
    for line, d in zip(lines, dets, strict=True):
        image_id = Path(line.path).stem
        boxes, classes, ignore = evaluation_truth(line, voc / f"{image_id}.xml" if voc else None, spec.classes)
        truth.append(
            {
                "image_id": image_id, "width": d.width, "height": d.height, "boxes": boxes.astype(float),
                "classes": classes, "ignore": ignore,
            }
        )  # fmt: skip
        found.append({"image_id": image_id, "boxes": d.boxes, "scores": d.scores, "classes": d.classes})
    metrics = evaluate_detections(truth, found, spec.classes, max_detections=max_detections)
    return metrics, lines, dets, truth, found, seconds


def evaluate(
    weights: str | Path,
    test_txt: str | Path,
    out_dir: str | Path,
    *,
    voc_dir: str | Path | None = None,
    split: str | None = None,
    val_txt: str | Path | None = None,
    val_voc_dir: str | Path | None = None,
    val_split: str = "validation",
    score_threshold: float = 0.001,
    iou_threshold: float = 0.45,
    max_detections: int = 100,
    examples: int = 6,
    batch_size: int = 8,
) -> dict:
    """Write ``metrics.json``, ``pr_curve.png`` and ``examples/*.jpg`` into ``out_dir``; returns the metrics.

    The metrics are those of ``test_txt`` (held out: ``"split"``, by default the file's stem, and ``"images"`` say
    which and how many); with
    ``val_txt``, the validation set's mAP is added under ``"validation"`` (it chose the checkpoint, so it is
    optimistic)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    split = split or Path(test_txt).stem
    body, spec = load_body(weights)
    opts = dict(
        score_threshold=score_threshold, iou_threshold=iou_threshold, max_detections=max_detections,
        batch_size=batch_size,
    )  # fmt: skip
    voc = Path(voc_dir) if voc_dir else None
    metrics, lines, dets, truth, found, seconds = _score(body, spec, test_txt, voc, **opts)
    metrics = {"split": split, "images": len(lines), **metrics}
    if val_txt is not None:
        val, val_lines, *_ = _score(body, spec, val_txt, Path(val_voc_dir) if val_voc_dir else None, **opts)
        metrics["validation"] = {
            "split": val_split, "images": len(val_lines), "mAP50": val["mAP50"], "mAP50_95": val["mAP50_95"],
            "note": "used for checkpoint choice and the learning-rate schedule: optimistic",
        }  # fmt: skip
    metrics["settings"] = {
        "score_threshold": score_threshold, "nms_iou_threshold": iou_threshold, "max_detections": max_detections,
        "input_size": list(spec.input_size), "variant": spec.variant, "weights": str(weights),
    }  # fmt: skip
    metrics["images_per_second"] = round(len(lines) / max(seconds, 1e-9), 2)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    curves = precision_recall_curves(truth, found, spec.classes, max_detections=max_detections)
    plot_pr_curves(
        curves, out / "pr_curve.png",
        title=f"Precision-recall at IoU 0.5, {split} split (mAP50 {metrics['mAP50'] or 0:.3f})",
    )  # fmt: skip
    shown = out / "examples"
    shown.mkdir(exist_ok=True)
    for line, d in list(zip(lines, dets, strict=True))[:examples]:
        keep = d.scores >= 0.3
        view = type(d)(d.path, d.width, d.height, d.boxes[keep], d.scores[keep], d.classes[keep])
        draw(line.path, view, spec.classes, shown / f"{Path(line.path).stem}.jpg", truth=line.boxes)
    val_note = ""
    if "validation" in metrics:
        v = metrics["validation"]
        val_note = f"; validation ({v['split']}, {v['images']} images, used for model selection) mAP50 {v['mAP50']}"
    print(
        f"{split} split: mAP50 {metrics['mAP50']}, mAP50_95 {metrics['mAP50_95']} on {len(lines)} images "
        f"({metrics['images_per_second']} img/s){val_note}",
        file=sys.stderr,
    )
    return metrics
