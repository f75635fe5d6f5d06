"""Peak RSS and images/s of a one-pass training against dataset size: YOLOv3-tiny, one epoch, via
``python -m oidyolo train``, on N training images of 1024x768 (bench/train_data.py), per ``train.cache`` mode.

Each run is a fresh process under GNU time. The target (issue 10): 1,500 vs 300 images grow peak RSS by < 600 MB.
``--compare-with DIR`` also runs another copy of the package (e.g. a worktree of the commit before), whose cache
setting is its own default.

    python bench/memory_bench.py [--sizes 300 1500] [--modes auto none] [--input-size 256] [--compare-with DIR]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import BENCH_TMP, PY, ROOT, run_measured
from bench.train_data import make_annotations
from oidyolo.data.anchors import anchors_from_annotations, write_anchors


def prepare(n: int, size: int) -> Path:
    ann = make_annotations(BENCH_TMP / "train-images-1024", n_images=n, num_classes=3)
    data = BENCH_TMP / f"memory-{n}"
    data.mkdir(parents=True, exist_ok=True)
    (data / "train.txt").write_text(ann.read_text())
    (data / "val.txt").write_text("".join(ann.read_text().splitlines(keepends=True)[:16]))
    (data / "classes.txt").write_text("a\nb\nc\n")
    anchors, _ = anchors_from_annotations(data / "train.txt", (size, size), k=6, seed=0)
    write_anchors(data / "anchors.txt", anchors)
    return data


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[300, 1500])
    ap.add_argument("--modes", nargs="+", default=["auto", "none"])
    ap.add_argument("--input-size", type=int, default=256)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--compare-with", help="another checkout's root (holding oidyolo/) to run as 'before'")
    args = ap.parse_args()
    rows = []
    for n in args.sizes:
        data = prepare(n, args.input_size)
        variants = [(m, str(ROOT), m) for m in args.modes]
        if args.compare_with:
            variants.insert(0, ("before", args.compare_with, None))
        for label, root, mode in variants:
            with tempfile.TemporaryDirectory() as tmp:
                cfg = Path(tmp) / "c.yaml"
                extra = f"\n  cache: {mode}" if mode else ""
                cfg.write_text(f"train:\n  validation_steps: 1{extra}\n")
                cmd = [
                    PY, "-m", "oidyolo", "train", "--data", str(data), "--config", str(cfg), "--variant", "tiny",
                    "--input-size", str(args.input_size), "--epochs", "1", "0", "--batch-size", str(args.batch),
                    str(args.batch), "--out", str(Path(tmp) / "model"),
                ]  # fmt: skip
                env = {**os.environ, "PYTHONPATH": root}
                r = run_measured(cmd, env=env, cwd=tmp)
                if r.rc:
                    raise SystemExit(f"{label} on {n} images failed (rc {r.rc})")
                rows.append((label, n, r.maxrss_mb, n / r.wall))
                print(
                    f"{label} {n}: {r.maxrss_mb:.0f} MiB, {n / r.wall:.1f} images/s (wall incl. start)", file=sys.stderr
                )
    print(f"YOLOv3-tiny at {args.input_size}, batch {args.batch}, one pass, 1024x768 JPEGs")
    print("| code / train.cache | images | peak RSS MiB | images/s (wall, start-up included) |\n|---|---|---|---|")
    for label, n, mb, rate in rows:
        print(f"| {label} | {n} | {mb:.0f} | {rate:.1f} |")
    for label in dict.fromkeys(r[0] for r in rows):
        mine = [r for r in rows if r[0] == label]
        if len(mine) >= 2:
            print(f"{label}: +{mine[-1][2] - mine[0][2]:.0f} MiB from {mine[0][1]} to {mine[-1][1]} images")


if __name__ == "__main__":
    main()
