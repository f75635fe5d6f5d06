"""Stage 2 benchmark, many classes as users run them: ``snakemake --cores 2`` of the class CSVs of 20 and 100 classes
from the full-size v6 train bbox CSV (the ``index_boxes`` job, then one ``select_class`` job per class), against
``grep -F`` of each class's MID into a file (N classes: N x grep) and against Snakemake's own floor.

Timed side by side in one run, each a fresh ``snakemake`` process in a fresh working directory:

* **ours**: this checkout's Snakefile, ``source: mirror`` (the CSV hard-linked in as if fetched), targets
  ``results/select/train/{class}.csv``, ``--allowed-rules index_boxes select_class``;
* **floor**: a Snakefile of the same shape (one job, then N jobs needing it) whose ``script:`` jobs only write
  their output: what N+1 Python ``script:`` jobs cost Snakemake on this machine with no work in them;
* **import floor**: the same jobs, each first importing what a ``select_class`` job imports (numpy, pyarrow and
  ``oidyolo.data.select``, pandas blocked as the adapter blocks it): the least that one process per class can cost.
  What ours takes above it is the work on the data: the index pass (one scan) and each class's own rows;
* ``--compare-with DIR``: the same run from another checkout's Snakefile (e.g. a ``git worktree`` of an older commit).

Classes: Person (1.28M boxes), Apple, Orange and seeded random others. Peak RSS is the largest ``max_rss`` in the
jobs' own ``benchmark:`` files, per rule.

    python bench/select_workflow_bench.py --csv /work/bigcsv/oidv6-train-annotations-bbox.csv
    python bench/select_workflow_bench.py --quick
"""

from __future__ import annotations

import argparse
import csv
import glob
import os
import shutil
import sys
import tempfile
from pathlib import Path

import yaml
from _common import BENCH_TMP, PY, ROOT, Run, fmt, log, machine, median, run_measured, table
from make_big_csv import CLASSES_CSV, FULL_ROWS, write_big_csv
from select_index_bench import pick_classes

from oidyolo.data.versions import version_files
from oidyolo.workflow import Plan

FLOOR_SNAKEFILE = """
N = int(config["jobs"])
rule all:
    input: expand("out/{i}.txt", i=range(N))
rule first:
    output: "first.txt"
    script: "job.py"
rule job:
    input: "first.txt"
    output: "out/{i}.txt"
    script: config["script"]
"""
IMPORTS_JOB = """from oidyolo.data.boxes import block_pandas

block_pandas()
import oidyolo.data.select  # noqa: E402, F401  (numpy, pyarrow.csv/.parquet/.compute)

open(snakemake.output[0], "w").write("x")
"""


def workdir(base: Path, csv_path: Path, names: list[str]) -> tuple[Path, list[str]]:
    """A fresh working directory holding a mirror's metadata as ``fetch_*`` leaves it, and the config."""
    shutil.rmtree(base, ignore_errors=True)
    meta = base / "data/metadata/mirror/v6"
    meta.mkdir(parents=True)
    files = version_files("v6")
    os.link(csv_path, meta / "train-annotations-bbox.csv")
    resources = ROOT / "oidyolo" / "resources"
    shutil.copy(resources / Path(files.classes).name, meta / "class-descriptions-boxable.csv")
    shutil.copy(resources / "bbox_labels_600_hierarchy.json", meta / "bbox_labels_600_hierarchy.json")
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    config |= {"source": "mirror", "version": "v6", "classes": names}
    config["sources"] = {"mirror": {"metadata_url": str(base / "none"), "images_url": str(base / "none")}}
    (base / "config.yaml").write_text(yaml.safe_dump(config))
    return base, [f"results/select/train/{slug}.csv" for slug in Plan.from_config(config).slugs]


def smk_text(tree: Path) -> str:
    return "".join(p.read_text() for p in (tree / "rules").glob("*.smk"))


