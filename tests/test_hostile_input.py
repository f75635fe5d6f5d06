"""Hostile and odd input that the other tests leave out: each is a clear, specific error or a counted, logged skip,
never a traceback, and nothing from it reaches a path or a shell unescaped.

Covered elsewhere: bad rows (test_boxes.py), ImageIDs like ``../../etc/passwd`` (test_download.py), non-JPEG and
bomb images (test_images.py), random configs (test_config_fuzz.py), random class names and texts in VOC files
(test_properties.py).
"""

from __future__ import annotations

import re
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest
from conftest import APPLE, ORANGE, ROOT, V5_COLUMNS, V6_COLUMNS, v5_row, v6_row, write_csv

from oidyolo.data.boxes import read_header, scan_boxes
from oidyolo.data.catalog import ClassCatalog, slugify
from oidyolo.data.download import Entry, check_split, download_images, image_path, read_manifest
from oidyolo.data.sources import Remote
from oidyolo.data.voc import annotation_xml, read_voc
from oidyolo.errors import DataFormatError, UnknownClassError

A, B = "00000000000000a1", "00000000000000b2"

# -- CSV layout ------------------------------------------------------------------------------------------------------


def test_extra_columns_anywhere_are_ignored(tmp_path):
    header = "Note," + V5_COLUMNS + ",Extra1,Extra2"
    path = write_csv(tmp_path / "b.csv", header, [f"hi there,{v5_row(A, APPLE)},x,{ORANGE}"])
    table, bad = scan_boxes(path, [APPLE])
    assert table["ImageID"].to_pylist() == [A] and bad.total == 0


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_a_header_with_a_byte_order_mark_is_read(tmp_path, newline):
    path = tmp_path / "b.csv"
    path.write_bytes(("\ufeff" + newline.join([V6_COLUMNS, v6_row(A, APPLE), v6_row(B, ORANGE)]) + newline).encode())
    assert read_header(path).columns[0] == "ImageID"
    table, bad = scan_boxes(path, [APPLE])
    assert table["ImageID"].to_pylist() == [A] and bad.total == 0


def test_quoted_header_names_are_read(tmp_path):
    header = ",".join(f'"{c}"' for c in V5_COLUMNS.split(","))
    table, _ = scan_boxes(write_csv(tmp_path / "b.csv", header, [v5_row(A, APPLE)]), [APPLE])
    assert table.num_rows == 1


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (V5_COLUMNS.replace("XMax", "XMin").encode() + b"\n", r"missing column\(s\) XMax"),
        ((V5_COLUMNS + ",IsGroupOf").encode() + b"\n", r"duplicate column\(s\) IsGroupOf"),
        (V5_COLUMNS.replace("Source", "S\xefurce").encode("latin-1") + b"\n", "header row is not UTF-8"),
        (b"", "missing column.*found: nothing"),
        (bytes(range(256)) * 4, "not UTF-8|missing column"),
        (b"<html><body>503 Service Unavailable</body></html>\n", "not an Open Images bbox CSV"),
    ],
    ids=["missing", "duplicate", "not-utf8", "empty", "binary", "html"],
)
def test_a_file_that_is_not_a_bbox_csv_is_refused_by_name(tmp_path, content, message):
    path = tmp_path / "b.csv"
    path.write_bytes(content)
    with pytest.raises(DataFormatError, match=message):
        scan_boxes(path, [APPLE])


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        (v5_row(A, APPLE).replace("xclick", '"x,click"'), "without 13 fields"),  # a quoted comma: refused, not parsed
        (v5_row(A, APPLE).replace("xclick", "xcl\x00ick"), "control character"),  # would break the VOC XML
        (v5_row(A, APPLE).replace("xclick", "x\x1b[2Jclick"), "control character"),  # a terminal escape
        (v5_row(A, APPLE).replace("xclick", "x\rclick"), "control character"),
    ],
    ids=["quoted-comma", "nul", "escape", "lone-cr"],
)
def test_rows_with_hostile_bytes_are_counted_and_skipped(tmp_path, row, reason):
    path = tmp_path / "b.csv"
    path.write_bytes(f"{V5_COLUMNS}\n{v5_row(B, APPLE)}\n{row}\n".encode())
    table, bad = scan_boxes(path, [APPLE])
    assert table["ImageID"].to_pylist() == [B] and bad.total == 1 and reason in bad.summary()
    with pytest.raises(DataFormatError, match=reason):
        scan_boxes(path, [APPLE], strict=True)


