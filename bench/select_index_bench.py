"""Stage 1 benchmark, many classes: the per-split index (one pass, all LabelNames) and per-class extraction
from it, against ``grep -F`` of each class's MID into a file, on the full-size v6 train bbox CSV.

Measured side by side in one run, each in a fresh process (start-up and imports included):

* ``grep -F ,MID,`` of one small class (Apple, ~15k rows) and of the big one (Person, 1.28M rows): the floor;
* the ``index_boxes`` job (one pass over the CSV, every MID); extraction through the index (the class's parquet)
  and the whole ``select_class`` job (extraction, selection and the class CSV), for the small and the big class,
  and for the big class with a limit of 1,000 images (ranking its 0.92M images);
  and the byte scan without an index (``oidyolo select``);
* a hierarchy-sized request: Person and 149 other labels in one class (3.84M rows on the full-size CSV; Person
  with Man, Woman, Boy and Girl has ~3.7M in the real train CSV), its whole job with and without a limit, against
  ``grep -F`` of its 150 MIDs;
* 20 and 100 classes (Person, Apple, Orange and seeded random others): the index plus one select_class job per class,
  one after the other (the CPU cost) and as many at a time as there are CPUs (the wall time ``snakemake --cores``
  gives), against N x grep (N times the median grep of one class, measured in the same run).

Peak memory is the largest ``ru_maxrss`` of any one process (the jobs run one after the other).

    python bench/select_index_bench.py --csv /work/bigcsv/oidv6-train-annotations-bbox.csv
    python bench/select_index_bench.py --quick
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from _common import BENCH_TMP, PY, ROOT, Run, fmt, log, machine, median, run_measured, table
from make_big_csv import APPLE, CLASSES_CSV, FULL_ROWS, ORANGE, PERSON, write_big_csv

BENCH = ROOT / "bench"
LIMIT = 1000  # images per class: a sample, as users take of a big class (config.yaml's example is 500)


def pick_classes(n: int, seed: int = 0) -> list[str]:
    with open(CLASSES_CSV, newline="") as fh:
        mids = [r[0] for r in csv.reader(fh) if r]
    fixed = [PERSON, APPLE, ORANGE]
    rest = [m for m in mids if m not in fixed]
    return (fixed + random.Random(seed).sample(rest, n - len(fixed)))[:n]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--csv", type=Path)
    ap.add_argument("--quick", action="store_true", help="300k rows, 1 round, 5 and 10 classes: a smoke run")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    rows = 300_000 if args.quick else FULL_ROWS
    rounds = 1 if args.quick else args.rounds
    csv_path = args.csv or BENCH_TMP / ("select-quick.csv" if args.quick else "oidv6-train-annotations-bbox.csv")
    if not csv_path.exists():
        log(f"generating {csv_path} ({rows:,} rows) ...")
        write_big_csv(csv_path, rows)
    env = dict(os.environ, LC_ALL="C", PYTHONDONTWRITEBYTECODE="1")
    work = Path(tempfile.mkdtemp(prefix="select-index-", dir=BENCH_TMP))
    index = work / "index"
    many = [5, 10] if args.quick else [20, 100]

    def grep(mid: str) -> Run:
        with open(work / "grep.txt", "wb") as out:
            return run_measured(["grep", "-F", "-e", f",{mid},", str(csv_path)], stdout=out, env=env)

    def build() -> Run:
        return run_measured([PY, str(BENCH / "select_ours.py"), "--build-index", str(index), str(csv_path)], env=env)

    def extract(mid: str, via_index: bool = True, job: bool = False) -> Run:
        """Extraction alone, or (``job``) the whole ``select_class`` job: extraction, selection, the class CSV."""
        out = work / f"{mid.replace('/', '_')}.parquet"
        pre = ["--select", str(out.with_suffix(".csv"))] if job else []
        pre += ["--index", str(index)] if via_index else []
        return run_measured([PY, str(BENCH / "select_ours.py"), *pre, str(csv_path), str(out), mid], env=env)

    def job(mid: str) -> Run:
        return extract(mid, job=True)

    def job_limited(*mids: str) -> Run:  # what most users ask of a big class: a sample of its images
        out = work / "limited.parquet"
        pre = ["--limit", str(LIMIT), "--select", str(out.with_suffix(".csv")), "--index", str(index)]
        return run_measured([PY, str(BENCH / "select_ours.py"), *pre, str(csv_path), str(out), *mids], env=env)

    hierarchy = pick_classes(10 if args.quick else 150)

    def grep_all(mids: list[str]) -> Run:
        with open(work / "grep.txt", "wb") as out:
            needles = [a for m in mids for a in ("-e", f",{m},")]
            return run_measured(["grep", "-F", *needles, str(csv_path)], stdout=out, env=env)

    def job_of(mids: list[str]) -> Run:
        out = work / "hierarchy.parquet"
        pre = ["--select", str(out.with_suffix(".csv")), "--index", str(index)]
        return run_measured([PY, str(BENCH / "select_ours.py"), *pre, str(csv_path), str(out), *mids], env=env)

    log(f"warming the page cache and every method once: {csv_path}")
    for fn in (lambda: grep(APPLE), build, lambda: job(APPLE), lambda: job(PERSON)):
        if fn().rc:
            raise SystemExit("a method failed in the warm-up")
    results: dict[str, list[Run]] = {}
    for i in range(rounds):
        for name, fn in {
            "grep -F small (Apple)": lambda: grep(APPLE),
            "grep -F big (Person)": lambda: grep(PERSON),
            "index_boxes: one pass, all 601 MIDs": build,
            "extraction via the index, small (Apple)": lambda: extract(APPLE),
            "extraction via the index, big (Person)": lambda: extract(PERSON),
            "select_class job (+ selection, class CSV), small (Apple)": lambda: job(APPLE),
            "select_class job (+ selection, class CSV), big (Person)": lambda: job(PERSON),
            f"select_class job, a limit of {LIMIT:,} images, big (Person)": lambda: job_limited(PERSON),
            "byte scan without index, small (Apple)": lambda: extract(APPLE, via_index=False),
            "byte scan without index, big (Person)": lambda: extract(PERSON, via_index=False),
            f"grep -F hierarchy-sized ({len(hierarchy)} MIDs)": lambda: grep_all(hierarchy),
            f"select_class job, hierarchy-sized ({len(hierarchy)} MIDs)": lambda: job_of(hierarchy),
            f"select_class job, hierarchy-sized, a limit of {LIMIT:,} images": lambda: job_limited(*hierarchy),
        }.items():
            results.setdefault(name, []).append(fn())
            log(f"round {i + 1}/{rounds} {name}: {results[name][-1].wall:.2f} s")
    for name, runs in results.items():
        if any(r.rc for r in runs):
            raise SystemExit(f"{name} failed")
    grep_small = median([r.wall for r in results["grep -F small (Apple)"]])
    grep_big = median([r.wall for r in results["grep -F big (Person)"]])
    grep_hierarchy = median([r.wall for r in results[f"grep -F hierarchy-sized ({len(hierarchy)} MIDs)"]])
    idx = results["index_boxes: one pass, all 601 MIDs"]
    rows_md = []
    for name, runs in results.items():
        ref = grep_hierarchy if "hierarchy" in name else grep_big if "big" in name else grep_small
        wall = median([r.wall for r in runs])
        rows_md.append([name, f"**{wall / ref:.2f}x**", fmt(wall), f"{max(r.maxrss_mb for r in runs):,.0f}", len(runs)])
    jobs = os.cpu_count() or 1
    for n in many:
        mids = pick_classes(n)
        log(f"{n} classes: the index, then {n} select_class jobs, one after the other and {jobs} at a time")
        runs = [build(), *[job(m) for m in mids]]
        wall = sum(r.wall for r in runs)
        t0 = time.perf_counter()
        with ThreadPoolExecutor(jobs) as pool:  # as `snakemake --cores {jobs}` runs them
            side = list(pool.map(job, mids))
        side_wall = runs[0].wall + time.perf_counter() - t0
        if any(r.rc for r in runs + side):
            raise SystemExit(f"{n} classes: a job failed")
        grep_n = n * grep_small
        rows_md.append(
            [f"{n} classes: index + {n} select_class jobs, vs {n} x grep -F", f"**{wall / grep_n:.2f}x**",
             fmt(wall), f"{max(r.maxrss_mb for r in runs):,.0f}", 1]
        )  # fmt: skip
        rows_md.append(
            [f"{n} classes, {jobs} jobs at a time (wall), vs {n} x grep -F", f"**{side_wall / grep_n:.2f}x**",
             fmt(side_wall), f"{max(r.maxrss_mb for r in side):,.0f} each", 1]
        )  # fmt: skip
    shutil.rmtree(work, ignore_errors=True)
    size_gb = csv_path.stat().st_size / 1e9
    print(f"\n### Stage 1, many classes: index + per-class extraction, {size_gb:.2f} GB, {rows:,} rows\n")
    print(f"Machine: {machine()}\n")
    print(table(["method", "wall / grep -F (median)", "wall s (median)", "peak RSS MiB (max)", "runs"], rows_md))
    print(
        f"\nReference: grep -F small {grep_small:.2f} s, big {grep_big:.2f} s, hierarchy-sized {grep_hierarchy:.2f} s; "
        f"the index pass is {median([r.wall for r in idx]) / grep_small:.2f}x one grep. Rows 'big' are against grep "
        "of the big class, rows 'hierarchy-sized' against grep of its MIDs."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
