"""The one atomic-write helper every output goes through: a kill -9, a failing writer or a full disk leaves the final
path as it was (absent, or the previous whole file), and the temporaries a killed run leaves are cleaned up."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from oidyolo.atomic import HOST, atomic_write, remove_stale_parts, temp_path, write_bytes_atomic
from oidyolo.errors import DiskFullError

# Two whole versions of one file, large enough that a kill often lands mid-write.
A, B = b"A" * (4 << 20), b"B" * (4 << 20)

WRITER = """
import sys
from oidyolo.atomic import write_bytes_atomic
path = sys.argv[1]
a, b = b"A" * (4 << 20), b"B" * (4 << 20)
n = 0
while True:
    write_bytes_atomic(path, a if n % 2 == 0 else b)
    n += 1
    if n == 1:
        print("WROTE", flush=True)
"""


def test_kill_9_never_leaves_a_partial_file(tmp_path: Path) -> None:
    target = tmp_path / "out" / "file.bin"
    rnd = random.Random(7)
    for kills in range(1, 41):  # at least 10, and on until one lands mid-write (fewer do on a loaded machine)
        if kills > 10 and any(target.parent.glob(".*.part")):
            break
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(target)], stdout=subprocess.PIPE)
        assert proc.stdout is not None and proc.stdout.readline() == b"WROTE\n"
        time.sleep(rnd.uniform(0, 0.05))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert target.read_bytes() in (A, B)  # one whole version, never a mix or a prefix
    dead = sorted(target.parent.glob(".*.part"))
    assert dead, "no kill landed mid-write, so the test proved nothing"
    # Only the dead writers' temporaries go: a live one of ours (another thread's, say) is kept.
    live = temp_path(target)
    live.write_bytes(b"in progress")
    assert remove_stale_parts(target.parent) == len(dead)
    assert sorted(target.parent.iterdir()) == sorted([target, live])


def test_a_failing_writer_keeps_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "file.txt"
    write_bytes_atomic(target, b"old")

    def half_then_fail(tmp: Path) -> None:
        tmp.write_bytes(b"new but incomplete")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, half_then_fail)
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.txt"]


def test_the_writer_gets_a_temporary_with_the_suffix_it_needs(tmp_path: Path) -> None:
    seen: list[Path] = []
    atomic_write(tmp_path / "m.weights.h5", lambda tmp: (seen.append(tmp), tmp.write_bytes(b"w")), suffix=".weights.h5")
    assert seen[0].name.startswith(".m.weights.h5.") and seen[0].name.endswith(".part.weights.h5")
    assert f".{HOST}.{os.getpid()}." in seen[0].name and not seen[0].exists()
    assert (tmp_path / "m.weights.h5").read_bytes() == b"w"


def test_a_full_disk_raises_a_clear_error_and_keeps_the_old_file(tmpfs) -> None:
    target = tmpfs("64k").path / "sub" / "file.bin"
    write_bytes_atomic(target, b"old")
    with pytest.raises(DiskFullError, match=rf"disk full while writing {target} \(no space left on device"):
        write_bytes_atomic(target, b"x" * (256 << 10))
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in target.parent.iterdir()) == ["file.bin"]
