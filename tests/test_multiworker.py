"""Multi-worker training (``train.distribute: multiworker``): two worker processes on loopback, configured by
TF_CONFIG as a Slurm job step's tasks would be by SlurmClusterResolver, train together (gradients all-reduced
every step) and end with identical trainable weights; only the chief writes the outputs."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from yolo_data import make_dataset, write_tiny_anchors

pytestmark = pytest.mark.slow

SCRIPT = """
import sys
from pathlib import Path
from oidyolo.yolo.train import TrainConfig, TrainInputs, train
root, out = Path(sys.argv[1]), Path(sys.argv[2])
cfg = TrainConfig.from_dict({"variant": "tiny", "input_size": 64, "batch_size": [4, 4], "epochs": [1, 1],
                             "distribute": "multiworker", "cache": "memory"})
train(TrainInputs(root / "train.txt", root / "val.txt", root / "classes.txt", root / "anchors.txt"), out, cfg,
      threads=1)
"""


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def test_two_workers_on_loopback_end_with_identical_weights(tmp_path):
    import h5py

    root = make_dataset(tmp_path / "data", n_train=8, n_val=4, side=96)
    write_tiny_anchors(root)
    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    workers = [f"127.0.0.1:{p}" for p in _free_ports(2)]
    out = tmp_path / "model"
    procs = []
    for index in range(2):
        tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        env = {**os.environ, "TF_CONFIG": json.dumps(tf_config), "OMP_NUM_THREADS": "1"}
        procs.append(subprocess.Popen([sys.executable, str(script), str(root), str(out)], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))  # fmt: skip
    results = [p.communicate(timeout=600) for p in procs]
    for p, (_, err) in zip(procs, results, strict=True):
        assert p.returncode == 0, err[-3000:]
    assert "data parallel over 2 devices (CollectiveAllReduceStrategy)" in results[0][1]  # MWMS's class name
    chief, other = out / "trained_weights_final.weights.h5", out / "_worker_1" / "trained_weights_final.weights.h5"
    assert chief.is_file() and other.is_file()

    def arrays(path: Path) -> dict[str, np.ndarray]:
        found: dict[str, np.ndarray] = {}
        with h5py.File(path) as fh:
            fh.visititems(lambda name, obj: found.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
        return found

    a, b = arrays(chief), arrays(other)
    assert a.keys() == b.keys() and len(a) > 10
    # Trainable weights are updated with all-reduced gradients: identical. BatchNormalization's moving mean and
    # variance (vars 2 and 3) are per replica, each from its own half of the batches: close, not equal.
    moving = [n for n in a if "batch_normalization" in n and n.endswith(("vars/2", "vars/3"))]
    assert moving
    for name in a:
        if name in moving:
            np.testing.assert_allclose(a[name], b[name], rtol=0.2, atol=0.02, err_msg=name)
        else:
            np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    # Both logged the same all-reduced losses, epoch by epoch, and the losses moved (training happened).
    chief_rows, other_rows = (json.dumps(_rows(d / "history.csv")) for d in (out, out / "_worker_1"))
    assert chief_rows == other_rows
    losses = [float(r["loss"]) for r in _rows(out / "history.csv")]
    assert len(losses) == 2 and losses[0] != losses[1]


def _rows(path: Path) -> list[dict[str, str]]:
    import csv

    with open(path, newline="") as fh:
        return [{k: v for k, v in r.items() if k != "learning_rate"} for r in csv.DictReader(fh)]
