"""The fast paths against the code they replace, on random input (hypothesis, bounded examples).

* ``annotation_xml`` writes VOC text directly; it must give lxml's bytes (``_annotation_xml_lxml``) or, where it
  cannot, fall back to lxml and fail exactly as lxml fails.
* VOC boxes are devkit pixels (1-based, ``1 <= xmin < xmax <= W``) for any fractions, read back as 0-based edges.
* ``read_voc`` reads our own layout with regular expressions and other files with one pass over an lxml tree; both
  must give what the ElementPath reader (``_read_voc_reference``) gives, errors included.
* ``iter_matching_lines`` scans memory-mapped windows with one regex; it must yield what a line-by-line search does,
  and ``scan_boxes`` must keep every matching row once.
* ``select_images`` works on whole arrow columns and skips the steps that change nothing; it must choose what the
  rule says, read image by image in plain Python (``reference_selection``). A class too big to keep in memory is
  selected from its parquet a batch at a time (``select_streamed``); its class CSV and counts must be the
  in-memory selection's, byte for byte. Its top-``limit`` partition
  (``_first``) must pick what a stable sort's first ``limit`` are, ties included.
* The extraction's byte checks (``_clean``, ``_all_valid_ids``) must say what a byte-by-byte or regex reading says.
* The hashes of the lines seen so far (``_HashRuns``, sorted runs merged as they grow) must answer what a set does.
"""

from __future__ import annotations

import csv
import hashlib
import io
import itertools
import os
import random
import re
import xml.etree.ElementTree as ET

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from oidyolo.data.boxes import (
    ATTRIBUTES,
    BOX_SCHEMA,
    PaddedLines,
    _all_valid_ids,
    _clean,
    _HashRuns,
    iter_matching_lines,
    scan_boxes,
)
from oidyolo.data.download import Entry
from oidyolo.data.select import _first, normalize_filters, select_class, select_images, select_streamed
from oidyolo.data.voc import (
    _NOT_PLAIN,
    _annotation_xml_lxml,
    _annotation_xml_text,
    _read_voc_canonical,
    _read_voc_reference,
    annotation_xml,
    read_voc,
)

EXAMPLES = int(os.environ.get("OIDYOLO_EXAMPLES", 300))  # per property; raise it for a deeper one-off run
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

# -- VOC writer ------------------------------------------------------------------------------------------------------

HOSTILE = [
    "&", "<", ">", '"', "'", "&amp;", "&lt;", "]]>", "<!--", "\r", "\r\n", "\n", "\t", " ", "",
    'Kitchen & dining <room> "table"', "é", "中文", "🍎", "\x7f", "\x85", "\u2028", "\x00", "\x01", "\x0b", "\ud800",
    "\udfff", "\ufffe", "\uffff", "\ue000", "\U0010ffff",
]  # fmt: skip
XML_SAFE = [t for t in HOSTILE if not _NOT_PLAIN.search(t)]  # what XML can hold: markup characters, CR, unicode


