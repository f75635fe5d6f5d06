"""Snakemake adapter: train.txt / val.txt -> COCO detection JSON."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from oidyolo.data.coco_format import write_coco
from oidyolo.runner import logged_step

with logged_step(snakemake.log[0], "coco"):
    i = snakemake.input
    counts = write_coco(snakemake.output[0], i.lines, i.classes, list(i.voc))
    print(f"{snakemake.output[0]}: {counts}", file=sys.stderr)
