"""Snakemake adapter: VOC -> keras-yolo3 train.txt / val.txt / test.txt / classes.txt."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from oidyolo.data.yolo_lines import build_annotations
from oidyolo.runner import logged_step, warn

with logged_step(snakemake.log[0], "yolo_annotations"):
    p = snakemake.params
    _, val_stats = build_annotations(
        train_voc=snakemake.input.train,
        val_voc=snakemake.input.val[0] if snakemake.input.val else None,
        classes=list(p.classes),
        out_train=snakemake.output.train,
        out_val=snakemake.output.val,
        out_classes=snakemake.output.classes,
        val_fraction=p.val_fraction,
        out_test=snakemake.output.test,
        test_voc=snakemake.input.test[0] if snakemake.input.test else None,
        test_fraction=p.test_fraction,
        seed=p.seed,
        include_difficult=p.include_difficult,
        absolute_paths=p.absolute_paths,
    )
    for name in p.classes:
        if not val_stats.per_class[name]:
            warn(f"class {name!r} has no boxes in val.txt: its validation loss and AP are not measured")