def text_strategy(hostile: list[str], alphabet: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.one_of(
        st.text(alphabet, max_size=12),
        st.sampled_from(hostile),
        st.lists(st.one_of(st.sampled_from(hostile), st.text(alphabet, max_size=4)), max_size=4).map("".join),
    )


texts = text_strategy(HOSTILE, st.characters())  # anything, control characters too: lxml must refuse those
xml_texts = text_strategy(XML_SAFE, st.characters(exclude_categories=("Cs", "Cc"), exclude_characters="\ufffe\uffff"))
plain_texts = st.text(st.characters(exclude_categories=("Cs", "Cc"), exclude_characters="&<>\ufffe\uffff"), max_size=12)
unit = st.one_of(st.floats(0, 1), st.sampled_from([0.0, 1.0, 0.5, 1e-7, 0.9999999]))
attribute = st.sampled_from([-1, 0, 1])


@st.composite
def voc_rows(draw, texts=texts):
    x1, x2 = sorted((draw(unit), draw(unit)))
    y1, y2 = sorted((draw(unit), draw(unit)))
    return {
        "Class": draw(texts),
        "IsTruncated": draw(attribute),
        "IsOccluded": draw(attribute),
        "Difficult": draw(st.booleans()),
        "XMin": x1, "XMax": x2, "YMin": y1, "YMax": y2,
        "LabelName": draw(st.one_of(st.sampled_from(["/m/014j1m", "/m/0cyhj_"]), texts)),
        "Source": draw(st.one_of(st.sampled_from(["xclick", "activemil"]), texts)),
        "Confidence": draw(st.one_of(st.just(1.0), st.floats(allow_nan=True, allow_infinity=True))),
        "IsGroupOf": draw(attribute), "IsDepiction": draw(attribute), "IsInside": draw(attribute),
    }  # fmt: skip


@st.composite
def voc_inputs(draw, texts=texts):
    entry = Entry(
        image_id=draw(st.one_of(st.just("000002b66c9c498e"), texts)),
        path=draw(st.one_of(st.just("data/images/train/000002b66c9c498e.jpg"), texts)),
        width=draw(st.integers(1, 5000)),
        height=draw(st.integers(1, 5000)),
        status="ok",
    )
    rows = draw(st.lists(voc_rows(texts), max_size=4))
    return entry, rows, draw(st.one_of(st.just("train"), texts)), draw(st.one_of(st.just("Open Images v6"), texts))


ROW = {"Class": "Apple", "IsTruncated": 0, "IsOccluded": 0, "Difficult": False, "XMin": 0.1, "XMax": 0.5,
       "YMin": 0.1, "YMax": 0.5, "LabelName": "/m/014j1m", "Source": "x", "Confidence": 1.0, "IsGroupOf": 0,
       "IsDepiction": 0, "IsInside": 0}  # fmt: skip


def outcome(fn, *args, **kwargs):
    """(result, None) or (None, (exception type, message))."""
    try:
        return fn(*args, **kwargs), None
    except Exception as err:
        return None, (type(err), str(err))


@SETTINGS
@given(st.one_of(voc_inputs(texts), voc_inputs(xml_texts)))
@example(
    (Entry("a&b", 'x<y>"z".jpg', 10, 10, "ok"), [], "tr\rain", "d]]>b")
)  # markup characters and a CR in every field
def test_text_voc_writer_gives_lxmls_bytes_or_lxmls_error(args):
    entry, rows, split, database = args
    fast, fast_err = outcome(annotation_xml, entry, rows, split=split, database=database)
    ref, ref_err = outcome(_annotation_xml_lxml, entry, rows, split=split, database=database)
    assert (fast, fast_err) == (ref, ref_err)
    text, _ = outcome(_annotation_xml_text, entry, rows, split=split, database=database)
    event("text path" if text is not None else "handed to lxml")
    if text is not None:  # the text path itself, whenever it does not hand over to lxml
        assert text == ref


@SETTINGS
@given(st.integers(2, 5000), st.integers(2, 5000), st.lists(voc_rows(plain_texts), min_size=1, max_size=4))
@example(2, 2, [{**ROW, "XMin": 0.0, "XMax": 0.0, "YMin": 1.0, "YMax": 1.0}])  # nothing at all, on the far corner
def test_voc_boxes_are_devkit_pixels_inside_the_image(width, height, rows):
    """1 <= xmin < xmax <= W (and for y) for any fractions in [0, 1]; each edge is the rounded Open Images edge
    (xmin = round(XMin * W) + 1, xmax = round(XMax * W)) unless the box is too thin; read back as 0-based edges."""
    xml = annotation_xml(Entry("000002b66c9c498e", "p.jpg", width, height, "ok"), rows, split="s", database="d")
    objects = ET.fromstring(xml).findall("object")
    for row, obj in zip(rows, objects, strict=True):
        xmin, ymin, xmax, ymax = (int(obj.findtext(f"bndbox/{k}")) for k in ("xmin", "ymin", "xmax", "ymax"))
        assert 1 <= xmin < xmax <= width and 1 <= ymin < ymax <= height
        for lo, hi, first, last, size in ((xmin, xmax, row["XMin"], row["XMax"], width),
                                          (ymin, ymax, row["YMin"], row["YMax"], height)):  # fmt: skip
            a, b = round(first * size), round(last * size)
            if b - a >= 2:  # wide enough: nothing clamped
                assert (lo, hi) == (a + 1, b)
            else:  # widened to the smallest devkit box (two pixels), holding the rounded one
                assert hi - lo == 1 and lo - 1 <= a and hi >= b
    fast = _read_voc_canonical_bytes(xml)
    assert [o.box for o in fast.objects] == [
        tuple(int(o.findtext(f"bndbox/{k}")) - (k in ("xmin", "ymin")) for k in ("xmin", "ymin", "xmax", "ymax"))
        for o in objects
    ]


def _read_voc_canonical_bytes(xml: bytes):
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "a.xml")
        with open(path, "wb") as fh:
            fh.write(xml)
        return read_voc(path)


