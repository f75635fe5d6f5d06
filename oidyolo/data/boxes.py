"""Streaming extraction of one class's boxes from an Open Images bbox CSV.

The v6 train CSV is 2.26 GB and 14.6M rows; the tools users have today load it whole into pandas (about 7 GB of
memory). We scan the raw bytes block by block for ``,<MID>,`` (the LabelName field), so memory stays at two blocks
and the time is close to ``grep -F``; only the matching lines are parsed, by header name, with pyarrow, and
validated column-wise. Bad rows are counted and skipped (logged with examples) or, with ``strict``, refused.
"""

from __future__ import annotations

import io
import mmap
import os
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from oidyolo.errors import DataFormatError

REQUIRED = ("ImageID", "LabelName", "XMin", "XMax", "YMin", "YMax")
ATTRIBUTES = ("IsOccluded", "IsTruncated", "IsGroupOf", "IsDepiction", "IsInside")
COORDS = ("XMin", "XMax", "YMin", "YMax")

BOX_SCHEMA = pa.schema(
    [
        ("ImageID", pa.string()),
        ("Source", pa.string()),
        ("LabelName", pa.string()),
        ("Confidence", pa.float32()),
        *[(c, pa.float64()) for c in COORDS],
        *[(a, pa.int8()) for a in ATTRIBUTES],
    ]
)

IMAGE_ID = re.compile(r"^[0-9a-f]{16}$")
# Maps every control byte (NUL, ESC, a lone CR, ...) to a non-ASCII one, so ``isascii()`` after it checks both at
# once: no valid Open Images row holds either, XML cannot hold most control bytes, and a lone CR splits a row in two.
_FLAG_CONTROL = bytes(0x80 if b < 0x20 or b == 0x7F else b for b in range(256))
_NUMBER = r"^[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?$"
# Coordinates a hair outside [0, 1] are rounding noise; anything further is an invalid box.
_COORD_SLACK = 1e-4


@dataclass
class BadRows:
    """Counts of skipped rows by reason, with a few examples each."""

    counts: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def add(self, reason: str, rows: Iterable[bytes | str], n: int | None = None) -> None:
        rows = list(rows)
        self.counts[reason] += len(rows) if n is None else n
        keep = self.examples.setdefault(reason, [])
        for row in rows[: 3 - len(keep)]:
            text = row.decode("ascii", "backslashreplace") if isinstance(row, bytes) else row
            keep.append(text[:200])

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def summary(self) -> str:
        parts = []
        for reason, n in self.counts.most_common():
            examples = "; ".join(repr(e) for e in self.examples.get(reason, []))
            parts.append(f"{n} {reason} (e.g. {examples})")
        return ", ".join(parts)


@dataclass(frozen=True)
class Header:
    columns: tuple[str, ...]

    @classmethod
    def parse(cls, line: bytes, *, where: str) -> Header:
        try:
            text = line.decode("utf-8-sig").strip()
        except UnicodeDecodeError:
            raise DataFormatError(f"{where}: the header row is not UTF-8 text") from None
        columns = tuple(c.strip().strip('"') for c in text.split(","))
        missing = [c for c in REQUIRED if c not in columns]
        if missing:
            raise DataFormatError(
                f"{where}: not an Open Images bbox CSV: missing column(s) {', '.join(missing)} "
                f"(found: {', '.join(columns) or 'nothing'})"
            )
        dupes = [c for c, n in Counter(columns).items() if n > 1]
        if dupes:
            raise DataFormatError(f"{where}: duplicate column(s) {', '.join(dupes)} in the header")
        return cls(columns)

    def index(self, name: str) -> int:
        return self.columns.index(name)


def read_header(path: str | Path) -> Header:
    with open(path, "rb") as fh:
        return Header.parse(fh.readline(), where=str(path))


