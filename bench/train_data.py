"""Shared by the training benchmarks: a keras-yolo3 annotation file over realistic JPEGs (1024x768, ~12 boxes each,
like Open Images' box-dense pictures), generated once with Pillow into a cache folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from oidyolo.data.yolo_format import format_line, write_annotations


def make_annotations(root: Path, n_images: int = 64, num_classes: int = 5, seed: int = 0) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    ann = root / f"train_{n_images}.txt"
    if ann.exists():
        return ann
    rng = np.random.default_rng(seed)
    lines = []
    for i in range(n_images):
        w, h = 1024, 768
        base = rng.integers(0, 255, (h // 8, w // 8, 3), dtype=np.uint8)
        img = Image.fromarray(base).resize((w, h), Image.BICUBIC)
        pen = ImageDraw.Draw(img)
        boxes = []
        for _ in range(12):
            bw, bh = rng.integers(30, 300, 2)
            x1, y1 = rng.integers(0, w - bw), rng.integers(0, h - bh)
            cls = int(rng.integers(0, num_classes))
            pen.ellipse([x1, y1, x1 + bw, y1 + bh], fill=tuple(int(c) for c in rng.integers(0, 255, 3)))
            boxes.append((x1, y1, x1 + bw, y1 + bh, cls))
        path = root / f"im{i}.jpg"
        img.save(path, quality=90)
        lines.append(format_line(str(path), boxes))
    write_annotations(ann, lines)
    return ann
