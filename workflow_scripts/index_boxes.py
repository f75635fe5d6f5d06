"""Snakemake adapter: one pass that indexes the split's bbox CSV by LabelName, for every class's extraction."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from oidyolo.data.boxes import block_pandas, build_index
from oidyolo.runner import logged_step

block_pandas()  # pyarrow would import it (~0.45 s per job)

with logged_step(snakemake.log[0], "index_boxes"):
    counts = build_index(snakemake.input[0], snakemake.output[0], threads=snakemake.threads)
    print(f"{snakemake.input[0]}: {sum(counts.values())} rows under {len(counts)} LabelNames", file=sys.stderr)
