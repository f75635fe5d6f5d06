import numpy as np
import pyarrow.compute as pc
import pytest
from conftest import APPLE, BANANA, OI_FIXTURES, ORANGE, V5_COLUMNS, V6_COLUMNS, v5_row, v6_row, write_csv

from oidyolo.data.boxes import (
    BadRows,
    Header,
    PaddedLines,
    _parse,
    _parse_typed,
    iter_matching_lines,
    read_header,
    scan_boxes,
)
from oidyolo.errors import DataFormatError

IDS = [f"{i:016x}" for i in range(1, 40)]


def test_real_v6_train_rows_parse_by_header():
    table, bad = scan_boxes(OI_FIXTURES / "oidv6-train-annotations-bbox.head.csv", ["/m/01g317"])
    assert len(read_header(OI_FIXTURES / "oidv6-train-annotations-bbox.head.csv").columns) == 21
    assert table.num_rows == 3 and bad.total == 0
    row = table.to_pylist()[0]
    assert row["ImageID"] == "000002b66c9c498e" and row["XMin"] == pytest.approx(0.0125)
    assert row["IsTruncated"] == 1 and row["IsOccluded"] == 0


def test_real_v4_rows_parse_by_header():
    path = OI_FIXTURES / "train-annotations-bbox.v4.head.csv"
    assert len(read_header(path).columns) == 13
    table, bad = scan_boxes(path, ["/m/07j7r"])
    assert bad.total == 0
    assert table.num_rows == sum(",/m/07j7r," in line for line in path.read_text().splitlines())
    assert set(table["Source"].to_pylist()) == {"freeform"}
    assert table["IsGroupOf"].to_pylist()[0] == 1


def test_columns_are_found_by_name_in_any_order(tmp_path):
    header = "LabelName,YMax,XMin,ImageID,YMin,XMax,IsGroupOf"
    path = write_csv(tmp_path / "x.csv", header, [f"{APPLE},0.9,0.1,{IDS[0]},0.2,0.5,1"])
    (row,) = scan_boxes(path, [APPLE])[0].to_pylist()
    assert (row["XMin"], row["XMax"], row["YMin"], row["YMax"]) == (0.1, 0.5, 0.2, 0.9)
    assert row["IsGroupOf"] == 1 and row["IsOccluded"] == -1  # absent attribute = unknown


def test_only_the_requested_classes_are_returned(tmp_path):
    rows = [v5_row(IDS[i], [APPLE, ORANGE, BANANA][i % 3]) for i in range(30)]
    path = write_csv(tmp_path / "b.csv", V5_COLUMNS, rows)
    table, _ = scan_boxes(path, [APPLE, BANANA])
    assert set(table["LabelName"].to_pylist()) == {APPLE, BANANA}
    assert table.num_rows == 20


def test_missing_required_column_is_named(tmp_path):
    path = write_csv(tmp_path / "b.csv", "ImageID,LabelName,XMin,XMax,YMin", [])
    with pytest.raises(DataFormatError, match=r"missing column.*YMax"):
        scan_boxes(path, [APPLE])


def test_lines_straddling_windows_are_found_exactly_once(tmp_path):
    rows = [
        v6_row(IDS[i % len(IDS)], APPLE if i % 7 == 0 else ORANGE, (0.1, 0.2 + i % 5 * 0.1, 0.1, 0.9))
        for i in range(3000)
    ]
    path = write_csv(tmp_path / "b.csv", V6_COLUMNS, rows)
    expected = [r.encode() for r in rows if f",{APPLE}," in r]
    # A 4 KiB window (the mmap granularity) forces hundreds of window boundaries through lines.
    assert list(iter_matching_lines(path, [APPLE], window=4096)) == expected
    assert list(iter_matching_lines(path, [APPLE])) == expected


