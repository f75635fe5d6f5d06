"""Snakemake adapter: convert a darknet .weights file (yours, full or partial) into a Keras 3 .weights.h5 start."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from oidyolo.runner import logged_step

with logged_step(snakemake.log[0], "convert_darknet"):
    from oidyolo.yolo.darknet import convert_darknet, shipped_cfg

    loaded = convert_darknet(shipped_cfg(snakemake.params.variant), snakemake.input[0], snakemake.output[0])
    print(f"converted {snakemake.input[0]}: {loaded.summary()}")
