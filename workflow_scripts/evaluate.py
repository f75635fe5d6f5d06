"""Snakemake adapter: mAP, precision-recall plot and example images on the held-out test set (validation beside)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from oidyolo.runner import logged_step

with logged_step(snakemake.log[0], "evaluate"):
    from oidyolo.yolo.evaluate import evaluate

    p = snakemake.params
    evaluate(
        snakemake.input.weights,
        snakemake.input.test,
        Path(snakemake.output.metrics).parent,
        voc_dir=snakemake.input.test_voc,
        split=p.test_split,
        val_txt=snakemake.input.val,
        val_voc_dir=snakemake.input.val_voc,
        val_split=p.val_split,
        score_threshold=p.score_threshold,
        iou_threshold=p.iou_threshold,
        max_detections=p.max_detections,
        examples=p.examples,
    )
