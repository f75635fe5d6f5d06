"""Stage 4: training input pipeline, images/s through decode, augmentation and target encoding.

Ours: oidyolo.yolo.dataset.build_dataset (tf.data, parallel map, prefetch). Baseline: the same work done per image,
single-threaded, in PIL/numpy (what keras-yolo3's get_random_data + preprocess_true_boxes do), implemented in
oidyolo.yolo.dataset.reference_generator. Both run side by side in this process; the ratio is what to quote.

    python bench/input_pipeline_bench.py [--quick] [--size 416] [--batch 8]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.train_data import make_annotations


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--size", type=int, default=416)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--cache", default="/tmp/oidyolo-bench/train-images")
    args = ap.parse_args()

    from oidyolo.data.anchors import COCO_ANCHORS
    from oidyolo.yolo.dataset import build_dataset, reference_generator

    n = 16 if args.quick else 64
    ann = make_annotations(Path(args.cache), n_images=n)
    kw = dict(num_classes=5, anchors=COCO_ANCHORS, input_shape=(args.size, args.size), batch_size=args.batch, seed=0)
    ds = build_dataset(ann, augment=True, **kw)
    for _ in ds:  # trace once
        pass

    def rate_ours() -> float:
        t, k = time.perf_counter(), 0
        for x, _ in ds:
            k += int(x.shape[0])
        return k / (time.perf_counter() - t)

    def rate_reference() -> float:
        t, k = time.perf_counter(), 0
        for x, _ in reference_generator(ann, augment=True, max_boxes=100, **kw):
            k += len(x)
        return k / (time.perf_counter() - t)

    ours, ref = [], []
    for _ in range(1 if args.quick else args.repeats):
        ours.append(rate_ours())
        ref.append(rate_reference())
    o, r = statistics.median(ours), statistics.median(ref)
    print(f"machine: {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}; {n} images 1024x768, {args.size} px input")
    print("| pipeline | images/s (median) | ratio |")
    print("|---|---|---|")
    print(f"| keras-yolo3-style per-image PIL/numpy (baseline) | {r:.1f} | 1.0x |")
    print(f"| oidyolo tf.data (augment + targets) | {o:.1f} | {o / r:.1f}x |")


if __name__ == "__main__":
    main()
