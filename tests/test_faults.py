"""Network faults against real servers on loopback: every image ends verified in the store or listed as missing or
failed with its reason, and the big CSV arrives complete and checked, resuming where a failure stopped it.

The fault-injecting HTTP server and the S3 proxy in front of moto are in ``servers.py`` (``ACTIONS`` lists what each
fault does). Retries use a tiny backoff and stalls a short ``timeout`` so that every case is bounded in time.
"""

from __future__ import annotations

import hashlib
import random
import re
import subprocess
import sys
import time

import pytest
import yaml
from conftest import ROOT, make_jpeg
from servers import ACTIONS, Faults, http_server, s3_proxy, s3_server, upload_tree

from oidyolo.data.download import DownloadConfig, download_images, read_manifest, write_manifest
from oidyolo.data.imagecheck import verify_jpeg
from oidyolo.data.sources import Remote, fetch_file, with_timeout
from oidyolo.data.versions import Known
from oidyolo.errors import DownloadError

IDS = [f"{i:016x}" for i in range(0xC00, 0xC40)]
TIMEOUT = 0.5  # download.timeout in these tests
STALL = 8.0  # how long a stalling server holds a request: far beyond TIMEOUT, below every library default
FAST = DownloadConfig(workers=4, retries=4, backoff=0.01, timeout=TIMEOUT)
PAYLOAD = bytes(random.Random(7).randbytes(1 << 20)) + b"tail"  # 1 MiB + 4 bytes
MD5 = hashlib.md5(PAYLOAD).hexdigest()
CHUNK = 256 * 1024
ONE_OFF = [*sorted(set(ACTIONS) - {"ok", "slowdown"}), "500", "503"]  # every fault the HTTP server can make, once


@pytest.fixture
def bucket(tmp_path):
    root = tmp_path / "bucket"
    for n, image_id in enumerate(IDS):
        make_jpeg(root / "train" / f"{image_id}.jpg", size=(48 + n, 32 + n), color=(n * 5 % 256, 90, 160))
    return root


def faults_for(path: str, actions: list[str]) -> Faults:
    """A Faults that answers ``actions`` (ACTIONS keys or HTTP statuses) to the next requests of ``path``."""
    return Faults(actions={path: list(actions)}, stall=STALL)


def assert_store_matches(store, bucket, ids):
    """Every listed image is in the store, byte for byte the source's and decodable; nothing else is there."""
    for image_id in ids:
        data = (store / "train" / f"{image_id}.jpg").read_bytes()
        assert data == (bucket / "train" / f"{image_id}.jpg").read_bytes()
        verify_jpeg(data)
    assert sorted(p.name for p in (store / "train").iterdir()) == sorted(f"{i}.jpg" for i in ids)


# -- images over HTTP ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fault", ONE_OFF)
def test_one_faulty_image_response_is_retried_until_verified(bucket, tmp_path, fault):
    path = f"/train/{IDS[0]}.jpg"
    started = time.monotonic()
    with http_server(bucket, faults_for(path, [fault])) as (url, faults):
        entries = download_images(IDS[:3], split="train", remote=Remote(url), store=tmp_path / "s", config=FAST)
    assert [e.status for e in entries] == ["downloaded"] * 3, [e.reason for e in entries]
    assert faults.count(path) >= 2  # the fault was served, then a retry
    assert_store_matches(tmp_path / "s", bucket, IDS[:3])
    assert time.monotonic() - started < STALL - 2  # a stall was given up after TIMEOUT, not waited out