def test_a_mid_in_another_column_of_another_classs_row_is_not_a_bad_row(tmp_path):
    rows = [v5_row(A, ORANGE).replace("xclick", APPLE)] * 2 + [v5_row(B, APPLE)]  # Orange rows naming Apple
    table, bad = scan_boxes(write_csv(tmp_path / "b.csv", V5_COLUMNS, rows), [APPLE], strict=True)
    assert table["ImageID"].to_pylist() == [B] and bad.total == 0


# -- class names -----------------------------------------------------------------------------------------------------

NAMES = [
    "Kitchen & dining room table", 'Evil "quoted" <b>name</b>', "../../etc/passwd", "/abs/path", "a;rm -rf ~", "$(id)",
    "`id`", "name with  spaces", "Ünïcødé Näme", "tab\tname", "nul\x00name", "dot.name", "-leading-dash",
]  # fmt: skip


@pytest.mark.parametrize("name", NAMES)
def test_any_class_name_becomes_a_safe_file_name(name):
    slug = slugify(name)
    assert re.fullmatch(r"[0-9A-Za-z_]+", slug) and not slug.startswith("_")


@pytest.mark.parametrize("name", ["", "   ", "-_-", "../..", "\x00"])
def test_a_name_without_letters_or_digits_is_refused(name):
    with pytest.raises(UnknownClassError, match="no letters or digits"):
        slugify(name)


def test_hostile_names_in_a_class_file_stay_text(tmp_path):
    catalog = ClassCatalog.from_text('/m/0abc,"Evil & <x> ""q"" ; rm -rf /"\n/m/0abd,Plain\n')
    assert catalog.names["/m/0abc"] == 'Evil & <x> "q" ; rm -rf /'
    assert catalog.mid('evil & <x> "q" ; rm -rf /') == "/m/0abc"
    with pytest.raises(DataFormatError, match=r"expected `MID,DisplayName`, got 3 fields"):
        ClassCatalog.from_text("/m/0abc,a,b\n")


@pytest.mark.parametrize("name", NAMES[:8])
def test_hostile_class_names_are_escaped_in_voc_and_read_back(tmp_path, name):
    row = {"Class": name, "IsTruncated": 0, "IsOccluded": 1, "Difficult": False, "XMin": 0.1, "XMax": 0.5,
           "YMin": 0.2, "YMax": 0.6, "LabelName": APPLE, "Source": "x&<y>", "Confidence": 1.0, "IsGroupOf": 0,
           "IsDepiction": 0, "IsInside": 0}  # fmt: skip
    xml = annotation_xml(Entry(A, f"data/images/train/{A}.jpg", 100, 50, "ok"), [row], split="train", database="x")
    assert ET.fromstring(xml).findtext("object/name") == name  # the standard library reads what we meant
    (tmp_path / "a.xml").write_bytes(xml)
    assert read_voc(tmp_path / "a.xml").objects[0].name == name


def test_unknown_hostile_class_on_the_command_line_is_a_clear_error(tmp_path):
    csv = write_csv(tmp_path / "t.csv", V6_COLUMNS, [v6_row(A, APPLE)])
    for name in ("../../etc/passwd", "$(touch pwned)", "Apple; rm -rf /"):
        proc = subprocess.run(
            [sys.executable, "-m", "oidyolo", "select", str(csv), "--class", name, "--out", str(tmp_path / "o.csv")],
            capture_output=True, text=True, timeout=60, cwd=tmp_path,
        )  # fmt: skip
        assert proc.returncode == 2 and "unknown Open Images class" in proc.stderr and "Traceback" not in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.csv"]  # nothing written, nothing run


