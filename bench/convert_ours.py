"""Driver for convert_bench.py: our VOC + keras-yolo3 conversion, as the workflow's ``voc`` and
``yolo_annotations`` rules run it (here in one fresh interpreter, so start-up and imports are included once).

    python bench/convert_ours.py DATA_DIR OUT_DIR

DATA_DIR holds ``boxes/{split}/{Class}.parquet``, ``manifests/{split}/{Class}.tsv`` and ``spec.json``.
"""

import json
import sys
from pathlib import Path

from oidyolo.data.voc import write_voc
from oidyolo.data.yolo_lines import build_annotations

if __name__ == "__main__":
    data, out = Path(sys.argv[1]), Path(sys.argv[2])
    spec = json.loads((data / "spec.json").read_text())
    for split in ("train", "validation"):
        write_voc(
            out / "voc" / split,
            split=split,
            manifests=[data / "manifests" / split / f"{c}.tsv" for c in spec["classes"]],
            class_boxes={c: data / "boxes" / split / f"{c}.parquet" for c in spec["classes"]},
            filters=spec["filters"],
            database="Open Images v6",
        )
    build_annotations(
        train_voc=out / "voc" / "train",
        val_voc=out / "voc" / "validation",
        classes=spec["classes"],
        out_train=out / "train.txt",
        out_val=out / "val.txt",
        out_classes=out / "classes.txt",
    )
