"""Loopback servers for download_bench.py, each run in its own process so their CPU never mixes with a client's.

    python bench/s3_servers.py moto IMAGE_DIR [IDS]     # moto's S3 server: IMAGE_DIR/{ID}.jpg as s3://open-images-dataset/train/
    python bench/s3_servers.py proxy UPSTREAM_PORT 0.05  # a TCP delay line in front of it (50 ms per request)

Each prints ``READY <port>`` on stdout once it serves, and runs until killed. Everything binds 127.0.0.1.

The proxy models a remote region such as S3's: it keeps client connections alive (moto's werkzeug server answers
every request with ``Connection: close``; real S3 does not), a new client connection waits one delay (the TCP
handshake), and every request waits one delay before it is forwarded (the round trip before its first response
byte); the response then streams back at loopback speed. Clients never pipeline HTTP/1.1 requests, so waiting
inline per request is exact.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
from pathlib import Path

BUCKET = "open-images-dataset"


def serve_moto(image_dir: Path, ids: list[str] | None = None) -> None:
    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    client = boto3.client(
        "s3",
        endpoint_url=f"http://{host}:{port}",
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    client.create_bucket(Bucket=BUCKET)
    paths = [image_dir / f"{i}.jpg" for i in ids] if ids is not None else sorted(image_dir.glob("*.jpg"))
    for path in paths:
        client.put_object(Bucket=BUCKET, Key=f"train/{path.name}", Body=path.read_bytes(), ACL="public-read")
    print(f"READY {port}", flush=True)
    threading.Event().wait()


async def _read_head(reader: asyncio.StreamReader) -> bytes | None:
    try:
        return await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        return None


def _header(head: bytes, name: bytes) -> bytes | None:
    for line in head.split(b"\r\n")[1:]:
        key, _, value = line.partition(b":")
        if key.strip().lower() == name:
            return value.strip()
    return None


def _without(head: bytes, name: bytes) -> bytes:
    lines = head.split(b"\r\n")
    return b"\r\n".join(x for x in lines if x.partition(b":")[0].strip().lower() != name)


async def _proxy(upstream_port: int, delay: float) -> None:
    """An HTTP/1.1 proxy that keeps client connections alive (moto's werkzeug server closes every connection,
    real S3 does not) and opens one upstream connection per request."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            if delay:
                await asyncio.sleep(delay)  # the TCP handshake's round trip
            while head := await _read_head(reader):
                length = int(_header(head, b"content-length") or 0)
                if (_header(head, b"transfer-encoding") or b"").lower() == b"chunked":
                    raise RuntimeError("chunked request bodies are not supported by this bench proxy")
                body = await reader.readexactly(length) if length else b""
                if delay:
                    await asyncio.sleep(delay)  # the request's round trip before the first response byte
                up_reader, up_writer = await asyncio.open_connection("127.0.0.1", upstream_port)
                up_writer.write(head + body)
                await up_writer.drain()
                rhead = await _read_head(up_reader)
                if rhead is None:
                    break
                status = int(rhead.split(b" ", 2)[1])
                method = head.split(b" ", 1)[0]
                framed = (
                    _header(rhead, b"content-length") is not None
                    or (_header(rhead, b"transfer-encoding") or b"").lower() == b"chunked"
                    or method == b"HEAD"
                    or status in (204, 304)
                    or 100 <= status < 200
                )
                if framed:  # the client may keep the connection: it can tell where the response ends
                    rhead = _without(rhead[:-4], b"connection") + b"\r\n\r\n"
                writer.write(rhead)
                while chunk := await up_reader.read(1 << 18):  # moto closes after each response
                    writer.write(chunk)
                    await writer.drain()
                up_writer.close()
                await writer.drain()
                if not framed or (_header(head, b"connection") or b"").lower() == b"close":
                    break
        except (ConnectionError, OSError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=1024)
    print(f"READY {server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        await server.serve_forever()


def main(argv: list[str]) -> None:
    if argv[:1] == ["moto"]:
        serve_moto(Path(argv[1]), Path(argv[2]).read_text().split() if len(argv) > 2 else None)
    elif argv[:1] == ["proxy"]:
        asyncio.run(_proxy(int(argv[1]), float(argv[2])))
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
