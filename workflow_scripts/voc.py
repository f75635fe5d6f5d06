"""Snakemake adapter: one Pascal VOC file per stored image of a split, with every selected class in it."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from oidyolo.data.voc import write_voc
from oidyolo.runner import logged_step

with logged_step(snakemake.log[0], "voc"):
    p = snakemake.params
    write_voc(
        snakemake.output[0],
        split=snakemake.wildcards.split,
        manifests=list(snakemake.input.manifests),
        class_boxes=dict(zip(p.names, snakemake.input.boxes, strict=True)),
        filters=dict(p.filters),
        database=p.database,
    )
