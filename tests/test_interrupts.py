"""kill -9 at seeded random moments, again and again: after every kill no file at a final path is partial or
corrupt, and a rerun finishes with exactly what an uninterrupted run gives.

* the image download (``python -m oidyolo download`` against a slowed local server), 20 kills;
* the big-file fetch (ranged, resumable), 15 kills: the ``.part`` is always a prefix and only ever grows;
* the data steps of the real workflow (``snakemake``'s whole process group), 15 kills, then ``--unlock`` and
  ``--rerun-incomplete``;

Each kill's moment comes from ``random.Random(SEED)``; how many landed mid-work is printed (``pytest -s``).
"""

from __future__ import annotations

import hashlib
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from conftest import ROOT
from helpers import kill_at
from servers import Faults, http_server

from oidyolo.data.download import read_manifest
from oidyolo.data.imagecheck import verify_jpeg
from oidyolo.data.select import read_selection
from oidyolo.data.versions import version_files
from oidyolo.data.voc import read_voc
from oidyolo.data.yolo_format import read_annotations, read_classes

pytestmark = pytest.mark.slow
SEED = 20240611


def tree(root: Path, pattern: str = "**/*") -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.glob(pattern)) if p.is_file()}


# -- the image download ----------------------------------------------------------------------------------------------

N_IMAGES = 48


@pytest.fixture(scope="module")
def bucket(tmp_path_factory):
    from conftest import make_jpeg

    root = tmp_path_factory.mktemp("bucket")
    for n in range(N_IMAGES):
        make_jpeg(root / "train" / f"{0xF000 + n:016x}.jpg", size=(60 + n, 40 + n), color=(n * 5, 100, 200 - n))
    return root


def test_killed_image_downloads_never_leave_a_broken_file_and_finish_identically(bucket, tmp_path):
    ids = sorted(p.stem for p in (bucket / "train").glob("*.jpg"))
    sel = tmp_path / "sel.csv"
    sel.write_text("ImageID\n" + "\n".join([*ids, "00000000deadbeef"]) + "\n")  # one missing at the source too
    store, manifest = tmp_path / "store", tmp_path / "m.tsv"
    rng = random.Random(SEED)
    landed = {"before any image": 0, "mid-download": 0, "finished first (not a kill)": 0}
    with http_server(bucket, Faults(delay=0.08)) as (url, _):
        cmd = [sys.executable, "-m", "oidyolo", "download", str(sel), "--split", "train", "--url", url,
               "--store", str(store), "--manifest", str(manifest), "--workers", "4", "--timeout", "10"]  # fmt: skip
        late = 0.0  # a loaded machine starts Python slower: each kill that lands before any image moves the next later
        for _ in range(60):
            if landed["mid-download"] >= 12:
                break
            if manifest.exists():  # the last run finished: start a fresh round so kills keep landing mid-download
                shutil.rmtree(store)
                manifest.unlink()
            killed = kill_at(cmd, late + rng.uniform(0.2, 1.3))
            jpgs = sorted((store / "train").glob("*.jpg")) if store.exists() else []
            for path in jpgs:  # every image at a final path is whole and the source's, byte for byte
                assert path.read_bytes() == (bucket / "train" / path.name).read_bytes(), path
                verify_jpeg(path.read_bytes())
            others = [p for p in (store / "train").iterdir() if p.suffix != ".jpg"] if store.exists() else []
            assert all(p.name.startswith(".") and p.name.endswith(".part") for p in others), others
            if manifest.exists():  # written whole at the very end (the kill, if any, came after it)
                assert len(read_manifest(manifest)) == len(ids) + 1
                landed["finished first (not a kill)"] += 1
            else:
                assert killed
                landed["mid-download" if jpgs or others else "before any image"] += 1
                late += 0.0 if jpgs or others else 0.2
        finished = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert finished.returncode == 0, finished.stderr
    print(f"\nimage download: {landed}")
    assert landed["mid-download"] >= 12
    assert tree(store) == {f"train/{i}.jpg": (bucket / "train" / f"{i}.jpg").read_bytes() for i in ids}  # no .part
    entries = read_manifest(manifest)
    assert [(e.image_id, e.width, e.height, e.status) for e in entries] == [
        *[(i, *verify_jpeg((bucket / "train" / f"{i}.jpg").read_bytes()), "ok") for i in ids],
        ("00000000deadbeef", 0, 0, "missing"),
    ]


# -- the big-file fetch ----------------------------------------------------------------------------------------------

FETCH = """
import sys
from oidyolo.data.sources import Remote, fetch_file
from oidyolo.data.versions import Known
url, dest, size, md5 = sys.argv[1:]
r = fetch_file(Remote(url), "v6/big.csv", dest, known=Known(int(size), md5), chunk_size=64 * 1024, timeout=10)
print(r.resumed_from)
"""


