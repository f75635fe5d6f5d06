"""Stage 1 benchmark: selecting 2 classes (Apple, Orange) from the full-size v6 train bbox CSV.

Compared side by side in one run, each in a fresh process (interpreter start and imports included):

* ``grep -F`` on the two ``,MID,`` needles (``LC_ALL=C``): the practical I/O floor;
* ours, one scan: :func:`oidyolo.data.select.extract_class` with both MIDs (one streaming pass, parse, validate,
  parquet), ``bench/select_ours.py``;
* ours, as the workflow runs it: one ``extract_class`` job per class, one after the other (sum of both) and both at
  once (``--cores 2``);
* ours, one scan for a class with ``expand_hierarchy`` (``--expand``, default Fruit: 17 MIDs), to show how the cost
  grows with the number of MIDs;
* the tools users have today (OIDv4_ToolKit, oidv6, FiftyOne): ``pandas.read_csv`` of the whole file and a boolean
  filter per class, ``bench/select_pandas.py``; with pandas' default string storage and with Python-object strings
  (as pandas < 3, which those tools run on).

The page cache is warmed first (the file is read once and every method runs once untimed, except pandas, whose
imports are warmed instead). Rounds interleave the methods; the table gives medians over rounds. Peak RSS is the
child's ``ru_maxrss`` (mapped file pages count: our scanner maps one 64 MiB window at a time).

    python bench/select_bench.py            # generates the 2.2 GB CSV under /tmp/oidyolo-bench on first use
    python bench/select_bench.py --quick    # 300k rows, seconds
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import BENCH_TMP, PY, ROOT, Run, fmt, log, machine, median, run_measured, start_measured, table
from make_big_csv import APPLE, FULL_ROWS, ORANGE, write_big_csv

MIDS = [APPLE, ORANGE]
BENCH = ROOT / "bench"
TARGET_RATIO = 1.5
TARGET_RSS_MB = 512


def ensure_csv(path: Path, rows: int) -> Path:
    if not path.exists():
        log(f"generating {path} ({rows:,} rows) ...")
        write_big_csv(path, rows)
    return path


def run_concurrent(cmds: list[list[str]], env: dict) -> Run:
    """Start every command at once; wall until the last ends, CPU summed, peak RSS the largest single child."""
    t0 = time.perf_counter()
    waits = [start_measured(c, env=env) for c in cmds]
    runs = [w() for w in waits]
    return Run(
        time.perf_counter() - t0,
        sum(r.user for r in runs),
        sum(r.sys for r in runs),
        max(r.maxrss_mb for r in runs),
        max(r.rc for r in runs),
    )


def run_sequential(cmds: list[list[str]], env: dict) -> Run:
    runs = [run_measured(c, env=env) for c in cmds]
    return Run(
        sum(r.wall for r in runs),
        sum(r.user for r in runs),
        sum(r.sys for r in runs),
        max(r.maxrss_mb for r in runs),
        max(r.rc for r in runs),
    )


def count_lines(path: Path) -> int:
    with open(path, "rb") as fh:
        return sum(block.count(b"\n") for block in iter(lambda: fh.read(1 << 20), b""))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--csv", type=Path, help="bbox CSV to use (default: generated under /tmp/oidyolo-bench)")
    ap.add_argument("--quick", action="store_true", help="300k-row CSV, 1 round: a smoke run in seconds")
    ap.add_argument("--rounds", type=int, default=5, help="timed rounds for grep and ours (default 5)")
    ap.add_argument("--pandas-rounds", type=int, default=1, help="timed rounds for each pandas variant (default 1)")
    ap.add_argument("--no-pandas", action="store_true")
    ap.add_argument(
        "--expand",
        default="Fruit",
        metavar="CLASS",
        help="also time one scan for CLASS with expand_hierarchy (Fruit: 17 MIDs); '' to skip",
    )
    ap.add_argument(
        "--compare-with",
        type=Path,
        metavar="DIR",
        help="also time our one-scan path with another copy of the package (PYTHONPATH=DIR), e.g. before a change",
    )
    args = ap.parse_args(argv)
    rows = 300_000 if args.quick else FULL_ROWS
    rounds = 1 if args.quick else args.rounds
    csv_path = ensure_csv(
        args.csv or BENCH_TMP / ("select-quick.csv" if args.quick else "oidv6-train-annotations-bbox.csv"), rows
    )
    size_gb = csv_path.stat().st_size / 1e9
    env = dict(os.environ, LC_ALL="C", PYTHONDONTWRITEBYTECODE="1")
    work = Path(tempfile.mkdtemp(prefix="select-", dir=BENCH_TMP))

    grep_out = work / "grep.txt"
    grep_cmd = ["grep", "-F", *[x for m in MIDS for x in ("-e", f",{m},")], str(csv_path)]
    ours_one = [PY, str(BENCH / "select_ours.py"), str(csv_path), str(work / "both.parquet"), *MIDS]
    ours_per_class = [
        [PY, str(BENCH / "select_ours.py"), str(csv_path), str(work / f"{n}.parquet"), mid]
        for n, mid in enumerate(MIDS)
    ]
    pandas_cmd = [PY, str(BENCH / "select_pandas.py"), str(csv_path), str(work), *MIDS]

    def grep() -> Run:
        with open(grep_out, "wb") as out:
            return run_measured(grep_cmd, stdout=out, env=env)

    methods = {
        "grep -F (floor)": grep,
        "ours, one scan for both MIDs": lambda: run_measured(ours_one, env=env),
        "ours, workflow: 2 jobs one after the other": lambda: run_sequential(ours_per_class, env=env),
        "ours, workflow: 2 jobs at once (--cores 2)": lambda: run_concurrent(ours_per_class, env=env),
    }
    other = dict(env, PYTHONPATH=str(args.compare_with.resolve())) if args.compare_with else None
    if other:
        methods[f"ours, one scan, package from {args.compare_with}"] = lambda: run_measured(ours_one, env=other)
    if args.expand:
        from oidyolo.data.catalog import ClassCatalog, Hierarchy, resolve_classes

        (expanded,) = resolve_classes([args.expand], ClassCatalog.shipped(), Hierarchy.shipped())
        ours_exp = [PY, str(BENCH / "select_ours.py"), str(csv_path), str(work / "exp.parquet"), *expanded.mids]
        label = f"{expanded.name} + subclasses ({len(expanded.mids)} MIDs)"
        methods[f"ours, one scan, {label}"] = lambda: run_measured(ours_exp, env=env)
        if other:
            methods[f"ours, one scan, {label}, package from {args.compare_with}"] = lambda: run_measured(
                ours_exp, env=other
            )
    pandas_methods = {}
    if not args.no_pandas:
        pandas_methods = {
            "pandas read_csv + filter (pandas default strings)": lambda: run_measured(pandas_cmd, env=env),
            "pandas read_csv + filter (object strings, as pandas < 3)": lambda: run_measured(
                [*pandas_cmd, "--object-strings"], env=env
            ),
        }

    log(f"warming the page cache: {csv_path} ({size_gb:.2f} GB)")
    count_lines(csv_path)
    for name, fn in methods.items():
        r = fn()
        if r.rc:
            raise SystemExit(f"{name} failed (exit {r.rc})")
    subprocess.run([PY, "-c", "import pandas, pyarrow.csv"], check=True)
    expected = count_lines(grep_out)

    results: dict[str, list[Run]] = {name: [] for name in [*methods, *pandas_methods]}
    for i in range(rounds):
        for name, fn in methods.items():
            results[name].append(fn())
            log(f"round {i + 1}/{rounds} {name}: {results[name][-1].wall:.2f} s")
    for i in range(1 if args.quick else args.pandas_rounds):
        for name, fn in pandas_methods.items():
            results[name].append(fn())
            log(f"pandas round {i + 1} {name}: {results[name][-1].wall:.2f} s")
    for name, runs in results.items():
        if any(r.rc for r in runs):
            raise SystemExit(f"{name} failed")

    import pyarrow.parquet as pq

    got = pq.read_metadata(work / "both.parquet").num_rows
    per_class = sum(pq.read_metadata(work / f"{n}.parquet").num_rows for n in range(len(MIDS)))
    pandas_rows = sum(count_lines(work / f"{n}.csv") - 1 for n in range(len(MIDS))) if pandas_methods else None
    check = f"rows selected: grep {expected:,}, ours {got:,} (one scan) / {per_class:,} (per class)"
    check += f", pandas {pandas_rows:,}" if pandas_rows is not None else ""
    shutil.rmtree(work, ignore_errors=True)

    grep_med = median([r.wall for r in results["grep -F (floor)"]])
    grep_by_round = [r.wall for r in results["grep -F (floor)"]]
    rows_md = []
    for name, runs in results.items():
        walls = [r.wall for r in runs]
        ratio = median(walls) / grep_med
        if len(runs) == len(grep_by_round) and len(runs) > 1:
            per_round = sorted(w / g for w, g in zip(walls, grep_by_round, strict=True))
            spread = f"{per_round[0]:.2f}-{per_round[-1]:.2f}"
        else:
            spread = "1 run"
        rows_md.append(
            [
                name,
                f"**{ratio:.2f}x**",
                spread,
                fmt(median(walls)),
                f"{max(r.maxrss_mb for r in runs):,.0f}",
                fmt(median([r.cpu for r in runs])),
                len(runs),
            ]
        )
    print(f"\n### Stage 1: select Apple + Orange from a {size_gb:.2f} GB, {rows:,}-row v6 train bbox CSV\n")
    print(f"Machine: {machine()}\n")
    print(
        table(
            [
                "method",
                "wall / grep -F (median)",
                "per-round ratio range",
                "wall s (median)",
                "peak RSS MiB (max)",
                "CPU s (median)",
                "runs",
            ],
            rows_md,
        )
    )
    ours_ratio = median([r.wall for r in results["ours, one scan for both MIDs"]]) / grep_med
    ours_rss = max(r.maxrss_mb for r in results["ours, one scan for both MIDs"])
    print(f"\n{check}")
    ok = ours_ratio <= TARGET_RATIO and ours_rss <= TARGET_RSS_MB
    print(
        f"Target (one scan): wall <= {TARGET_RATIO}x grep -F and peak RSS <= {TARGET_RSS_MB} MB: "
        f"{'HOLDS' if ok else 'MISSED'} ({ours_ratio:.2f}x, {ours_rss:,.0f} MiB)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
