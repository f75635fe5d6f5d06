"""Snakemake adapter: anchors by k-means on the training boxes scaled to the input (or the COCO anchors)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from oidyolo.data.anchors import COCO_ANCHORS, COCO_TINY_ANCHORS, anchors_from_annotations, write_anchors
from oidyolo.runner import logged_step

with logged_step(snakemake.log[0], "anchors"):
    p = snakemake.params
    if p.mode == "coco":
        anchors = COCO_ANCHORS if p.k == 9 else COCO_TINY_ANCHORS
        print(f"standard COCO anchors ({p.k})")
    else:
        anchors, iou = anchors_from_annotations(snakemake.input[0], tuple(p.input_size), k=p.k, seed=p.seed)
        print(f"k-means anchors ({p.k}) for input {p.input_size}: mean IoU {iou:.3f}")
    write_anchors(snakemake.output[0], anchors)
