"""The keras-yolo3 files -> COCO detection JSON (what mmdetection, Detectron2 and pycocotools read).

Built from ``train.txt`` / ``val.txt`` and ``classes.txt`` (the boxes, in the lines' 0-based pixels, whatever the
VOC edge convention), with each image's size and each box's group-of flag from its VOC file: a group-of box is
``iscrowd: 1`` (COCO's "many objects, one box": trainers skip it as a target, COCOeval ignores detections on it).
Categories are ``classes.txt`` in order, ids from 1; images and annotations are numbered from 1 in line order.
An image without boxes (kept in ``val.txt``) is an image without annotations.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from oidyolo.atomic import write_text_atomic
from oidyolo.data.voc import read_voc
from oidyolo.data.yolo_format import read_annotations, read_classes
from oidyolo.data.yolo_lines import find_voc, match_objects


def coco_dataset(lines_txt: str | Path, classes_txt: str | Path, voc_dirs: Sequence[str | Path]) -> dict[str, Any]:
    """The COCO dict for one annotation file; ``file_name`` is the line's image path as written there."""
    classes = read_classes(classes_txt)
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for image_id, line in enumerate(read_annotations(lines_txt, num_classes=len(classes)), 1):
        voc = read_voc(find_voc(line, voc_dirs))
        images.append({"id": image_id, "file_name": line.path, "width": voc.width, "height": voc.height})
        matched, _ = match_objects(line, voc.objects, classes)
        for (x1, y1, x2, y2, cls), obj in zip(line.boxes.tolist(), matched, strict=True):
            w, h = x2 - x1, y2 - y1
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": cls + 1,
                    "bbox": [x1, y1, w, h],
                    "area": w * h,
                    "iscrowd": int(obj is not None and obj.group_of),
                }
            )
    return {
        "info": {"description": f"oidyolo export of {Path(lines_txt).name}", "version": "1.0"},
        "images": images,
        "annotations": annotations,
        "categories": [{"id": i + 1, "name": name, "supercategory": "object"} for i, name in enumerate(classes)],
    }


def write_coco(
    out_json: str | Path, lines_txt: str | Path, classes_txt: str | Path, voc_dirs: Sequence[str | Path]
) -> dict[str, int]:
    """Write the COCO JSON atomically; returns the counts of images, annotations and crowd (group-of) boxes."""
    data = coco_dataset(lines_txt, classes_txt, voc_dirs)
    write_text_atomic(out_json, json.dumps(data))
    crowd = sum(a["iscrowd"] for a in data["annotations"])
    return {"images": len(data["images"]), "annotations": len(data["annotations"]), "crowd": crowd}
