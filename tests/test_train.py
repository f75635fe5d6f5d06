"""Training end to end on a few demo images: the loss falls, weights reload identically, interruption resumes,
evaluation and detection work on the result."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from yolo_data import CLASSES, make_dataset, write_tiny_anchors

pytestmark = pytest.mark.slow

SMALL = {"variant": "tiny", "input_size": 96, "batch_size": [4, 4], "learning_rate": [0.003, 0.001]}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = make_dataset(tmp_path_factory.mktemp("yolo"), n_train=8, n_val=4)
    write_tiny_anchors(root, (96, 96))
    return root


def inputs(root: Path):
    from oidyolo.yolo.train import TrainInputs

    return TrainInputs(root / "train.txt", root / "val.txt", root / "classes.txt", root / "anchors.txt")


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory):
    from oidyolo.yolo.train import TrainConfig, train

    out = tmp_path_factory.mktemp("model")
    cfg = TrainConfig.from_dict({**SMALL, "epochs": [2, 4], "early_stopping_patience": 50, "reduce_lr_patience": 50})
    return out, train(inputs(data), out, cfg)


def history(out: Path) -> list[dict]:
    with open(out / "history.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def test_loss_falls_and_all_outputs_are_written(trained):
    out, result = trained
    rows = history(out)
    assert [int(r["epoch"]) for r in rows] == list(range(6))
    assert all(None not in r and all(v != "" for v in r.values()) for r in rows)  # one header fits both stages
    assert [float(r["learning_rate"]) for r in rows] == pytest.approx([0.003] * 2 + [0.001] * 4)
    losses = [float(r["loss"]) for r in rows]
    assert losses[-1] < 0.5 * losses[0], losses
    for name in ("trained_weights_stage_1.weights.h5", "trained_weights_final.weights.h5", "model.json"):
        assert (out / name).is_file()
    assert json.loads((out / "model.json").read_text())["classes"] == CLASSES
    assert not (out / "_state").exists()  # the resume state is cleared once training completes
    assert result.summary["epochs_run"] == 6


def test_final_weights_reload_into_an_identical_model(trained, data):
    from oidyolo.yolo.modelspec import load_body

    out, result = trained
    body, spec = load_body(out / "trained_weights_final.weights.h5")
    images = np.random.default_rng(0).random((2, 96, 96, 3), dtype=np.float32)
    for a, b in zip(result.body(images, training=False), body(images, training=False), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert spec.variant == "tiny" and spec.input_size == (96, 96)


def test_evaluation_writes_metrics_plot_and_examples(trained, data, tmp_path):
    from oidyolo.yolo.evaluate import evaluate

    out, _ = trained
    metrics = evaluate(
        out / "trained_weights_final.weights.h5", data / "val.txt", tmp_path, examples=2, split="test",
        val_txt=data / "train.txt", val_split="validation",
    )  # fmt: skip
    saved = json.loads((tmp_path / "metrics.json").read_text())
    n_test, n_val = (len((data / f).read_text().splitlines()) for f in ("val.txt", "train.txt"))
    assert saved["counts"]["images"] == saved["images"] == n_test and saved["split"] == "test"
    assert saved["validation"]["split"] == "validation" and saved["validation"]["images"] == n_val
    assert saved["validation"]["mAP50"] is None or 0 <= saved["validation"]["mAP50"] <= 1
    assert set(saved["per_class_AP50"]) == set(CLASSES)
    assert metrics["mAP50"] is None or 0 <= metrics["mAP50"] <= 1
    assert (tmp_path / "pr_curve.png").stat().st_size > 1000
    assert len(list((tmp_path / "examples").glob("*.jpg"))) == 2


def test_detect_command_writes_json_and_drawn_images(trained, data, tmp_path):
    out, _ = trained
    images, weights = data / "images", out / "trained_weights_final.weights.h5"
    proc = subprocess.run(
        [sys.executable, "-m", "oidyolo", "detect", str(images), "--weights", str(weights), "--out", str(tmp_path),
         "--score", "0.01"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((tmp_path / "detections.json").read_text())
    assert len(results) == len(list(images.glob("*.jpg")))
    for item in results:
        assert {"image", "width", "height", "detections"} <= set(item)
        for d in item["detections"]:
            x1, y1, x2, y2 = d["box"]
            assert d["class"] in CLASSES and 0 <= x1 <= x2 <= item["width"] and 0 <= y1 <= y2 <= item["height"]
    assert len(list(tmp_path.glob("*.jpg"))) == len(results)


def test_detect_refuses_a_missing_weights_spec(tmp_path):
    (tmp_path / "w.weights.h5").write_bytes(b"x")
    proc = subprocess.run(
        [sys.executable, "-m", "oidyolo", "detect", str(tmp_path), "--weights", str(tmp_path / "w.weights.h5"),
         "--out", str(tmp_path / "o")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 2 and "model.json" in proc.stderr and "Traceback" not in proc.stderr


RESUME_SCRIPT = f"""
import sys
from pathlib import Path
from oidyolo.yolo.train import TrainConfig, TrainInputs, train
root, out = Path(sys.argv[1]), Path(sys.argv[2])
cfg = TrainConfig.from_dict({{**{SMALL!r}, "epochs": [1, 5], "early_stopping_patience": 50}})
r = train(TrainInputs(root / "train.txt", root / "val.txt", root / "classes.txt", root / "anchors.txt"), out, cfg)
print("RESUMED" if r.summary["resumed"] else "FRESH")
"""


def test_interrupted_training_resumes_from_its_last_epoch(data, tmp_path):
    script = tmp_path / "run.py"
    script.write_text(RESUME_SCRIPT)
    out = tmp_path / "model"
    cmd = [sys.executable, str(script), str(data), str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 400
    while time.monotonic() < deadline:  # kill -9 once stage 2 has finished an epoch
        if (out / "history.csv").exists() and len(history(out)) >= 3:
            break
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done = len(history(out))
    assert 3 <= done < 6 and not (out / "trained_weights_final.weights.h5").exists()
    finished = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert "RESUMED" in finished.stdout
    epochs = [int(r["epoch"]) for r in history(out)]
    assert epochs == list(range(6)), epochs  # continued, not restarted: every epoch logged exactly once
    assert (out / "trained_weights_final.weights.h5").is_file()


def test_bad_training_settings_are_refused():
    from oidyolo.errors import ConfigError
    from oidyolo.yolo.train import TrainConfig

    for bad, msg in (
        ({"input_size": 100}, "multiples of 32"),
        ({"variant": "huge"}, "'full', 'tiny', got 'huge'"),
        ({"epochs": [0, 0]}, ">= 1 in total"),
        ({"colour": 1}, "unexpected keyword"),
    ):
        with pytest.raises(ConfigError, match=msg):
            TrainConfig.from_dict(bad)


def test_a_nan_loss_stops_training_with_advice(data, tmp_path):
    from oidyolo.yolo.train import TrainConfig, TrainingError, train

    # An absurd learning rate blows the weights up within a few steps.
    cfg = TrainConfig.from_dict({**SMALL, "epochs": [3, 0], "learning_rate": [1e12, 1e-4], "weight_decay": 0.0})
    with pytest.raises(TrainingError, match=r"NaN or infinite.*learning_rate"):
        train(inputs(data), tmp_path, cfg)
    assert not (tmp_path / "trained_weights_final.weights.h5").exists()


MIRRORED_SCRIPT = """
import sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from pathlib import Path
from oidyolo.yolo.train import TrainConfig, TrainInputs, train
root, out = Path(sys.argv[1]), Path(sys.argv[2])
cfg = TrainConfig.from_dict({"variant": "tiny", "input_size": 64, "epochs": [1, 1], "batch_size": [4, 4],
                             "distribute": "mirrored"})
