"""Stage 4 benchmark: Snakemake's time to find nothing to do on a finished data workflow (5 classes x ~1,000 images).

Setup (once, under /tmp/oidyolo-bench/workflow-N): a local mirror in Open Images' own layout (the shipped class
descriptions and hierarchy, a v6 train bbox CSV with 21 columns and a v5 validation CSV with 13, small real
JPEGs), holding 5 classes (Apple, Orange, Banana, Lemon, Strawberry; each image has 1-2 of them, 1-3 boxes each)
plus rows of other classes; then the real workflow (this checkout's Snakefile, ``source: mirror``, every other
setting from this checkout's config.yaml) runs once to completion in its own working directory, for the data
targets ``results/yolo/{train,val,classes}.txt``.

Timed, each a fresh process, rounds interleaved, medians:

* ``snakemake --version``: interpreter start and Snakemake's import, the floor of any Snakemake call;
* ``snakemake -n`` (dry run) on the finished workflow;
* ``snakemake --cores 2`` on the finished workflow (it must report nothing to be done).

    python bench/workflow_noop_bench.py            # 5 classes x ~1,000 images, 5 rounds
    python bench/workflow_noop_bench.py --quick    # 5 classes x ~40 images, 1 round
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import yaml
from _common import BENCH_TMP, ROOT, Run, fmt, log, machine, median, run_measured, table

from oidyolo.data.versions import version_files

CLASSES = {
    "Apple": "/m/014j1m",
    "Orange": "/m/0cyhj_",
    "Banana": "/m/09qck",
    "Lemon": "/m/09k_b",
    "Strawberry": "/m/07fbm7",
}
V6 = (
    "ImageID,Source,LabelName,Confidence,XMin,XMax,YMin,YMax,IsOccluded,IsTruncated,IsGroupOf,IsDepiction,IsInside,"
    "XClick1X,XClick2X,XClick3X,XClick4X,XClick1Y,XClick2Y,XClick3Y,XClick4Y"
)
V5 = "ImageID,Source,LabelName,Confidence,XMin,XMax,YMin,YMax,IsOccluded,IsTruncated,IsGroupOf,IsDepiction,IsInside"
TARGETS = ["results/yolo/train.txt", "results/yolo/val.txt", "results/yolo/classes.txt"]
TARGET_S = 5.0


def make_mirror(root: Path, per_class: int, seed: int = 0) -> Path:
    """Metadata and images for ~``per_class`` images per class over train (80 %) and validation (20 %)."""
    from PIL import Image

    if (root / "done").exists():
        return root
    rng = np.random.default_rng(seed)
    vf = version_files("v6")
    meta, images = root / "openimages", root / "open-images-dataset"
    resources = ROOT / "oidyolo" / "resources"
    for rel, src in ((vf.classes, "class-descriptions-boxable.csv"), (vf.hierarchy, "bbox_labels_600_hierarchy.json")):
        (meta / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(resources / src, meta / rel)
    with open(resources / "class-descriptions-boxable.csv", newline="") as fh:
        others = [r[0] for r in csv.reader(fh) if r and r[0] not in CLASSES.values()]
    n_images = round(per_class * len(CLASSES) / 1.5)
    n_val = n_images // 5
    log(f"generating a mirror with {n_images:,} images under {root} (once) ...")
    for split, count in (("train", n_images - n_val), ("validation", n_val)):
        (images / split).mkdir(parents=True, exist_ok=True)
        rows = []
        for i in range(count):
            image_id = hashlib.blake2b(f"wf:{split}:{i}".encode(), digest_size=8).hexdigest()
            size = (int(rng.integers(200, 400)), int(rng.integers(150, 300)))
            Image.new("RGB", size, tuple(int(v) for v in rng.integers(0, 256, 3))).save(
                images / split / f"{image_id}.jpg", "JPEG", quality=75
            )
            labels = list(rng.choice(list(CLASSES.values()), size=int(rng.integers(1, 3)), replace=False))
            labels += list(rng.choice(others, size=int(rng.integers(0, 4))))
            for mid in labels:
                for _ in range(int(rng.integers(1, 4))):
                    x1, y1 = rng.uniform(0, 0.6, 2)
                    x2, y2 = x1 + rng.uniform(0.1, 0.4), y1 + rng.uniform(0.1, 0.4)
                    attrs = ",".join(str(v) for v in rng.choice([0, 1, -1], p=[0.6, 0.3, 0.1], size=5))
                    row = f"{image_id},xclick,{mid},1,{x1:.6f},{x2:.6f},{y1:.6f},{y2:.6f},{attrs}"
                    if split == "train":
                        row += f",{x1:.6f},{x2:.6f},{x1:.6f},{x2:.6f},{y1:.6f},{y2:.6f},{y1:.6f},{y2:.6f}"
                    rows.append(row)
        rows.sort()
        path = meta / vf.boxes_path(split)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join([V6 if split == "train" else V5, *rows]) + "\n")
    (root / "done").write_text("ok\n")
    return root


def write_config(workdir: Path, mirror: Path) -> Path:
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    config.update(
        source="mirror",
        version="v6",
        classes=list(CLASSES),
        limit=None,
        val_split="validation",
        val_fraction=None,
        sources={
            "mirror": {
                "metadata_url": str(mirror / "openimages"),
                "images_url": str(mirror / "open-images-dataset"),
                "verify_checksums": False,
            }
        },
    )
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def snakemake(workdir: Path, *args: str) -> list[str]:
    return [
        "snakemake",
        "--snakefile",
        str(ROOT / "Snakefile"),
        "--directory",
        str(workdir),
        "--configfile",
        str(workdir / "config.yaml"),
        *args,
    ]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="~40 images per class, 1 round")
    ap.add_argument("--per-class", type=int, default=1000, help="selected images per class over both splits")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args(argv)
    per_class, rounds = (40, 1) if args.quick else (args.per_class, args.rounds)
    base = BENCH_TMP / f"workflow-{per_class}"
    mirror = make_mirror(base / "mirror", per_class)
    workdir = base / "run"
    write_config(workdir, mirror)
    done = workdir / "results" / "yolo" / "train.txt"
    if not done.exists():
        log("running the workflow once to completion ...")
        t0 = time.perf_counter()
        build = subprocess.run(snakemake(workdir, "--cores", "2", *TARGETS), capture_output=True, text=True)
        if build.returncode:
            sys.stderr.write(build.stderr[-5000:])
            raise SystemExit("the workflow failed")
        log(f"  built in {time.perf_counter() - t0:.0f} s")
    n_xml = {s: sum(1 for _ in (workdir / "results" / "voc" / s).glob("*.xml")) for s in ("train", "validation")}
    per_class_counts = {}
    for cls in CLASSES:
        n = 0
        for split in ("train", "validation"):
            with open(workdir / "results" / "images" / split / f"{cls}.tsv") as fh:
                n += sum(1 for _ in fh) - 1
        per_class_counts[cls] = n
    jobs = sum(1 for _ in (workdir / "logs").rglob("*.log"))

    methods = {
        "snakemake --version (start-up floor)": ["snakemake", "--version"],
        "snakemake -n (dry run, nothing to do)": snakemake(workdir, "-n", *TARGETS),
        "snakemake --cores 2 (nothing to do)": snakemake(workdir, "--cores", "2", *TARGETS),
    }
    check = subprocess.run(methods["snakemake --cores 2 (nothing to do)"], capture_output=True, text=True)
    if "Nothing to be done" not in check.stdout + check.stderr:
        sys.stderr.write(check.stderr[-3000:])
        raise SystemExit("the finished workflow is not a no-op")
    results: dict[str, list[Run]] = {name: [] for name in methods}
    for i in range(rounds):
        for name, cmd in methods.items():
            results[name].append(run_measured(cmd))
            log(f"round {i + 1}/{rounds} {name}: {results[name][-1].wall:.2f} s")
    floor = median([r.wall for r in results["snakemake --version (start-up floor)"]])
    rows = [
        [
            name,
            fmt(median([r.wall for r in runs])),
            f"{median([r.wall for r in runs]) / floor:.1f}x",
            fmt(median([r.cpu for r in runs])),
            f"{max(r.maxrss_mb for r in runs):,.0f}",
            len(runs),
        ]
        for name, runs in results.items()
    ]
    print(f"\n### Stage 4: Snakemake no-op on a finished workflow ({len(CLASSES)} classes)\n")
    print(f"Machine: {machine()}\n")
    print(
        f"Finished state: {jobs} job logs; images per class (train + validation manifests): "
        + ", ".join(f"{c} {n:,}" for c, n in per_class_counts.items())
        + f"; VOC files: {n_xml['train']:,} train, {n_xml['validation']:,} validation.\n"
    )
    print(table(["command", "wall s (median)", "÷ start-up floor", "CPU s (median)", "peak RSS MiB", "runs"], rows))
    worst = max(median([r.wall for r in results[name]]) for name in list(methods)[1:])
    print(f"\nTarget: no-op < {TARGET_S:.0f} s: {'HOLDS' if worst < TARGET_S else 'MISSED'} (slowest {worst:.2f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
