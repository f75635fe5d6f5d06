"""Stage 2 benchmark: downloading images from an S3-compatible server on loopback, without and with latency.

Setup (all on 127.0.0.1): moto's S3 server (``bench/s3_servers.py moto``) holds ~500 realistic JPEGs (1024x768,
300-400 KB, noise and gradients; generated once into /tmp/oidyolo-bench/jpegs) as public-read objects of
``s3://open-images-dataset/train/``. Clients reach it through a TCP delay line (``bench/s3_servers.py proxy``) with
0 ms or ``--latency`` (default 50 ms) per request and per new connection, so the two settings differ only in latency.

Compared side by side, each in a fresh process under GNU time (CPU includes child processes):

* ours: :func:`oidyolo.data.download.download_images` (32 workers, fresh store each run);
* boto3 pool: one UNSIGNED boto3 client and ``download_file`` per image on a thread pool (the official downloader
  and FiftyOne), with 32 threads (ours' concurrency) and with 5 (the official downloader's default);
* aws per process: ``os.system("aws s3 --no-sign-request cp ...")`` per image on 20 threads (OIDv4_ToolKit,
  oidv6), on a subset (``--aws-images``) since each image costs a whole ``aws`` start-up.

Rounds interleave the methods; rates are medians over rounds. Server CPU (moto + proxy, from /proc) is reported
per image too, since on a 2-core machine the server competes with the client for the same cores.

    python bench/download_bench.py            # ~500 images, 3 rounds, 0 and 50 ms
    python bench/download_bench.py --quick    # 40 images, 1 round: a smoke run
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
from _common import BENCH_TMP, PY, ROOT, Run, fmt, log, machine, median, run_measured, table

BENCH = ROOT / "bench"
JPEG_DIR = BENCH_TMP / "jpegs"
SIZE_RANGE = (300_000, 400_000)
TARGET_VS_AWS = 30.0


def image_ids(n: int) -> list[str]:
    return [hashlib.blake2b(f"bench:{i}".encode(), digest_size=8).hexdigest() for i in range(n)]


def make_jpeg(seed: int) -> bytes:
    """A 1024x768 photo-like JPEG of 300-400 KB: sine gradients, 16-px blobs and pixel noise; quality tuned."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    h, w = 768, 1024
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.zeros((h, w, 3), np.float32)
    for c in range(3):
        a, b, phase = rng.uniform(-1, 1, 3)
        img[..., c] = 128 + 60 * np.sin(x / rng.uniform(50, 300) * a + y / rng.uniform(50, 300) * b + phase * 6)
    img += np.kron(rng.normal(0, 40, (h // 16, w // 16, 3)).astype(np.float32), np.ones((16, 16, 1), np.float32))
    img += rng.normal(0, rng.uniform(17, 23), (h, w, 3)).astype(np.float32)
    pil = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    quality = 87
    for _ in range(12):
        buf = io.BytesIO()
        pil.save(buf, "JPEG", quality=quality)
        size = buf.tell()
        if size < SIZE_RANGE[0]:
            quality += 1
        elif size > SIZE_RANGE[1]:
            quality -= 1
        else:
            break
    return buf.getvalue()


def ensure_jpegs(n: int) -> list[str]:
    ids = image_ids(n)
    JPEG_DIR.mkdir(parents=True, exist_ok=True)
    todo = [(i, image_id) for i, image_id in enumerate(ids) if not (JPEG_DIR / f"{image_id}.jpg").exists()]
    if todo:
        log(f"generating {len(todo)} JPEGs into {JPEG_DIR} (once) ...")
    for i, image_id in todo:
        tmp = JPEG_DIR / f".{image_id}.part"
        tmp.write_bytes(make_jpeg(i))
        tmp.replace(JPEG_DIR / f"{image_id}.jpg")
    return ids


class Server:
    """A bench/s3_servers.py process; ``port`` once it prints READY."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen([PY, str(BENCH / "s3_servers.py"), *args], stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if not line.startswith("READY "):
            self.proc.kill()
            raise SystemExit(f"server {args} did not start: {line!r}")
        self.port = int(line.split()[1])

    def cpu(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def check_copy(dest: Path, ids: list[str]) -> None:
    got = sorted(p.name for p in (dest / "train").glob("*.jpg"))
    want = sorted(f"{i}.jpg" for i in ids)
    if got != want:
        raise SystemExit(f"{dest}: {len(got)} files, expected {len(want)}")
    for image_id in ids[:: max(1, len(ids) // 20)]:
        if (dest / "train" / f"{image_id}.jpg").read_bytes() != (JPEG_DIR / f"{image_id}.jpg").read_bytes():
            raise SystemExit(f"{dest}: {image_id}.jpg differs from the source")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="40 images (aws: 10), 1 round")
    ap.add_argument("--images", type=int, default=500)
    ap.add_argument("--aws-images", type=int, default=100, help="subset for the aws-per-process baseline")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--latency", type=float, default=0.05, help="injected per-request latency in seconds")
    ap.add_argument("--workers", type=int, default=32, help="ours (and the matching boto3 pool)")
    ap.add_argument(
        "--compare-with",
        type=Path,
        metavar="DIR",
        help="also time ours with another copy of the package (PYTHONPATH=DIR), e.g. before a change",
    )
    args = ap.parse_args(argv)
    n, n_aws, rounds = (40, 10, 1) if args.quick else (args.images, args.aws_images, args.rounds)
    ids = ensure_jpegs(max(n, n_aws))
    total_mb = sum((JPEG_DIR / f"{i}.jpg").stat().st_size for i in ids[:n]) / 1e6
    work = BENCH_TMP / "download-runs"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    id_files = {}
    for name, subset in (("all", ids[:n]), ("aws", ids[:n_aws]), ("warm", ids[:8])):
        id_files[name] = work / f"ids-{name}.txt"
        id_files[name].write_text("\n".join(subset) + "\n")

    env = dict(
        os.environ,
        AWS_DEFAULT_REGION="us-east-1",
        AWS_EC2_METADATA_DISABLED="true",
        AWS_CONFIG_FILE="/dev/null",
        AWS_SHARED_CREDENTIALS_FILE="/dev/null",
        PYTHONDONTWRITEBYTECODE="1",
    )
    methods = [  # name, client, workers, id set, PYTHONPATH
        (f"ours, download_images ({args.workers} workers)", "ours", args.workers, "all", None),
        (f"boto3 pool, download_file ({args.workers} threads)", "boto3", args.workers, "all", None),
        ("boto3 pool, download_file (5 threads, official default)", "boto3", 5, "all", None),
        ("aws s3 cp per image (20 threads, OIDv4/oidv6)", "aws", 20, "aws", None),
    ]
    if args.compare_with:
        other = str(args.compare_with.resolve())
        methods.append((f"ours, package from {args.compare_with}", "ours", args.workers, "all", other))
    (work / "ids-server.txt").write_text("\n".join(ids) + "\n")
    log(f"starting moto with {len(ids)} objects ...")
    moto = Server("moto", str(JPEG_DIR), str(work / "ids-server.txt"))
    counter = 0
    sections = []
    summary = []
    try:
        for latency in (0.0, args.latency):
            proxy = Server("proxy", str(moto.port), str(latency))
            endpoint = f"http://127.0.0.1:{proxy.port}"

            def run(client: str, workers: int, subset: str, pythonpath: str | None) -> tuple[Run, float]:
                nonlocal counter
                counter += 1
                dest = work / f"run-{counter}"
                s0 = moto.cpu() + proxy.cpu()  # noqa: B023 (used within this iteration)
                cmd = [PY, str(BENCH / "download_clients.py"), client, endpoint, str(dest), str(id_files[subset])]  # noqa: B023
                run_env = dict(env, PYTHONPATH=pythonpath) if pythonpath else env
                r = run_measured([*cmd, "--workers", str(workers)], env=run_env)
                server_cpu = moto.cpu() + proxy.cpu() - s0  # noqa: B023
                if r.rc:
                    raise SystemExit(f"{client} failed (exit {r.rc})")
                check_copy(dest, id_files[subset].read_text().split())
                shutil.rmtree(dest)
                return r, server_cpu

            for _, client, workers, _, pythonpath in methods:  # warm-up: imports, connections, moto's first requests
                run(client, workers, "warm", pythonpath)
            results: dict[str, list[tuple[Run, float]]] = {m[0]: [] for m in methods}
            for i in range(rounds):
                for name, client, workers, subset, pythonpath in methods:
                    results[name].append(run(client, workers, subset, pythonpath))
                    r = results[name][-1][0]
                    log(f"latency {latency * 1000:.0f} ms, round {i + 1}/{rounds}, {name}: {r.wall:.2f} s")
            proxy.stop()

            rates = {}
            rows = []
            for name, _, _, subset, _ in methods:
                count = len(id_files[subset].read_text().split())
                runs = results[name]
                rates[name] = median([count / r.wall for r, _ in runs])
                rows.append(
                    [
                        name,
                        count,
                        fmt(rates[name], 1),
                        "",
                        fmt(median([r.cpu / count for r, _ in runs]) * 1000, 1),
                        fmt(median([s / count for _, s in runs]) * 1000, 1),
                        f"{max(r.maxrss_mb for r, _ in runs):,.0f}",
                        len(runs),
                    ]
                )
            ours_rate = rates[methods[0][0]]
            ours_by_round = [len(id_files["all"].read_text().split()) / r.wall for r, _ in results[methods[0][0]]]
            for row, (name, _, _, subset, _) in zip(rows, methods, strict=True):
                count = len(id_files[subset].read_text().split())
                per_round = sorted(o / (count / r.wall) for o, (r, _) in zip(ours_by_round, results[name], strict=True))
                spread = f" ({per_round[0]:.2f}-{per_round[-1]:.2f})" if len(per_round) > 1 else ""
                row[3] = f"**{ours_rate / rates[name]:.2f}x**{spread}"
            title = f"latency {latency * 1000:.0f} ms"
            sections.append(
                f"#### {title}\n\n"
                + table(
                    [
                        "method",
                        "images",
                        "images/s (median)",
                        "ours ÷ this (per-round range)",
                        "client CPU ms/image",
                        "server CPU ms/image",
                        "peak RSS MiB",
                        "runs",
                    ],
                    rows,
                )
            )
            summary.append((latency, rates, methods))
    finally:
        moto.stop()
        shutil.rmtree(work, ignore_errors=True)

    print(f"\n### Stage 2: image download from moto S3 on loopback ({n} JPEGs, {total_mb:.0f} MB)\n")
    print(f"Machine: {machine()}\n")
    print("\n\n".join(sections))
    (l0, r0, m), (l1, r1, _) = summary
    ours, boto32, aws = m[0][0], m[1][0], m[3][0]
    print()
    for lat, rates in ((l0, r0), (l1, r1)):
        ok = rates[ours] / rates[aws] >= TARGET_VS_AWS and rates[ours] >= rates[boto32]
        print(
            f"- {lat * 1000:.0f} ms: ours is {rates[ours] / rates[aws]:.1f}x the per-process aws rate and "
            f"{rates[ours] / rates[boto32]:.2f}x the boto3 pool's (same concurrency): target (>= {TARGET_VS_AWS:.0f}x "
            f"aws and >= boto3) {'HOLDS' if ok else 'MISSED'}"
        )
    print(
        f"- latency {l1 * 1000:.0f} ms vs 0 ms: ours keeps {r1[ours] / r0[ours]:.0%} of its rate "
        f"(boto3 32 threads {r1[boto32] / r0[boto32]:.0%}, boto3 5 threads {r1[m[2][0]] / r0[m[2][0]]:.0%}, "
        f"aws {r1[aws] / r0[aws]:.0%})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
