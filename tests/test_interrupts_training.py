"""kill -9 of training at seeded random epochs and at the two moments of an epoch's end that a kill must not break:
the rerun resumes, logs every epoch once and finishes (tiny YOLOv3 at 64 px). The data steps' kills are in
``test_interrupts.py``."""

from __future__ import annotations

import csv
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import kill_at

pytestmark = pytest.mark.slow
SEED = 20240611


TRAIN = """
import os, sys
from pathlib import Path
from oidyolo.yolo import callbacks as cb, train as t
root, out = Path(sys.argv[1]), Path(sys.argv[2])
where, _, at = os.environ.get("OIDYOLO_TEST_PAUSE", "").partition(":")  # hold still at one moment, to be killed there
if where == "history":  # the epoch is backed up for resume; its history row is not written yet
    original_row = cb.CsvHistory.on_epoch_end
    def on_epoch_end(self, epoch, logs=None):
        if epoch == int(at):
            print("PAUSED", flush=True)
            import time; time.sleep(60)
        original_row(self, epoch, logs)
    cb.CsvHistory.on_epoch_end = on_epoch_end
if where == "backup":  # the epoch's backup is being written: its file exists (empty), its weights do not yet
    original_backup = cb.Backup.on_epoch_end
    def on_epoch_end(self, epoch, logs=None):
        if epoch == int(at):
            self.folder.mkdir(parents=True, exist_ok=True)
            from oidyolo.atomic import temp_path
            temp_path(self.folder / "latest.weights.h5", ".weights.h5").write_bytes(b"")  # h5py's first step
            print("PAUSED", flush=True)
            import time; time.sleep(60)
        original_backup(self, epoch, logs)
    cb.Backup.on_epoch_end = on_epoch_end
cfg = t.TrainConfig.from_dict({"variant": "tiny", "input_size": 64, "batch_size": [4, 4], "epochs": [1, 6],
                               "learning_rate": [0.003, 0.001], "early_stopping_patience": 50})
r = t.train(t.TrainInputs(root / "train.txt", root / "val.txt", root / "classes.txt", root / "anchors.txt"), out, cfg)
print("RESUMED" if r.summary["resumed"] else "FRESH")
"""
EPOCHS = 7


@pytest.fixture(scope="module")
def yolo_data(tmp_path_factory):
    from yolo_data import make_dataset, write_tiny_anchors

    root = make_dataset(tmp_path_factory.mktemp("yolo"), n_train=8, n_val=4)
    write_tiny_anchors(root)
    return root


def logged_epochs(out: Path) -> list[int]:
    if not (out / "history.csv").exists():
        return []
    with open(out / "history.csv", newline="") as fh:
        return [int(r["epoch"]) for r in csv.DictReader(fh)]


# Two moments of an epoch's end that a kill must not break: while the resume backup is written (it is written under
# a temporary name and renamed, so the previous backup stays valid), and between the epoch's history row and its
# backup (the backup comes last, so the rerun redoes that epoch and replaces its row).


def test_training_killed_at_random_epochs_resumes_and_logs_each_epoch_once(yolo_data, tmp_path):
    script, out = tmp_path / "train.py", tmp_path / "model"
    script.write_text(TRAIN)
    cmd = [sys.executable, str(script), str(yolo_data), str(out)]
    rng = random.Random(SEED)
    targets = sorted(rng.sample(range(1, EPOCHS - 1), 3))  # kill once this many epochs are logged ...
    for target in targets:
        # ... plus up to 0.4 s: an epoch here takes about that long, so the kill lands anywhere in the next one
        assert kill_at(cmd, rng.uniform(0.0, 0.4), until=lambda t=target: len(logged_epochs(out)) >= t)
        done = logged_epochs(out)
        assert done == list(range(len(done))) and len(done) >= target  # each epoch once, none skipped
        assert not (out / "trained_weights_final.weights.h5").exists()
    finished = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert "RESUMED" in finished.stdout
    assert logged_epochs(out) == list(range(EPOCHS))
    assert (out / "trained_weights_final.weights.h5").is_file() and not (out / "_state").exists()


def kill_when_paused(cmd: list[str], pause: str) -> None:
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, start_new_session=True,
        env={**os.environ, "OIDYOLO_TEST_PAUSE": pause},
    )  # fmt: skip
    try:
        assert any(line.strip() == "PAUSED" for line in iter(proc.stdout.readline, ""))
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@pytest.mark.parametrize(
    "pause",
    [
        pytest.param("backup:2", id="during-backup"),
        pytest.param("history:2", id="before-history-row"),
    ],
)
def test_a_kill_at_an_epochs_end_loses_no_epoch_and_resumes(yolo_data, tmp_path, pause):
    script, out = tmp_path / "train.py", tmp_path / "model"
    script.write_text(TRAIN)
    cmd = [sys.executable, str(script), str(yolo_data), str(out)]
    kill_when_paused(cmd, pause)
    finished = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert logged_epochs(out) == list(range(EPOCHS))