def test_many_images_with_random_faults_all_end_verified(bucket, tmp_path):
    """40 images, each with 0-3 seeded random faults (43 in all, every kind), 8 workers sharing connections."""
    rng = random.Random(20240611)
    kinds = [*ONE_OFF, "stall", "reset"]
    faults = Faults(stall=STALL)
    for image_id in IDS[:40]:
        for _ in range(rng.choice([0, 0, 1, 2, 3])):
            faults.actions.setdefault(f"/train/{image_id}.jpg", []).append(rng.choice(kinds))
    injected = sum(len(v) for v in faults.actions.values())
    assert 40 <= injected <= 80
    config = DownloadConfig(workers=8, retries=5, backoff=0.01, timeout=TIMEOUT)
    started = time.monotonic()
    with http_server(bucket, faults) as (url, _):
        entries = download_images(IDS[:40], split="train", remote=Remote(url), store=tmp_path / "s", config=config)
    assert [e.status for e in entries] == ["downloaded"] * 40, [e.reason for e in entries if not e.ok]
    assert_store_matches(tmp_path / "s", bucket, IDS[:40])
    assert time.monotonic() - started < 30


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        ("reset", "disconnected|reset by peer"),
        ("reset-body", "payload is not completed|reset by peer"),
        ("long-close", "payload is not completed"),
        ("short", "corrupt JPEG|Invalid|Bad|Data after"),  # the rest of the body confuses the next reader
        ("stall", "no connection or no data for 0.5 s, download.timeout"),
        ("503", "503, message='Service Unavailable'"),
        ("html", r"not a JPEG \(HTML/XML text"),
        ("half", "corrupt JPEG"),
    ],
)
def test_an_image_that_always_fails_is_listed_as_failed_with_its_reason(bucket, tmp_path, fault, reason):
    path = f"/train/{IDS[1]}.jpg"
    config = DownloadConfig(workers=2, retries=2, backoff=0.01, timeout=TIMEOUT)
    with http_server(bucket, faults_for(path, [fault] * 10)) as (url, faults):
        entries = download_images(IDS[:3], split="train", remote=Remote(url), store=tmp_path / "s", config=config)
    by_id = {e.image_id: e for e in entries}
    assert by_id[IDS[0]].status == by_id[IDS[2]].status == "downloaded"
    failed = by_id[IDS[1]]
    assert failed.status == "failed" and "gave up after 3 tries" in failed.reason
    assert re.search(reason, failed.reason), failed.reason
    assert faults.count(path) == 3  # our 3 tries, no more: aiohttp does not resend on a dropped reused connection
    assert not (tmp_path / "s" / "train" / f"{IDS[1]}.jpg").exists()
    write_manifest(entries, tmp_path / "m.tsv")  # the reason is one manifest field: no tab or newline breaks it
    assert [e.reason for e in read_manifest(tmp_path / "m.tsv")] == [e.reason for e in entries]


def test_missing_images_are_listed_at_once_without_retries(bucket, tmp_path):
    absent = "00000000deadbeef"
    with http_server(bucket) as (url, faults):
        entries = download_images([IDS[0], absent], split="train", remote=Remote(url), store=tmp_path / "s")
    assert [(e.status, e.reason) for e in entries] == [("downloaded", ""), ("missing", "not found at the source")]
    assert faults.count(f"/train/{absent}.jpg") == 1


def test_timeout_reaches_the_http_and_s3_clients():
    import aiohttp

    http = with_timeout(Remote("https://example.org/x", {"client_kwargs": {"trust_env": True}}), 7)
    timeout = http.options["client_kwargs"]["timeout"]
    assert isinstance(timeout, aiohttp.ClientTimeout) and (timeout.sock_read, timeout.sock_connect) == (7, 7)
    assert http.options["client_kwargs"]["trust_env"] is True
    s3 = with_timeout(Remote("s3://bucket", {"config_kwargs": {"read_timeout": 3}}), 7)
    assert s3.options["config_kwargs"] == {  # an explicit option wins; botocore makes one try (ours retry)
        "read_timeout": 3,
        "connect_timeout": 7,
        "retries": {"total_max_attempts": 1, "mode": "standard"},
    }
    assert with_timeout(Remote("/local/dir"), 7).options == {}