def test_no_rule_runs_a_shell_command_and_no_step_spawns_one():
    """Class names, paths and IDs reach steps only as Python values (``script:`` and ``params:``): no ``shell:`` or
    ``run:`` in the rules, and no subprocess or os.system in the steps or the data package."""
    rules = [ROOT / "Snakefile", *sorted((ROOT / "rules").glob("*.smk"))]
    for path in rules:
        for n, line in enumerate(path.read_text().splitlines(), 1):
            assert not re.match(r"\s*(shell|run)\s*:", line), f"{path.name}:{n}: {line.strip()}"
    code = [*sorted((ROOT / "workflow_scripts").glob("*.py")), *sorted((ROOT / "oidyolo").rglob("*.py"))]
    for path in code:
        text = path.read_text()
        assert not re.search(r"\bsubprocess\b|os\.system|os\.popen|shell\s*=\s*True", text), path


# -- image IDs, splits, manifests ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        "0123456789abcdef\n",
        "0123456789abcdef\r",
        "\n0123456789abcdef",
        "０１２３４５６７８９ａｂｃｄｅｆ",
        "0123456789abcdef0",
    ],
    ids=["final-newline", "final-cr", "leading-newline", "fullwidth", "17-chars"],
)
def test_image_ids_that_look_almost_right_are_refused(tmp_path, bad):
    with pytest.raises(DataFormatError, match="invalid ImageID"):
        image_path(tmp_path, "train", bad)


@pytest.mark.parametrize("split", ["..", "../x", "/etc", "train/../..", "", "a\x00", "train\n", ".hidden"])
def test_a_split_that_is_not_a_plain_folder_name_is_refused(tmp_path, split):
    with pytest.raises(DataFormatError, match="invalid split"):
        check_split(split)
    with pytest.raises(DataFormatError, match="invalid split"):
        download_images([A], split=split, remote=Remote(str(tmp_path)), store=tmp_path / "store")
    assert not (tmp_path / "store").exists()


def test_a_manifest_with_a_hostile_image_id_is_refused(tmp_path):
    path = tmp_path / "m.tsv"
    path.write_text("ImageID\tpath\twidth\theight\tstatus\treason\n../../x\tp\t1\t1\tok\t\n")
    with pytest.raises(DataFormatError, match=r"invalid ImageID '\.\./\.\./x'"):
        read_manifest(path)


# -- VOC files from elsewhere ----------------------------------------------------------------------------------------

DOCTYPE = '<?xml version="1.0"?>\n<!DOCTYPE annotation [{}]>\n'
BODY = (
    "<annotation><size><width>10</width><height>10</height></size><object><name>{}</name><bndbox><xmin>1</xmin>"
    "<ymin>1</ymin><xmax>5</xmax><ymax>5</ymax></bndbox></object></annotation>"
)


def test_external_entities_in_a_voc_file_are_never_read(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET")
    (tmp_path / "a.xml").write_text(DOCTYPE.format(f'<!ENTITY x SYSTEM "file://{secret}">') + BODY.format("&x;"))
    with pytest.raises(DataFormatError, match="not a valid Pascal VOC annotation") as err:
        read_voc(tmp_path / "a.xml")
    assert "TOP-SECRET" not in str(err.value)


def test_an_entity_expansion_bomb_is_refused_at_once(tmp_path):
    entities = '<!ENTITY a0 "lollollollollol">' + "".join(
        f'<!ENTITY a{i} "{f"&a{i - 1};" * 10}">' for i in range(1, 10)
    )  # 10^9 "lol"s if expanded
    (tmp_path / "a.xml").write_text(DOCTYPE.format(entities) + BODY.format("&a9;"))
    with pytest.raises(DataFormatError, match="not a valid Pascal VOC annotation"):
        read_voc(tmp_path / "a.xml")


@pytest.mark.parametrize(
    "content",
    [b"", b"\x00\x01\x02", b"<annotation>", b"<annotation><size><width>x</width></size></annotation>", b"\xff\xfe<a/>"],
    ids=["empty", "binary", "unclosed", "bad-width", "utf16-bom"],
)
def test_a_broken_voc_file_is_a_format_error(tmp_path, content):
    (tmp_path / "a.xml").write_bytes(content)
    with pytest.raises(DataFormatError, match="not a valid Pascal VOC annotation"):
        read_voc(tmp_path / "a.xml")
