"""A full disk while writing: the image store, a big-file fetch and the VOC/YOLO outputs on a small tmpfs.

Each gives a :class:`DiskFullError` naming the disk-full condition and the path, leaves nothing partial or corrupt
at a final path, and, once space is freed, a rerun finishes the job: stored images are kept, and a big fetch resumes
from its ``.part`` (cut back to the last chunk known to be on disk, so it is always a prefix of the remote file).
Needs ``mount -t tmpfs`` (root); skipped with the reason otherwise.
"""

from __future__ import annotations

import hashlib
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import APPLE, ORANGE, V5_COLUMNS, make_jpeg, v5_row, write_csv
from PIL import Image

from oidyolo.data.boxes import scan_boxes
from oidyolo.data.download import DownloadConfig, Entry, download_images, write_manifest
from oidyolo.data.imagecheck import verify_jpeg
from oidyolo.data.sources import Remote, fetch_file
from oidyolo.data.versions import Known
from oidyolo.data.voc import read_voc, write_voc
from oidyolo.data.yolo_lines import build_annotations
from oidyolo.errors import DiskFullError

IDS = [f"{i:016x}" for i in range(0xD00, 0xD18)]
FAST = DownloadConfig(workers=4, retries=1, backoff=0.01)
PAYLOAD = random.Random(3).randbytes(1 << 20) + b"tail"
MD5 = hashlib.md5(PAYLOAD).hexdigest()


