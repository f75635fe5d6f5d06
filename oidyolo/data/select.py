"""Per-class selection: extract a class's boxes from the big CSV, then pick images with filters and a seeded limit.

Filter semantics (documented in the README): ``filters`` maps an attribute (IsOccluded, IsTruncated, IsGroupOf,
IsDepiction, IsInside) to the values a box may have (1, 0, -1 = unknown). An image is selected for a class only if
*every* box of that class in it passes, so a filter never leaves an object of the class unlabelled. Boxes of
other selected classes that fail their filters stay in the VOC file, marked ``difficult``.

The limit ranks images by ``blake2b(seed:ImageID)``: the choice is the same on every run and machine, does not depend
on row order, and raising the limit keeps every image chosen before (no re-download).
"""

from __future__ import annotations

import hashlib
import sys
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from oidyolo.atomic import atomic_write
from oidyolo.data.boxes import ATTRIBUTES, BOX_SCHEMA, BadRows, check_strict, fixed_width_bytes, iter_boxes
from oidyolo.errors import ConfigError

ATTRIBUTE_VALUES = (1, 0, -1)
# lz4, dictionaries only for the few-valued columns (ImageIDs are mostly distinct) and no statistics (nothing reads
# these files by row-group predicates): 2.3x faster to write and 2x to read than the defaults for a class of 1.28M
# boxes, the same size
PARQUET_OPTIONS = {"compression": "lz4", "use_dictionary": ["Source", "LabelName"], "write_statistics": False}
SELECT_COLUMNS = ("ImageID", "Class", *BOX_SCHEMA.names[1:])
# Parsed boxes a job keeps in memory to select from (~400k boxes). A bigger class is selected from its parquet
# instead, a row group at a time: as fast (Person's 1.28M boxes, 102 MiB parsed: 2.2-2.5 s either way) and 70 MiB
# smaller, and a hierarchy request (Person with Man, Woman, Boy and Girl: ~3.7M boxes in the real train split) no
# longer needs memory for all of them.
KEEP_BYTES = 32 << 20
_STREAM_ROWS = 1 << 16  # rows read back from the parquet at a time

Filters = dict[str, tuple[int, ...]]


def normalize_filters(filters: Mapping[str, int | Sequence[int]] | None) -> Filters:
    """Validate ``{attribute: value or [values]}``; an empty mapping selects everything."""
    out: Filters = {}
    for key, values in (filters or {}).items():
        if key not in ATTRIBUTES:
            raise ConfigError(f"unknown filter attribute {key!r}; use one of {', '.join(ATTRIBUTES)}")
        vals = (values,) if isinstance(values, int) else tuple(values)
        if not vals or any(isinstance(v, bool) or v not in ATTRIBUTE_VALUES for v in vals):
            raise ConfigError(f"filter {key}: values must be a non-empty list of 1, 0, -1 (unknown); got {values!r}")
        out[key] = tuple(sorted(set(vals), reverse=True))
    return dict(sorted(out.items()))


def box_passes(boxes: pa.Table, filters: Filters) -> pa.ChunkedArray | pa.Array:
    """Boolean per box: does it satisfy every filter?"""
    ok = pa.array(np.ones(boxes.num_rows, dtype=bool))
    for key, values in filters.items():
        ok = pc.and_(ok, pc.is_in(boxes[key], value_set=pa.array(values, pa.int8())))
    return ok


_RANK_SLICE = 1 << 16  # image IDs hashed per slice: their Python objects never all exist at once