def test_crlf_and_missing_final_newline(tmp_path):
    rows = [v5_row(IDS[0], APPLE), v5_row(IDS[1], APPLE)]
    path = tmp_path / "crlf.csv"
    path.write_bytes(("\r\n".join([V5_COLUMNS, *rows])).encode())
    table, bad = scan_boxes(path, [APPLE])
    assert table.num_rows == 2 and bad.total == 0


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        (v5_row(IDS[0], APPLE, (0.6, 0.5, 0.2, 0.6)), "XMin >= XMax"),
        (v5_row(IDS[0], APPLE, (0.1, 1.5, 0.2, 0.6)), "outside [0, 1]"),
        (v5_row(IDS[0], APPLE).replace("0.100000", "nan"), "non-numeric or NaN XMin"),
        (v5_row(IDS[0], APPLE).replace("0.100000", "abc"), "non-numeric or NaN XMin"),
        (v5_row("../../etc/passwd", APPLE), "not 16 hex"),
        (v5_row("000000000000abcd".upper(), APPLE), "not 16 hex"),
        (v5_row("000000000000abc", APPLE), "not 16 hex"),
        (v5_row(IDS[0], APPLE, attrs=(2, 0, 0, 0, 0)), "IsOccluded not in 1/0/-1"),
        (v5_row(IDS[0], APPLE).rsplit(",", 3)[0], "truncated or malformed"),
        (v5_row(IDS[0], APPLE).replace("xclick", "xcl\xefck"), "non-ASCII"),
    ],
)
def test_bad_rows_are_counted_and_skipped_or_refused(tmp_path, row, reason):
    good = v5_row(IDS[1], APPLE)
    path = tmp_path / "b.csv"
    path.write_bytes((V5_COLUMNS + "\n" + good + "\n").encode() + row.encode("latin-1") + b"\n")
    table, bad = scan_boxes(path, [APPLE])
    assert table["ImageID"].to_pylist() == [IDS[1]]
    assert bad.total == 1
    assert reason in bad.summary()
    with pytest.raises(DataFormatError, match="bad rows"):
        scan_boxes(path, [APPLE], strict=True)


def test_truncated_last_line_is_a_bad_row(tmp_path):
    path = tmp_path / "b.csv"
    path.write_bytes((V6_COLUMNS + "\n" + v6_row(IDS[0], APPLE) + "\n" + v6_row(IDS[1], APPLE)[:60]).encode())
    table, bad = scan_boxes(path, [APPLE])
    assert table.num_rows == 1 and "truncated" in bad.summary()


def test_duplicate_rows_are_dropped_and_counted(tmp_path):
    row = v5_row(IDS[0], APPLE)
    path = write_csv(tmp_path / "b.csv", V5_COLUMNS, [row, row, row, v5_row(IDS[1], APPLE)])
    table, bad = scan_boxes(path, [APPLE])
    assert table.num_rows == 2 and bad.counts["duplicate rows"] == 2


def test_coordinates_within_rounding_noise_are_clamped(tmp_path):
    path = write_csv(tmp_path / "b.csv", V5_COLUMNS, [v5_row(IDS[0], APPLE, (-0.00001, 1.00002, 0.0, 1.0))])
    table, bad = scan_boxes(path, [APPLE])
    assert bad.total == 0
    assert pc.min(table["XMin"]).as_py() == 0.0 and pc.max(table["XMax"]).as_py() == 1.0


def test_header_only_file_gives_an_empty_table(tmp_path):
    path = write_csv(tmp_path / "b.csv", V5_COLUMNS, [])
    table, bad = scan_boxes(path, [APPLE])
    assert table.num_rows == 0 and bad.total == 0


@pytest.mark.parametrize(
    "value", ["0.5", ".5", "5e-1", "+0.5", "0.50000000000000001", "1", "0", "-0.00001", "nan", "inf", "", " 0.5", "0x1"]
)
@pytest.mark.parametrize("column", ["XMin", "Confidence", "IsOccluded"])
@pytest.mark.parametrize("layout", ["joined", "padded"])
def test_typed_fast_path_gives_what_the_string_path_gives(tmp_path, value, column, layout):
    """The CSV reader's own typing (taken when every row is valid) must give the very table the string columns
    and casts give, and give way to them on any value they would count as bad, whether the lines come joined by
    newlines (the byte scan) or padded with them (the index)."""
    header = Header.parse(V6_COLUMNS.encode(), where="t")
    at = V6_COLUMNS.split(",").index(column)
    lines = []
    for i in range(3):
        fields = v6_row(IDS[i], APPLE, (0.1, 0.9, 0.2, 0.6)).split(",")
        fields[at] = value if i == 1 else fields[at]
        lines.append(",".join(fields).encode())
    text = np.frombuffer(b"\n".join(lines), np.uint8) if layout == "joined" else PaddedLines.of(lines, 256).rows
    bad = BadRows()
    expected = _parse(lines, header, [APPLE], bad)
    typed = _parse_typed(text, header, [APPLE])
    if typed is None:
        assert bad.total == 1  # given way only to a row the string path counts as bad
    else:
        assert bad.total == 0
        assert typed.equals(expected)


def test_a_padded_line_hashes_the_same_at_any_width():
    lines = [b"", b"a", b"abcdefg", b"abcdefgh", b"abcdefghi", v6_row(IDS[0], APPLE).encode(), b"x" * 200]
    narrow, wide = PaddedLines.of(lines).hashes(), PaddedLines.of(lines, 512).hashes()
    assert narrow.tolist() == wide.tolist()
    assert len(set(narrow.tolist())) == len(lines)  # and differ between different lines, of any length
    assert PaddedLines.of(lines).lines() == lines
