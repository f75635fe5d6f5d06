"""One retry policy: against an endpoint that accepts connections and never answers (a black hole) or a closed port,
``download`` and ``fetch`` end within (retries + 1) x timeout plus backoff per file, with an error naming the endpoint.

botocore's, s3fs's and aiohttp's own retries are off under ours, so the black hole sees exactly one connection per
try: 5 images x 3 tries = 15. Before, s3fs's nested loops and botocore's legacy retries made one stalled S3 image
cost 125 tries (422 s for 5 images with ``--timeout 2 --retries 2``). Loopback only.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
from servers import black_hole, closed_port

from oidyolo.data.sources import Remote, with_timeout

IDS = [f"{i:016x}" for i in range(0xB00, 0xB05)]
TIMEOUT, RETRIES = 2, 2
BOUND = 30  # seconds, the whole command (interpreter start included)


def _run(args: list[str]) -> tuple[subprocess.CompletedProcess, float]:
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "oidyolo", *args], capture_output=True, text=True, timeout=300)
    return proc, time.monotonic() - started


def _source(kind: str, endpoint: str) -> list[str]:
    if kind == "s3":
        return ["--url", "s3://open-images-dataset", "--options", json.dumps({"endpoint_url": endpoint})]
    return ["--url", endpoint]


def _download(tmp_path, kind: str, endpoint: str):
    sel = tmp_path / "sel.csv"
    sel.write_text("ImageID\n" + "\n".join(IDS) + "\n")
    return _run(
        ["download", str(sel), "--split", "train", *_source(kind, endpoint), "--store", str(tmp_path / "s"),
         "--manifest", str(tmp_path / "m.tsv"), "--timeout", str(TIMEOUT), "--retries", str(RETRIES),
         "--workers", "5"]
    )  # fmt: skip


def _fetch(tmp_path, kind: str, endpoint: str):
    return _run(
        ["fetch", *_source(kind, endpoint), "--split", "validation", "--out", str(tmp_path / "out"),
         "--timeout", str(TIMEOUT), "--retries", str(RETRIES)]
    )  # fmt: skip


def _ended_clearly_within_the_bound(proc: subprocess.CompletedProcess, took: float) -> None:
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert took <= BOUND, took


@pytest.mark.parametrize("kind", ["http", "s3"])
def test_download_from_a_black_hole_ends_within_the_bound(tmp_path, kind):
    with black_hole() as hole:
        proc, took = _download(tmp_path, kind, hole.url)
        connections = len(hole.connections)
    _ended_clearly_within_the_bound(proc, took)
    assert connections == len(IDS) * (RETRIES + 1)  # no hidden retry below ours
    assert "5/5 images unavailable" in proc.stderr
    for image_id in IDS:
        assert f"{image_id}: " in proc.stderr
    assert hole.url in proc.stderr  # the endpoint is named
    assert f"no connection or no data for {TIMEOUT} s, download.timeout" in proc.stderr
    assert f"gave up after {RETRIES + 1} tries" in proc.stderr
    assert not list((tmp_path / "s" / "train").iterdir())  # no partial file left behind


@pytest.mark.parametrize("kind", ["http", "s3"])
def test_download_from_a_closed_port_fails_fast_naming_the_endpoint(tmp_path, kind):
    endpoint = closed_port()
    proc, took = _download(tmp_path, kind, endpoint)
    _ended_clearly_within_the_bound(proc, took)
    assert "5/5 images unavailable" in proc.stderr and endpoint.removeprefix("http://") in proc.stderr
    assert f"gave up after {RETRIES + 1} tries" in proc.stderr


@pytest.mark.parametrize("kind", ["http", "s3"])
def test_fetch_from_a_black_hole_ends_within_the_bound(tmp_path, kind):
    with black_hole() as hole:
        proc, took = _fetch(tmp_path, kind, hole.url)
        connections = len(hole.connections)
    _ended_clearly_within_the_bound(proc, took)
    # The size query: S3 one HEAD per try; HTTP (fsspec) a HEAD, then a GET when the HEAD gets no answer.
    assert connections == (RETRIES + 1) * (1 if kind == "s3" else 2)
    assert hole.url in proc.stderr and f"gave up after {RETRIES + 1} tries" in proc.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@pytest.mark.parametrize("kind", ["http", "s3"])
def test_fetch_from_a_closed_port_fails_fast_naming_the_endpoint(tmp_path, kind):
    endpoint = closed_port()
    proc, took = _fetch(tmp_path, kind, endpoint)
    _ended_clearly_within_the_bound(proc, took)
    assert endpoint.removeprefix("http://") in proc.stderr and f"gave up after {RETRIES + 1} tries" in proc.stderr


def test_library_retries_are_off_under_ours():
    s3 = with_timeout(Remote("s3://bucket", {"endpoint_url": "http://127.0.0.1:9"}), 7)
    fs, _ = s3.filesystem()
    assert fs.retries == 1  # s3fs's own loop: one try
    assert s3.options["config_kwargs"]["retries"] == {"total_max_attempts": 1, "mode": "standard"}
    mine = with_timeout(Remote("s3://bucket", {"config_kwargs": {"retries": {"max_attempts": 3}}}), 7)
    assert mine.options["config_kwargs"]["retries"] == {"max_attempts": 3}  # an explicit option wins
    http = with_timeout(Remote("https://example.org/x"), None)
    assert "timeout" not in http.options["client_kwargs"] and callable(http.options["get_client"])


@pytest.mark.parametrize("command", ["download", "fetch"])
def test_retries_out_of_range_are_refused(tmp_path, command):
    args = ["x.csv", "--split", "train", "--manifest", "m"] if command == "download" else ["--out", str(tmp_path)]
    proc, _ = _run([command, *args, "--retries", "-1"])
    assert proc.returncode == 2 and "between 0 and 20" in proc.stderr and "Traceback" not in proc.stderr