def rank_keys(image_ids: pa.Array | pa.ChunkedArray, seed: int) -> np.ndarray:
    """Each image's rank: its 8-byte ``blake2b(seed:ImageID)`` as a big-endian integer, so numpy orders them as the
    digests compare.

    Hashed a slice at a time, each ID as ``bytes`` cut from the column's own buffer when all are 16 characters (as
    every Open Images ID is): 0.92M IDs in 0.6 s and ~10 MiB, where a list of them as ``str`` took 0.9 s and 200
    MiB more."""
    prefix = hashlib.blake2b(f"{seed}:".encode(), digest_size=8)  # hashed once, copied per image: 2x faster

    def digest(image_id: bytes) -> bytes:
        h = prefix.copy()
        h.update(image_id)
        return h.digest()

    flat = image_ids.combine_chunks() if isinstance(image_ids, pa.ChunkedArray) else image_ids
    keys = np.empty(len(flat), ">u8")
    for lo in range(0, len(flat), _RANK_SLICE):
        part = _id_bytes(flat[lo : lo + _RANK_SLICE])
        keys[lo : lo + len(part)] = np.frombuffer(b"".join(map(digest, part)), ">u8")
    return keys


def _id_bytes(ids: pa.Array) -> list[bytes]:
    """The IDs' UTF-8 bytes: straight from the string buffer when each is 16 bytes without a NUL (numpy's ``S16``
    would strip trailing ones), so no ``str`` per ID; through Python strings otherwise."""
    raw = fixed_width_bytes(ids, 16)
    if raw is not None and raw.all():
        return raw.view("S16").tolist()
    return [i.encode() for i in ids.to_pylist()]


def _first(keys: np.ndarray, n: int) -> np.ndarray:
    """The positions of the ``n`` (>= 1) least ``keys``, ties to the earlier, as ``argsort(keys, kind="stable")[:n]``
    has them but in position order: a partition, then only the keys equal to the n-th sorted (0.01 s for 0.92M keys,
    where the sort took 0.14 s)."""
    native = keys.astype(np.uint64)  # a partition or sort of big-endian words is slower
    if n >= len(native):
        return np.arange(len(native))
    nth = np.partition(native, n - 1)[n - 1]
    below = native < nth
    tied = np.flatnonzero(native == nth)[: n - np.count_nonzero(below)]
    below[tied] = True
    return np.flatnonzero(below)


@dataclass(frozen=True)
class SelectStats:
    name: str
    boxes: int
    images: int
    eligible: int
    selected_images: int
    selected_boxes: int

    def line(self) -> str:
        return (
            f"{self.name}: {self.boxes} boxes in {self.images} images; {self.eligible} images pass the filters; "
            f"selected {self.selected_images} images with {self.selected_boxes} boxes"
        )


def select_images(
    boxes: pa.Table, *, name: str, filters: Filters, limit: int | None, seed: int
) -> tuple[pa.Table, SelectStats]:
    """The boxes (with a ``Class`` column) of the images chosen for class ``name``, sorted by ImageID.

    Whole-column arrow operations only, and none where it changes nothing (no filter, no limit reached, rows
    already in ImageID order as Open Images ships them): 0.1 s for a class of 1.28M boxes, where a Python string
    per image and a set of them per step took 1.5 s and 340 MB."""
    _check_limit(limit)
    ids = boxes["ImageID"]
    ordered, images = _run_of(ids)
    keep: pa.ChunkedArray | pa.Array | None = None  # the rows to keep; None: all of them
    failing = 0
    if filters:
        failing_ids = pc.unique(ids.filter(pc.invert(box_passes(boxes, filters))))
        if failing := len(failing_ids):
            keep = pc.invert(pc.is_in(ids, value_set=failing_ids))
    chosen_images = images - failing
    if limit is not None and chosen_images > limit:
        eligible = _distinct(ids if keep is None else ids.filter(keep), ordered)
        keep = pc.is_in(ids, value_set=eligible.take(_first(rank_keys(eligible, seed), limit)))
        chosen_images = limit
    chosen = boxes if keep is None else boxes.filter(keep)
    chosen = chosen.add_column(1, "Class", pa.repeat(name, chosen.num_rows))
    if not ordered:
        chosen = chosen.sort_by([("ImageID", "ascending")])
    stats = SelectStats(name, boxes.num_rows, images, images - failing, chosen_images, chosen.num_rows)
    return chosen, stats