def test_killed_fetches_keep_a_growing_prefix_and_finish_checked(tmp_path):
    payload = random.Random(SEED).randbytes(2 << 20)
    md5 = hashlib.md5(payload).hexdigest()
    (tmp_path / "src" / "v6").mkdir(parents=True)
    (tmp_path / "src" / "v6" / "big.csv").write_bytes(payload)
    script = tmp_path / "fetch.py"
    script.write_text(FETCH)
    dest, part = tmp_path / "out" / "big.csv", tmp_path / "out" / "big.csv.part"
    rng = random.Random(SEED)
    grew = 0
    with http_server(tmp_path / "src", Faults(delay=0.04)) as (url, faults):
        cmd = [sys.executable, str(script), url, str(dest), str(len(payload)), md5]
        for _ in range(15):
            if dest.exists():  # finished: start a fresh round
                dest.unlink()
            before = part.stat().st_size if part.exists() else 0
            n_requests = len(faults.requests)
            kill_at(cmd, rng.uniform(0.3, 1.5))
            assert not dest.exists() or dest.read_bytes() == payload  # the final name appears only when verified
            now = part.stat().st_size if part.exists() else (len(payload) if dest.exists() else 0)
            assert now >= before  # never restarted from zero
            if part.exists():
                assert part.read_bytes() == payload[:now]  # a prefix, even if killed mid-write
            grew += now > before
            ranges = [r for m, _, r in faults.requests[n_requests:] if m == "GET" and r]
            if ranges:  # it asked for the bytes after those it had, never for those again
                assert ranges[0].startswith(f"bytes={before}-"), (ranges[0], before)
        finished = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert finished.returncode == 0, finished.stderr
    print(f"\nfetch, 15 kills: the part grew across {grew} of them")
    assert grew >= 8
    assert dest.read_bytes() == payload and not part.exists()


# -- the workflow's data steps ---------------------------------------------------------------------------------------

CONFIG = {
    "classes": ["Apple", "Orange", "Banana"],
    "demo": {"train_images": 24, "validation_images": 8, "missing_images": 1},
    "download": {"max_missing_fraction": 0.5, "workers": 4},
}
TARGETS = ["results/yolo/train.txt", "results/yolo/val.txt", "results/yolo/classes.txt"]


def snakemake_cmd(workdir: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "--directory", str(workdir),
            "--configfile", str(workdir / "config.yaml"), "--cores", "2", *extra]  # fmt: skip


def outputs(workdir: Path) -> dict[str, bytes]:
    """What the data steps made: VOC, annotation files, manifests, class CSVs and the image store."""
    out = {}
    for pattern in ("results/voc/**/*", "results/yolo/*", "results/images/**/*", "results/select/**/*"):
        out.update(tree(workdir, pattern))
    out.update(tree(workdir, "data/images/**/*"))
    return out


def check_final_paths(workdir: Path) -> None:
    """Whatever exists at a final path after a kill is whole: it parses, decodes, or equals its source."""
    for p in workdir.glob("data/images/*/*.jpg"):
        verify_jpeg(p.read_bytes(), where=str(p))
    for p in workdir.glob("results/images/*/*.tsv"):
        read_manifest(p)
    for p in workdir.glob("results/select/*/*.csv"):
        read_selection(p)
    for p in workdir.glob("results/boxes/*/*.parquet"):
        pq.read_table(p)
    for p in workdir.glob("results/voc/*/*.xml"):
        read_voc(p)
    for p in workdir.glob("results/yolo/*.txt"):
        read_classes(p) if p.name == "classes.txt" else read_annotations(p)
    for p in workdir.glob("data/metadata/demo/v6/*-annotations-bbox.csv"):
        source = workdir / "data/demo/openimages" / version_files("v6").boxes_path(p.name.split("-")[0])
        assert p.read_bytes() == source.read_bytes()


def test_killed_workflow_reruns_to_the_same_dataset(tmp_path):
    reference = tmp_path / "reference"
    reference.mkdir()
    (reference / "config.yaml").write_text(yaml.safe_dump(CONFIG))
    started = time.monotonic()
    subprocess.run(snakemake_cmd(reference, *TARGETS), check=True, capture_output=True, timeout=300)
    full_run = time.monotonic() - started
    expected = outputs(reference)
    assert any(k.startswith("results/voc/") for k in expected) and "results/yolo/train.txt" in expected

    rng = random.Random(SEED)
    kills, rounds, mid_job = 0, 0, 0
    while kills < 15 and rounds < 8:  # fresh working directories, killed until a run gets through
        work = tmp_path / f"killed{rounds}"
        rounds += 1
        work.mkdir()
        (work / "config.yaml").write_text(yaml.safe_dump(CONFIG))
        while kills < 15:
            if (work / ".snakemake" / "locks").exists():
                subprocess.run(snakemake_cmd(work, "--unlock"), check=True, capture_output=True, timeout=120)
            killed = kill_at(snakemake_cmd(work, "--rerun-incomplete", *TARGETS), rng.uniform(0.3, full_run * 0.4))
            check_final_paths(work)
            kills += killed
            mid_job += killed and any((work / ".snakemake" / "incomplete").glob("*"))  # a job was running
            if not killed:
                break
        subprocess.run(snakemake_cmd(work, "--unlock"), check=True, capture_output=True, timeout=120)
        proc = subprocess.run(
            snakemake_cmd(work, "--rerun-incomplete", *TARGETS), capture_output=True, text=True, timeout=300
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        got = outputs(work)
        assert sorted(got) == sorted(expected)  # no file missing, none extra (no .part left in the store)
        assert [k for k in expected if got[k] != expected[k]] == []
    print(
        f"\nworkflow: {kills} kills ({mid_job} while a job ran) in {rounds} rounds, uninterrupted run {full_run:.1f} s"
    )
    assert kills == 15 and mid_job >= 6