# -- VOC reader ------------------------------------------------------------------------------------------------------

EDITS = [
    "", " 12 ", "12.7", "-3", "1e3", "nan", "inf", "-inf", "１２", "abc", "&amp;", "&#60;", "<![CDATA[7]]>",
    "<!-- c -->", "<x/>", "</name>", "\r\n", "\t1\t", "]]>",
]  # fmt: skip


@st.composite
def voc_files(draw):
    entry, rows, split, database = draw(st.one_of(voc_inputs(plain_texts), voc_inputs(xml_texts)))
    xml = _annotation_xml_lxml(entry, rows, split=split, database=database).decode()
    lines = xml.split("\n")
    for _ in range(
        draw(st.sampled_from([0, 0, 1, 2, 3]))
    ):  # then damage it a little: another writer, an edit by hand, a bug
        i = draw(st.integers(0, len(lines) - 1))
        how = draw(st.sampled_from(["text", "drop", "dup", "blank", "bom"]))
        if how == "text" and "</" in lines[i] and ">" in lines[i]:
            head, _, rest = lines[i].partition(">")
            _, _, tail = rest.rpartition("</")
            lines[i] = f"{head}>{draw(st.sampled_from(EDITS))}</{tail}"
        elif how == "drop":
            del lines[i]
        elif how == "dup":
            lines.insert(i, lines[i])
        elif how == "blank":
            lines.insert(i, draw(st.sampled_from(["", "  ", "<!-- x -->", "<?pi x?>"])))
        elif how == "bom" and i == 0:
            lines[0] = "\ufeff" + lines[0]
    return "\n".join(lines).encode("utf-8", "surrogatepass")


@SETTINGS
@given(voc_files())
def test_fast_voc_reader_reads_what_the_reference_reader_reads(tmp_path, data):
    path = tmp_path / "a.xml"
    path.write_bytes(data)
    event("regex reader" if _read_voc_canonical(path) is not None else "tree reader")
    assert outcome(read_voc, path) == outcome(_read_voc_reference, path)


@pytest.mark.parametrize("coordinate", ["inf", "-inf", "1e999", "nan"])
def test_an_unreadable_coordinate_is_a_format_error_not_a_crash(tmp_path, coordinate):
    from oidyolo.errors import DataFormatError

    xml = _annotation_xml_lxml(
        Entry("000002b66c9c498e", "p.jpg", 10, 10, "ok"),
        [{"Class": "Apple", "IsTruncated": 0, "IsOccluded": 0, "Difficult": False, "XMin": 0.1, "XMax": 0.5,
          "YMin": 0.1, "YMax": 0.5, "LabelName": "/m/014j1m", "Source": "x", "Confidence": 1.0, "IsGroupOf": 0,
          "IsDepiction": 0, "IsInside": 0}],
        split="train", database="x",
    ).replace(b"<xmin>2</xmin>", f"<xmin>{coordinate}</xmin>".encode())  # fmt: skip
    (tmp_path / "a.xml").write_bytes(xml)
    with pytest.raises(DataFormatError, match="not a valid Pascal VOC annotation"):
        read_voc(tmp_path / "a.xml")


# -- the CSV scan ----------------------------------------------------------------------------------------------------

# MIDs that are prefixes of each other, share prefixes, or hold regex metacharacters; some rows carry a MID in
# another column too.
MIDS = ["/m/0", "/m/01", "/m/012", "/m/0123", "/m/1", "/g/01", "01", "/m/0.", "/m/0+", "/m/(x)"]
TOKENS = [*MIDS, "", "0", "1", "-1", "xclick", "/m/", "m/01", "/m/01 ", " /m/01", "/M/01"]
WINDOWS = [1, 100, 4096, 4097, 8192, 64 << 20]