def _check_limit(limit: int | None) -> None:
    if limit is not None and limit <= 0:
        raise ConfigError(f"limit must be a positive number of images per class (or null for all), got {limit}")


def _distinct(ids: pa.ChunkedArray, ordered: bool) -> pa.Array:
    """The distinct IDs (taken at the changes between neighbours when they are in order: no hash table)."""
    flat = ids.combine_chunks()
    if not ordered or len(flat) < 2:
        return pc.unique(flat)
    return flat.take(pa.array(_starts(flat)))


def _starts(ids: pa.Array) -> np.ndarray:
    """The positions where a new ID begins in ``ids`` (in order, not empty): 0 and each change between neighbours."""
    changes = np.flatnonzero(pc.not_equal(ids[:-1], ids[1:]).to_numpy(zero_copy_only=False)) + 1
    return np.concatenate([np.zeros(1, np.int64), changes])


def _run_of(ids: pa.ChunkedArray) -> tuple[bool, int]:
    """Whether the ImageIDs are in ascending order, and how many distinct ones there are (counted at the changes
    when they are in order: 0.02 s for 1.28M, where a hash table of them takes 0.27 s)."""
    flat = ids.combine_chunks() if isinstance(ids, pa.ChunkedArray) else ids
    if len(flat) < 2:
        return True, len(flat)
    if pc.all(pc.less_equal(flat[:-1], flat[1:])).as_py():
        return True, 1 + pc.sum(pc.not_equal(flat[:-1], flat[1:])).as_py()
    return False, len(pc.unique(flat))


def extract_class(
    csv_path: str | Path,
    mids: Sequence[str],
    out_parquet: str | Path | None,
    *,
    strict: bool = False,
    label: str = "",
    index: str | Path | None = None,
    keep_bytes: int = KEEP_BYTES,
    spill_dir: str | Path | None = None,
) -> pa.Table | Path:
    """Scan the big CSV (or read its ``index``) for ``mids``; write every valid box to ``out_parquet`` unless it is
    None, and return them: as the table of the parsed chunks (for a class of 1.28M boxes 102 MiB) or, once those
    outgrow ``keep_bytes``, as the path of a parquet holding them, which :func:`select_class` reads back a row group
    at a time: ``out_parquet``, or with none, ``spill_dir``/boxes.parquet, opened only then (the caller removes
    it). The boxes are written a chunk at a time as they are parsed (a row group each), on a thread of its own while
    the next chunk is parsed."""
    bad, chunks = BadRows(), []
    kept, rows = 0, 0
    spilled: Path | None = None

    def parse(writer: pq.ParquetWriter | None, path: Path | None) -> None:
        nonlocal kept, rows, spilled
        with ExitStack() as stack, ThreadPoolExecutor(1) as pool:
            pending = None
            for chunk in iter_boxes(csv_path, mids, bad, index=index):
                if pending is not None:
                    pending.result()  # one chunk in flight
                rows += chunk.num_rows
                if spilled is None:
                    chunks.append(chunk)
                    kept += chunk.nbytes
                    if kept > keep_bytes and writer is None and spill_dir is not None:
                        path = Path(spill_dir) / "boxes.parquet"
                        writer = stack.enter_context(pq.ParquetWriter(path, BOX_SCHEMA, **PARQUET_OPTIONS))
                        for earlier in chunks[:-1]:
                            writer.write_table(earlier)
                    if kept > keep_bytes and writer is not None:  # the file holds them: keep none
                        spilled = path
                        chunks.clear()
                if writer is not None:
                    pending = pool.submit(writer.write_table, chunk)
            if pending is not None:
                pending.result()
        check_strict(csv_path, mids, bad, strict)  # before the rename: a refused class leaves no file

    def write(tmp: Path) -> None:
        with pq.ParquetWriter(tmp, BOX_SCHEMA, **PARQUET_OPTIONS) as writer:
            parse(writer, Path(out_parquet))  # type: ignore[arg-type]

    if out_parquet is None:
        parse(None, None)
    else:
        atomic_write(Path(out_parquet), write)
    print(f"{label or ', '.join(mids)}: {rows} boxes from {csv_path}", file=sys.stderr)
    if bad.total:
        print(f"warning: skipped {bad.total} bad rows in {csv_path}: {bad.summary()}", file=sys.stderr)
    if spilled is not None:
        print(f"{label or ', '.join(mids)}: selecting from {spilled} a row group at a time", file=sys.stderr)
        return spilled
    return pa.concat_tables(chunks) if chunks else BOX_SCHEMA.empty_table()


