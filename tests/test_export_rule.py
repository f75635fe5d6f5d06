"""The Snakemake rule `export`: not in the default target; on a trained model it writes every format."""

from __future__ import annotations

import shutil

import pytest
import yaml
from real_weights import darknet_tiny_files
from test_workflow import BASE, planned, snakemake

pytestmark = pytest.mark.slow


def test_export_rule_writes_all_formats_and_is_not_a_default_target(tmp_path) -> None:
    from oidyolo.yolo.darknet import convert_with_spec, shipped_cfg

    (tmp_path / "config.yaml").write_text(yaml.safe_dump({**BASE, "export": {"score": 0.25}}))
    assert not any(rule == "export" for rule, _ in planned(tmp_path))
    # A trained model in place (darknet's real COCO tiny model), so only `export` has work to do.
    model = tmp_path / "results" / "model"
    convert_with_spec(shipped_cfg("tiny"), darknet_tiny_files()["yolov3-tiny.weights"], model / "x.weights.h5")
    shutil.move(model / "x.weights.h5", model / "trained_weights_final.weights.h5")
    snakemake(tmp_path, "--allowed-rules", "export", "--", "export")
    out = tmp_path / "results" / "export"
    assert (out / "model.keras").is_file() and (out / "saved_model" / "saved_model.pb").is_file()
    sizes = {name: (out / name).stat().st_size for name in ("model.tflite", "model_float16.tflite")}
    assert sizes["model_float16.tflite"] < 0.6 * sizes["model.tflite"]
    assert yaml.safe_load((out / "model.tflite.json").read_text())["score_threshold"] == 0.25
    assert (tmp_path / "logs" / "export.log").is_file() and (tmp_path / "benchmarks" / "export.tsv").is_file()