def test_download_command_takes_a_timeout(bucket, tmp_path):
    sel = tmp_path / "sel.csv"
    sel.write_text("ImageID\n" + "\n".join(IDS[:3]) + "\n")
    path = f"/train/{IDS[0]}.jpg"
    with http_server(bucket, faults_for(path, ["stall"])) as (url, faults):
        started = time.monotonic()
        proc = subprocess.run(
            [sys.executable, "-m", "oidyolo", "download", str(sel), "--split", "train", "--url", url,
             "--store", str(tmp_path / "s"), "--manifest", str(tmp_path / "m.tsv"), "--timeout", str(TIMEOUT)],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        took = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr
    assert faults.count(path) == 2 and took < STALL - 2
    assert [e.status for e in read_manifest(tmp_path / "m.tsv")] == ["ok"] * 3
    bad = subprocess.run(
        [sys.executable, "-m", "oidyolo", "download", str(sel), "--split", "train", "--manifest", "m",
         "--timeout", "0"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert bad.returncode == 2 and "between 0 and 3600" in bad.stderr and "Traceback" not in bad.stderr


def test_fetch_command_takes_a_timeout(tmp_path):
    from oidyolo.data.versions import version_files

    files = version_files("v6")
    root = tmp_path / "meta"
    for relpath, data in ((files.classes, b"/m/014j1m,Apple\n"), (files.hierarchy, b'{"LabelName": "/m/0bl9f"}'),
                          (files.boxes_path("validation"), PAYLOAD)):  # fmt: skip
        (root / relpath).parent.mkdir(parents=True, exist_ok=True)
        (root / relpath).write_bytes(data)
    path = "/" + files.boxes_path("validation")
    with http_server(root, faults_for(path, ["ok", "stall"])) as (url, faults):  # HEAD, then the GET stalls
        proc = subprocess.run(
            [sys.executable, "-m", "oidyolo", "fetch", "--url", url, "--split", "validation", "--no-verify",
             "--out", str(tmp_path / "out"), "--timeout", str(TIMEOUT)],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert faults.count(path) == 2 and (tmp_path / "out" / "validation-annotations-bbox.csv").read_bytes() == PAYLOAD


# -- the big CSV over HTTP -------------------------------------------------------------------------------------------


@pytest.fixture
def source_dir(tmp_path):
    root = tmp_path / "source"
    (root / "v6").mkdir(parents=True)
    (root / "v6" / "big.csv").write_bytes(PAYLOAD)
    return root


def fetch(url, dest, **kw):
    kw = {
        "chunk_size": CHUNK,
        "retries": 4,
        "timeout": TIMEOUT,
        "backoff": 0.01,
        "known": Known(len(PAYLOAD), MD5),
    } | kw
    return fetch_file(Remote(url), "v6/big.csv", dest, **kw)


# A HEAD has no body, so a wrong Content-Length there is a wrong size: see test_a_server_that_misreports_the_size.
RANGED = [("chunk", f) for f in ONE_OFF] + [
    ("head", f) for f in ONE_OFF if f not in ("short", "long", "long-close", "half", "html")
]


@pytest.mark.parametrize(("where", "fault"), RANGED)
def test_a_faulty_response_during_a_ranged_fetch_is_retried(source_dir, tmp_path, fault, where):
    # "head": the size request fails; "chunk": the second ranged GET fails (HEAD and first GET served normally).
    actions = [fault] if where == "head" else ["ok", "ok", fault]
    started = time.monotonic()
    with http_server(source_dir, faults_for("/v6/big.csv", actions)) as (url, faults):
        result = fetch(url, tmp_path / "out.csv")
    assert (tmp_path / "out.csv").read_bytes() == PAYLOAD and result.md5 == MD5
    assert not (tmp_path / "out.csv.part").exists()
    gets = [r for m, _, r in faults.requests if m == "GET" and r]
    assert len(set(gets)) == 5 and len(gets) >= 5  # every chunk fetched; a failed one again, never appended twice
    assert time.monotonic() - started < STALL - 2


def test_a_server_that_ignores_range_requests_is_refused(source_dir, tmp_path):
    refused = r"asked for bytes 0-262143, got 1048580 bytes.*gave up after 2"
    with http_server(source_dir, Faults(ignore_range=True)) as (url, _), pytest.raises(DownloadError, match=refused):
        fetch(url, tmp_path / "out.csv", retries=1)
    assert not (tmp_path / "out.csv").exists() and not (tmp_path / "out.csv.part").exists()


def test_a_server_that_misreports_the_size_is_refused(source_dir, tmp_path):
    # The HEAD claims 100 bytes more than the file holds: the last range comes back short, every try.
    faults = faults_for("/v6/big.csv", ["long"])
    with http_server(source_dir, faults) as (url, _), pytest.raises(DownloadError, match=r"asked for bytes .* got 4 b"):
        fetch(url, tmp_path / "out.csv", known=Known(), retries=1)
    assert not (tmp_path / "out.csv").exists()


def test_fetch_that_gives_up_mid_file_resumes_there_and_checks_the_md5(source_dir, tmp_path):
    dest, part = tmp_path / "out.csv", tmp_path / "out.csv.part"
    # HEAD and two chunks served, then the third chunk resets on every try: the fetch fails, keeping 2 chunks.
    faults = faults_for("/v6/big.csv", ["ok", "ok", "ok", *["reset"] * 10])
    with http_server(source_dir, faults) as (url, _), pytest.raises(DownloadError, match="gave up after 3 tries"):
        fetch(url, dest, retries=2)
    assert not dest.exists() and part.read_bytes() == PAYLOAD[: 2 * CHUNK]
    with http_server(source_dir) as (url, faults):
        result = fetch(url, dest)
    assert result.resumed_from == 2 * CHUNK and result.md5 == MD5 and dest.read_bytes() == PAYLOAD
    assert next(r for m, _, r in faults.requests if m == "GET") == f"bytes={2 * CHUNK}-{3 * CHUNK - 1}"


def test_a_resumed_part_that_is_not_the_files_prefix_is_caught_by_the_md5(source_dir, tmp_path):
    (tmp_path / "out.csv.part").write_bytes(b"x" * CHUNK)  # e.g. left by another version of the file
    with http_server(source_dir) as (url, _), pytest.raises(DownloadError, match=r"md5 \w+ differs"):
        fetch(url, tmp_path / "out.csv")
    assert not (tmp_path / "out.csv").exists() and not (tmp_path / "out.csv.part").exists()
    with http_server(source_dir) as (url, _):
        assert fetch(url, tmp_path / "out.csv").md5 == MD5  # and the next run starts afresh


# -- S3: throttling and stalls through a proxy in front of moto ------------------------------------------------------


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    root = tmp_path_factory.mktemp("s3")
    for n, image_id in enumerate(IDS[:8]):
        make_jpeg(root / "train" / f"{image_id}.jpg", size=(40 + n, 30 + n))
    (root / "v6").mkdir()
    (root / "v6" / "big.csv").write_bytes(PAYLOAD)
    with s3_server() as endpoint:
        upload_tree(endpoint, "open-images-dataset", root)
        yield endpoint, root


def test_s3_slowdown_on_every_first_requests_is_retried(s3, tmp_path):
    endpoint, root = s3
    with s3_proxy(endpoint, Faults(slowdown_first=2)) as (proxy, faults):
        remote = Remote("s3://open-images-dataset", {"endpoint_url": proxy})
        config = DownloadConfig(workers=8, retries=4, backoff=0.01, timeout=TIMEOUT)
        entries = download_images(IDS[:8], split="train", remote=remote, store=tmp_path / "s", config=config)
        result = fetch_file(remote, "v6/big.csv", tmp_path / "big.csv", chunk_size=CHUNK, known=Known(md5=MD5))
    assert [e.status for e in entries] == ["downloaded"] * 8
    assert_store_matches(tmp_path / "s", root, IDS[:8])
    for image_id in IDS[:8]:
        assert faults.count(f"/open-images-dataset/train/{image_id}.jpg", method="") >= 3  # 2 SlowDowns, then served
    assert result.md5 == MD5 and (tmp_path / "big.csv").read_bytes() == PAYLOAD


def test_s3_slowdown_that_never_ends_is_listed_as_failed(s3, tmp_path):
    endpoint, _ = s3
    key = f"/open-images-dataset/train/{IDS[0]}.jpg"
    faults = Faults(actions={key: ["slowdown"] * 100})
    config = DownloadConfig(workers=2, retries=1, backoff=0.01, timeout=TIMEOUT)
    started = time.monotonic()
    with s3_proxy(endpoint, faults) as (proxy, seen):
        remote = Remote("s3://open-images-dataset", {"endpoint_url": proxy})
        entries = download_images(IDS[:2], split="train", remote=remote, store=tmp_path / "s", config=config)
    assert [e.status for e in entries] == ["failed", "downloaded"]
    assert "reduce your request rate" in entries[0].reason and "gave up after 2 tries" in entries[0].reason
    assert seen.count(key) == 2  # our 2 tries and nothing more: botocore's and s3fs's retries are off
    assert time.monotonic() - started < 20


def test_s3_stalled_response_is_abandoned_after_the_timeout(s3, tmp_path):
    endpoint, root = s3
    key = f"/open-images-dataset/train/{IDS[3]}.jpg"
    started = time.monotonic()
    with s3_proxy(endpoint, Faults(actions={key: ["stall-body"]}, stall=STALL)) as (proxy, faults):
        remote = Remote("s3://open-images-dataset", {"endpoint_url": proxy})
        entries = download_images(IDS[2:5], split="train", remote=remote, store=tmp_path / "s", config=FAST)
    assert [e.status for e in entries] == ["downloaded"] * 3
    assert faults.count(key) == 2 and time.monotonic() - started < STALL - 2  # s3fs alone would wait 15 s
    assert_store_matches(tmp_path / "s", root, IDS[2:5])


# -- the timeout from config.yaml to the download --------------------------------------------------------------------


@pytest.mark.slow
def test_workflow_passes_download_timeout_to_the_downloader(tmp_path):
    """A mirror whose images come from a stalling server: with download.timeout 0.5 the step finishes quickly."""
    demo = tmp_path / "demo"
    subprocess.run(
        [sys.executable, "-m", "oidyolo", "demo", str(demo), "--train", "6", "--validation", "6", "--missing", "0"],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    ids = sorted(p.stem for p in (demo / "open-images-dataset" / "validation").glob("*.jpg"))
    faults = Faults(actions={f"/validation/{i}.jpg": ["stall"] for i in ids}, stall=STALL)
    work = tmp_path / "work"
    work.mkdir()
    with http_server(demo / "open-images-dataset", faults) as (url, _):
        config = {
            "classes": ["Apple"],
            "source": "mirror",
            "sources": {"mirror": {"metadata_url": str(demo / "openimages"), "images_url": url,
                                   "verify_checksums": False}},
            "download": {"timeout": TIMEOUT, "retries": 2, "workers": 8},
        }  # fmt: skip
        (work / "config.yaml").write_text(yaml.safe_dump(config))
        started = time.monotonic()
        proc = subprocess.run(
            [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "--directory", str(work),
             "--configfile", str(work / "config.yaml"), "--cores", "2", "results/images/validation/Apple.tsv"],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        took = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr[-3000:]
    entries = read_manifest(work / "results/images/validation/Apple.tsv")
    assert entries and all(e.ok for e in entries)
    assert took < 60
    stalled = [p for p in faults.requests if p[1].startswith("/validation/")]
    assert len(stalled) >= 2 * len(entries)  # each image stalled once, then was fetched again


def test_download_timeout_is_in_the_schema_with_a_default_and_limits():
    from snakemake.exceptions import WorkflowError
    from snakemake.utils import validate

    schema = str(ROOT / "schemas" / "config.schema.yaml")
    config = {"classes": ["Apple"]}
    validate(config, schema)
    assert config["download"]["timeout"] == 60
    assert yaml.safe_load((ROOT / "config.yaml").read_text())["download"]["timeout"] == 60
    for bad in (0, -1, 3601, "60s", None):
        with pytest.raises(WorkflowError, match="timeout"):
            validate({"classes": ["Apple"], "download": {"timeout": bad}}, schema)
