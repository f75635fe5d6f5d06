"""The YOLOv3 body and the trainable detector: shapes, sizes, saving, freezing, fit, mixed precision, 2 replicas."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

from helpers import ANCHORS, toy_batch  # noqa: E402

from oidyolo.errors import ConfigError  # noqa: E402
from oidyolo.yolo.head import FULL_OUTPUT_LAYERS, TINY_OUTPUT_LAYERS  # noqa: E402
from oidyolo.yolo.model import YoloDetector, build_yolov3, freeze_backbone, iter_layers, unfreeze_all  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def full_body() -> keras.Model:
    return build_yolov3(80, "full")


@pytest.fixture(scope="module")
def tiny_body() -> keras.Model:
    return build_yolov3(80, "tiny")


def test_parameter_counts(full_body: keras.Model, tiny_body: keras.Model) -> None:
    assert full_body.count_params() == 62_001_757
    assert tiny_body.count_params() == 8_858_734
    # Only the output convs depend on the class count: 3 * (5 + C) filters each.
    fan_in = 1024 + 512 + 256 + 3  # the three output convs' input channels, plus one bias per output conv
    assert build_yolov3(3, "full").count_params() == 62_001_757 - (255 - 24) * fan_in


@pytest.mark.parametrize("size", [(64, 64), (96, 160), (160, 128)])
def test_output_shapes(full_body: keras.Model, tiny_body: keras.Model, size: tuple[int, int]) -> None:
    h, w = size
    x = np.random.default_rng(0).uniform(0, 1, (2, h, w, 3)).astype(np.float32)
    for body, strides in ((full_body, (32, 16, 8)), (tiny_body, (32, 16))):
        outs = body(x, training=False)
        assert isinstance(outs, list)
        assert [tuple(o.shape) for o in outs] == [(2, h // s, w // s, 255) for s in strides]
        assert all(o.dtype == tf.float32 for o in outs)


def test_body_names_and_bad_arguments(full_body: keras.Model) -> None:
    assert full_body.name == "yolov3"
    assert all(full_body.get_layer(n).output is o for n, o in zip(FULL_OUTPUT_LAYERS, full_body.outputs, strict=True))
    names = [layer.name for layer in iter_layers(full_body)]
    assert len(names) == len(set(names)) == 253
    for bad in (
        dict(num_classes=0),
        dict(num_classes=2, variant="large"),
        dict(num_classes=2, input_shape=(100, 96, 3)),
    ):
        with pytest.raises(ConfigError):
            build_yolov3(**bad)


def _randomise(body: keras.Model, seed: int) -> None:
    rng = np.random.default_rng(seed)
    body.set_weights(
        [
            rng.uniform(0.5, 1.5, w.shape).astype(np.float32)
            if "variance" in w.path
            else rng.normal(0, 0.05, w.shape).astype(np.float32)
            for w in body.weights
        ]
    )


def test_saved_weights_reload_to_identical_predictions(tmp_path: Path) -> None:
    body = build_yolov3(3, "tiny")
    _randomise(body, seed=1)
    path = tmp_path / "tiny.weights.h5"
    body.save_weights(str(path))
    fresh = build_yolov3(3, "tiny")
    x = np.random.default_rng(2).uniform(0, 1, (1, 96, 64, 3)).astype(np.float32)
    before = [o.numpy() for o in fresh(x)]
    fresh.load_weights(str(path))
    for a, b, c in zip(body(x), fresh(x), before, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
        assert not np.allclose(b.numpy(), c)


def _trainable_names(body: keras.Model) -> set[str]:
    return {layer.name for layer in iter_layers(body) if layer.weights and layer.trainable}


@pytest.mark.parametrize(("variant", "heads"), [("full", FULL_OUTPUT_LAYERS), ("tiny", TINY_OUTPUT_LAYERS)])
def test_freeze_modes(variant: str, heads: tuple[str, ...], full_body: keras.Model, tiny_body: keras.Model) -> None:
    body = full_body if variant == "full" else tiny_body
    detector = YoloDetector(body, ANCHORS[variant], 80)
    everything = _trainable_names(body)
    last_backbone = "conv_74" if variant == "full" else "conv_12"

    freeze_backbone(detector, 1)
    trainable = _trainable_names(body)
    assert last_backbone not in trainable and "conv_0" not in trainable
    assert set(heads) <= trainable and ("conv_75" if variant == "full" else "conv_13") in trainable

    frozen = freeze_backbone(body, 2)
    assert _trainable_names(body) == set(heads)
    assert len(detector.trainable_weights) == 2 * len(heads)  # kernel + bias each
    assert frozen == len(everything) - len(heads)

    unfreeze_all(detector)
    assert _trainable_names(body) == everything
    with pytest.raises(ConfigError):
        freeze_backbone(body, 3)


def test_fit_on_one_batch_lowers_the_loss() -> None:
    keras.utils.set_random_seed(0)
    detector = YoloDetector(build_yolov3(3, "tiny"), ANCHORS["tiny"], 3)
    detector.compile(optimizer=keras.optimizers.Adam(1e-3))
    x, y = toy_batch()
    history = detector.fit(tf.data.Dataset.from_tensors((x, y)).repeat(12), epochs=2, verbose=0, shuffle=False).history
    assert {"loss", "xy_loss", "wh_loss", "conf_loss", "class_loss"} <= set(history)
    assert history["loss"][1] < 0.7 * history["loss"][0]
    # The weight decay is part of the loss: loss > sum of the YOLO terms.
    terms = sum(history[k][1] for k in ("xy_loss", "wh_loss", "conf_loss", "class_loss"))
    assert history["loss"][1] > terms
    outputs = detector.predict(x, verbose=0)
    assert [o.shape for o in outputs] == [(2, 3, 3, 24), (2, 6, 6, 24)]


def test_detector_checks_its_arguments(tiny_body: keras.Model) -> None:
    with pytest.raises(ConfigError):
        YoloDetector(tiny_body, ANCHORS["full"], 80)  # 9 anchors for a 2-output body
    with pytest.raises(ConfigError):
        YoloDetector(tiny_body, ANCHORS["tiny"], 3)  # body built for 80 classes
    assert YoloDetector(tiny_body, ANCHORS["tiny"], 80).ignore_thresh == 0.7


def test_mixed_float16_step_is_finite() -> None:
    keras.config.set_dtype_policy("mixed_float16")
    try:
        body = build_yolov3(3, "tiny")
        detector = YoloDetector(body, ANCHORS["tiny"], 3)
        detector.compile(optimizer=keras.optimizers.Adam(1e-3))
        x, y = toy_batch(64)
        logs = detector.train_on_batch(x, y, return_dict=True)
        assert all(np.isfinite(v) for v in logs.values()) and logs["loss"] > 0
        assert body(x).__getitem__(0).dtype == tf.float16
        assert all(o.dtype == tf.float32 for o in detector(x))
        assert isinstance(detector.optimizer, keras.optimizers.LossScaleOptimizer)
    finally:
        keras.config.set_dtype_policy("float32")


MIRRORED = textwrap.dedent(
    """
    import os, tempfile
    import numpy as np, tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    from helpers import ANCHORS, toy_batch
    from oidyolo.yolo.darknet import load_pretrained
    from oidyolo.yolo.model import YoloDetector, build_yolov3

    keras.utils.set_random_seed(0)
    x, y = toy_batch(64)
    data = tf.data.Dataset.from_tensors((x, y)).repeat(2)
    single = YoloDetector(build_yolov3(3, "tiny"), ANCHORS["tiny"], 3)
    single.compile(optimizer="adam")
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        detector = YoloDetector(build_yolov3(3, "tiny"), ANCHORS["tiny"], 3)
        detector.compile(optimizer=keras.optimizers.Adam(1e-3))
    assert strategy.num_replicas_in_sync == 2
    # As training does: a saved body loaded by name into the replicated one, outside the scope.
    path = os.path.join(tempfile.mkdtemp(), "single.weights.h5")
    single.body.save_weights(path)
    loaded, skipped = load_pretrained(detector.body, path)
    assert skipped == [] and len(loaded) == 24, (loaded, skipped)
    # Same weights, inference-mode BN: the 2-replica loss (1 image each) must equal the 1-device loss.
    a = detector.evaluate(data.take(1), verbose=0, return_dict=True)
    b = single.evaluate(data.take(1), verbose=0, return_dict=True)
    for k in b:
        assert abs(a[k] - b[k]) <= 1e-4 * abs(b[k]), (k, a[k], b[k])
    history = detector.fit(data, epochs=1, verbose=0, shuffle=False).history
    assert all(np.isfinite(v[-1]) for v in history.values()), history
    print("OK", sorted(history), a["loss"], b["loss"])
    """
)


def test_mirrored_strategy_on_two_logical_cpus() -> None:
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "tests"), str(ROOT), os.environ.get("PYTHONPATH", "")])
    )
    proc = subprocess.run(
        [sys.executable, "-c", MIRRORED], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "OK" in proc.stdout and "conf_loss" in proc.stdout
