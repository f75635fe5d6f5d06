"""Snakemake adapter: one class's boxes from the split's bbox CSV, by its index (and, with expand_hierarchy, its
subclasses'), then the filters and the seeded image limit -> the class CSV. One job, one start-up per class."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from oidyolo.data.boxes import block_pandas
from oidyolo.data.catalog import ClassCatalog, ceded_line
from oidyolo.data.select import extract_class, select_class
from oidyolo.runner import logged_step, warn

block_pandas()  # pyarrow would import it (~0.45 s per job)

with logged_step(snakemake.log[0], "select_class"):
    p, split = snakemake.params, snakemake.wildcards.split
    catalog = ClassCatalog.from_file(snakemake.input.catalog)
    catalog.mid(p.name)  # the source must know the class too
    if p.ceded:  # overlapping hierarchy requests: each MID goes to the most specific requested class
        print(ceded_line(p.name, p.ceded, catalog))
    boxes = extract_class(
        snakemake.input.csv, p.mids, snakemake.output.boxes, strict=p.strict, label=p.name, index=snakemake.input.index
    )
    stats = select_class(
        boxes, snakemake.output.selection, name=p.name, filters=dict(p.filters), limit=p.limit, seed=p.seed
    )
    if not stats.boxes:
        warn(f"class {p.name!r} has no boxes in the {split} split ({snakemake.input.csv})")
    elif not stats.selected_images:
        warn(f"class {p.name!r}: none of its {stats.images} images in the {split} split passes the filters")
