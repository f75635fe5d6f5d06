"""Progress lines for long steps: plain lines (not carriage returns) so logs and Slurm output stay readable."""

from __future__ import annotations

import sys
import threading
import time
from typing import TextIO


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    raise AssertionError("unreachable")


class Progress:
    """Thread-safe counter that prints ``label: done/total (pct) rate ETA`` at most every ``interval`` seconds."""

    def __init__(
        self,
        label: str,
        total: int | None,
        *,
        unit: str = "items",
        interval: float = 5.0,
        stream: TextIO | None = None,
        as_bytes: bool = False,
    ) -> None:
        self.label, self.total, self.unit, self.interval = label, total, unit, interval
        self.stream = stream or sys.stderr
        self.as_bytes = as_bytes
        self.done = 0
        self.extra: dict[str, int] = {}
        self._start = self._last = time.monotonic()
        self._lock = threading.Lock()

    def advance(self, n: int = 1, **counts: int) -> None:
        with self._lock:
            self.done += n
            for key, value in counts.items():
                self.extra[key] = self.extra.get(key, 0) + value
            now = time.monotonic()
            if now - self._last >= self.interval:
                self._last = now
                self._print(now)

    def finish(self) -> None:
        with self._lock:
            self._print(time.monotonic(), final=True)

    def _fmt(self, n: float) -> str:
        return human_bytes(n) if self.as_bytes else str(int(n))

    def _print(self, now: float, final: bool = False) -> None:
        elapsed = max(now - self._start, 1e-9)
        rate = self.done / elapsed
        rate_s = f"{human_bytes(rate)}/s" if self.as_bytes else f"{rate:.1f} {self.unit}/s"
        parts = [f"{self.label}: {self._fmt(self.done)}"]
        if self.total:
            parts[0] += f"/{self._fmt(self.total)} ({100 * self.done / self.total:.1f}%)"
        parts.append(rate_s)
        parts += [f"{v} {k}" for k, v in sorted(self.extra.items()) if v]
        if final:
            parts.append(f"done in {elapsed:.1f}s")
        elif self.total and rate > 0:
            parts.append(f"ETA {(self.total - self.done) / rate:.0f}s")
        print(", ".join(parts), file=self.stream, flush=True)