def select_class(
    boxes: pa.Table | str | Path,
    out_csv: str | Path,
    *,
    name: str,
    filters: Mapping[str, int | Sequence[int]] | None,
    limit: int | None,
    seed: int,
) -> SelectStats:
    """Filter and limit one class's boxes, as :func:`extract_class` returns them (a table, or the path of their
    parquet), and write the class CSV."""
    filters = normalize_filters(filters)
    if isinstance(boxes, pa.Table):
        stats = _select_in_memory(boxes, Path(out_csv), name=name, filters=filters, limit=limit, seed=seed)
    else:
        stats = select_streamed(Path(boxes), Path(out_csv), name=name, filters=filters, limit=limit, seed=seed)
    print(stats.line(), file=sys.stderr)
    return stats


def _select_in_memory(
    boxes: pa.Table, out_csv: Path, *, name: str, filters: Filters, limit: int | None, seed: int
) -> SelectStats:
    chosen, stats = select_images(boxes, name=name, filters=filters, limit=limit, seed=seed)
    write_csv_atomic(chosen.select(list(SELECT_COLUMNS)), out_csv)
    return stats


@dataclass(frozen=True)
class _Images:
    """What one pass over a class's ImageIDs (in order) tells: its boxes and images, the images a box of which fails
    a filter, and (for a limit) every image, in order."""

    boxes: int
    images: int
    failing: pa.Array
    distinct: pa.Array | None


def select_streamed(
    parquet: Path, out_csv: Path, *, name: str, filters: Filters, limit: int | None, seed: int, rows: int = _STREAM_ROWS
) -> SelectStats:
    """:func:`select_images` and the class CSV from the boxes' parquet, ``rows`` at a time: a first pass reads the
    ImageIDs and the filtered attributes, a second writes the chosen rows. Memory is one batch plus the images'
    IDs where a limit needs them (~20 bytes an image), whatever the class's size. Rows out of ImageID order (Open
    Images ships them in order) are selected in memory, as :func:`select_images` does."""
    _check_limit(limit)
    source = pq.ParquetFile(parquet, pre_buffer=False)  # pre-buffered reads stay cached: 170 MiB for 3.8M boxes
    seen = _scan_images(source, filters, distinct=limit is not None, rows=rows)
    if seen is None:
        return _select_in_memory(source.read(), out_csv, name=name, filters=filters, limit=limit, seed=seed)
    chosen_images, wanted = seen.images - len(seen.failing), None
    if limit is not None and chosen_images > limit and seen.distinct is not None:
        eligible = seen.distinct
        if len(seen.failing):
            eligible = eligible.filter(pc.invert(pc.is_in(eligible, value_set=seen.failing)))
        wanted, chosen_images = eligible.take(_first(rank_keys(eligible, seed), limit)), limit
    written = 0

    def chosen() -> Iterator[pa.Table]:
        nonlocal written
        fields = {f.name: f for f in source.schema_arrow} | {"Class": pa.field("Class", pa.string())}
        yield pa.schema([fields[c] for c in SELECT_COLUMNS]).empty_table()  # the header, with or without rows
        for batch in source.iter_batches(batch_size=rows):
            part = pa.Table.from_batches([batch])
            if wanted is not None:
                part = part.filter(pc.is_in(part["ImageID"], value_set=wanted))
            elif len(seen.failing):
                part = part.filter(pc.invert(pc.is_in(part["ImageID"], value_set=seen.failing)))
            written += part.num_rows
            yield part.add_column(1, "Class", pa.repeat(name, part.num_rows)).select(list(SELECT_COLUMNS))

    write_csv_atomic(chosen(), out_csv)
    return SelectStats(name, seen.boxes, seen.images, seen.images - len(seen.failing), chosen_images, written)


