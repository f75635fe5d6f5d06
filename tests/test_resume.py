"""Exact resume: a training killed with SIGKILL mid-run and resumed logs the same history as an uninterrupted one
(up to float noise), including the LR plateau's reductions, which depend on the callback counters carried over."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from yolo_data import make_dataset, write_tiny_anchors

pytestmark = pytest.mark.slow

SCRIPT = """
import sys
from pathlib import Path
from oidyolo.yolo.train import TrainConfig, TrainInputs, train
root, out = Path(sys.argv[1]), Path(sys.argv[2])
cfg = TrainConfig.from_dict({"variant": "tiny", "input_size": 64, "batch_size": [3, 3], "epochs": [2, 5],
                             "learning_rate": [0.003, 0.001], "reduce_lr_patience": 1, "early_stopping_patience": 3,
                             "cache": "memory"})
r = train(TrainInputs(root / "train.txt", root / "val.txt", root / "classes.txt", root / "anchors.txt"), out, cfg,
          threads=1)
print("RESUMED" if r.summary["resumed"] else "FRESH")
"""


def rows(out: Path) -> list[dict[str, str]]:
    if not (out / "history.csv").exists():
        return []
    with open(out / "history.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def test_killed_and_resumed_training_logs_the_uninterrupted_history(tmp_path):
    root = make_dataset(tmp_path / "data", n_train=7, n_val=3, side=96)
    write_tiny_anchors(root)
    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "TF_DETERMINISTIC_OPS": "1", "OMP_NUM_THREADS": "1"}

    whole = tmp_path / "whole"
    done = subprocess.run([sys.executable, str(script), str(root), str(whole)], capture_output=True, text=True,
                          timeout=600, env=env)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    expected = rows(whole)
    assert len(expected) >= 5

    cut = tmp_path / "cut"
    cmd = [sys.executable, str(script), str(root), str(cut)]
    for kill_after in (1, 4):  # once in stage 1, once in stage 2 after an LR plateau had time to count
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True,
                                env=env)  # fmt: skip
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and len(rows(cut)) < kill_after and proc.poll() is None:
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        assert kill_after <= len(rows(cut)) < len(expected)
    finished = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert "RESUMED" in finished.stdout
    got = rows(cut)
    assert [r["epoch"] for r in got] == [r["epoch"] for r in expected]
    for a, b in zip(got, expected, strict=True):
        assert a.keys() == b.keys()
        for key in a:
            if b[key] == "":
                assert a[key] == "", key
            else:
                assert float(a[key]) == pytest.approx(float(b[key]), rel=1e-3, abs=1e-4), (a["epoch"], key)
    # The plateau reduced the rate in both runs at the same epoch (the counters survived the kill).
    assert [r["learning_rate"] for r in got] == [r["learning_rate"] for r in expected]
    assert len({r["learning_rate"] for r in expected[2:]}) > 1, "no LR reduction: the test would not cover it"