def peak(base: Path, rule: str, column: str = "max_rss") -> float:
    """The largest value of ``column`` in the rule's ``benchmark:`` files (max_rss: MiB, s: seconds)."""
    peaks = []
    for f in glob.glob(f"{base}/benchmarks/{rule}/**/*.tsv", recursive=True):
        with open(f, newline="") as fh:
            peaks.append(float(next(csv.DictReader(fh, delimiter="\t"))[column]))
    return max(peaks, default=float("nan"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--csv", type=Path)
    ap.add_argument("--quick", action="store_true", help="300k rows, 5 and 10 classes: a smoke run")
    ap.add_argument("--compare-with", type=Path, help="another checkout whose Snakefile to time beside this one")
    ap.add_argument("--cores", type=int, default=2)
    args = ap.parse_args(argv)
    rows = 300_000 if args.quick else FULL_ROWS
    csv_path = args.csv or BENCH_TMP / ("select-quick.csv" if args.quick else "oidv6-train-annotations-bbox.csv")
    if not csv_path.exists():
        log(f"generating {csv_path} ({rows:,} rows) ...")
        write_big_csv(csv_path, rows)
    work = Path(tempfile.mkdtemp(prefix="select-workflow-", dir=csv_path.parent))  # same filesystem: a hard link
    env = dict(os.environ, LC_ALL="C", PYTHONDONTWRITEBYTECODE="1")
    with open(CLASSES_CSV, newline="") as fh:
        names = {r[0]: r[1] for r in csv.reader(fh) if r}
    trees = {"ours": ROOT} | ({"--compare-with": args.compare_with.resolve()} if args.compare_with else {})
    floor = work / "floor"
    floor.mkdir()
    (floor / "Snakefile").write_text(FLOOR_SNAKEFILE)
    (floor / "job.py").write_text('open(snakemake.output[0], "w").write("x")\n')
    (floor / "imports.py").write_text(IMPORTS_JOB)

    def snakemake(tree: Path, base: Path, targets: list[str]) -> Run:
        rules = [r for r in ("index_boxes", "extract_class", "select_class") if f"rule {r}:" in smk_text(tree)]
        cmd = [PY, "-m", "snakemake", "-s", str(tree / "Snakefile"), "-d", str(base), "--cores", str(args.cores),
               *targets, "--quiet", "all", "--allowed-rules", *rules]  # fmt: skip
        return run_measured(cmd, env=env)

    def grep(mid: str) -> Run:
        with open(work / "grep.txt", "wb") as out:
            return run_measured(["grep", "-F", "-e", f",{mid},", str(csv_path)], stdout=out, env=env)

    log(f"warming the page cache: {csv_path}")
    grep(pick_classes(3)[1])
    rows_md = []
    for n in [5, 10] if args.quick else [20, 100]:
        mids = pick_classes(n)
        greps = [grep(m) for m in mids[:5]]  # the N x grep reference: N times the median of five classes' greps
        grep_n = n * median([r.wall for r in greps])
        floors = {}
        for script, what in (("job.py", "empty script jobs"), ("imports.py", "script jobs that only import")):
            (floor / "out").exists() and shutil.rmtree(floor / "out")
            (floor / "first.txt").unlink(missing_ok=True)
            shutil.rmtree(floor / ".snakemake", ignore_errors=True)
            cmd = [PY, "-m", "snakemake", "-d", str(floor), "-s", str(floor / "Snakefile"), "--cores",
                   str(args.cores), "--quiet", "all", "--config", f"jobs={n}", f"script={script}"]  # fmt: skip
            fl = floors[script] = run_measured(cmd, env=env)
            if fl.rc or len(list((floor / "out").iterdir())) != n:
                raise SystemExit(f"the floor run failed: {' '.join(cmd)}")
            rows_md.append([f"{n} classes: Snakemake floor ({n + 1} {what})", f"{fl.wall / grep_n:.2f}x",
                            fmt(fl.wall), "", "", ""])  # fmt: skip
        fl, imports = floors["job.py"], floors["imports.py"]
        for label, tree in trees.items():
            base, targets = workdir(work / f"{label.strip('-')}-{n}", csv_path, [names[m] for m in mids])
            log(f"{n} classes, {label} ({tree}) ...")
            run = snakemake(tree, base, targets)
            if run.rc:
                raise SystemExit(f"{label}, {n} classes: snakemake failed (see {base}/logs)")
            jobs = len(glob.glob(f"{base}/benchmarks/*/train/*.tsv"))
            per_rule = ", ".join(f"{r} {peak(base, r):,.0f}" for r in ("index_boxes", "extract_class",
                                 "select_class") if glob.glob(f"{base}/benchmarks/{r}"))  # fmt: skip
            grep_one = median([r.wall for r in greps])
            index_pass = peak(base, "index_boxes", "s") / grep_one
            above = f"{(run.wall - imports.wall) / grep_one:.1f} (the index pass {index_pass:.1f})"
            rows_md.append([f"{n} classes: {label}, index + {jobs} class jobs", f"**{run.wall / grep_n:.2f}x**",
                            fmt(run.wall), f"{(run.wall - fl.wall) / n:.2f}", above, per_rule])  # fmt: skip
            shutil.rmtree(base)
        rows_md.append([f"{n} classes: {n} x grep -F (median of 5 classes' greps x {n})", "1x", fmt(grep_n), "", "",
                        ""])  # fmt: skip
    shutil.rmtree(work, ignore_errors=True)
    size = csv_path.stat().st_size / 1e9
    print(f"\n### Stage 2, many classes through the workflow: {size:.2f} GB, --cores {args.cores}\n")
    print(f"Machine: {machine()}\n")
    heads = ["run", "wall / N x grep -F", "wall s", "s per class above the floor",
             "above the import floor, in greps", "peak RSS MiB per rule"]  # fmt: skip
    print(table(heads, rows_md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