@st.composite
def csv_files(draw):
    """A bbox CSV: LabelName anywhere (first or last takes the line-by-line path), up to 160 rows of MIDs and
    near-MIDs in every text column, duplicate and empty lines, LF or CRLF, with or without a final newline."""
    ncols = draw(st.integers(0, 3))
    columns = ["ImageID", "XMin", "XMax", "YMin", "YMax", "Pad", *[f"C{i}" for i in range(ncols)]]
    li = draw(st.integers(0, len(columns)))
    columns.insert(li, "LabelName")
    rng = random.Random(draw(st.integers(0, 2**32)))  # row contents: fast to make, the shape is what shrinks
    rows = []
    for _ in range(draw(st.integers(0, 160))):
        values = {"ImageID": f"{len(rows):016x}", "XMin": "0.1", "XMax": "0.5", "YMin": "0.2", "YMax": "0.6"}
        values["Pad"] = "x" * rng.randrange(80)  # long lines: many straddle a window edge
        row = ",".join(values[c] if c in values else rng.choice(TOKENS) for c in columns)
        rows.append(row)
        if rng.randrange(20) == 0:
            rows.append(row)  # a duplicate row, which must stay two rows
        if rng.randrange(30) == 0:
            rows.append("")  # an empty line
    newline = draw(st.sampled_from(["\n", "\r\n"]))
    text = newline.join([",".join(columns), *rows]) + (newline if draw(st.booleans()) else "")
    mids = draw(st.lists(st.sampled_from(MIDS), min_size=1, max_size=4))
    return text.encode(), mids, li, len(columns), draw(st.sampled_from(WINDOWS))


def reference_lines(data: bytes, mids: list[str], li: int, ncols: int) -> list[bytes]:
    """Line by line: the fast path yields each line holding a ``,MID,``; with LabelName first or last, each line
    whose LabelName field is a MID (the layout where ``,MID,`` cannot find it)."""
    out = []
    for line in data.split(b"\n")[1:]:
        line = line.rstrip(b"\r")
        if li in (0, ncols - 1):
            fields = line.split(b",")
            hit = len(fields) > li and fields[li].decode() in mids
        else:
            hit = any(b"," + m.encode() + b"," in line for m in mids)
        if hit:
            out.append(line)
    return out


@SETTINGS
@given(csv_files())
@example((b"ImageID,XMin,XMax,YMin,YMax,C0,LabelName,C2\n0,1,1,1,1,/m/01,/m/01,/m/01", ["/m/01"], 6, 8, 4096))
def test_scan_finds_exactly_the_lines_a_line_by_line_search_finds(tmp_path, args):
    data, mids, li, ncols, window = args
    path = tmp_path / "b.csv"
    path.write_bytes(data)
    assert list(iter_matching_lines(path, mids, window=window)) == reference_lines(data, mids, li, ncols)


@SETTINGS
@given(csv_files())
def test_scan_keeps_each_row_of_the_requested_classes_once(tmp_path, args):
    data, mids, _, _, window = args
    path = tmp_path / "b.csv"
    path.write_bytes(data)
    table, bad = scan_boxes(path, mids, window=window)
    rows = list(csv.DictReader(io.StringIO(data.decode().replace("\r\n", "\n"))))
    wanted = [r for r in rows if r["LabelName"] in mids and r["ImageID"]]
    # every row of a requested class, once: a row repeated in the file is reported as a duplicate, nothing else is
    assert sorted(table["ImageID"].to_pylist()) == sorted({r["ImageID"] for r in wanted})
    duplicates = len(wanted) - len({r["ImageID"] for r in wanted})
    assert bad.counts.get("duplicate rows", 0) == duplicates


# -- selection -------------------------------------------------------------------------------------------------------


