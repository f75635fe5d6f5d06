"""Fine-tuning from darknet's real yolov3-tiny COCO weights against training from scratch, on the demo, in one run.

One workflow directory: the demo data stages run once, then `train` + `evaluate` run from scratch and again with
`train.darknet_weights` set (Snakemake reruns only those two), at the same epochs, input size and batch size. Prints
the mAP50 (pycocotools) of each start and the training wall and CPU time ratios from Snakemake's
`benchmarks/train.tsv`.

    python bench/finetune_bench.py [--epochs 2 2] [--size 256] [--train 300 --val 80] [--quick]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import BENCH_TMP, PY, ROOT, fmt, log, machine, table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, nargs=2, default=[2, 2])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--train", type=int, default=300)
    parser.add_argument("--val", type=int, default=80)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.epochs, args.size, args.train, args.val = [1, 1], 64, 40, 12
    sys.path.insert(0, str(ROOT / "tests"))
    from real_weights import darknet_tiny_files

    weights = darknet_tiny_files()["yolov3-tiny.weights"]
    config = yaml.safe_load((ROOT / "tests" / "configs" / "pretrained_tiny.yaml").read_text())
    config["demo"] = {"train_images": args.train, "validation_images": args.val}
    config["train"].update(input_size=args.size, epochs=args.epochs, batch_size=[16, 16])
    work = BENCH_TMP / f"finetune-{args.train}-{args.val}"  # the data stages run once; later runs retrain only
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    rows = []
    for label, start in (("from scratch", None), ("darknet yolov3-tiny.weights (COCO)", str(weights))):
        config["train"]["darknet_weights"] = start
        (work / "config.yaml").write_text(yaml.safe_dump(config))
        log(f"{label}: snakemake in {work}")
        cmd = [PY, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "--directory", str(work), "--cores", "2"]
        subprocess.run([*cmd, "results/eval/metrics.json"], check=True, env=env, stdout=subprocess.DEVNULL)
        metrics = json.loads((work / "results/eval/metrics.json").read_text())
        with open(work / "benchmarks/train.tsv", newline="") as fh:
            bench = next(csv.DictReader(fh, delimiter="\t"))
        ap = metrics["per_class_AP50"]
        rows.append([label, fmt(metrics["mAP50"], 3), ", ".join(f"{k} {v:.2f}" for k, v in ap.items()),
                     float(bench["s"]), float(bench["cpu_time"]), f"{float(bench['max_rss']):,.0f} MB"])  # fmt: skip
    base, base_cpu = rows[0][3], rows[0][4]
    for row in rows:
        row[3], row[4] = f"{fmt(row[3] / base)}x", f"{fmt(row[4] / base_cpu)}x"
    print(machine())
    print(f"demo {args.train} train / {args.val} validation images, tiny at {args.size}, epochs {args.epochs}")
    headers = ["start", "mAP50", "AP50 per class", "training wall time", "training CPU time", "training peak RSS"]
    print(table(headers, rows))


if __name__ == "__main__":
    main()
