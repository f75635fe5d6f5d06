"""Small keras-yolo3 datasets rendered by the demo generator (real JPEGs whose boxes match the pixels)."""

from __future__ import annotations

from pathlib import Path

from oidyolo.data.demo import DemoSpec, plan_images, render_image
from oidyolo.data.yolo_format import format_line, write_annotations

CLASSES = ["Apple", "Orange", "Banana"]


def make_dataset(root: Path, n_train: int = 8, n_val: int = 4, side: int = 128) -> Path:
    """Write ``root/{train,val,classes}.txt`` and the images; returns ``root``."""
    spec = DemoSpec(images={"train": n_train, "validation": n_val, "test": 0}, min_side=side, max_side=side + 32)
    root.mkdir(parents=True, exist_ok=True)
    for split, name in (("train", "train.txt"), ("validation", "val.txt")):
        lines = []
        for plan in plan_images(spec, split):
            if plan.missing:
                continue
            rendered = render_image(spec, plan)
            boxes = [(*o.box_px, CLASSES.index(o.label)) for o in rendered.objects if o.label in CLASSES]
            if not boxes:
                continue
            path = root / "images" / f"{plan.image_id}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(rendered.jpeg(90))
            lines.append(format_line(str(path), boxes))
        write_annotations(root / name, lines)
    write_annotations(root / "classes.txt", CLASSES)
    return root


def write_tiny_anchors(root: Path, input_hw: tuple[int, int] = (64, 64)) -> Path:
    """k-means anchors for YOLOv3-tiny (6) from ``root/train.txt`` at ``input_hw``, written to ``root/anchors.txt``."""
    from oidyolo.data.anchors import anchors_from_annotations, write_anchors

    anchors, _ = anchors_from_annotations(root / "train.txt", input_hw, k=6, seed=0)
    write_anchors(root / "anchors.txt", anchors)
    return root / "anchors.txt"
