"""Snakemake adapter: images and boxes per class and split (table and plot)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from oidyolo.report import write_dataset_report
from oidyolo.runner import logged_step

with logged_step(snakemake.log[0], "dataset_report"):
    i, o = snakemake.input, snakemake.output
    write_dataset_report({"train": i.train, "val": i.val}, i.classes, o.tsv, o.png)
