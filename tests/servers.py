"""Real servers on loopback for the download tests: an HTTP file server with Range support (and optional faults),
moto's S3-compatible server, and a fault-injecting proxy in front of it (S3 throttling, stalls, resets). All bind
127.0.0.1 on a free port and stop when the test is done."""

from __future__ import annotations

import http.client
import http.server
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import boto3
from botocore import UNSIGNED
from botocore.config import Config

# What a fault action does to one request (Faults.actions); a three-digit string answers that HTTP status instead.
ACTIONS = {
    "ok": "serve the request normally",
    "reset": "close the connection with a TCP reset before sending anything",
    "reset-body": "send the headers and half the body, then reset the connection",
    "long": "declare 100 bytes more than it sends, then hold the connection open for Faults.stall seconds",
    "long-close": "declare 100 bytes more than it sends, then close the connection",
    "short": "declare half the bytes it sends, and keep the connection alive (the rest is garbage to the next reader)",
    "stall": "wait Faults.stall seconds before the status line",
    "stall-body": "send the headers and half the body, then wait Faults.stall seconds before the rest",
    "slowdown": "answer 503 with S3's SlowDown error document",
    "half": "send only the first half of what was asked, with a Content-Length (and Content-Range) that says so",
    "html": "answer 200 with an HTML error page instead of the file (a proxy or captive portal)",
}
SLOWDOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code><Message>Please reduce your request rate.'
    b"</Message><RequestId>0</RequestId></Error>"
)


@dataclass
class Faults:
    """Per-path misbehaviour for the HTTP server: each entry is consumed once per request until exhausted."""

    status: dict[str, list[int]] = field(default_factory=dict)  # path -> statuses to answer before serving
    truncate: dict[str, int] = field(default_factory=dict)  # path -> bytes to send then close (Content-Length kept)
    ignore_range: bool = False
    delay: float = 0.0
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)  # (method, path, range)
    actions: dict[str, list[str]] = field(default_factory=dict)  # path -> ACTIONS keys, one per request
    stall: float = 3.0  # seconds held by "stall", "stall-body" and "long"
    slowdown_first: int = 0  # the S3 proxy answers SlowDown to the first N requests of every path
    _seen: Counter[str] = field(default_factory=Counter)

    def next_status(self, path: str) -> int | None:
        queue = self.status.get(path)
        return queue.pop(0) if queue else None

    def next_action(self, path: str) -> str | None:
        queue = self.actions.get(path)
        action = queue.pop(0) if queue else None
        assert action is None or action in ACTIONS or (action.isdigit() and len(action) == 3), action
        return action

    def count(self, path: str, method: str = "GET") -> int:
        """Requests seen for ``path`` (any method with ``method=""``)."""
        return sum(1 for m, p, _ in self.requests if p == path and (not method or m == method))

    def first_seen(self, path: str) -> int:
        """How many requests for ``path`` came before this one (thread-safe enough under the GIL)."""
        n = self._seen[path]
        self._seen[path] += 1
        return n


class _FaultyHandler(http.server.BaseHTTPRequestHandler):
    """Serves what ``_respond`` returns, misbehaving as ``faults`` says."""

    protocol_version = "HTTP/1.1"
    faults: Faults

    def log_message(self, *args: object) -> None:  # keep test output clean
        pass

    def do_HEAD(self) -> None:
        self._serve(body=False)

    def do_GET(self) -> None:
        self._serve(body=True)

    def _respond(self, path: str) -> tuple[int, dict[str, str], bytes]:
        raise NotImplementedError

    def _reset(self) -> None:
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()
        self.close_connection = True

    def _serve(self, body: bool) -> None:
        faults = self.faults
        path = self.path.split("?", 1)[0]
        faults.requests.append((self.command, path, self.headers.get("Range")))
        if faults.delay:
            time.sleep(faults.delay)
        action = faults.next_action(path)
        if action is None and faults.first_seen(path) < faults.slowdown_first:
            action = "slowdown"
        if action == "reset":
            return self._reset()
        if action == "stall":
            time.sleep(faults.stall)
        status = int(action) if action and action.isdigit() else faults.next_status(path)
        if action == "slowdown":
            status, headers, data = 503, {"Content-Type": "application/xml"}, SLOWDOWN
        elif status is not None:
            headers, data = {}, b""
        else:
            status, headers, data = self._respond(path)
        if action == "html":
            status, headers, data = 200, {"Content-Type": "text/html"}, b"<html><body>Service Unavailable</body></html>"
        elif action == "half":
            data = data[: len(data) // 2]
            if "Content-Range" in headers:
                first, _, total = headers["Content-Range"][6:].replace("/", "-").partition("-")
                headers["Content-Range"] = f"bytes {first}-{int(first) + len(data) - 1}/{total.split('-')[-1]}"
        declared = len(data)
        if action in ("long", "long-close"):
            declared += 100
        elif action == "short":
            declared = len(data) // 2
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(declared))
        self.end_headers()
        if not body:
            return None
        cut = faults.truncate.pop(path, None)
        if cut is not None:
            self.wfile.write(data[:cut])
            self.wfile.flush()
            self.close_connection = True
            return None
        half = len(data) // 2
        if action == "reset-body":
            self.wfile.write(data[:half])
            self.wfile.flush()
            return self._reset()
        if action == "stall-body":
            self.wfile.write(data[:half])
            self.wfile.flush()
            time.sleep(faults.stall)
            self.wfile.write(data[half:])
            return None
        self.wfile.write(data)
        if action in ("long", "long-close"):
            self.wfile.flush()
            if action == "long":
                time.sleep(faults.stall)
            self.close_connection = True
        return None