def iter_matching_lines(path: str | Path, mids: Iterable[str], *, window: int = 64 << 20) -> Iterator[bytes]:
    """Yield the raw data lines whose LabelName is one of ``mids`` (without line terminators), in file order.

    The file is mapped one window at a time and searched in one pass for every MID at once, so no byte is copied
    unless its line matches and resident memory stays near one window. Each line holding a ``,MID,`` is yielded
    once, however many MIDs it holds (a MID may also appear in another field: the parser later keeps only rows
    whose LabelName matches), so a line yielded twice is a line that is twice in the file.
    """
    mids = list(mids)
    with open(path, "rb") as fh:
        header = Header.parse(fh.readline(), where=str(path))
        pos, size = fh.tell(), os.fstat(fh.fileno()).st_size
        li = header.index("LabelName")
        if li in (0, len(header.columns) - 1):  # never so in Open Images; parse every line instead
            yield from _matching_lines_slow(fh, li, set(mids))
            return
        hits_in = _hit_finder([mid.encode("ascii") for mid in mids])
        while pos < size:
            base = pos - pos % mmap.ALLOCATIONGRANULARITY
            length = min(window, size - base)
            with mmap.mmap(fh.fileno(), length, offset=base, access=mmap.ACCESS_READ) as mm:
                start = pos - base
                cut = length if base + length == size else mm.rfind(b"\n", start, length) + 1
                if cut <= start:  # one line longer than the window
                    window *= 2
                    continue
                line_end = -1
                for hit in hits_in(mm, start, cut):
                    if hit < line_end:  # another MID in the line just yielded
                        continue
                    line_start = max(start, mm.rfind(b"\n", start, hit) + 1)
                    line_end = mm.find(b"\n", hit, cut)
                    if line_end == -1:
                        line_end = cut
                    yield mm[line_start:line_end].rstrip(b"\r")
            pos = base + cut


def _hit_finder(mids: list[bytes]) -> Callable[[mmap.mmap, int, int], Iterator[int]]:
    """A function giving the offsets of the ``,MID,`` in ``buf[start:cut]``, ascending.

    One regular-expression pass finds all MIDs at once (``re`` factors out their common prefix, so the cost hardly
    grows with their number, which matters for hierarchy expansion); ``,MID`` is consumed and the closing comma only
    looked ahead at, so two hits that share a comma are both found, exactly as a search per ``,MID,`` would.
    """
    mids = list(dict.fromkeys(mids))
    if any(b"," in mid for mid in mids):  # the regex's overlap argument needs comma-free MIDs; never so in practice
        needles = [b"," + mid + b"," for mid in mids]

        def each_needle(buf: mmap.mmap, start: int, cut: int) -> Iterator[int]:
            hits = []
            for needle in needles:
                hit = buf.find(needle, start, cut)
                while hit != -1:
                    hits.append(hit)
                    hit = buf.find(needle, hit + 1, cut)
            return iter(sorted(hits))

        return each_needle
    unique = sorted(mids, key=len, reverse=True)
    pattern = re.compile(b",(" + b"|".join(re.escape(mid) for mid in unique) + b")(?=,)")
    return lambda buf, start, cut: (m.start() for m in pattern.finditer(buf, start, cut))


def _matching_lines_slow(fh: BinaryIO, li: int, mids: set[str]) -> Iterator[bytes]:
    for line in fh:
        line = line.rstrip(b"\r\n")
        fields = line.split(b",")
        if len(fields) > li and fields[li].decode("ascii", "replace") in mids:
            yield line


def scan_boxes(
    path: str | Path,
    mids: Iterable[str],
    *,
    strict: bool = False,
    window: int = 64 << 20,
) -> tuple[pa.Table, BadRows]:
    """All valid boxes whose LabelName is in ``mids``, as a table with :data:`BOX_SCHEMA`, plus skipped-row counts.

    With ``strict`` the first bad row raises :class:`DataFormatError` instead of being skipped.
    """
    path = Path(path)
    header = read_header(path)
    mids = list(dict.fromkeys(mids))
    bad = BadRows()
    lines = list(iter_matching_lines(path, mids, window=window))
    unique = list(dict.fromkeys(lines))
    ncols, li = len(header.columns), header.index("LabelName")
    wanted = {mid.encode("utf-8", "surrogateescape") for mid in mids}

    def of_class(line: bytes) -> bool:
        """Whether a line the byte scan found is a row of these classes (the MID may sit in another field of
        another class's row). A line of the wrong width cannot tell: it counts as one, and as a bad row."""
        fields = line.split(b",")
        return len(fields) != ncols or fields[li] in wanted

    if len(unique) != len(lines):
        dupes = {line: n for line, n in (Counter(lines) - Counter(unique)).items() if of_class(line)}
        if dupes:
            bad.add("duplicate rows", list(dupes), n=sum(dupes.values()))
    joined = b"\n".join(unique)
    clean = joined.translate(_FLAG_CONTROL).isascii()  # one pass over all the bytes; the usual answer is yes
    good: list[bytes] = []
    for line in unique:
        if not clean and not line.translate(_FLAG_CONTROL).isascii():
            if of_class(line):
                what = "a non-ASCII byte" if not line.isascii() else "a control character (NUL, tab, CR, ESC, ...)"
                bad.add(f"rows with {what}", [line])
        elif line.count(b",") != ncols - 1:
            bad.add(f"rows without {ncols} fields (truncated or malformed)", [line])
        else:
            good.append(line)  # the parser keeps only the rows whose LabelName is one of the MIDs
    table = _parse(good, header, mids, bad, joined=joined if len(good) == len(unique) else None)
    if strict and bad.total:
        raise DataFormatError(f"{path}: bad rows for {', '.join(mids)}: {bad.summary()}")
    return table, bad


