"""VOC files -> keras-yolo3 annotation files (``train.txt``, ``val.txt``, ``test.txt``) and ``classes.txt``.

Class ids follow the order of the configured classes. Boxes that round to zero width or height are dropped and
counted (they give log(0) in the YOLO loss). Validation comes from its own Open Images split, or from a seeded
fraction of the training split (by ImageID hash, so the partition is stable as images are added). The test set
(the reported mAP: never trained on, never used for model selection) comes from its own split, or from a seeded
fraction of the validation images, which validation then no longer holds. An image left
without boxes stays in ``val.txt`` and ``test.txt`` as a bare path (keras-yolo3 reads it as an image with no
objects), so that detections on it count as false positives; ``train.txt`` drops it.
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from oidyolo.data.voc import VocObject, read_voc
from oidyolo.data.yolo_format import AnnotationLine, format_line, write_annotations
from oidyolo.errors import ConfigError, DataFormatError


@dataclass
class LineStats:
    images: int = 0
    boxes: int = 0
    per_class: Counter[str] = field(default_factory=Counter)
    dropped: Counter[str] = field(default_factory=Counter)
    empty: int = 0  # images kept without boxes (validation)

    def line(self, label: str) -> str:
        classes = ", ".join(f"{k} {v}" for k, v in sorted(self.per_class.items()))
        dropped = ", ".join(f"{v} {k}" for k, v in self.dropped.items()) or "none"
        kept = f", {self.empty} of them without boxes" if self.empty else ""
        return f"{label}: {self.images} images{kept}, {self.boxes} boxes ({classes}); dropped: {dropped}"


def line_box(obj: VocObject) -> tuple[int, int, int, int]:
    """The keras-yolo3 corners (0-based pixels) of a VOC object: the one place that knows our VOC edge convention."""
    return obj.box


def voc_files(voc_dir: str | Path) -> list[Path]:
    # One directory: ordering Paths is ordering their names, and comparing str keys is much cheaper.
    return sorted(Path(voc_dir).glob("*.xml"), key=lambda p: p.name)


def lines_for(
    voc_paths: Iterable[Path],
    classes: Sequence[str],
    stats: LineStats,
    *,
    include_difficult: bool = True,
    absolute_paths: bool = False,
    keep_empty: bool = False,
) -> list[str]:
    ids = {name: i for i, name in enumerate(classes)}
    out = []
    for voc_path in voc_paths:
        ann = read_voc(voc_path)
        boxes = []
        for obj in ann.objects:
            if obj.name not in ids:
                stats.dropped["boxes of classes not in classes.txt"] += 1
                continue
            if obj.difficult and not include_difficult:
                stats.dropped["difficult boxes"] += 1
                continue
            x1, y1, x2, y2 = line_box(obj)
            if x2 <= x1 or y2 <= y1:
                stats.dropped["zero-size boxes"] += 1
                continue
            boxes.append((x1, y1, x2, y2, ids[obj.name]))
            stats.per_class[obj.name] += 1
        if not boxes and not keep_empty:
            stats.dropped["images left without boxes"] += 1
            continue
        path = os.path.abspath(ann.path) if absolute_paths else ann.path
        out.append(format_line(path, boxes))
        stats.images += 1
        stats.empty += not boxes
        stats.boxes += len(boxes)
    return out


def in_val_fraction(image_id: str, fraction: float, seed: int, *, purpose: str = "val") -> bool:
    digest = hashlib.blake2b(f"{purpose}:{seed}:{image_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") < fraction * 2**64


def _carve(paths: list[Path], fraction: float | None, seed: int, purpose: str) -> tuple[list[Path], list[Path]]:
    """(kept, carved out): the seeded ``fraction`` of ``paths`` by ImageID hash."""
    if fraction is not None and not 0 < fraction < 1:
        raise ConfigError(f"{purpose}_fraction must be between 0 and 1, got {fraction}")
    carved = [p for p in paths if in_val_fraction(p.stem, fraction, seed, purpose=purpose)]  # type: ignore[arg-type]
    held = set(carved)
    return [p for p in paths if p not in held], carved


def build_annotations(
    *,
    train_voc: str | Path,
    val_voc: str | Path | None,
    classes: Sequence[str],
    out_train: str | Path,
    out_val: str | Path,
    out_classes: str | Path,
    val_fraction: float | None = None,
    seed: int = 0,
    include_difficult: bool = True,
    absolute_paths: bool = False,
    out_test: str | Path | None = None,
    test_voc: str | Path | None = None,
    test_fraction: float | None = None,
) -> tuple[LineStats, LineStats]:
    """Write the annotation files. Either ``val_voc`` (a separate split) or ``val_fraction`` of the train split;
    with ``out_test``, either ``test_voc`` or ``test_fraction`` of the validation images. Returns the training and
    validation counts."""
    if (val_voc is None) == (val_fraction is None):
        raise ConfigError("give either a validation split or val_fraction, not both or neither")
    if out_test is not None and (test_voc is None) == (test_fraction is None):
        raise ConfigError("give either a test split or test_fraction, not both or neither")
    train_paths = voc_files(train_voc)
    if val_voc is not None:
        val_paths = voc_files(val_voc)
    else:
        train_paths, val_paths = _carve(train_paths, val_fraction, seed, "val")
    test_paths: list[Path] = []
    if out_test is not None:
        if test_voc is not None:
            test_paths = voc_files(test_voc)
        else:
            val_paths, test_paths = _carve(val_paths, test_fraction, seed, "test")
    opts = {"include_difficult": include_difficult, "absolute_paths": absolute_paths}
    train_stats, val_stats, test_stats = LineStats(), LineStats(), LineStats()
    train_lines = lines_for(train_paths, classes, train_stats, **opts)
    val_lines = lines_for(val_paths, classes, val_stats, **opts, keep_empty=True)
    test_lines = lines_for(test_paths, classes, test_stats, **opts, keep_empty=True)
    sets = [(train_stats, "training"), (val_stats, "validation")] + ([(test_stats, "test")] if out_test else [])
    for stats, name in sets:
        if not stats.boxes:
            raise ConfigError(f"the {name} set is empty: no image with boxes of {', '.join(classes)}")
    if empty := [c for c in classes if not train_stats.per_class[c]]:  # a class YOLO would never see an example of
        raise ConfigError(
            f"no training boxes of {', '.join(map(repr, empty))} in {train_voc}: remove it from `classes`, or relax "
            "the filters or limit that left it out (logs/select_class says how many it had)"
        )
    outputs = [(out_train, train_lines), (out_val, val_lines), (out_classes, classes)]
    if out_test is not None:
        outputs.append((out_test, test_lines))
    for path, lines in outputs:
        write_annotations(path, lines)
    print(train_stats.line("train.txt"), file=sys.stderr)
    print(val_stats.line("val.txt"), file=sys.stderr)
    if out_test is not None:
        print(test_stats.line("test.txt"), file=sys.stderr)
    return train_stats, val_stats


def find_voc(line: AnnotationLine, voc_dirs: Sequence[str | Path]) -> Path:
    """The VOC file of a line's image (by its stem) in one of ``voc_dirs``."""
    stem = Path(line.path).stem
    for d in voc_dirs:
        if (path := Path(d) / f"{stem}.xml").is_file():
            return path
    raise DataFormatError(f"{line.path}: no VOC file {stem}.xml in {', '.join(str(d) for d in voc_dirs)}")


