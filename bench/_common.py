"""Helpers shared by the bench scripts: measured subprocesses, medians, markdown tables, machine facts.

Every measurement that includes interpreter start-up runs in a fresh child process; its wall time comes from
``perf_counter`` around ``Popen``/``wait4`` and its CPU time and peak RSS from the ``rusage`` that ``wait4`` returns
for that child (descendants it waited for included). ``ru_maxrss`` counts resident mapped file pages too.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH_TMP = Path(os.environ.get("OIDYOLO_BENCH_TMP", "/tmp/oidyolo-bench"))
PY = sys.executable


@dataclass(frozen=True)
class Run:
    wall: float
    user: float
    sys: float
    maxrss_mb: float
    rc: int

    @property
    def cpu(self) -> float:
        return self.user + self.sys


TIME = "/usr/bin/time"


def run_measured(
    cmd: Sequence[str], *, stdout=subprocess.DEVNULL, env: dict | None = None, cwd: str | Path | None = None
) -> Run:
    """Run ``cmd`` to completion; wall seconds, CPU seconds and peak RSS (MiB) of that child and its descendants.

    The child runs under GNU ``/usr/bin/time``: Linux carries a parent's RSS high-water mark over fork+exec into the
    child's ``ru_maxrss``, so a child forked straight from this (large) Python would report at least our own RSS.
    """
    if not os.access(TIME, os.X_OK):
        raise SystemExit(f"{TIME} (GNU time) is needed to measure peak RSS: apt-get install time")
    with tempfile.NamedTemporaryFile("r", suffix=".time") as rep:
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            [TIME, "-q", "-f", "%U %S %M %x", "-o", rep.name, *cmd], stdout=stdout, env=env, cwd=cwd
        )
        proc.wait()
        wall = time.perf_counter() - t0
        fields = rep.read().split()
    user, sys_, rss_kb, rc = float(fields[-4]), float(fields[-3]), int(fields[-2]), int(fields[-1])
    return Run(wall, user, sys_, rss_kb / 1024, rc or proc.returncode)


def start_measured(cmd: Sequence[str], *, env: dict | None = None, stdout=subprocess.DEVNULL):
    """Start ``cmd`` under GNU time; call the returned function to wait and get its :class:`Run` (wall from now)."""
    rep = tempfile.NamedTemporaryFile("r", suffix=".time")  # noqa: SIM115 (closed by finish)
    t0 = time.perf_counter()
    proc = subprocess.Popen([TIME, "-q", "-f", "%U %S %M %x", "-o", rep.name, *cmd], stdout=stdout, env=env)

    def finish() -> Run:
        proc.wait()
        wall = time.perf_counter() - t0
        fields = rep.read().split()
        rep.close()
        return Run(
            wall, float(fields[-4]), float(fields[-3]), int(fields[-2]) / 1024, int(fields[-1]) or proc.returncode
        )

    return finish


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def fmt(x: float, digits: int = 2) -> str:
    if x >= 100:
        return f"{x:,.0f}"
    if x >= 10:
        return f"{x:.1f}"
    return f"{x:.{digits}f}"


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


def machine() -> str:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
        mem_kb = int(
            next(x for x in Path("/proc/meminfo").read_text().splitlines() if x.startswith("MemTotal")).split()[1]
        )
        mem = f"{mem_kb / 1024**2:.1f} GiB RAM"
    except (OSError, StopIteration, ValueError):
        mem = "RAM unknown"
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    nproc = len(os.sched_getaffinity(0))
    return (
        f"{_dt.date.today().isoformat()}, nproc {nproc}, CPU {model}, {mem}, Python {platform.python_version()}, "
        f"load average at start {load}"
    )


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)
