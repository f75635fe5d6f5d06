"""Where a training epoch's time goes, on the workflow's own files: input pipeline, train step, validation.

Measures, each in images/s over the same annotation files (the demo's by default, after `snakemake
results/yolo/anchors.txt`):

* ``pipeline``: one pass of the training ``tf.data`` pipeline alone (decode + augment + targets), per cache mode;
* ``step``: forward + backward + Adam on one fixed batch repeated (the model alone), with and without XLA;
* ``validation``: one pass of ``evaluate`` on the validation file (what ``fit`` does after every epoch);

then prints a table. Quote ratios between rows (same run), not absolute numbers.

    python bench/train_profile.py [--train results/yolo/train.txt] [--val results/yolo/val.txt] [--size 256]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", default="results/yolo/train.txt")
    ap.add_argument("--val", default="results/yolo/val.txt")
    ap.add_argument("--anchors", default="results/yolo/anchors.txt")
    ap.add_argument("--classes", default="results/yolo/classes.txt")
    ap.add_argument("--variant", default="tiny")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=8)
    args = ap.parse_args()

    import keras
    import tensorflow as tf

    from oidyolo.data.anchors import read_anchors
    from oidyolo.data.yolo_format import read_classes
    from oidyolo.yolo.dataset import build_dataset
    from oidyolo.yolo.model import YoloDetector, build_yolov3

    anchors = read_anchors(args.anchors)
    nc = len(read_classes(args.classes))
    shape = (args.size, args.size)
    n_train = len(Path(args.train).read_text().splitlines())
    n_val = len(Path(args.val).read_text().splitlines())
    rows: list[tuple[str, float]] = []

    def timed(label: str, images: int, fn) -> None:
        t = time.perf_counter()
        fn()
        rows.append((label, images / (time.perf_counter() - t)))
        print(f"{label}: {rows[-1][1]:.1f} images/s", file=sys.stderr)

    for cache in ("none", "memory"):
        ds = build_dataset(
            args.train, num_classes=nc, anchors=anchors, input_shape=shape, batch_size=args.batch, cache=cache
        )
        if cache != "none":
            for _ in ds:  # fill the cache
                pass
        timed(f"pipeline, cache {cache} (one pass, {n_train} images)", n_train, lambda ds=ds: [None for _ in ds])

    images, targets = next(iter(build_dataset(
        args.train, num_classes=nc, anchors=anchors, input_shape=shape, batch_size=args.batch, cache="none"
    )))  # fmt: skip
    fixed = tf.data.Dataset.from_tensors((images, targets)).repeat()
    for jit in (False, True):
        detector = YoloDetector(build_yolov3(nc, args.variant), anchors, nc)
        detector.compile(optimizer=keras.optimizers.Adam(1e-3), jit_compile=jit)
        detector.fit(fixed, epochs=1, steps_per_epoch=2, verbose=0)
        timed(
            f"train step, jit_compile={jit} (model alone)", args.steps * args.batch,
            lambda d=detector: d.fit(fixed, epochs=1, steps_per_epoch=args.steps, verbose=0),
        )  # fmt: skip

    val = build_dataset(
        args.val, num_classes=nc, anchors=anchors, input_shape=shape, batch_size=args.batch, augment=False,
        shuffle=False, cache="memory",
    )  # fmt: skip
    detector.evaluate(val, verbose=0)
    timed(f"validation pass ({n_val} images)", n_val, lambda: detector.evaluate(val, verbose=0))
    print(f"{args.variant} at {args.size}, batch {args.batch}, {n_train} train / {n_val} val images")
    print("| stage | images/s |\n|---|---|")
    for label, rate in rows:
        print(f"| {label} | {rate:.1f} |")


if __name__ == "__main__":
    main()
