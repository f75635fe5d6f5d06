"""Stage 5: training throughput (forward + backward + Adam), images/s, for YOLOv3-tiny and YOLOv3 at a given size.

Runs the real training code path (YoloDetector.fit on the tf.data pipeline) for a fixed number of steps after a
warm-up, on whatever device TensorFlow finds (CPU here; bench/gpu_train.sh runs it on a GPU and samples
nvidia-smi). Baseline for the CPU figures: the same model with every layer but the three output convs frozen
(keras-yolo3's stage 1), which is what a CPU user can afford.

    python bench/train_step_bench.py [--quick] [--variants tiny full] [--size 416] [--steps 10] [--batch 8]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.train_data import make_annotations


def measure(variant: str, size: int, batch: int, steps: int, ann: Path, freeze: int = 0) -> float:
    import keras

    from oidyolo.data.anchors import COCO_ANCHORS, COCO_TINY_ANCHORS
    from oidyolo.yolo.dataset import build_dataset
    from oidyolo.yolo.model import YoloDetector, build_yolov3, freeze_backbone

    anchors = COCO_ANCHORS if variant == "full" else COCO_TINY_ANCHORS
    ds = build_dataset(
        ann, num_classes=5, anchors=anchors, input_shape=(size, size), batch_size=batch, repeat=True,
        cache="memory", deterministic=False,
    )  # fmt: skip
    detector = YoloDetector(build_yolov3(5, variant), anchors, 5)
    if freeze:
        freeze_backbone(detector, freeze)
    detector.compile(optimizer=keras.optimizers.Adam(1e-3))
    detector.fit(ds, epochs=1, steps_per_epoch=2, verbose=0)  # trace and warm up

    class Timer(keras.callbacks.Callback):
        def on_train_batch_begin(self, b, logs=None):
            if b == 0:
                self.t = time.perf_counter()

        def on_train_end(self, logs=None):
            self.seconds = time.perf_counter() - self.t

    timer = Timer()
    detector.fit(ds, epochs=1, steps_per_epoch=steps, verbose=0, callbacks=[timer])
    return steps * batch / timer.seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--variants", nargs="+", default=["tiny", "full"])
    ap.add_argument("--size", type=int, default=416)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--frozen-baseline", action="store_true", help="also time keras-yolo3's stage 1 (freeze 2)")
    ap.add_argument("--json", help="write the results here too")
    ap.add_argument("--cache", default="/tmp/oidyolo-bench/train-images")
    args = ap.parse_args()
    import tensorflow as tf

    steps = 2 if args.quick else args.steps
    ann = make_annotations(Path(args.cache), n_images=16 if args.quick else 64)
    device = ", ".join(d.name for d in tf.config.list_physical_devices("GPU")) or f"CPU ({os.cpu_count()} cores)"
    rows = []
    for variant in args.variants:
        rows.append((variant, "all layers", measure(variant, args.size, args.batch, steps, ann)))
        if args.frozen_baseline:
            rows.append(
                (variant, "all but output convs frozen", measure(variant, args.size, args.batch, steps, ann, 2))
            )
    print(f"device: {device}; input {args.size}, batch {args.batch}, {steps} timed steps after warm-up")
    print("| model | trained layers | images/s |")
    print("|---|---|---|")
    for variant, what, rate in rows:
        print(f"| YOLOv3{'-tiny' if variant == 'tiny' else ''} {args.size} | {what} | {rate:.2f} |")
    if args.json:
        Path(args.json).write_text(json.dumps([{"variant": v, "layers": w, "images_per_s": r} for v, w, r in rows]))


if __name__ == "__main__":
    main()