@st.composite
def box_tables(draw):
    """A class's boxes: few images with several boxes each, in file order or not, attributes from {1, 0, -1}."""
    # Open Images' 16-hex IDs (hashed from the column's buffer) or other widths (hashed from Python strings)
    width = draw(st.sampled_from([16, 16, 0]))
    size = draw(st.integers(0, 60))  # drawn first: st.lists alone is mostly a few rows
    images = [f"{i:0{width}x}" for i in draw(st.lists(st.integers(0, 40), min_size=size, max_size=size))]
    if draw(st.booleans()):
        images.sort()  # Open Images' own order, where the sort is skipped
    columns = {name: [] for name in BOX_SCHEMA.names}
    for i, image in enumerate(images):
        columns["ImageID"].append(image)
        columns["Source"].append("xclick")
        columns["LabelName"].append("/m/014j1m")
        columns["Confidence"].append(1.0)
        for c, v in zip(("XMin", "XMax", "YMin", "YMax"), (0.1, 0.2 + i / 1000, 0.1, 0.5), strict=True):
            columns[c].append(v)
        for a in ATTRIBUTES:
            columns[a].append(draw(st.sampled_from([1, 0, -1])))
    table = pa.table(columns, schema=BOX_SCHEMA)
    cut = draw(st.integers(0, len(images)))  # two chunks, as extraction returns them
    table = pa.concat_tables([table.slice(0, cut), table.slice(cut)])
    some = st.dictionaries(st.sampled_from(ATTRIBUTES), st.lists(st.sampled_from([1, 0, -1]), min_size=1))
    filters = draw(st.just({}) | some | some)  # a random filter often fails every image: none, a third of the time
    limit = draw(st.none() | st.integers(1, 8) | st.integers(1, 45))  # small limits: the ranking decides often
    return table, normalize_filters(filters), limit, draw(st.integers(0, 3))


def reference_selection(table: pa.Table, filters, limit, seed) -> list[dict]:
    """The documented rule, image by image: an image is eligible if every box of it passes every filter; the limit
    keeps the eligible images of the smallest blake2b(seed:ImageID); its boxes come out in ImageID order."""
    rows = table.to_pylist()
    failing = {r["ImageID"] for r in rows if any(r[k] not in v for k, v in filters.items())}
    eligible = list(dict.fromkeys(r["ImageID"] for r in rows if r["ImageID"] not in failing))
    if limit is not None:
        eligible = sorted(eligible, key=lambda i: hashlib.blake2b(f"{seed}:{i}".encode(), digest_size=8).digest())
        eligible = eligible[:limit]
    chosen = set(eligible)
    kept = sorted((r for r in rows if r["ImageID"] in chosen), key=lambda r: r["ImageID"])  # stable: file order
    return [{"ImageID": r["ImageID"], "Class": "Apple", **{k: v for k, v in r.items() if k != "ImageID"}} for r in kept]


@SETTINGS
@given(box_tables())
def test_selection_chooses_what_the_rule_read_image_by_image_chooses(args):
    table, filters, limit, seed = args
    chosen, stats = select_images(table, name="Apple", filters=filters, limit=limit, seed=seed)
    expected = reference_selection(table, filters, limit, seed)
    assert chosen.to_pylist() == expected
    event("limit reached" if limit is not None and stats.eligible > limit else "no limit reached")
    assert stats.selected_boxes == len(expected)
    assert stats.selected_images == len({r["ImageID"] for r in expected})
    assert stats.images == len(set(table["ImageID"].to_pylist()))


@SETTINGS
@given(box_tables(), st.integers(1, 7), st.integers(1, 9))
def test_selection_from_the_parquet_a_batch_at_a_time_writes_the_in_memory_csv(tmp_path, args, group, rows):
    """Row groups of ``group`` rows read ``rows`` at a time, so images and runs of equal IDs straddle batches."""
    table, filters, limit, seed = args
    pq.write_table(table, tmp_path / "boxes.parquet", row_group_size=group)
    whole = select_class(table, tmp_path / "whole.csv", name="Apple", filters=filters, limit=limit, seed=seed)
    streamed = select_streamed(
        tmp_path / "boxes.parquet", tmp_path / "streamed.csv", name="Apple", filters=filters, limit=limit, seed=seed,
        rows=rows,
    )  # fmt: skip
    assert (tmp_path / "streamed.csv").read_bytes() == (tmp_path / "whole.csv").read_bytes()
    assert streamed == whole
    ordered = table["ImageID"].to_pylist() == sorted(table["ImageID"].to_pylist())
    event("in order: streamed" if ordered else "out of order: selected in memory")
    event("limit reached" if limit is not None and whole.eligible > limit else "no limit reached")


