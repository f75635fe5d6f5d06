"""VOC files -> keras-yolo3 annotation files (``train.txt``, ``val.txt``, ``test.txt``) and ``classes.txt``.

Class ids follow the order of the configured classes. Boxes that round to zero width or height are dropped and
counted (they give log(0) in the YOLO loss). Validation comes from its own Open Images split, or from a seeded
fraction of the training split (by ImageID hash, so the partition is stable as images are added). The test set
(the reported mAP: never trained on, never used for model selection) comes from its own split, or from a seeded
fraction of the validation images, which validation then no longer holds.
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from oidyolo.data.voc import read_voc
from oidyolo.data.yolo_format import format_line, write_annotations
from oidyolo.errors import ConfigError, disk_full, is_disk_full


@dataclass
class LineStats:
    images: int = 0
    boxes: int = 0
    per_class: Counter[str] = field(default_factory=Counter)
    dropped: Counter[str] = field(default_factory=Counter)

    def line(self, label: str) -> str:
        classes = ", ".join(f"{k} {v}" for k, v in sorted(self.per_class.items()))
        dropped = ", ".join(f"{v} {k}" for k, v in self.dropped.items()) or "none"
        return f"{label}: {self.images} images, {self.boxes} boxes ({classes}); dropped: {dropped}"


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
            x1, y1, x2, y2 = obj.box
            if x2 <= x1 or y2 <= y1:
                stats.dropped["zero-size boxes"] += 1
                continue
            boxes.append((x1, y1, x2, y2, ids[obj.name]))
            stats.per_class[obj.name] += 1
        if not boxes:
            stats.dropped["images left without boxes"] += 1
            continue
        path = os.path.abspath(ann.path) if absolute_paths else ann.path
        out.append(format_line(path, boxes))
        stats.images += 1
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
    val_lines = lines_for(val_paths, classes, val_stats, **opts)
    test_lines = lines_for(test_paths, classes, test_stats, **opts)
    sets = [(train_lines, "training"), (val_lines, "validation")] + ([(test_lines, "test")] if out_test else [])
    for lines, name in sets:
        if not lines:
            raise ConfigError(f"the {name} set is empty: no image with boxes of {', '.join(classes)}")
    outputs = [(out_train, train_lines), (out_val, val_lines), (out_classes, classes)]
    if out_test is not None:
        outputs.append((out_test, test_lines))
    for path, lines in outputs:
        try:
            write_annotations(path, lines)
        except OSError as err:  # write_annotations writes PATH.part, then renames: drop the partial file
            Path(path).with_name(Path(path).name + ".part").unlink(missing_ok=True)
            if is_disk_full(err):
                raise disk_full(path, err) from err
            raise
    print(train_stats.line("train.txt"), file=sys.stderr)
    print(val_stats.line("val.txt"), file=sys.stderr)
    if out_test is not None:
        print(test_stats.line("test.txt"), file=sys.stderr)
    return train_stats, val_stats
