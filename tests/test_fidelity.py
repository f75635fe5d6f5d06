"""Data fidelity on the demo workflow: overlapping hierarchy requests write each box once, under the most specific
requested class; a class without boxes is warned about on the console and, without training boxes, stops the build
before training; the class file is checked against its published md5 by the workflow, not only by the CLI."""

from __future__ import annotations

import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import pytest
import yaml
from conftest import ROOT

from oidyolo.data.catalog import ClassCatalog, Hierarchy

pytestmark = pytest.mark.slow

DEMO = {"demo": {"train_images": 40, "validation_images": 12}, "download": {"max_missing_fraction": 0.25}}


def snakemake(workdir: Path, config: dict, *targets: str) -> subprocess.CompletedProcess:
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "--directory", str(workdir),
           "--configfile", str(workdir / "config.yaml"), "--cores", "2", *targets]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, timeout=900)


def test_overlapping_hierarchy_requests_write_each_box_once_as_the_most_specific_class(tmp_path):
    config = {**DEMO, "classes": ["Fruit", "Apple"], "expand_hierarchy": True}
    proc = snakemake(tmp_path, config, "results/voc/train")
    assert proc.returncode == 0, proc.stderr[-4000:]
    catalog, hierarchy = ClassCatalog.shipped(), Hierarchy.shipped()
    apple, fruit_mids = catalog.mid("Apple"), set(hierarchy.descendants(catalog.mid("Fruit"))) | {catalog.mid("Fruit")}
    names: Counter[tuple[str, str]] = Counter()
    for path in (tmp_path / "results/voc/train").glob("*.xml"):
        objects = list(ET.parse(path).getroot().iter("object"))
        # the same Open Images row never appears twice (as Fruit and as Apple)
        rows = [(o.findtext("openimages/LabelName"), *(o.findtext(f"openimages/{k}") for k in ("XMin", "XMax", "YMin",
                "YMax"))) for o in objects]  # fmt: skip
        assert len(rows) == len(set(rows)), path
        for o in objects:
            names[(o.findtext("name"), o.findtext("openimages/LabelName"))] += 1
    assert names[("Apple", apple)] > 0 and not names[("Fruit", apple)]  # Apple boxes are Apple
    fruit = {mid for name, mid in names if name == "Fruit"}
    assert fruit and fruit <= fruit_mids - {apple}  # the rest of Fruit is Fruit (Orange, Banana, ...)
    log = (tmp_path / "logs/select_class/train/Fruit.log").read_text()
    assert "go to the most specific requested class: Apple (/m/014j1m) to Apple" in log


def test_a_class_with_no_boxes_is_warned_on_the_console_and_stops_before_training(tmp_path):
    config = {**DEMO, "classes": ["Apple", "Polar bear"]}
    proc = snakemake(tmp_path, config, "results/yolo/train.txt")
    assert proc.returncode != 0
    for split in ("train", "validation"):  # snakemake's own stderr, not only the log file
        assert f"warning: class 'Polar bear' has no boxes in the {split} split" in proc.stderr
    assert "error in yolo_annotations: no training boxes of 'Polar bear'" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "results/yolo/train.txt").exists() and not (tmp_path / "results/model").exists()


def test_the_workflow_checks_the_class_file_against_its_published_md5(tmp_path):
    mirror = tmp_path / "mirror"
    classes = (ROOT / "oidyolo/resources/class-descriptions-boxable.csv").read_bytes()
    (mirror / "v5").mkdir(parents=True)
    (mirror / "2018_04").mkdir()
    # the published size (12,011 bytes), other bytes: only the md5 can tell
    (mirror / "v5/class-descriptions-boxable.csv").write_bytes(classes + b"\n" * (12_011 - len(classes)))
    shutil.copy(ROOT / "oidyolo/resources/bbox_labels_600_hierarchy.json", mirror / "2018_04")
    config = {"classes": ["Apple"], "source": "mirror",
              "sources": {"mirror": {"metadata_url": str(mirror), "images_url": str(tmp_path / "images")}}}  # fmt: skip
    target = "data/metadata/mirror/v6/class-descriptions-boxable.csv"
    proc = snakemake(tmp_path, config, target)
    assert proc.returncode != 0 and "differs from the published 9846fd22fd2e68b45e3f3810a4c2a32a" in proc.stderr
    assert not (tmp_path / target).exists() and not (tmp_path / (target + ".part")).exists()
    config["sources"]["mirror"]["verify_checksums"] = False  # a mirror of other bytes can opt out, as before
    proc = snakemake(tmp_path, config, target)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / target).read_bytes() == (mirror / "v5/class-descriptions-boxable.csv").read_bytes()