def match_objects(
    line: AnnotationLine, objects: Sequence[VocObject], classes: Sequence[str]
) -> tuple[list[VocObject | None], list[tuple[tuple[int, ...], int]]]:
    """For each line box, its VOC object: same class, same corners (an unmarked one before a difficult or group-of
    one). Also the marked objects of known classes that no line box took, as ``(corners, class id)``."""
    ids = {name: i for i, name in enumerate(classes)}
    by_key: dict[tuple, list[VocObject]] = {}
    for obj in sorted(objects, key=lambda o: o.difficult or o.group_of):  # stable: unmarked first
        if obj.name in ids:
            by_key.setdefault((*line_box(obj), ids[obj.name]), []).append(obj)
    matched: list[VocObject | None] = []
    for row in line.boxes.tolist():  # x1, y1, x2, y2, class id: the key itself
        objs = by_key.get(tuple(row))
        matched.append(objs.pop(0) if objs else None)
    left = [
        (key[:4], key[4])
        for key, objs in by_key.items()
        for o in objs
        if (o.difficult or o.group_of) and key[2] > key[0] and key[3] > key[1]
    ]
    return matched, left


def evaluation_truth(
    line: AnnotationLine, voc_path: str | Path | None, classes: Sequence[str]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ground truth of one validation image: ``(boxes (N, 4), classes (N,), ignore (N,))`` in line pixels.

    A line box is an ignore region (difficult or group-of) when its VOC object of the *same class* at the same
    corners is marked so: a group-of Person box never turns an Apple box at the same place into one. Marked VOC
    objects of known classes that the line lacks (``include_difficult: false`` drops them from ``val.txt``) are
    added as ignore regions, so a detection on them is not a false positive.
    """
    boxes = line.boxes[:, :4].astype(np.int64)
    cls = line.boxes[:, 4].astype(np.int64)
    if voc_path is None or not Path(voc_path).is_file():
        return boxes, cls, np.zeros(len(boxes), bool)
    matched, left = match_objects(line, read_voc(voc_path).objects, classes)
    ignore = np.array([o is not None and (o.difficult or o.group_of) for o in matched], bool)
    if left:
        boxes = np.concatenate([boxes, np.array([box for box, _ in left], np.int64)])
        cls = np.concatenate([cls, np.array([c for _, c in left], np.int64)])
        ignore = np.concatenate([ignore, np.ones(len(left), bool)])
    return boxes, cls, ignore
