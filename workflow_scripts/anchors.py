"""Snakemake adapter: anchors by k-means on the training boxes scaled to the input (or the COCO anchors)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from oidyolo.data.anchors import anchors_from_annotations, write_anchors
from oidyolo.runner import logged_step
from oidyolo.variants import get_variant

with logged_step(snakemake.log[0], "anchors"):
    p = snakemake.params
    variant = get_variant(p.variant)
    k = variant.num_anchors
    if p.mode == "coco":
        anchors = variant.coco_anchor_array()
        print(f"standard COCO anchors ({k})")
    else:
        anchors, iou = anchors_from_annotations(snakemake.input[0], tuple(p.input_size), k=k, seed=p.seed)
        print(f"k-means anchors ({k}) for input {p.input_size}: mean IoU {iou:.3f}")
    write_anchors(snakemake.output[0], anchors)