def noisy_jpeg(path: Path, seed: int) -> None:
    """About 20 KB: noise does not compress, so a few fill a small tmpfs."""
    pixels = np.random.default_rng(seed).integers(0, 255, (96, 128, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, "JPEG", quality=95)


@pytest.fixture
def bucket(tmp_path):
    for n, image_id in enumerate(IDS):
        noisy_jpeg(tmp_path / "bucket" / "train" / f"{image_id}.jpg", n)
    return tmp_path / "bucket"


def assert_nothing_partial(folder: Path) -> list[Path]:
    """Only whole, decodable JPEGs at final paths, and no temporary file left; returns the JPEGs."""
    files = sorted(folder.iterdir())
    assert all(p.suffix == ".jpg" and not p.name.startswith(".") for p in files), [p.name for p in files]
    for p in files:
        verify_jpeg(p.read_bytes(), where=str(p))
    return files


def test_a_full_image_store_stops_with_a_clear_error_and_resumes_once_freed(tmpfs, bucket):
    disk = tmpfs("160k")
    store = disk.path / "images"
    with pytest.raises(DiskFullError, match=rf"disk full while writing {store}/train/\w{{16}}\.jpg \(no space left"):
        download_images(IDS, split="train", remote=Remote(str(bucket)), store=store, config=FAST)
    kept = assert_nothing_partial(store / "train")
    assert 0 < len(kept) < len(IDS)
    disk.resize("4m")
    entries = download_images(IDS, split="train", remote=Remote(str(bucket)), store=store, config=FAST)
    assert {e.image_id for e in entries if e.status == "stored"} == {p.stem for p in kept}
    assert all(e.ok for e in entries)
    for p in assert_nothing_partial(store / "train"):
        assert p.read_bytes() == (bucket / "train" / p.name).read_bytes()


def test_the_download_command_on_a_full_disk_says_so_without_a_traceback(tmpfs, bucket, tmp_path):
    disk = tmpfs("96k")
    sel = tmp_path / "sel.csv"
    sel.write_text("ImageID\n" + "\n".join(IDS) + "\n")
    proc = subprocess.run(
        [sys.executable, "-m", "oidyolo", "download", str(sel), "--split", "train", "--url", str(bucket),
         "--store", str(disk.path / "s"), "--manifest", str(tmp_path / "m.tsv"), "--workers", "4"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("error: disk full while writing") and "Traceback" not in proc.stderr
    assert not (tmp_path / "m.tsv").exists()  # no manifest claims a download that did not happen
    assert_nothing_partial(disk.path / "s" / "train")


STEP = """
import sys
from oidyolo.runner import logged_step
with logged_step(sys.argv[1], "some_step"):
    with open(sys.argv[2], "wb") as fh:  # plain code that knows nothing about full disks
        for _ in range(1000):
            fh.write(b"x" * 65536)
"""


def test_a_workflow_step_that_fills_the_disk_ends_with_one_clear_line(tmpfs, tmp_path):
    disk = tmpfs("64k")
    script = tmp_path / "step.py"
    script.write_text(STEP)
    log = tmp_path / "step.log"
    target = disk.path / "big.bin"
    proc = subprocess.run([sys.executable, str(script), str(log), str(target)], capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stderr.strip().startswith(f"error in some_step: disk full while writing {target}")
    assert "Traceback" not in proc.stderr + log.read_text()


def test_a_big_fetch_onto_a_full_disk_keeps_a_resumable_part(tmpfs, tmp_path):
    source = tmp_path / "source" / "v6"
    source.mkdir(parents=True)
    (source / "big.csv").write_bytes(PAYLOAD)
    disk = tmpfs("500k")  # not a whole number of chunks: the write that fills it is cut short mid-chunk
    dest = disk.path / "meta" / "big.csv"
    part = dest.with_name("big.csv.part")
    remote, chunk = Remote(str(tmp_path / "source")), 64 * 1024
    with pytest.raises(
        DiskFullError, match=r"kept the first [\d,]+ bytes in .*big\.csv\.part; the fetch resumes"
    ) as err:
        fetch_file(remote, "v6/big.csv", dest, known=Known(len(PAYLOAD), MD5), chunk_size=chunk)
    assert f"disk full while writing {part}" in str(err.value)
    kept = part.stat().st_size
    assert not dest.exists() and 0 < kept < len(PAYLOAD) and kept % chunk == 0
    assert part.read_bytes() == PAYLOAD[:kept]  # exactly a prefix: nothing half-written survives
    disk.resize("4m")
    result = fetch_file(remote, "v6/big.csv", dest, known=Known(len(PAYLOAD), MD5), chunk_size=chunk)
    assert result.resumed_from == kept and result.md5 == MD5 and dest.read_bytes() == PAYLOAD
    assert not part.exists()


def test_a_fetch_with_no_room_for_a_single_chunk_deletes_its_part(tmpfs, tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "big.csv").write_bytes(PAYLOAD)
    disk = tmpfs("32k")
    with pytest.raises(DiskFullError, match=r"deleted .*big\.csv\.part \(nothing in it could be resumed\)"):
        fetch_file(Remote(str(tmp_path / "src")), "big.csv", disk.path / "big.csv", chunk_size=256 * 1024)
    assert list(disk.path.iterdir()) == []


@pytest.fixture
def voc_inputs(tmp_path):
    """30 stored images of Apple (some with an Orange too), their manifests and box tables."""
    ids = [f"{i:016x}" for i in range(0xE00, 0xE1E)]
    rows = [v5_row(i, APPLE) for i in ids] + [v5_row(i, ORANGE, (0.5, 0.9, 0.1, 0.4)) for i in ids[::3]]
    csv = write_csv(tmp_path / "boxes.csv", V5_COLUMNS, rows)
    boxes = {}
    for name, mid in (("Apple", APPLE), ("Orange", ORANGE)):
        boxes[name] = tmp_path / f"{name}.parquet"
        pq.write_table(scan_boxes(csv, [mid])[0], boxes[name])
    entries = [Entry(i, str(make_jpeg(tmp_path / f"images/{i}.jpg", (200, 100))), 200, 100, "ok") for i in ids]
    write_manifest(entries, tmp_path / "apple.tsv")
    return {"split": "train", "manifests": [tmp_path / "apple.tsv"], "class_boxes": boxes, "filters": {}}


def test_voc_output_on_a_full_disk_leaves_only_whole_files(tmpfs, tmp_path, voc_inputs):
    reference = tmp_path / "reference"
    write_voc(reference, **voc_inputs)
    disk = tmpfs("48k")
    out = disk.path / "voc"
    with pytest.raises(DiskFullError, match=rf"disk full while writing {out}/\w{{16}}\.xml"):
        write_voc(out, **voc_inputs)
    written = sorted(out.iterdir())
    assert written and all(p.suffix == ".xml" and not p.name.startswith(".") for p in written)
    for p in written:
        assert p.read_bytes() == (reference / p.name).read_bytes()
        read_voc(p)
    disk.resize("1m")
    assert write_voc(out, **voc_inputs) == 30
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in reference.iterdir())


def test_yolo_annotation_files_on_a_full_disk_leave_nothing_partial(tmpfs, tmp_path, voc_inputs):
    voc = tmp_path / "voc"
    write_voc(voc, **voc_inputs)
    disk = tmpfs("4k")
    (disk.path / "filler").write_bytes(b"x" * 4096)  # the tmpfs is now full
    out = {"out_train": disk.path / "train.txt", "out_val": disk.path / "val.txt", "out_classes": disk.path / "c.txt"}
    with pytest.raises(DiskFullError, match=rf"disk full while writing {disk.path}/train\.txt"):
        build_annotations(train_voc=voc, val_voc=voc, classes=["Apple", "Orange"], **out)
    assert sorted(p.name for p in disk.path.iterdir()) == ["filler"]
