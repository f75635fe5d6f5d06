"""Drivers for download_bench.py: each downloads the listed images from an S3-compatible endpoint in this process.

    python bench/download_clients.py ours  ENDPOINT DEST IDS_FILE [--workers 32]
    python bench/download_clients.py boto3 ENDPOINT DEST IDS_FILE [--workers 32]
    python bench/download_clients.py aws   ENDPOINT DEST IDS_FILE [--workers 20]

* ``ours``: :func:`oidyolo.data.download.download_images` with ``Remote("s3://open-images-dataset",
  {"endpoint_url": ENDPOINT})`` into the store DEST (every image fetched, verified, written atomically).
* ``boto3``: the official downloader / FiftyOne: one boto3 client with ``signature_version=UNSIGNED`` and
  ``max_pool_connections=max(10, workers)``, ``download_file`` per image on a thread pool.
* ``aws``: OIDv4_ToolKit / oidv6: ``os.system("aws s3 --no-sign-request --only-show-errors cp s3://... DIR")``, one
  shell and ``aws`` process per image, on a 20-thread pool.

Prints the number of files present in DEST afterwards.
"""

from __future__ import annotations

import argparse
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

BUCKET = "open-images-dataset"
SPLIT = "train"


def ours(endpoint: str, dest: Path, ids: list[str], workers: int) -> None:
    from oidyolo.data.download import DownloadConfig, download_images
    from oidyolo.data.sources import Remote

    entries = download_images(
        ids,
        split=SPLIT,
        remote=Remote(f"s3://{BUCKET}", {"endpoint_url": endpoint}),
        store=dest,
        config=DownloadConfig(workers=workers, progress_interval=3600),
    )
    bad = [e for e in entries if not e.ok]
    if bad:
        raise SystemExit(f"{len(bad)} images not downloaded, e.g. {bad[0]}")


def boto3_pool(endpoint: str, dest: Path, ids: list[str], workers: int) -> None:
    import boto3
    from botocore import UNSIGNED
    from botocore.config import Config

    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        config=Config(signature_version=UNSIGNED, max_pool_connections=max(10, workers)),
    )
    folder = dest / SPLIT
    folder.mkdir(parents=True, exist_ok=True)

    def one(image_id: str) -> None:
        client.download_file(BUCKET, f"{SPLIT}/{image_id}.jpg", str(folder / f"{image_id}.jpg"))

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(one, ids))


def aws_cli(endpoint: str, dest: Path, ids: list[str], workers: int) -> None:
    folder = dest / SPLIT
    folder.mkdir(parents=True, exist_ok=True)

    def one(image_id: str) -> None:
        command = (
            f"aws s3 --no-sign-request --only-show-errors --endpoint-url {endpoint} "
            f'cp s3://{BUCKET}/{SPLIT}/{image_id}.jpg "{folder}"'
        )
        os.system(command)  # exactly as OIDv4_ToolKit and oidv6 do; errors are ignored there too

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(one, ids))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("method", choices=["ours", "boto3", "aws"])
    ap.add_argument("endpoint")
    ap.add_argument("dest", type=Path)
    ap.add_argument("ids", type=Path)
    ap.add_argument("--workers", type=int)
    args = ap.parse_args(argv)
    ids = args.ids.read_text().split()
    if args.method == "ours":
        ours(args.endpoint, args.dest, ids, args.workers or 32)
    elif args.method == "boto3":
        boto3_pool(args.endpoint, args.dest, ids, args.workers or 32)
    else:
        aws_cli(args.endpoint, args.dest, ids, args.workers or 20)
    print(len(list((args.dest / SPLIT).glob("*.jpg"))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
