"""Snakemake adapter: every box of one class (and its subclasses) from the split's bbox CSV, by its index."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from oidyolo.data.boxes import block_pandas
from oidyolo.data.catalog import ClassCatalog, ceded_line
from oidyolo.data.select import extract_class
from oidyolo.runner import logged_step, warn

block_pandas()  # pyarrow would import it (~0.45 s per job)

with logged_step(snakemake.log[0], "extract_class"):
    p = snakemake.params
    catalog = ClassCatalog.from_file(snakemake.input.catalog)
    catalog.mid(p.name)  # the source must know the class too
    if p.ceded:  # overlapping hierarchy requests: each MID goes to the most specific requested class
        print(ceded_line(p.name, p.ceded, catalog))
    boxes = extract_class(
        snakemake.input.csv, p.mids, snakemake.output[0], strict=p.strict, label=p.name, index=snakemake.input.index
    )
    if not boxes:
        warn(f"class {p.name!r} has no boxes in the {snakemake.wildcards.split} split ({snakemake.input.csv})")
