"""The keras-yolo3 annotation format: ``path x1,y1,x2,y2,class_id x1,y1,x2,y2,class_id ...``.

One image per line, integer pixel corners, class ids by line number of ``classes.txt``. The path may not hold
whitespace (the format splits on it). This module is the one place that writes and parses it; the training wing
reads the same files through :func:`read_annotations`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from oidyolo.atomic import atomic_write
from oidyolo.errors import DataFormatError


@dataclass(frozen=True)
class AnnotationLine:
    path: str
    boxes: np.ndarray  # (N, 5) int32: x1, y1, x2, y2, class_id


def format_line(path: str, boxes: Iterable[Sequence[int]]) -> str:
    """One annotation line (no newline). Raises if the path holds whitespace."""
    if not path or any(ch.isspace() for ch in path):
        raise DataFormatError(f"image path {path!r} is empty or holds whitespace, which the keras-yolo3 format forbids")
    parts = [path]
    for box in boxes:
        x1, y1, x2, y2, cls = (int(v) for v in box)
        parts.append(f"{x1},{y1},{x2},{y2},{cls}")
    return " ".join(parts)


def parse_line(line: str, *, where: str = "", num_classes: int | None = None) -> AnnotationLine:
    """Parse one line; ``where`` (``file:line``) prefixes error messages."""
    fields = line.split()
    if not fields:
        raise DataFormatError(f"{where}: empty annotation line")
    boxes = np.zeros((len(fields) - 1, 5), dtype=np.int32)
    for i, field in enumerate(fields[1:]):
        values = field.split(",")
        if len(values) != 5:
            raise DataFormatError(f"{where}: box {field!r} must be x1,y1,x2,y2,class_id")
        try:
            boxes[i] = [int(v) for v in values]
        except ValueError:
            raise DataFormatError(f"{where}: box {field!r} must hold integers") from None
    if len(boxes):
        x1, y1, x2, y2, cls = boxes.T
        if (x2 <= x1).any() or (y2 <= y1).any() or (boxes[:, :4] < 0).any():
            raise DataFormatError(f"{where}: degenerate or negative box in {line.strip()!r}")
        if (cls < 0).any() or (num_classes is not None and (cls >= num_classes).any()):
            raise DataFormatError(f"{where}: class id out of range 0..{(num_classes or 1) - 1} in {line.strip()!r}")
    return AnnotationLine(fields[0], boxes)


def read_annotations(path: str | Path, *, num_classes: int | None = None) -> list[AnnotationLine]:
    """All lines of an annotation file (blank lines skipped)."""
    out = []
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if line.strip():
                out.append(parse_line(line, where=f"{path}:{n}", num_classes=num_classes))
    return out


def read_classes(path: str | Path) -> list[str]:
    """Class names, one per line; the line number is the class id."""
    names = [line.strip() for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    if not names:
        raise DataFormatError(f"{path}: no class names")
    if len(set(names)) != len(names):
        raise DataFormatError(f"{path}: duplicate class names")
    return names


def write_annotations(path: str | Path, lines: Iterable[str]) -> int:
    """Write lines atomically; returns the count."""
    n = 0

    def write(tmp: Path) -> None:
        nonlocal n
        with open(tmp, "w", encoding="utf-8") as fh:
            for line in lines:
                fh.write(line + "\n")
                n += 1

    atomic_write(path, write)
    return n
