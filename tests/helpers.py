"""Helpers shared by several test modules (test modules never import each other)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from oidyolo.yolo.anchor_masks import masks_for

if TYPE_CHECKING:
    from oidyolo.yolo.darknet import DarknetSpec

ANCHORS = {
    "full": np.array(
        [[10, 13], [16, 30], [33, 23], [30, 61], [62, 45], [59, 119], [116, 90], [156, 198], [373, 326]], np.float32
    ),
    "tiny": np.array([[10, 14], [23, 27], [37, 58], [81, 82], [135, 169], [344, 319]], np.float32),
}
C = 3  # classes of the toy batches


def encode(boxes: np.ndarray, variant: str, size: tuple[int, int]) -> dict[str, np.ndarray]:
    """Minimal target encoder per the pipeline contract, for a batch ``(B, M, 5)`` of x1y1x2y2 + class boxes."""
    h, w = size
    anchors, masks = ANCHORS[variant], masks_for(variant)
    strides = [32, 16, 8][: len(masks)]
    grids = [np.zeros((len(boxes), h // s, w // s, 3, 5 + C), np.float32) for s in strides]
    for b, image_boxes in enumerate(boxes):
        for x1, y1, x2, y2, cls in image_boxes:
            bw, bh = x2 - x1, y2 - y1
            if bw <= 0 or bh <= 0:
                continue
            inter = np.minimum(bw, anchors[:, 0]) * np.minimum(bh, anchors[:, 1])
            best = int(np.argmax(inter / (bw * bh + anchors.prod(1) - inter)))
            layer = next(i for i, m in enumerate(masks) if best in m)
            cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
            g = grids[layer]
            col, row = int(cx / w * g.shape[2]), int(cy / h * g.shape[1])
            g[b, row, col, masks[layer].index(best)] = [cx / w, cy / h, bw / w, bh / h, 1, *np.eye(C)[int(cls)]]
    return {"boxes": boxes.astype(np.float32), **{f"grid_{i}": g for i, g in enumerate(grids)}}


def toy_batch(size: int = 96) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Two images of noise with a few boxes, encoded for YOLOv3-tiny at ``size``."""
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (2, size, size, 3)).astype(np.float32)
    boxes = np.array([[[10, 10, 40, 50, 0], [50, 20, 90, 90, 2]], [[30, 30, 60, 60, 1], [0, 0, 0, 0, 0]]], np.float32)
    boxes[..., :4] *= size / 96
    return x, encode(boxes, "tiny", (size, size))


def write_darknet_weights(spec: DarknetSpec, path: Path, *, gain: float, seed: int = 0, extra_floats: int = 0) -> None:
    """Synthetic darknet weights: 20-byte v0.2 header, then per conv BN (beta, gamma, mean, var) or bias, kernel.

    Kernels ~ N(0, gain / sqrt(fan_in)) keep activations O(1..10) through the net, so the outputs depend on the
    image far above float32 noise; BN variances are positive and well away from 0.
    """
    rng = np.random.default_rng(seed)
    with path.open("wb") as f:
        f.write(np.array([0, 2, 0], "<i4").tobytes() + np.array([32013], "<i8").tobytes())
        for c in spec.convs:
            if c.batch_norm:
                f.write(rng.normal(0, 0.1, c.filters).astype("<f4").tobytes())  # beta
                f.write(rng.uniform(0.5, 1.5, c.filters).astype("<f4").tobytes())  # gamma
                f.write(rng.normal(0, 0.1, c.filters).astype("<f4").tobytes())  # rolling mean
                f.write(rng.uniform(0.5, 1.5, c.filters).astype("<f4").tobytes())  # rolling variance
            else:
                f.write(rng.normal(0, 0.1, c.filters).astype("<f4").tobytes())  # bias
            fan_in = c.in_channels * c.size**2
            f.write(rng.normal(0, gain / np.sqrt(fan_in), c.filters * fan_in).astype("<f4").tobytes())
        f.write(np.zeros(extra_floats, "<f4").tobytes())


def kill_at(cmd: list[str], delay: float, *, cwd: Path | None = None, until: Callable[[], bool] | None = None) -> bool:
    """Start ``cmd`` in its own process group and SIGKILL the whole group after ``delay`` seconds (counted from
    when ``until()`` first holds, if given). Returns whether it was still running when killed."""
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while until is not None and not until() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        try:
            proc.wait(timeout=delay)
            return False
        except subprocess.TimeoutExpired:
            pass
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        return True
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