class _QuietServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:  # clients that gave up, resets we made: expected
        pass


def _file_handler(root: Path, faults: Faults) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(_FaultyHandler):
        def _respond(self, path: str) -> tuple[int, dict[str, str], bytes]:
            target = (root / path.lstrip("/")).resolve()
            if root.resolve() not in target.parents or not target.is_file():
                return 404, {}, b""
            data = target.read_bytes()
            rng = self.headers.get("Range")
            headers = {"Content-Type": "application/octet-stream", "Accept-Ranges": "bytes"}
            if rng and rng.startswith("bytes=") and not self.faults.ignore_range:
                first, _, last = rng[6:].partition("-")
                start = int(first) if first else 0
                end = min(int(last) + 1, len(data)) if last else len(data)
                headers["Content-Range"] = f"bytes {start}-{end - 1}/{len(data)}"
                return 206, headers, data[start:end]
            return 200, headers, data

    Handler.faults = faults
    return Handler


@contextmanager
def _serving(handler: type[http.server.BaseHTTPRequestHandler]) -> Iterator[str]:
    """Run ``handler`` on 127.0.0.1 (a free port) in a thread; yields the base URL, stops on exit."""
    server = _QuietServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def http_server(root: Path, faults: Faults | None = None) -> Iterator[tuple[str, Faults]]:
    """Serve ``root`` at ``http://127.0.0.1:PORT``; yields (base URL, faults)."""
    faults = faults or Faults()
    with _serving(_file_handler(root, faults)) as url:
        yield url, faults


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


def _proxy_handler(upstream: str, faults: Faults) -> type[http.server.BaseHTTPRequestHandler]:
    host, port = urlsplit(upstream).hostname, urlsplit(upstream).port

    class Handler(_FaultyHandler):
        def _respond(self, path: str) -> tuple[int, dict[str, str], bytes]:
            length = int(self.headers.get("Content-Length") or 0)
            payload = self.rfile.read(length) if length else None
            conn = http.client.HTTPConnection(host, port, timeout=30)
            try:
                skip = {"connection", "keep-alive", "proxy-connection"}
                conn.request(
                    self.command,
                    self.path,
                    body=payload,
                    headers={k: v for k, v in self.headers.items() if k.lower() not in skip},
                )
                resp = conn.getresponse()
                data = resp.read()
                drop = {"connection", "keep-alive", "transfer-encoding", "content-length"}
                headers = {k: v for k, v in resp.getheaders() if k.lower() not in drop}
                if self.command == "HEAD":  # keep the object's size, which moto sends without a body
                    return resp.status, headers, b"\0" * int(resp.getheader("Content-Length") or 0)
                return resp.status, headers, data
            finally:
                conn.close()

    Handler.faults = faults
    return Handler


@contextmanager
def s3_proxy(upstream: str, faults: Faults | None = None) -> Iterator[tuple[str, Faults]]:
    """An S3 endpoint on loopback that forwards every request to ``upstream`` (moto's server) unless ``faults``
    says otherwise: ``slowdown_first`` SlowDown answers per object, then per-path ``actions``. Yields (endpoint,
    faults); the requests it saw are in ``faults.requests`` with paths ``/bucket/key``."""
    faults = faults or Faults()
    with _serving(_proxy_handler(upstream, faults)) as url:
        yield url, faults


@dataclass
class BlackHole:
    """What :func:`black_hole` saw: one entry per accepted connection."""

    url: str
    connections: list[socket.socket] = field(default_factory=list)


@contextmanager
def black_hole() -> Iterator[BlackHole]:
    """A TCP server on loopback that accepts every connection and never sends a byte (a stalled endpoint)."""
    server = socket.create_server(("127.0.0.1", 0), backlog=128)
    hole = BlackHole(f"http://127.0.0.1:{server.getsockname()[1]}")
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.05)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            hole.connections.append(conn)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield hole
    finally:
        stop.set()
        thread.join()
        server.close()
        for conn in hole.connections:
            conn.close()


def closed_port() -> str:
    """``http://127.0.0.1:PORT`` where nothing listens (a port just bound and released): connections are refused."""
    with socket.create_server(("127.0.0.1", 0)) as sock:
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"
