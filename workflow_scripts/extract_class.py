"""Snakemake adapter: every box of one class (and its subclasses) from the split's bbox CSV, by its index."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from oidyolo.data.boxes import block_pandas
from oidyolo.data.catalog import ClassCatalog
from oidyolo.data.select import extract_class
from oidyolo.runner import logged_step

block_pandas()  # pyarrow would import it (~0.45 s per job)

with logged_step(snakemake.log[0], "extract_class"):
    p = snakemake.params
    ClassCatalog.from_file(snakemake.input.catalog).mid(p.name)  # the source must know the class too
    extract_class(
        snakemake.input.csv, p.mids, snakemake.output[0], strict=p.strict, label=p.name, index=snakemake.input.index
    )
