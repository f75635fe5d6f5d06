"""The data workflow end to end on the demo source, in a temporary directory, and its rerun behaviour asserted from
Snakemake's own dry-run output."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, test_config

from oidyolo.data.download import read_manifest
from oidyolo.data.voc import read_voc
from oidyolo.data.yolo_format import read_annotations, read_classes

pytestmark = pytest.mark.slow

BASE = test_config()
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def snakemake(workdir: Path, *args: str, config: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    cfg = workdir / "config.yaml"
    if config is not None:
        cfg = workdir / "edited.yaml"
        cfg.write_text(yaml.safe_dump(config))
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "--directory", str(workdir)]
    cmd += ["--configfile", str(cfg), "--cores", "2", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc


def planned(workdir: Path, config: dict | None = None) -> set[tuple[str, str]]:
    """(rule, first output) of every job a dry run would execute."""
    out = snakemake(workdir, "--dry-run", config=config).stdout
    jobs = set()
    for block in re.split(r"\n(?=rule \w+:)", out):
        m = re.match(r"rule (\w+):", block)
        if m:
            o = re.search(r"^\s+output: ([^,\n]+)", block, re.M)
            jobs.add((m.group(1), o.group(1) if o else ""))
    return jobs


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    workdir = tmp_path_factory.mktemp("workflow")
    (workdir / "config.yaml").write_text(yaml.safe_dump(BASE))
    snakemake(workdir)
    return workdir


def test_demo_workflow_builds_a_keras_yolo3_dataset(run):
    classes = read_classes(run / "results/yolo/classes.txt")
    assert classes == ["Apple", "Orange", "Banana", "Coffee cup"]
    assert (run / "results/select/train/Coffee_cup.csv").is_file()
    train = read_annotations(run / "results/yolo/train.txt", num_classes=4)
    val = read_annotations(run / "results/yolo/val.txt", num_classes=4)
    assert len(train) >= 25 and len(val) >= 8
    for line in train + val:
        assert (run / line.path).is_file() and " " not in line.path
    # every class appears in training
    assert set(int(c) for line in train for c in line.boxes[:, 4]) == {0, 1, 2, 3}


def test_images_are_stored_once_and_manifests_agree(run):
    ids_by_class = {}
    for tsv in (run / "results/images/train").glob("*.tsv"):
        ids_by_class[tsv.stem] = {e.image_id for e in read_manifest(tsv) if e.ok}
    union = set().union(*ids_by_class.values())
    stored = {p.stem for p in (run / "data/images/train").glob("*.jpg")}
    assert union == stored
    assert sum(map(len, ids_by_class.values())) > len(union)  # some images hold two classes: stored once
    assert not list((run / "data/images/train").glob(".*part"))
    missing = [e for tsv in (run / "results/images/train").glob("*.tsv") for e in read_manifest(tsv) if not e.ok]
    assert missing and all(e.status == "missing" for e in missing)  # the demo bucket lacks two images, as OI does


def test_voc_files_hold_every_selected_class_of_an_image(run):
    vocs = {p.stem: read_voc(p) for p in (run / "results/voc/train").glob("*.xml")}
    multi = [v for v in vocs.values() if len({o.name for o in v.objects}) > 1]
    assert multi, "the demo has images with two classes; their VOC files must list both"
    for ann in vocs.values():
        for obj in ann.objects:
            x1, y1, x2, y2 = obj.box
            assert 0 <= x1 <= x2 <= ann.width and 0 <= y1 <= y2 <= ann.height
    # the devkit convention in the files themselves: 1 <= xmin < xmax <= W; <depth> is the JPEG's channel count
    import xml.etree.ElementTree as ET

    from PIL import Image

    depths, on_edge = set(), 0
    for path in (run / "results/voc/train").glob("*.xml"):
        root = ET.parse(path).getroot()
        w, h, depth = (int(root.findtext(f"size/{k}")) for k in ("width", "height", "depth"))
        with Image.open(run / root.findtext("path")) as img:
            assert depth == len(img.getbands())
        depths.add(depth)
        for obj in root.iter("object"):
            x1, y1, x2, y2 = (int(obj.findtext(f"bndbox/{k}")) for k in ("xmin", "ymin", "xmax", "ymax"))
            assert 1 <= x1 < x2 <= w and 1 <= y1 < y2 <= h
            on_edge += x1 == 1 or y1 == 1
    assert on_edge and depths > {3}  # boxes on the left/top edge, and the demo's grayscale or CMYK JPEGs


def test_names_with_spaces_ampersands_and_dashes_become_safe_paths(tmp_path):
    jobs = planned(tmp_path, test_config("special_names"))
    outputs = {o for rule, o in jobs if rule == "download_images"}
    assert "results/images/train/Kitchen_and_dining_room_table.tsv" in outputs
    assert {"results/images/validation/Band_aid.tsv", "results/images/train/Polar_bear.tsv"} <= outputs
    assert "results/boxes/train/Kitchen_and_dining_room_table.parquet" in {o for r, o in jobs if r == "select_class"}


def test_hierarchy_expansion_takes_subclass_boxes(tmp_path):
    snakemake(tmp_path, "results/select/train/Fruit.csv", config=test_config("hierarchy"))
    import pyarrow.csv as pacsv

    table = pacsv.read_csv(tmp_path / "results/select/train/Fruit.csv")
    assert set(table["Class"].to_pylist()) == {"Fruit"}
    assert {"/m/014j1m", "/m/0cyhj_", "/m/09qck"} <= set(table["LabelName"].to_pylist())  # Apple, Orange, Banana


def test_val_fraction_takes_validation_from_the_train_split(tmp_path):
    jobs = planned(tmp_path, test_config("val_fraction"))
    splits = {o.split("/")[2] for rule, o in jobs if rule in ("select_class", "download_images", "voc")}
    assert "train" in splits and "validation" not in splits  # the test split stays its own
    assert ("yolo_annotations", "results/yolo/train.txt") in jobs


def test_second_run_has_nothing_to_do(run):
    assert "Nothing to be done" in snakemake(run, "--dry-run").stdout


def test_adding_a_class_reruns_only_that_class_and_the_merges(run):
    jobs = planned(run, {**BASE, "classes": [*BASE["classes"], "Lemon"]})
    rules = sorted(rule for rule, _ in jobs)
    assert {o for r, o in jobs if r in ("select_class", "download_images")} == {  # (rule, its first output)
        f"results/{d}/{s}/Lemon.{e}"
        for d, e in (("boxes", "parquet"), ("images", "tsv"))
        for s in ("train", "validation", "test")
    }
    assert rules.count("voc") == 3 and "yolo_annotations" in rules
    assert not {"demo_source", "fetch_boxes", "fetch_catalog", "index_boxes"} & set(rules)


@pytest.mark.parametrize(
    "edit",
    [{"limit": 10}, {"seed": 7}, {"filters": {"IsGroupOf": [0]}}],
    ids=["limit", "seed", "filter"],
)
def test_selection_edits_rerun_selection_onwards_without_rescanning(run, edit):
    rules = [rule for rule, _ in planned(run, {**BASE, **edit})]
    assert "select_class" in rules and "yolo_annotations" in rules
    assert not {"index_boxes", "fetch_boxes", "fetch_catalog", "demo_source"} & set(rules)


def test_training_edits_rerun_training_and_what_follows_only(run):
    jobs = {rule for rule, _ in planned(run, test_config(train={"epochs": [1, 2]}))}
    assert jobs == {"train", "evaluate", "training_report", "all"}


def test_the_trained_model_is_evaluated(run):
    metrics = json.loads((run / "results/eval/metrics.json").read_text())
    assert set(metrics["per_class_AP50"]) == {"Apple", "Orange", "Banana", "Coffee cup"}
    # The reported numbers are the held-out test split's; validation (model selection) is beside, labelled.
    assert metrics["split"] == "test"
    assert (
        metrics["counts"]["images"]
        == metrics["images"]
        == len((run / "results/yolo/test.txt").read_text().splitlines())
    )
    assert metrics["validation"]["images"] == len((run / "results/yolo/val.txt").read_text().splitlines())
    tested = {Path(a.path).stem for a in read_annotations(run / "results/yolo/test.txt")}
    seen = {Path(a.path).stem for f in ("train.txt", "val.txt") for a in read_annotations(run / f"results/yolo/{f}")}
    assert tested and not tested & seen
    spec = json.loads((run / "results/model/model.json").read_text())
    assert spec["variant"] == "tiny" and spec["input_size"] == [64, 64] and len(spec["anchors"]) == 6
    for name in ("trained_weights_stage_1.weights.h5", "trained_weights_final.weights.h5"):
        assert (run / "results/model" / name).stat().st_size > 1_000_000


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (.ci/run installs it)")
def test_report_renders_in_a_headless_browser(run, tmp_path):
    snakemake(run, "--report", str(tmp_path / "report.html"))
    raw = (tmp_path / "report.html").read_text()
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run"]
    flags += ["--disable-background-networking", "--disable-component-update", "--disable-sync"]
    flags += [f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=10000"]
    url = (tmp_path / "report.html").as_uri()
    dom = subprocess.run([CHROMIUM, *flags, "--dump-dom", url], capture_output=True, text=True, timeout=120).stdout
    # The report's navigation is built by its JavaScript: present in the rendered DOM, absent from the file.
    for category in ("Dataset", "Evaluation", "Training"):
        assert f">{category}<" in dom and f">{category}<" not in raw
    shot = tmp_path / "report.png"
    subprocess.run([CHROMIUM, *flags, "--window-size=1280,900", f"--screenshot={shot}", url], timeout=120)
    assert shot.stat().st_size > 20_000


def test_download_settings_rerun_downloads_not_selection(run):
    rules = {rule for rule, _ in planned(run, test_config(download={"workers": 4}))}
    assert "download_images" in rules and "select_class" not in rules


def test_deleting_one_image_refetches_it_for_the_classes_that_list_it(run):
    manifests = sorted((run / "results/images/train").glob("*.tsv"))
    entries = {m: [e for e in read_manifest(m) if e.ok] for m in manifests}
    victim = entries[manifests[0]][0]
    owners = {m.stem for m, es in entries.items() if victim.image_id in {e.image_id for e in es}}
    image = run / victim.path
    saved, times = image.read_bytes(), {m: m.stat().st_mtime_ns for m in manifests}
    image.unlink()
    try:
        proc = snakemake(run, "--dry-run")
        assert f"{victim.image_id}; they will be fetched again" in proc.stdout + proc.stderr
        jobs = planned(run)
        downloads = {o for r, o in jobs if r == "download_images"}
        assert downloads == {f"results/images/train/{c}.tsv" for c in owners}
        assert not {"select_class", "fetch_boxes", "demo_source"} & {r for r, _ in jobs}
        assert {"voc", "yolo_annotations"} <= {r for r, _ in jobs}
    finally:  # leave the shared run as it was
        image.write_bytes(saved)
        for m, t in times.items():
            os.utime(m, ns=(t, t))
    assert "Nothing to be done" in snakemake(run, "--dry-run").stdout


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ({"classes": ["Appel"]}, "Did you mean: Apple"),
        ({"classes": []}, "classes"),
        ({"limit": 0}, "limit"),
        ({"colour": "red"}, "Additional properties are not allowed"),
        ({"filters": {"IsOccluded": [2]}}, "filters"),
        ({"version": "v9"}, "version"),
        ({"val_split": "train"}, "val_fraction instead"),
        ({"test_split": "validation"}, "must come from held-out images"),
        ({"test_split": None}, "test_fraction"),
        ({"source": "mirror"}, "sources.mirror"),
    ],
)
def test_bad_config_fails_before_any_job_with_a_clear_message(tmp_path, edit, message):
    proc = snakemake(tmp_path, "--dry-run", config={**BASE, **edit}, check=False)
    assert proc.returncode != 0
    assert message in proc.stdout + proc.stderr
    assert not (tmp_path / "data").exists()