def _scan_images(source: pq.ParquetFile, filters: Filters, *, distinct: bool, rows: int) -> _Images | None:
    """One pass over the ImageIDs (and the filtered attributes) of ``source``; None where they are out of order."""
    boxes = images = 0
    failing: list[pa.Array] = []
    firsts: list[pa.Array] = []
    last: str | None = None
    for batch in source.iter_batches(batch_size=rows, columns=["ImageID", *filters]):
        ids = batch.column(0)
        if not len(ids):
            continue
        in_order = pc.all(pc.less_equal(ids[:-1], ids[1:])).as_py() is not False  # one ID: nothing to compare
        if not in_order or (last is not None and ids[0].as_py() < last):
            return None
        starts = _starts(ids)
        if ids[0].as_py() == last:  # an image that goes on from the batch before is counted there
            starts = starts[1:]
        boxes, images, last = boxes + len(ids), images + len(starts), ids[-1].as_py()
        if distinct:
            firsts.append(ids.take(pa.array(starts, pa.int64())))
        if filters:
            failing.append(pc.unique(ids.filter(pc.invert(box_passes(pa.Table.from_batches([batch]), filters)))))
    fails = pc.unique(pa.concat_arrays(failing)) if failing else pa.array([], pa.string())
    if not distinct:
        return _Images(boxes, images, fails, None)
    return _Images(boxes, images, fails, pa.concat_arrays(firsts) if firsts else pa.array([], pa.string()))


def read_selection(path: str | Path) -> pa.Table:
    types = {f.name: f.type for f in BOX_SCHEMA} | {"Class": pa.string()}
    return pacsv.read_csv(
        path,
        convert_options=pacsv.ConvertOptions(column_types=types, strings_can_be_null=False),
    )


_CSV_SLICE = 1 << 16  # rows formatted per task (measured: 32k-256k, 64k fastest)


def write_csv_atomic(tables: pa.Table | Iterable[pa.Table], path: Path, *, threads: int = 2) -> None:
    """The table (or the tables, one after the other, of one schema) as CSV: a header, quotes only where needed,
    formatted a slice at a time on ``threads`` threads (pyarrow's writer releases the GIL) and written in order:
    1.28M boxes in 0.55 s instead of 0.9 s."""

    def text(part: pa.Table, header: bool) -> pa.Buffer:
        # formatted 8k rows at a time, not pyarrow's 1k: a quarter less CPU for the same bytes
        options = pacsv.WriteOptions(quoting_style="needed", include_header=header, batch_size=8192)
        out = pa.BufferOutputStream()
        pacsv.write_csv(part, out, write_options=options)
        return out.getvalue()

    def slices() -> Iterator[pa.Table]:
        for table in [tables] if isinstance(tables, pa.Table) else tables:
            if not table.num_rows:
                yield table  # no rows: only the header, if it comes first
            for start in range(0, table.num_rows, _CSV_SLICE):
                yield table.slice(start, _CSV_SLICE)

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh, ThreadPoolExecutor(threads) as pool:
            pending: deque[Future[pa.Buffer]] = deque()
            header = True
            for part in slices():
                if part.num_rows or header:
                    pending.append(pool.submit(text, part, header))
                    header = False
                if len(pending) > threads:  # a few slices in memory, not the whole text
                    fh.write(pending.popleft().result())
            while pending:
                fh.write(pending.popleft().result())

    atomic_write(path, write)
