"""The fetch code against a real HTTP server and a real S3-compatible server on loopback, and a local mirror."""

import hashlib

import pytest
from servers import Faults, http_server, s3_server, upload_tree

from oidyolo.data.sources import Remote, fetch_file, with_retries
from oidyolo.data.versions import Known, version_files
from oidyolo.errors import ConfigError, DownloadError, IntegrityError

PAYLOAD = bytes(range(256)) * 4096 + b"tail"  # 1 MiB + 4 bytes: not a multiple of the chunk size
MD5 = hashlib.md5(PAYLOAD).hexdigest()


@pytest.fixture
def source_dir(tmp_path):
    root = tmp_path / "source"
    (root / "v6").mkdir(parents=True)
    (root / "v6" / "big.csv").write_bytes(PAYLOAD)
    return root


def test_fetch_from_a_local_mirror(source_dir, tmp_path):
    result = fetch_file(Remote(str(source_dir)), "v6/big.csv", tmp_path / "out.csv", known=Known(len(PAYLOAD), MD5))
    assert (tmp_path / "out.csv").read_bytes() == PAYLOAD
    assert result.md5 == MD5 and result.resumed_from == 0


def test_fetch_over_http_in_ranged_chunks(source_dir, tmp_path):
    with http_server(source_dir) as (url, faults):
        fetch_file(Remote(url), "v6/big.csv", tmp_path / "out.csv", chunk_size=256 * 1024)
    assert (tmp_path / "out.csv").read_bytes() == PAYLOAD
    ranges = [r for m, _, r in faults.requests if m == "GET"]
    assert len(ranges) == 5 and ranges[0] == "bytes=0-262143"


def test_interrupted_fetch_resumes_where_it_stopped(source_dir, tmp_path):
    dest = tmp_path / "out.csv"
    (tmp_path / "out.csv.part").write_bytes(PAYLOAD[:300_000])
    with http_server(source_dir) as (url, faults):
        result = fetch_file(Remote(url), "v6/big.csv", dest, known=Known(len(PAYLOAD), MD5), chunk_size=256 * 1024)
    assert result.resumed_from == 300_000 and result.downloaded == len(PAYLOAD) - 300_000
    assert dest.read_bytes() == PAYLOAD and result.md5 == MD5
    first_get = next(r for m, _, r in faults.requests if m == "GET")
    assert first_get.startswith("bytes=300000-")
    assert not (tmp_path / "out.csv.part").exists()


def test_transient_http_errors_and_truncated_bodies_are_retried(source_dir, tmp_path):
    faults = Faults(status={"/v6/big.csv": [503, 500]}, truncate={"/v6/big.csv": 1000})
    with http_server(source_dir, faults) as (url, _):
        fetch_file(Remote(url), "v6/big.csv", tmp_path / "out.csv", known=Known(md5=MD5), chunk_size=512 * 1024)
    assert (tmp_path / "out.csv").read_bytes() == PAYLOAD


def test_fetch_from_s3_compatible_server(source_dir, tmp_path):
    with s3_server() as endpoint:
        upload_tree(endpoint, "open-images-dataset", source_dir)
        remote = Remote("s3://open-images-dataset", {"endpoint_url": endpoint})
        result = fetch_file(remote, "v6/big.csv", tmp_path / "out.csv", chunk_size=300_000)
    assert result.md5 == MD5 and (tmp_path / "out.csv").read_bytes() == PAYLOAD


def test_checksum_mismatch_deletes_the_partial_file_and_says_so(source_dir, tmp_path):
    with pytest.raises(IntegrityError, match=r"md5 .* differs from the published 0+1"):
        fetch_file(Remote(str(source_dir)), "v6/big.csv", tmp_path / "out.csv", known=Known(md5="0" * 31 + "1"))
    assert not (tmp_path / "out.csv").exists() and not (tmp_path / "out.csv.part").exists()


def test_published_size_mismatch_is_refused_before_downloading(source_dir, tmp_path):
    with pytest.raises(IntegrityError, match="publishes 99"):
        fetch_file(Remote(str(source_dir)), "v6/big.csv", tmp_path / "out.csv", known=Known(size=99))
    assert not (tmp_path / "out.csv.part").exists()


def test_missing_remote_file_is_a_clear_error(source_dir, tmp_path):
    with http_server(source_dir) as (url, _), pytest.raises(DownloadError, match="not found at the source"):
        fetch_file(Remote(url), "v6/nope.csv", tmp_path / "out.csv")


def test_retries_give_up_with_the_cause():
    calls = []

    def flaky():
        calls.append(1)
        raise ConnectionResetError("peer reset")

    with pytest.raises(DownloadError, match=r"ConnectionResetError: peer reset .*3 tries"):
        with_retries(flaky, what="x", retries=2, sleep=lambda s: None)
    assert len(calls) == 3


def test_version_file_names():
    assert version_files("v6").boxes_path("train") == "v6/oidv6-train-annotations-bbox.csv"
    assert version_files("v4").boxes_path("validation") == "2018_04/validation/validation-annotations-bbox.csv"
    assert version_files("v5").boxes_path("test") == "v5/test-annotations-bbox.csv"
    assert version_files("v7").classes == "v5/class-descriptions-boxable.csv"  # as FiftyOne's v7 loader reads it
    v4 = version_files("v4")
    assert v4.known_for(v4.boxes_path("train")) == Known(1_194_033_454, "dc89115275ad6d0c771bd6590aa71ac3")
    assert version_files("v5").known_for(v4.boxes_path("train")).md5 == "dc89115275ad6d0c771bd6590aa71ac3"
    assert (v4.known_for(v4.boxes_path("validation")).size, v4.known_for(v4.boxes_path("test")).size) == (
        17_074_036,
        52_174_204,
    )
    for version in ("v4", "v5", "v6", "v7"):  # every file a version reads has a published size, or none is known
        vf = version_files(version)
        for relpath in (vf.classes, *vf.boxes.values()):
            assert vf.known_for(relpath).size or relpath == "2018_04/class-descriptions-boxable.csv", relpath
    assert (
        version_files("v6").known_for("v6/oidv6-train-annotations-bbox.csv").md5 == "3c3e70cfaba5757ea5c2604b19cac3b2"
    )
    with pytest.raises(ConfigError, match="unknown Open Images version"):
        version_files("v8")
    with pytest.raises(ConfigError, match="no split 'val'"):
        version_files("v6").boxes_path("val")