train(TrainInputs(root / "train.txt", root / "val.txt", root / "classes.txt", root / "anchors.txt"), out, cfg)
"""


def test_training_runs_data_parallel_over_two_logical_devices(data, tmp_path):
    script = tmp_path / "mirrored.py"
    script.write_text(MIRRORED_SCRIPT)
    proc = subprocess.run(
        [sys.executable, str(script), str(data), str(tmp_path / "m")], capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "data parallel over 2 devices" in proc.stderr
    assert "no GPU found: training on the CPU" in proc.stderr
    assert (tmp_path / "m" / "trained_weights_final.weights.h5").is_file()


def test_darknet_start_is_converted_and_loaded_except_the_class_heads(data, tmp_path):
    """The pretrained path end to end: `convert-darknet` on a (synthetic) yolov3-tiny.weights, then training from
    it with stage 1 frozen. Real weights cannot be downloaded here; the converter itself is checked against
    OpenCV in test_darknet.py."""
    from helpers import write_darknet_weights

    from oidyolo.yolo.darknet import describe_cfg, shipped_cfg
    from oidyolo.yolo.train import TrainConfig, train

    weights = tmp_path / "yolov3-tiny.weights"
    write_darknet_weights(describe_cfg(shipped_cfg("tiny")), weights, gain=1.0)
    converted = tmp_path / "start.weights.h5"
    proc = subprocess.run(
        [sys.executable, "-m", "oidyolo", "convert-darknet", str(weights), "--variant", "tiny",
         "--out", str(converted)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "8,858,734 floats" in proc.stdout
    run = inputs(data)
    run.pretrained = converted
    cfg = TrainConfig.from_dict({**SMALL, "epochs": [1, 1], "freeze": 1})
    result = train(run, tmp_path / "model", cfg)
    assert result.summary["epochs_run"] == 2
    # The 80-class output convs do not fit 3 classes: those two are skipped, every other layer is loaded.
    from oidyolo.yolo.darknet import load_pretrained
    from oidyolo.yolo.model import build_yolov3

    loaded, skipped = load_pretrained(build_yolov3(3, "tiny"), converted)
    assert sorted(skipped) == ["conv_15", "conv_22"] and len(loaded) > 20


def test_a_weights_file_of_the_wrong_size_is_refused_with_both_counts(tmp_path):
    from helpers import write_darknet_weights

    from oidyolo.yolo.darknet import describe_cfg, shipped_cfg

    weights = tmp_path / "yolov3-tiny.weights"
    write_darknet_weights(describe_cfg(shipped_cfg("tiny")), weights, gain=1.0, extra_floats=7)
    proc = subprocess.run(
        [sys.executable, "-m", "oidyolo", "convert-darknet", str(weights), "--variant", "tiny", "--out",
         str(tmp_path / "x.weights.h5")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "expected 8858734, actual 8858741" in proc.stderr, proc.stderr
