"""Write a full-scale synthetic Open Images v6 train bbox CSV (21 columns, ~14.6M rows, ~2.2 GB).

Layout as ``oidv6-train-annotations-bbox.csv``: the real header, rows grouped and sorted by ImageID (16 lowercase
hex characters), about 8 boxes per image, LabelName drawn from the 601 real boxable MIDs with Zipf-like
frequencies, and the classes the benchmarks select at realistic shares (Apple ``/m/014j1m`` ~0.10 %, Orange
``/m/0cyhj_`` ~0.15 % of rows, and Person ``/m/01g317`` with ~1.28M boxes, 8.76 %, as the biggest real classes
(Person, Man, Tree, Clothing) have in the real train CSV). Coordinates have 6 decimals with XMin < XMax and
YMin < YMax, attributes are in {0, 1, -1}; ~92 % of rows are ``xclick`` rows with 8 XClick values, the rest
``activemil`` with XClicks of -1 (real rows average 154.6 bytes; these average ~152).

Everything is vectorised with numpy: each block of rows is built as a fixed-width byte matrix with NUL padding,
the padding is dropped with one mask, and the block is written at once (about 30-60 s for the full file on one core).

    python bench/make_big_csv.py /tmp/oidyolo-bench/oidv6-train-annotations-bbox.csv
    python bench/make_big_csv.py --rows 200000 /tmp/small.csv
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CLASSES_CSV = ROOT / "oidyolo" / "resources" / "class-descriptions-boxable.csv"

HEADER = (
    "ImageID,Source,LabelName,Confidence,XMin,XMax,YMin,YMax,IsOccluded,IsTruncated,IsGroupOf,IsDepiction,IsInside,"
    "XClick1X,XClick2X,XClick3X,XClick4X,XClick1Y,XClick2Y,XClick3Y,XClick4Y"
)
APPLE, ORANGE, PERSON = "/m/014j1m", "/m/0cyhj_", "/m/01g317"
SHARES = {APPLE: 0.0010, ORANGE: 0.0015, PERSON: 1_280_000 / 14_610_229}
FULL_ROWS = 14_610_229  # v4 train boxes; v6 train has 14.6M as well
BOXES_PER_IMAGE = 8.0
ACTIVEMIL_SHARE = 0.08
BLOCK_ROWS = 1 << 19

_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
_POW10 = 10 ** np.arange(5, -1, -1, dtype=np.int64)


def label_probabilities(mids: list[str], rng: np.random.Generator, zipf_s: float = 1.05) -> np.ndarray:
    """Zipf-like shares over the MIDs (random rank order), with Apple, Orange and Person pinned to their real shares."""
    p = 1.0 / np.arange(1, len(mids) + 1, dtype=np.float64) ** zipf_s
    p = p[rng.permutation(len(mids))]
    pinned = np.array([m in SHARES for m in mids])
    p[pinned] = 0.0
    p *= (1.0 - sum(SHARES.values())) / p.sum()
    for i, m in enumerate(mids):
        if m in SHARES:
            p[i] = SHARES[m]
    return p


def _fixed(strings: list[bytes], width: int) -> np.ndarray:
    """(len(strings), width) uint8, NUL-padded on the right."""
    return np.array(strings, dtype=f"S{width}").view(np.uint8).reshape(len(strings), width)


def _hex_ids(values: np.ndarray) -> np.ndarray:
    shifts = np.arange(60, -4, -4, dtype=np.uint64)
    nibbles = (values[:, None] >> shifts) & np.uint64(15)
    return _HEX[nibbles.astype(np.intp)]


def _coord_text(micro: np.ndarray) -> np.ndarray:
    """(n, 8) uint8 text of micro/1e6 with 6 decimals ("0.123456" or "1.000000")."""
    out = np.empty((micro.shape[0], 8), dtype=np.uint8)
    whole = micro // 1_000_000
    frac = micro - whole * 1_000_000
    out[:, 0] = 48 + whole
    out[:, 1] = ord(".")
    out[:, 2:] = 48 + (frac[:, None] // _POW10) % 10
    return out


def _comma(n: int) -> np.ndarray:
    return np.full((n, 1), ord(","), dtype=np.uint8)


def _box_pairs(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    lo = rng.integers(0, 1_000_000, size=n)
    hi = rng.integers(0, 1_000_001, size=n)
    a, b = np.minimum(lo, hi), np.maximum(lo, hi)
    b = np.where(b <= a, a + 1, b)  # XMin < XMax strictly
    return a, b


def build_block(
    rng: np.random.Generator,
    ids: np.ndarray,
    label_idx: np.ndarray,
    mid_matrix: np.ndarray,
) -> bytes:
    """CSV text of one block of rows (``ids`` already repeated per row, ascending)."""
    n = ids.shape[0]
    activemil = rng.random(n) < ACTIVEMIL_SHARE
    source = np.where(activemil[:, None], _fixed([b"activemil"], 9), _fixed([b"xclick"], 9))
    x1, x2 = _box_pairs(rng, n)
    y1, y2 = _box_pairs(rng, n)
    attrs = rng.choice(np.array([0, 1, -1]), p=[0.62, 0.33, 0.05], size=(n, 5))
    attrs[activemil] = np.where(rng.random((int(activemil.sum()), 5)) < 0.5, 0, -1)
    attr_text = _fixed([b"0", b"1", b"-1"], 2)
    parts = [_hex_ids(ids), _comma(n), source, _comma(n), mid_matrix[label_idx], _comma(n)]
    parts += [np.full((n, 1), ord("1"), dtype=np.uint8), _comma(n)]
    for v in (x1, x2, y1, y2):
        parts += [_coord_text(v), _comma(n)]
    for k in range(5):
        parts += [attr_text[attrs[:, k] % 3], _comma(n)]  # 0 -> "0", 1 -> "1", -1 -> index 2 -> "-1"
    # XClicks: the four extreme points; X1..X4 are a permutation of xmin/xmax plus two points between.
    clicks = []
    for lo, hi in ((x1, x2), (y1, y2)):
        inner = lo[:, None] + (rng.random((n, 2)) * (hi - lo)[:, None]).astype(np.int64)
        pts = np.stack([lo, inner[:, 0], hi, inner[:, 1]], axis=1)
        order = np.argsort(rng.random((n, 4)), axis=1)
        clicks.append(np.take_along_axis(pts, order, axis=1))
    minus_one = np.zeros((n, 8), dtype=np.uint8)
    minus_one[:, 0], minus_one[:, 1] = ord("-"), ord("1")
    for j in range(8):
        text = _coord_text(clicks[j // 4][:, j % 4])
        parts.append(np.where(activemil[:, None], minus_one, text))
        parts.append(_comma(n) if j < 7 else np.full((n, 1), ord("\n"), dtype=np.uint8))
    matrix = np.concatenate(parts, axis=1)
    return matrix[matrix != 0].tobytes()


def write_big_csv(path: Path, rows: int = FULL_ROWS, *, seed: int = 0, verbose: bool = True) -> dict:
    rng = np.random.default_rng(seed)
    with open(CLASSES_CSV, newline="") as fh:
        mids = [r[0] for r in csv.reader(fh) if r]
    probs = label_probabilities(mids, rng)
    mid_matrix = _fixed([m.encode() for m in mids], 12)
    # Images: sorted distinct 64-bit IDs, each with a box count (>= 1, mean ~8) until the rows are used up.
    n_images = int(rows / BOXES_PER_IMAGE * 1.1) + 16
    counts = 1 + rng.poisson(BOXES_PER_IMAGE - 1, size=n_images)
    cum = np.cumsum(counts)
    n_images = int(np.searchsorted(cum, rows)) + 1
    counts = counts[:n_images]
    counts[-1] -= int(cum[n_images - 1] - rows)
    image_ids = np.unique(rng.integers(0, 2**64, size=int(n_images * 1.01) + 8, dtype=np.uint64))
    image_ids = np.sort(rng.choice(image_ids, size=n_images, replace=False))
    per_row = np.repeat(image_ids, counts)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    t0 = time.perf_counter()
    label_counts = np.zeros(len(mids), dtype=np.int64)
    with open(tmp, "wb") as out:
        out.write(HEADER.encode() + b"\n")
        for start in range(0, rows, BLOCK_ROWS):
            ids = per_row[start : start + BLOCK_ROWS]
            labels = rng.choice(len(mids), p=probs, size=ids.shape[0])
            label_counts += np.bincount(labels, minlength=len(mids))
            out.write(build_block(rng, ids, labels, mid_matrix))
            if verbose and (start // BLOCK_ROWS) % 8 == 0:
                print(f"  {start + ids.shape[0]:,}/{rows:,} rows, {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    os.replace(tmp, path)
    info = {
        "path": str(path),
        "rows": rows,
        "images": n_images,
        "bytes": path.stat().st_size,
        "apple_rows": int(label_counts[mids.index(APPLE)]),
        "orange_rows": int(label_counts[mids.index(ORANGE)]),
        "person_rows": int(label_counts[mids.index(PERSON)]),
        "seconds": round(time.perf_counter() - t0, 1),
    }
    return info


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("--rows", type=int, default=FULL_ROWS)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    info = write_big_csv(args.out, args.rows, seed=args.seed)
    print(info)
    return 0


if __name__ == "__main__":
    sys.exit(main())