def _parse(lines: list[bytes], header: Header, mids: list[str], bad: BadRows, joined: bytes | None = None) -> pa.Table:
    """Parse ``lines`` (``joined``: the same lines already joined with newlines)."""
    if not lines:
        return BOX_SCHEMA.empty_table()
    raw = pacsv.read_csv(
        io.BytesIO(b"\n".join(lines) if joined is None else joined),
        read_options=pacsv.ReadOptions(column_names=list(header.columns), block_size=64 << 20),
        parse_options=pacsv.ParseOptions(quote_char=False),
        convert_options=pacsv.ConvertOptions(
            column_types={c: pa.string() for c in header.columns}, strings_can_be_null=False
        ),
    )
    ok = pc.is_in(raw["LabelName"], value_set=pa.array(mids))  # a needle inside another field is not a match
    ok = _check(raw, ok, bad, "rows with an ImageID that is not 16 hex characters", _valid_id(raw["ImageID"]))
    numeric = [c for c in (*COORDS, "Confidence") if c in header.columns]
    for col in numeric:
        ok = _check(raw, ok, bad, f"rows with a non-numeric or NaN {col}", pc.match_substring_regex(raw[col], _NUMBER))
    attrs_present = [a for a in ATTRIBUTES if a in header.columns]
    for col in attrs_present:
        valid = pc.is_in(raw[col], value_set=pa.array(["1", "0", "-1"]))
        ok = _check(raw, ok, bad, f"rows with {col} not in 1/0/-1", valid)
    raw = raw.filter(ok)
    coords = {c: pc.cast(raw[c], pa.float64()) for c in COORDS}
    inside = None
    for c in COORDS:
        cond = pc.and_(pc.greater_equal(coords[c], -_COORD_SLACK), pc.less_equal(coords[c], 1 + _COORD_SLACK))
        inside = cond if inside is None else pc.and_(inside, cond)
    ordered = pc.and_(pc.less(coords["XMin"], coords["XMax"]), pc.less(coords["YMin"], coords["YMax"]))
    valid = pa.array([True] * raw.num_rows, pa.bool_())
    valid = _check(raw, valid, bad, "rows with a coordinate outside [0, 1] or NaN", inside)
    valid = _check(raw, valid, bad, "rows with XMin >= XMax or YMin >= YMax", ordered)
    raw = raw.filter(valid)
    coords = {c: pc.max_element_wise(pc.min_element_wise(pc.cast(raw[c], pa.float64()), 1.0), 0.0) for c in COORDS}
    m = raw.num_rows
    columns = {
        "ImageID": raw["ImageID"],
        "Source": raw["Source"] if "Source" in header.columns else pa.array([""] * m),
        "LabelName": raw["LabelName"],
        "Confidence": pc.cast(raw["Confidence"], pa.float32()) if "Confidence" in header.columns else [1.0] * m,
        **coords,
        **{a: pc.cast(raw[a], pa.int8()) if a in header.columns else pa.array([-1] * m, pa.int8()) for a in ATTRIBUTES},
    }
    return pa.table(columns, schema=BOX_SCHEMA)


def _valid_id(ids: pa.ChunkedArray) -> pa.ChunkedArray:
    return pc.match_substring_regex(ids, IMAGE_ID.pattern)


def _check(raw: pa.Table, ok: pa.Array, bad: BadRows, reason: str, valid: pa.Array) -> pa.Array:
    """Record rows that pass ``ok`` but fail ``valid``; return ``ok & valid``."""
    failing = pc.and_(ok, pc.invert(valid))
    n = pc.sum(failing).as_py() or 0
    if n:
        rows = raw.filter(failing).slice(0, 3).to_pylist()
        bad.add(reason, [",".join(str(v) for v in row.values()) for row in rows], n=n)
    return pc.and_(ok, valid)
