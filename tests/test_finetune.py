"""The demo workflow fine-tuned from darknet's real yolov3-tiny COCO weights (tests/configs/pretrained_tiny.yaml)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from conftest import ROOT
from real_weights import darknet_tiny_files
from test_workflow import snakemake

pytestmark = pytest.mark.slow


def test_demo_run_from_real_tiny_weights(tmp_path) -> None:
    from oidyolo.yolo.darknet import load_pretrained
    from oidyolo.yolo.model import build_yolov3, find_layer, iter_layers

    config = yaml.safe_load((ROOT / "tests" / "configs" / "pretrained_tiny.yaml").read_text())
    config["train"]["darknet_weights"] = str(darknet_tiny_files()["yolov3-tiny.weights"])
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    snakemake(tmp_path)

    start = tmp_path / "results" / "model" / "darknet_start.weights.h5"
    assert "full file: loaded 13 of 13 convs" in (tmp_path / "logs" / "convert_darknet.log").read_text()
    log = (tmp_path / "logs" / "train.log").read_text()
    assert "pretrained start: loaded 22 layers, skipped 2 (conv_15, conv_22)" in log, log[-2000:]
    assert "stage 1: 22 layers frozen (freeze mode 2)" in log
    # Stage 1 kept every loaded layer exactly as converted from darknet.
    reference = build_yolov3(3, "tiny")
    loaded, _ = load_pretrained(reference, start)
    stage1 = build_yolov3(3, "tiny")
    stage1.load_weights(str(tmp_path / "results" / "model" / "trained_weights_stage_1.weights.h5"))
    for layer in iter_layers(reference):
        if layer.weights:
            pairs = zip(layer.get_weights(), find_layer(stage1, layer.name).get_weights(), strict=True)
            assert all(np.array_equal(a, b) for a, b in pairs) == (layer.name in loaded), layer.name
    metrics = json.loads((tmp_path / "results" / "eval" / "metrics.json").read_text())
    assert set(metrics["per_class_AP50"]) == {"Apple", "Orange", "Banana"}
