"""Snakemake adapter: export the trained detector as .keras, SavedModel and TFLite (float32, float16)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from oidyolo.runner import logged_step

with logged_step(snakemake.log[0], "export"):
    from oidyolo.yolo.export import export

    o, p = snakemake.output, snakemake.params
    thresholds = dict(score=p.score, iou=p.iou, max_detections=p.max_detections)
    for fmt, out, quantize in (
        ("keras", o.keras, None),
        ("saved_model", o.saved_model, None),
        ("tflite", o.tflite, None),
        ("tflite", o.tflite16, "float16"),
    ):
        written = export(snakemake.input.weights, fmt, out, quantize=quantize, **thresholds)
        print(f"{fmt} ({quantize or 'float32'}) -> {written}")
