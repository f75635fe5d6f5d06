"""Real servers on loopback for the download tests: an HTTP file server with Range support (and optional faults),
and moto's S3-compatible server. Both bind 127.0.0.1 on a free port and stop when the test is done."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import boto3
from botocore import UNSIGNED
from botocore.config import Config


@dataclass
class Faults:
    """Per-path misbehaviour for the HTTP server: each entry is consumed once per request until exhausted."""

    status: dict[str, list[int]] = field(default_factory=dict)  # path -> statuses to answer before serving
    truncate: dict[str, int] = field(default_factory=dict)  # path -> bytes to send then close (Content-Length kept)
    ignore_range: bool = False
    delay: float = 0.0
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)  # (method, path, range)

    def next_status(self, path: str) -> int | None:
        queue = self.status.get(path)
        return queue.pop(0) if queue else None


def _handler(root: Path, faults: Faults) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:  # keep test output clean
            pass

        def do_HEAD(self) -> None:
            self._serve(body=False)

        def do_GET(self) -> None:
            self._serve(body=True)

        def _serve(self, body: bool) -> None:
            path = self.path.split("?", 1)[0]
            faults.requests.append((self.command, path, self.headers.get("Range")))
            if faults.delay:
                time.sleep(faults.delay)
            status = faults.next_status(path)
            if status is not None:
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            target = (root / path.lstrip("/")).resolve()
            if root.resolve() not in target.parents or not target.is_file():
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            data = target.read_bytes()
            start, end = 0, len(data)
            rng = self.headers.get("Range")
            if rng and rng.startswith("bytes=") and not faults.ignore_range:
                first, _, last = rng[6:].partition("-")
                start = int(first) if first else 0
                end = min(int(last) + 1, len(data)) if last else len(data)
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{end - 1}/{len(data)}")
            else:
                self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(end - start))
            self.send_header("Accept-Ranges", "bytes")
            self.end_headers()
            if body:
                payload = data[start:end]
                cut = faults.truncate.pop(path, None)
                if cut is not None:
                    self.wfile.write(payload[:cut])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(payload)

    return Handler


@contextmanager
def http_server(root: Path, faults: Faults | None = None) -> Iterator[tuple[str, Faults]]:
    """Serve ``root`` at ``http://127.0.0.1:PORT``; yields (base URL, faults)."""
    faults = faults or Faults()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(root, faults))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", faults
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def s3_server() -> Iterator[str]:
    """moto's S3-compatible server on loopback; yields its endpoint URL."""
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def s3_client(endpoint: str, *, signed: bool = True):
    config = Config(signature_version=UNSIGNED) if not signed else None
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=config,
    )


def upload_tree(endpoint: str, bucket: str, root: Path, *, only: Callable[[Path], bool] = lambda p: True) -> int:
    client = s3_client(endpoint)
    client.create_bucket(Bucket=bucket)
    n = 0
    for path in sorted(root.rglob("*")):
        if path.is_file() and only(path):
            client.put_object(
                Bucket=bucket, Key=path.relative_to(root).as_posix(), Body=path.read_bytes(), ACL="public-read"
            )
            n += 1
    return n
