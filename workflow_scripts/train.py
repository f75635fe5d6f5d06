"""Snakemake adapter: train YOLOv3 (two stages, resumable); see oidyolo.yolo.train."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from oidyolo.runner import logged_step

with logged_step(snakemake.log[0], "train"):
    from oidyolo.yolo.train import TrainConfig, TrainInputs, train

    i = snakemake.input
    inputs = TrainInputs(
        Path(i.train), Path(i.val), Path(i.classes), Path(i.anchors), Path(i.pretrained[0]) if i.pretrained else None
    )
    cfg = TrainConfig.from_dict(dict(snakemake.params.train))
    train(inputs, Path(snakemake.output.final).parent, cfg, state_dir=snakemake.params.state, threads=snakemake.threads)
