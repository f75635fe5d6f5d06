"""Snakemake adapter: train.txt / val.txt -> the Ultralytics YOLO layout (data.yaml, images/ links, labels/)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from oidyolo.data.ultralytics_format import write_ultralytics
from oidyolo.runner import logged_step

with logged_step(snakemake.log[0], "ultralytics"):
    i = snakemake.input
    counts = write_ultralytics(
        snakemake.output[0], train_txt=i.train, val_txt=i.val, classes_txt=i.classes, voc_dirs=list(i.voc)
    )
    print(f"{snakemake.output[0]}: {counts}", file=sys.stderr)
