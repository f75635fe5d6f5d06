"""Snakemake adapter: filters and the seeded image limit -> the class CSV."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from oidyolo.data.boxes import block_pandas
from oidyolo.data.select import select_class
from oidyolo.runner import logged_step, warn

block_pandas()  # pyarrow would import it (~0.45 s per job)

with logged_step(snakemake.log[0], "select_class"):
    p = snakemake.params
    stats = select_class(
        snakemake.input[0], snakemake.output[0], name=p.name, filters=dict(p.filters), limit=p.limit, seed=p.seed
    )
    if stats.boxes and not stats.selected_images:  # no boxes at all was said by extract_class
        warn(f"class {p.name!r}: none of its {stats.images} images in the {snakemake.wildcards.split} split passes "
             "the filters")  # fmt: skip
