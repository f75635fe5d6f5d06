"""Peak memory of the YOLOv3 loss (forward + gradient w.r.t. the outputs) for full YOLOv3 at 416, batch 32,
max_boxes 100, with the ignore mask as it was (every prediction x every box at once, recorded on the tape) and
chunked (oidyolo.yolo.loss.ignore_mask: 10 boxes at a time, no gradient recorded). Each in its own process under
GNU time; a third process builds the same inputs and stops, the baseline subtracted from both.

    python bench/ignore_mask_bench.py [--batch 32] [--size 416] [--boxes 100]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = """
import sys, numpy as np, tensorflow as tf
sys.path.insert(0, {root!r})
from oidyolo.data.anchors import COCO_ANCHORS, anchor_masks
from oidyolo.yolo import loss as L
from oidyolo.yolo.decode import box_iou
mode, batch, size, boxes = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])

def before(pred_xy, pred_wh, gt_boxes, ignore_thresh, chunk=0):  # the code before chunking, verbatim in effect
    shape = tf.shape(pred_xy)
    pred = tf.concat([pred_xy - pred_wh / 2, pred_xy + pred_wh / 2], axis=-1)
    pred = tf.reshape(pred, [shape[0], -1, 4])
    iou = box_iou(pred, gt_boxes)
    best = tf.reduce_max(tf.pad(iou, [[0, 0], [0, 0], [0, 1]]), axis=-1)
    mask = tf.cast(best < ignore_thresh, tf.float32)
    return tf.stop_gradient(tf.reshape(mask, tf.concat([shape[:4], [1]], axis=0)))

if mode == "before":
    L.ignore_mask = before
if mode == "no mask":  # the floor: the rest of the loss
    L.ignore_mask = lambda xy, *a, **k: tf.ones_like(xy[..., :1])
rng = np.random.default_rng(0)
outs = [tf.Variable(rng.normal(size=(batch, size // s, size // s, 3 * 85)).astype(np.float32)) for s in (32, 16, 8)]
c = rng.uniform(0.1, 0.9, (batch, boxes, 2)); w = rng.uniform(0.02, 0.3, (batch, boxes, 2))
gt = np.concatenate([c - w / 2, c + w / 2, np.zeros((batch, boxes, 1))], -1) * [size] * 4 + [0]
targets = {{"boxes": tf.constant(gt.astype(np.float32))}}
for i, s in enumerate((32, 16, 8)):
    targets[f"grid_{{i}}"] = tf.zeros((batch, size // s, size // s, 3, 85))

@tf.function
def step():
    with tf.GradientTape() as tape:
        loss = L.yolo_loss(outs, targets, COCO_ANCHORS, anchor_masks(9), 80)["loss"]
    return loss, tape.gradient(loss, outs)

if mode != "baseline":
    for _ in range(2):
        loss, grads = step()
    print(float(loss))
"""


def peak_mb(mode: str, args) -> float:
    code = CHILD.format(root=str(ROOT))
    cmd = ["/usr/bin/time", "-v", sys.executable, "-c", code, mode, str(args.batch), str(args.size), str(args.boxes)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(proc.stderr[-2000:])
    return int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr).group(1)) / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--size", type=int, default=416)
    ap.add_argument("--boxes", type=int, default=100)
    args = ap.parse_args()
    base = peak_mb("baseline", args)
    rows = [(mode, peak_mb(mode, args)) for mode in ("before", "after", "no mask")]
    print(f"full YOLOv3 loss + gradient, input {args.size}, batch {args.batch}, max_boxes {args.boxes}")
    print(f"baseline (inputs built, no loss): {base:.0f} MiB")
    print("| ignore mask | peak RSS MiB | above baseline MiB |\n|---|---|---|")
    for mode, mb in rows:
        print(f"| {mode} | {mb:.0f} | {mb - base:.0f} |")


if __name__ == "__main__":
    main()
