"""Driver for convert_bench.py: the OIDv4_ToolKit way of getting pixel boxes, writing the same keras-yolo3 lines.

    python bench/convert_baseline.py DATA_DIR OUT_DIR

For every selected image: ``cv2.imread`` it to learn its size (OIDv4_ToolKit, oidv6 and the usual
OIDv4 -> YOLO converters decode every image for ``img.shape``), then scale its boxes to pixels and write
``train.txt`` / ``val.txt`` / ``classes.txt`` in the same format as ours (no VOC files, so it does less writing).
"""

import json
import sys
from pathlib import Path

import cv2
import pyarrow.parquet as pq

from oidyolo.data.download import read_manifest

if __name__ == "__main__":
    data, out = Path(sys.argv[1]), Path(sys.argv[2])
    spec = json.loads((data / "spec.json").read_text())
    classes = spec["classes"]
    out.mkdir(parents=True, exist_ok=True)
    for split, name in (("train", "train.txt"), ("validation", "val.txt")):
        paths: dict[str, str] = {}
        for c in classes:
            for e in read_manifest(data / "manifests" / split / f"{c}.tsv"):
                paths.setdefault(e.image_id, e.path)
        boxes: dict[str, list[tuple]] = {}
        for cid, c in enumerate(classes):
            table = pq.read_table(
                data / "boxes" / split / f"{c}.parquet", columns=["ImageID", "XMin", "XMax", "YMin", "YMax"]
            )
            for row in zip(*(table[k].to_pylist() for k in table.column_names), strict=True):
                if row[0] in paths:
                    boxes.setdefault(row[0], []).append((*row[1:], cid))
        lines = []
        for image_id, path in sorted(paths.items()):
            height, width = cv2.imread(path).shape[:2]
            parts = [path]
            for x1, x2, y1, y2, cid in boxes.get(image_id, []):
                px = [min(width, max(0, round(x1 * width))), min(height, max(0, round(y1 * height)))]
                px += [min(width, max(0, round(x2 * width))), min(height, max(0, round(y2 * height)))]
                if px[2] > px[0] and px[3] > px[1]:
                    parts.append(",".join(map(str, px)) + f",{cid}")
            lines.append(" ".join(parts))
        (out / name).write_text("\n".join(lines) + "\n")
    (out / "classes.txt").write_text("\n".join(classes) + "\n")
