"""The image downloader against real servers on loopback, with real JPEGs."""

import os

import pytest
from conftest import make_jpeg
from servers import Faults, http_server, s3_server, upload_tree

from oidyolo.data.download import (
    DownloadConfig,
    check_missing,
    download_images,
    image_path,
    read_manifest,
    remove_stale_parts,
    write_manifest,
)
from oidyolo.data.sources import Remote
from oidyolo.errors import DataFormatError, DownloadError

IDS = [f"{i:016x}" for i in range(0xA0, 0xA8)]
FAST = DownloadConfig(workers=4, retries=2, backoff=0.01)


@pytest.fixture
def bucket(tmp_path):
    root = tmp_path / "bucket"
    for n, image_id in enumerate(IDS[:6]):
        make_jpeg(root / "train" / f"{image_id}.jpg", size=(40 + n, 30 + n))
    return root


def stored(store):
    return sorted(p.name for p in (store / "train").iterdir())


def test_download_from_s3_compatible_server(bucket, tmp_path):
    store = tmp_path / "store"
    with s3_server() as endpoint:
        upload_tree(endpoint, "open-images-dataset", bucket)
        remote = Remote("s3://open-images-dataset", {"endpoint_url": endpoint})
        entries = download_images(IDS[:7], split="train", remote=remote, store=store, config=FAST)
    assert [e.status for e in entries] == ["downloaded"] * 6 + ["missing"]
    assert (entries[2].width, entries[2].height) == (42, 32)
    assert stored(store) == [f"{i}.jpg" for i in IDS[:6]]  # no temporary file left behind
    assert (store / "train" / f"{IDS[0]}.jpg").read_bytes() == (bucket / "train" / f"{IDS[0]}.jpg").read_bytes()


def test_download_over_http_then_resume_skips_stored_images(bucket, tmp_path):
    store = tmp_path / "store"
    with http_server(bucket) as (url, faults):
        first = download_images(IDS[:3], split="train", remote=Remote(url), store=store, config=FAST)
        n_requests = len(faults.requests)
        second = download_images(IDS[:6], split="train", remote=Remote(url), store=store, config=FAST)
    assert [e.status for e in first] == ["downloaded"] * 3
    assert [e.status for e in second] == ["stored"] * 3 + ["downloaded"] * 3
    fetched_again = [p for _, p, _ in faults.requests[n_requests:]]
    assert all(IDS[i] not in p for p in fetched_again for i in range(3))


def test_an_image_shared_by_two_classes_is_stored_once(bucket, tmp_path):
    store = tmp_path / "store"
    with http_server(bucket) as (url, faults):
        download_images([IDS[0], IDS[1]], split="train", remote=Remote(url), store=store, config=FAST)
        download_images([IDS[1], IDS[2]], split="train", remote=Remote(url), store=store, config=FAST)
    gets = [p for m, p, _ in faults.requests if m == "GET"]
    assert sum(IDS[1] in p for p in gets) == 1
    assert stored(store) == [f"{i}.jpg" for i in IDS[:3]]


def test_broken_responses_are_retried_then_reported(bucket, tmp_path):
    (bucket / "train" / f"{IDS[6]}.jpg").write_text("<html><body>503 Slow Down</body></html>")
    faults = Faults(status={f"/train/{IDS[0]}.jpg": [503, 500]}, truncate={f"/train/{IDS[1]}.jpg": 100})
    store = tmp_path / "store"
    with http_server(bucket, faults) as (url, _):
        entries = download_images([IDS[0], IDS[1], IDS[6]], split="train", remote=Remote(url), store=store, config=FAST)
    by_id = {e.image_id: e for e in entries}
    assert by_id[IDS[0]].status == "downloaded" and by_id[IDS[1]].status == "downloaded"
    assert by_id[IDS[6]].status == "failed" and "not a JPEG (HTML/XML text" in by_id[IDS[6]].reason
    assert not (store / "train" / f"{IDS[6]}.jpg").exists()


def test_corrupt_file_in_the_store_is_fetched_again(bucket, tmp_path):
    store = tmp_path / "store"
    good = (bucket / "train" / f"{IDS[0]}.jpg").read_bytes()
    (store / "train").mkdir(parents=True)
    (store / "train" / f"{IDS[0]}.jpg").write_bytes(good[: len(good) // 2])
    (entry,) = download_images([IDS[0]], split="train", remote=Remote(str(bucket)), store=store, config=FAST)
    assert entry.status == "downloaded"
    assert (store / "train" / f"{IDS[0]}.jpg").read_bytes() == good


@pytest.mark.parametrize("bad", ["../../etc/passwd", "/etc/passwd", "abc", "0123456789ABCDEF", "0123456789abcde\x00"])
def test_invalid_image_ids_never_reach_a_path_or_url(tmp_path, bad):
    with pytest.raises(DataFormatError, match="invalid ImageID"):
        download_images([bad], split="train", remote=Remote(str(tmp_path)), store=tmp_path / "store")
    with pytest.raises(DataFormatError):
        image_path(tmp_path, "train", bad)
    assert not (tmp_path / "store").exists()


def test_manifest_round_trip_and_missing_fraction(bucket, tmp_path):
    entries = download_images(IDS, split="train", remote=Remote(str(bucket)), store=tmp_path / "s", config=FAST)
    write_manifest(entries, tmp_path / "m.tsv")
    back = read_manifest(tmp_path / "m.tsv")
    assert [(e.image_id, e.width, e.ok) for e in back] == [(e.image_id, e.width, e.ok) for e in entries]
    assert {e.status for e in back} == {"ok", "missing"}  # which run fetched an image is not recorded
    assert "6 downloaded, 2 missing" in check_missing(entries, 0.5, label="x")
    with pytest.raises(DownloadError, match=r"2/8 images unavailable, more than the allowed 10\.0%"):
        check_missing(entries, 0.1, label="x")


def test_stale_temporary_files_of_dead_processes_are_removed(tmp_path):
    from oidyolo.atomic import HOST as _HOST

    folder = tmp_path / "train"
    folder.mkdir()
    dead = folder / f".{IDS[0]}.jpg.{_HOST}.999999999.1.part"
    alive = folder / f".{IDS[1]}.jpg.{_HOST}.{os.getpid()}.1.part"
    dead.write_bytes(b"x")
    alive.write_bytes(b"x")
    assert remove_stale_parts(folder) == 1
    assert not dead.exists() and alive.exists()
