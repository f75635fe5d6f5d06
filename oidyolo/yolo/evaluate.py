"""Evaluation on the validation annotation file: COCO mAP@0.5 and mAP@[.5:.95] (pycocotools), per-class AP50,
counts, a precision-recall plot and a few validation images with predicted and true boxes.

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


def evaluate(
    weights: str | Path,
    val_txt: str | Path,
    out_dir: str | Path,
    *,
    voc_dir: str | Path | None = None,
    score_threshold: float = 0.001,
    iou_threshold: float = 0.45,
    max_detections: int = 100,
    examples: int = 6,
    batch_size: int = 8,
) -> dict:
    """Write ``metrics.json``, ``pr_curve.png`` and ``examples/*.jpg`` into ``out_dir``; returns the metrics."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    body, spec = load_body(weights)
    lines = read_annotations(val_txt, num_classes=spec.num_classes)
    voc = Path(voc_dir) if voc_dir else None
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
    metrics["settings"] = {
        "score_threshold": score_threshold, "nms_iou_threshold": iou_threshold, "max_detections": max_detections,
        "input_size": list(spec.input_size), "variant": spec.variant, "weights": str(weights),
    }  # fmt: skip
    metrics["images_per_second"] = round(len(lines) / max(seconds, 1e-9), 2)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    curves = precision_recall_curves(truth, found, spec.classes, max_detections=max_detections)
    plot_pr_curves(
        curves, out / "pr_curve.png", title=f"Precision-recall at IoU 0.5 (mAP50 {metrics['mAP50'] or 0:.3f})"
    )
    shown = out / "examples"
    shown.mkdir(exist_ok=True)
    for line, d in list(zip(lines, dets, strict=True))[:examples]:
        keep = d.scores >= 0.3
        view = type(d)(d.path, d.width, d.height, d.boxes[keep], d.scores[keep], d.classes[keep])
        draw(line.path, view, spec.classes, shown / f"{Path(line.path).stem}.jpg", truth=line.boxes)
    print(
        f"mAP50 {metrics['mAP50']}, mAP50_95 {metrics['mAP50_95']} on {len(lines)} images "
        f"({metrics['images_per_second']} img/s)",
        file=sys.stderr,
    )
    return metrics