@SETTINGS
@given(
    st.lists(st.integers(0, 2**64 - 1) | st.integers(0, 3), max_size=300).flatmap(
        lambda keys: st.tuples(st.just(keys), st.integers(1, len(keys) + 1))
    )
)
def test_the_first_n_keys_are_a_stable_sorts_first_n(args):
    """Few distinct keys (0-3) half the time, so ties at the n-th key are common; keys big-endian as ranked."""
    keys, n = args
    array = np.array(keys, np.uint64).astype(">u8")
    chosen = _first(array, n)
    assert chosen.tolist() == sorted(np.argsort(array.astype(np.uint64), kind="stable")[:n].tolist())
    event("tie at the n-th key" if 0 < n < len(keys) and sorted(keys)[n - 1] == sorted(keys)[n] else "no tie")


ID_TEXTS = st.one_of(
    st.text("0123456789abcdef", min_size=16, max_size=16),
    st.text("0123456789abcdefABCDEFg-,\x00\n é", min_size=14, max_size=18),
)


@SETTINGS
@given(st.lists(st.one_of(st.lists(ID_TEXTS, max_size=6), st.lists(ID_TEXTS, max_size=4)), max_size=4), st.booleans())
def test_image_ids_checked_on_their_buffers_agree_with_the_regex(chunks, sliced):
    arrays = [pa.array(c, pa.string()) for c in chunks]
    if sliced:  # a chunk whose buffer starts before its first value
        arrays = [pa.array(["0000000000000000", *c], pa.string()).slice(1) for c in chunks]
    ids = pa.chunked_array(arrays, pa.string())
    expected = all(re.fullmatch("[0-9a-f]{16}", i) for c in chunks for i in c)
    assert _all_valid_ids(ids) == expected
    event(f"all valid: {expected}")


TEXT_BYTES = b"a,\n\x00\x1f\x7f\x80\xff ~"  # commas, newlines, the edges of printable ASCII and bytes past them
FIELDS = (st.lists(st.sampled_from(b"a ~"), max_size=3) | st.lists(st.sampled_from(TEXT_BYTES), max_size=3)).map(bytes)


@SETTINGS
@given(
    st.lists(st.lists(FIELDS, min_size=1, max_size=4), min_size=1, max_size=8),
    st.sampled_from([b"", b"\n", b"\n\n\n"]),  # the last line's newline missing, or padding after it
    st.integers(-1, 1),
    st.integers(0, 1),
)
def test_clean_says_what_a_byte_by_byte_reading_says(rows, end, more_lines, more_columns):
    text = b"\n".join(b",".join(fields) for fields in rows) + end
    lines, ncols = max(1, len(rows) + more_lines), len(rows[0]) + more_columns
    padded = PaddedLines.of(text.split(b"\n")).rows  # 2-D, each line padded with newlines, as the index path has it
    for layout, data in (("joined", text), ("padded", padded.tobytes())):
        printable = all(b == 10 or 32 <= b < 127 for b in data) and data.count(10) >= lines - 1
        expected = printable and data.count(44) == (ncols - 1) * lines
        assert _clean(np.frombuffer(text, np.uint8) if layout == "joined" else padded, lines, ncols) == expected
        event(f"{layout} clean: {expected}")


@SETTINGS
@given(st.lists(st.lists(st.integers(-(2**63), 2**63 - 1) | st.integers(-3, 3), max_size=40), max_size=12))
def test_the_hash_runs_hold_what_a_set_holds(chunks):
    """Chunks of keys as the extraction adds them (sorted, the new ones only), few distinct keys half the time, so
    repeats across chunks are common; each chunk is asked about before it is added, as duplicates are found."""
    runs, reference, repeats = _HashRuns(), set(), 0
    for chunk in chunks:
        keys = np.sort(np.array(chunk, np.int64))
        assert runs.holds(keys).tolist() == [k in reference for k in keys.tolist()]
        repeats += len(reference.intersection(keys.tolist()))
        new = np.unique(keys[~runs.holds(keys)])
        runs.add(new)
        reference.update(new.tolist())
        sizes = [len(r) for r in runs.runs]
        assert all(older >= 2 * newer for older, newer in itertools.pairwise(sizes)), sizes  # merged as they grow
        assert all((r[1:] > r[:-1]).all() for r in runs.runs)  # each sorted, distinct
    event(f"{len(runs.runs)} runs")
    event("keys seen in an earlier chunk" if repeats else "no key seen before")
