"""The keras-yolo3 files -> the Ultralytics YOLO dataset layout (``yolo detect train data=.../data.yaml``).

Layout, as the Ultralytics docs describe it: ``data.yaml`` (absolute ``path``, ``train``/``val`` image folders
relative to it, ``names`` by class id); ``images/{train,val}/{ImageID}.jpg``; one ``labels/{train,val}/{ImageID}.txt``
per image, found by replacing the last ``/images/`` of the image path with ``/labels/`` and the suffix with
``.txt``. A label line is ``class cx cy w h``, normalised by the image size to [0, 1]; an image without boxes has an
empty label file (a background image). Images are symbolic links to the stored files, never copies; the links are
absolute, so after moving the project rebuild the export (it takes seconds).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from oidyolo.atomic import atomic_dir
from oidyolo.data.voc import read_voc
from oidyolo.data.yolo_format import read_annotations, read_classes
from oidyolo.data.yolo_lines import find_voc


def label_lines(boxes: Sequence[Sequence[int]], width: int, height: int) -> list[str]:
    """``class cx cy w h`` for pixel corners ``x1, y1, x2, y2, class``; clamped to [0, 1], 6 decimals."""
    out = []
    for x1, y1, x2, y2, cls in boxes:
        cx, cy = (x1 + x2) / 2 / width, (y1 + y2) / 2 / height
        w, h = (x2 - x1) / width, (y2 - y1) / height
        vals = (min(max(v, 0.0), 1.0) for v in (cx, cy, w, h))
        out.append(f"{int(cls)} " + " ".join(f"{v:.6f}" for v in vals))
    return out


def write_ultralytics(
    out_dir: str | Path,
    *,
    train_txt: str | Path,
    val_txt: str | Path,
    classes_txt: str | Path,
    voc_dirs: Sequence[str | Path],
) -> dict[str, int]:
    """Build the layout in ``out_dir`` (built in a temporary folder, then put in place); returns counts."""
    import yaml

    out = Path(out_dir).absolute()
    classes = read_classes(classes_txt)
    counts = {}

    def build(tmp: Path) -> None:
        for part, txt in (("train", train_txt), ("val", val_txt)):
            (tmp / "images" / part).mkdir(parents=True)
            (tmp / "labels" / part).mkdir(parents=True)
            lines = read_annotations(txt, num_classes=len(classes))
            for line in lines:
                voc = read_voc(find_voc(line, voc_dirs))
                image = Path(line.path)
                os.symlink(image.absolute(), tmp / "images" / part / image.name)
                text = "".join(f"{row}\n" for row in label_lines(line.boxes.tolist(), voc.width, voc.height))
                (tmp / "labels" / part / f"{image.stem}.txt").write_text(text, encoding="utf-8")
            counts[f"{part}_images"] = len(lines)
            counts[f"{part}_boxes"] = sum(len(ln.boxes) for ln in lines)
        data = {"path": str(out), "train": "images/train", "val": "images/val"}
        data["names"] = dict(enumerate(classes))
        (tmp / "data.yaml").write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")

    atomic_dir(out, build)
    return counts
