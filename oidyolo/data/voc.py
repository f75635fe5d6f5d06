"""Pascal VOC XML: one file per selected image, holding every selected class present in it.

Open Images coordinates are fractions of the image size (0 = left/top edge, 1 = right/bottom edge). VOC files follow
the devkit: 1-based pixel indices, first and last pixel inclusive, so a box from edge ``round(XMin * W)`` to edge
``round(XMax * W)`` is written ``xmin = round(XMin * W) + 1``, ``xmax = round(XMax * W)``, clamped so that
``1 <= xmin < xmax <= W`` (the same for y; readers in the py-faster-rcnn line subtract 1 into uint16, so a 0 would
wrap to 65535). :func:`read_voc` gives the 0-based pixel edges back (``xmin - 1, ymin - 1, xmax, ymax``, as
Detectron2's VOC loader reads them), which is what the keras-yolo3 lines hold. ``<depth>`` is the JPEG's channel
count (1 for grayscale, 4 for CMYK). ``truncated``/``occluded`` keep VOC's 0/1 meaning (Open Images' -1, unknown,
becomes 0); every Open Images attribute is kept verbatim under ``<openimages>``, so nothing is lost.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from lxml import etree

from oidyolo.atomic import write_bytes_atomic
from oidyolo.data.boxes import ATTRIBUTES, BOX_SCHEMA
from oidyolo.data.download import Entry, read_manifest
from oidyolo.data.imagecheck import image_header
from oidyolo.data.select import Filters, box_passes, normalize_filters
from oidyolo.errors import DataFormatError, disk_full, is_disk_full


@dataclass(frozen=True)
class ClassBoxes:
    """Every box of one requested class in a split (the ``extract`` output) and that class's filters."""

    name: str
    boxes: pa.Table
    filters: Filters


def _text(parent: etree._Element, tag: str, value: object) -> etree._Element:
    el = etree.SubElement(parent, tag)
    el.text = str(value)
    return el


def voc_span(first: float, last: float, size: int) -> tuple[int, int]:
    """The devkit pixel span (1-based, inclusive) of a box side given as fractions: ``1 <= lo < hi <= size``."""
    lo = min(max(round(first * size) + 1, 1), max(size - 1, 1))
    return lo, min(max(round(last * size), lo + 1), size)


def annotation_xml(entry: Entry, rows: list[dict], *, split: str, database: str, depth: int = 3) -> bytes:
    """The VOC file of one image: lxml's pretty-printed serialisation, byte for byte.

    Written as text directly (several times faster than building an lxml tree); any text that lxml would refuse or
    treat specially (control characters, surrogates), or any error, takes the lxml path, so errors stay the same.
    """
    try:
        return _annotation_xml_text(entry, rows, split=split, database=database, depth=depth)
    except Exception:  # _NotPlainText, or a bad value: the reference raises what it always raised
        return _annotation_xml_lxml(entry, rows, split=split, database=database, depth=depth)


class _NotPlainText(Exception):
    pass


# Characters lxml writes as they are (after escaping &, <, > and CR); anything else goes through lxml itself.
_NOT_PLAIN = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_ESCAPE = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", "\r": "&#13;"})
_SPECIAL = frozenset("&<>\r")


def _x(value: object) -> str:
    """Text of one value, escaped as lxml escapes it (the document is checked for other characters at the end)."""
    if type(value) is int:
        return str(value)
    text = str(value)
    return text if _SPECIAL.isdisjoint(text) else text.translate(_ESCAPE)


def _annotation_xml_text(entry: Entry, rows: list[dict], *, split: str, database: str, depth: int = 3) -> bytes:
    width, height = entry.width, entry.height
    out = [
        f"<annotation>\n  <folder>{_x(split)}</folder>\n  <filename>{_x(Path(entry.path).name)}</filename>\n"
        f"  <path>{_x(entry.path)}</path>\n  <source>\n    <database>{_x(database)}</database>\n"
        f"    <annotation>Open Images</annotation>\n    <image>{_x(entry.image_id)}</image>\n  </source>\n"
        f"  <size>\n    <width>{_x(width)}</width>\n    <height>{_x(height)}</height>\n    <depth>{_x(depth)}</depth>\n"
        "  </size>\n  <segmented>0</segmented>\n"
    ]
    for row in rows:
        xmin, xmax = voc_span(row["XMin"], row["XMax"], width)
        ymin, ymax = voc_span(row["YMin"], row["YMax"], height)
        out.append(
            f"  <object>\n    <name>{_x(row['Class'])}</name>\n    <pose>Unspecified</pose>\n"
            f"    <truncated>{int(row['IsTruncated'] == 1)}</truncated>\n"
            f"    <occluded>{int(row['IsOccluded'] == 1)}</occluded>\n"
            f"    <difficult>{int(row['Difficult'])}</difficult>\n    <bndbox>\n"
            f"      <xmin>{xmin}</xmin>\n      <ymin>{ymin}</ymin>\n"
            f"      <xmax>{xmax}</xmax>\n      <ymax>{ymax}</ymax>\n"
            f"    </bndbox>\n    <openimages>\n      <LabelName>{_x(row['LabelName'])}</LabelName>\n"
            f"      <Source>{_x(row['Source'])}</Source>\n      <Confidence>{row['Confidence']:g}</Confidence>\n"
            f"      <IsOccluded>{_x(row['IsOccluded'])}</IsOccluded>\n"
            f"      <IsTruncated>{_x(row['IsTruncated'])}</IsTruncated>\n"
            f"      <IsGroupOf>{_x(row['IsGroupOf'])}</IsGroupOf>\n"
            f"      <IsDepiction>{_x(row['IsDepiction'])}</IsDepiction>\n"
            f"      <IsInside>{_x(row['IsInside'])}</IsInside>\n"
            f"      <XMin>{row['XMin']:.6f}</XMin>\n      <XMax>{row['XMax']:.6f}</XMax>\n"
            f"      <YMin>{row['YMin']:.6f}</YMin>\n      <YMax>{row['YMax']:.6f}</YMax>\n"
            "    </openimages>\n  </object>\n"
        )
    out.append("</annotation>\n")
    text = "".join(out)
    # Escaping never adds or removes such characters, so one search covers every value.
    if _NOT_PLAIN.search(text):
        raise _NotPlainText
    return text.encode("utf-8")


def _annotation_xml_lxml(entry: Entry, rows: list[dict], *, split: str, database: str, depth: int = 3) -> bytes:
    """The reference serialisation (lxml, pretty-printed); :func:`annotation_xml` yields the same bytes faster."""
    root = etree.Element("annotation")
    _text(root, "folder", split)
    _text(root, "filename", Path(entry.path).name)
    _text(root, "path", entry.path)
    source = etree.SubElement(root, "source")
    _text(source, "database", database)
    _text(source, "annotation", "Open Images")
    _text(source, "image", entry.image_id)
    size = etree.SubElement(root, "size")
    _text(size, "width", entry.width)
    _text(size, "height", entry.height)
    _text(size, "depth", depth)
    _text(root, "segmented", 0)
    for row in rows:
        obj = etree.SubElement(root, "object")
        _text(obj, "name", row["Class"])
        _text(obj, "pose", "Unspecified")
        _text(obj, "truncated", int(row["IsTruncated"] == 1))
        _text(obj, "occluded", int(row["IsOccluded"] == 1))
        _text(obj, "difficult", int(row["Difficult"]))
        box = etree.SubElement(obj, "bndbox")
        xmin, xmax = voc_span(row["XMin"], row["XMax"], entry.width)
        ymin, ymax = voc_span(row["YMin"], row["YMax"], entry.height)
        _text(box, "xmin", xmin)
        _text(box, "ymin", ymin)
        _text(box, "xmax", xmax)
        _text(box, "ymax", ymax)
        oi = etree.SubElement(obj, "openimages")
        _text(oi, "LabelName", row["LabelName"])
        _text(oi, "Source", row["Source"])
        _text(oi, "Confidence", f"{row['Confidence']:g}")
        for attr in ATTRIBUTES:
            _text(oi, attr, row[attr])
        for coord in ("XMin", "XMax", "YMin", "YMax"):
            _text(oi, coord, f"{row[coord]:.6f}")
    return etree.tostring(root, pretty_print=True, xml_declaration=False, encoding="utf-8")


def selected_entries(manifests: Sequence[str | Path]) -> dict[str, Entry]:
    """Images available in the store, over all class manifests of a split (each image once)."""
    entries: dict[str, Entry] = {}
    for manifest in manifests:
        for entry in read_manifest(manifest):
            if entry.ok:
                entries.setdefault(entry.image_id, entry)
    return entries


def boxes_in_images(classes: Sequence[ClassBoxes], image_ids: Sequence[str]) -> pa.Table:
    """Boxes of every class in the given images, with ``Class`` and ``Difficult`` (failed its class's filters)."""
    wanted = pa.array(image_ids, pa.string())
    parts = []
    for cls in classes:
        table = cls.boxes.filter(pc.is_in(cls.boxes["ImageID"], value_set=wanted))
        passes = box_passes(table, cls.filters)
        table = table.append_column("Class", pa.array([cls.name] * table.num_rows, pa.string()))
        parts.append(table.append_column("Difficult", pc.invert(passes)))
    if not parts:
        return pa.table({})
    return pa.concat_tables(parts)


def write_voc(
    out_dir: str | Path,
    *,
    split: str,
    manifests: Sequence[str | Path],
    class_boxes: Mapping[str, str | Path],
    filters: Mapping[str, object] | None,
    database: str = "Open Images",
) -> int:
    """Write ``{out_dir}/{ImageID}.xml`` for every stored image of the split; returns the file count."""
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        if is_disk_full(err):
            raise disk_full(out, err) from err
        raise
    entries = selected_entries(manifests)
    norm = normalize_filters(filters)  # type: ignore[arg-type]
    classes = [ClassBoxes(name, pq.read_table(path, schema=BOX_SCHEMA), norm) for name, path in class_boxes.items()]
    table = boxes_in_images(classes, sorted(entries))
    by_image: dict[str, list[dict]] = {}
    for row in table.to_pylist():
        by_image.setdefault(row["ImageID"], []).append(row)
    difficult = 0
    folder = str(out)
    for image_id, entry in entries.items():
        rows = by_image.get(image_id)
        if not rows:
            raise DataFormatError(f"image {image_id} is in a manifest but has no boxes of any selected class")
        difficult += sum(r["Difficult"] for r in rows)
        depth = image_header(entry.path)[2]  # header only; Open Images has grayscale and CMYK JPEGs
        xml = annotation_xml(entry, rows, split=split, database=database, depth=depth)
        write_bytes_atomic(os.path.join(folder, f"{image_id}.xml"), xml)
    print(
        f"voc {split}: {len(entries)} images, {table.num_rows} boxes ({difficult} marked difficult by the filters)",
        file=sys.stderr,
    )
    return len(entries)


@dataclass(frozen=True)
class VocObject:
    name: str
    box: tuple[int, int, int, int]  # 0-based pixel edges x1, y1, x2, y2: the file's xmin - 1, ymin - 1, xmax, ymax
    difficult: bool
    truncated: bool
    occluded: bool
    group_of: bool


@dataclass(frozen=True)
class VocAnnotation:
    path: str
    width: int
    height: int
    objects: list[VocObject]


def _edges(xmin: int, ymin: int, xmax: int, ymax: int) -> tuple[int, int, int, int]:
    """0-based pixel edges of a devkit box (1-based, inclusive): the first pixel's left edge is its index - 1."""
    return xmin - 1, ymin - 1, xmax, ymax


def read_voc(path: str | Path) -> VocAnnotation:
    """Parse a VOC file (ours or any standard one; Open Images extras are optional); boxes as 0-based edges."""
    ann = _read_voc_canonical(path)
    if ann is not None:
        return ann
    try:
        tree = etree.parse(str(path))
    except etree.XMLSyntaxError:
        return _read_voc_reference(path)  # raises the same error, worded the same
    try:
        return _voc_from_tree(tree, path)
    except Exception:
        return _read_voc_reference(path)  # whatever is wrong, report it exactly as the reference reader does


# The exact layout annotation_xml writes, with text free of markup, entities and CR: such a document is well-formed
# XML whose element texts are the matched strings verbatim, so reading it with regular expressions gives what lxml
# gives. Anything else (another writer's file, an escaped character, a comment) is parsed by lxml.
_TEXT = r"[^<>&\r]*"
_VOC_HEAD = re.compile(
    rf"<annotation>\n  <folder>{_TEXT}</folder>\n  <filename>{_TEXT}</filename>\n  <path>(?P<path>{_TEXT})</path>\n"
    rf"  <source>\n    <database>{_TEXT}</database>\n    <annotation>{_TEXT}</annotation>\n    <image>{_TEXT}</image>\n"
    rf"  </source>\n  <size>\n    <width>(?P<width>{_TEXT})</width>\n    <height>(?P<height>{_TEXT})</height>\n"
    rf"    <depth>{_TEXT}</depth>\n  </size>\n  <segmented>{_TEXT}</segmented>\n"
)
_VOC_OBJECT = re.compile(
    rf"  <object>\n    <name>(?P<name>{_TEXT})</name>\n    <pose>{_TEXT}</pose>\n"
    rf"    <truncated>(?P<truncated>{_TEXT})</truncated>\n    <occluded>(?P<occluded>{_TEXT})</occluded>\n"
    rf"    <difficult>(?P<difficult>{_TEXT})</difficult>\n    <bndbox>\n      <xmin>(?P<xmin>{_TEXT})</xmin>\n"
    rf"      <ymin>(?P<ymin>{_TEXT})</ymin>\n      <xmax>(?P<xmax>{_TEXT})</xmax>\n"
    rf"      <ymax>(?P<ymax>{_TEXT})</ymax>\n"
    rf"    </bndbox>\n    <openimages>\n      <LabelName>{_TEXT}</LabelName>\n      <Source>{_TEXT}</Source>\n"
    rf"      <Confidence>{_TEXT}</Confidence>\n      <IsOccluded>{_TEXT}</IsOccluded>\n"
    rf"      <IsTruncated>{_TEXT}</IsTruncated>\n      <IsGroupOf>(?P<group_of>{_TEXT})</IsGroupOf>\n"
    rf"      <IsDepiction>{_TEXT}</IsDepiction>\n      <IsInside>{_TEXT}</IsInside>\n      <XMin>{_TEXT}</XMin>\n"
    rf"      <XMax>{_TEXT}</XMax>\n      <YMin>{_TEXT}</YMin>\n      <YMax>{_TEXT}</YMax>\n    </openimages>\n"
    rf"  </object>\n"
)
_VOC_TAIL = "</annotation>\n"


def _read_voc_canonical(path: str | Path) -> VocAnnotation | None:
    """:func:`read_voc` for a file exactly as :func:`annotation_xml` writes it; ``None`` for any other file."""
    try:
        with open(path, "rb") as fh:
            text = fh.read().decode("utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    head = _VOC_HEAD.match(text)
    if head is None or _NOT_PLAIN.search(text):
        return None
    objects = []
    pos = head.end()
    try:
        width, height = int(head["width"]), int(head["height"])
        while (obj := _VOC_OBJECT.match(text, pos)) is not None:
            objects.append(
                VocObject(
                    name=obj["name"],
                    box=_edges(*(int(float(obj[k])) for k in ("xmin", "ymin", "xmax", "ymax"))),
                    difficult=obj["difficult"].strip() == "1",
                    truncated=obj["truncated"].strip() == "1",
                    occluded=obj["occluded"].strip() == "1",
                    group_of=obj["group_of"].strip() == "1",
                )
            )
            pos = obj.end()
    except (ValueError, OverflowError):  # e.g. "nan" or "inf" as a coordinate: the reference reader words it
        return None
    if text[pos:] != _VOC_TAIL:
        return None
    return VocAnnotation(head["path"] or str(Path(path).with_suffix(".jpg")), width, height, objects)


def _first_children(el: etree._Element) -> dict:
    """The first direct child of each tag, as ``el.find(tag)`` would find it."""
    first: dict = {}
    for child in el:
        if child.tag not in first:
            first[child.tag] = child
    return first


def _child_text(first: dict, tag: str, default: str | None = None) -> str | None:
    el = first.get(tag)
    return default if el is None else (el.text or "")  # lxml's findtext: "" for an empty element


def _voc_from_tree(tree: etree._ElementTree, path: str | Path) -> VocAnnotation:
    """:func:`_read_voc_reference` with one pass over each object's children instead of a lookup per field."""
    root = tree.getroot()
    size = root.find("size")
    width, height = int(size.findtext("width")), int(size.findtext("height"))
    objects = []
    for obj in root.iter("object"):
        first = _first_children(obj)
        coords = _first_children(first["bndbox"])
        box = _edges(*(int(float(coords[k].text)) for k in ("xmin", "ymin", "xmax", "ymax")))
        group_of = "0"
        for oi in obj.iterchildren("openimages"):  # findtext("openimages/IsGroupOf"): first match in document order
            el = next(oi.iterchildren("IsGroupOf"), None)
            if el is not None:
                group_of = el.text or ""
                break
        objects.append(
            VocObject(
                name=_child_text(first, "name"),  # type: ignore[arg-type]
                box=box,  # type: ignore[arg-type]
                difficult=_child_text(first, "difficult", "0").strip() == "1",  # type: ignore[union-attr]
                truncated=_child_text(first, "truncated", "0").strip() == "1",  # type: ignore[union-attr]
                occluded=_child_text(first, "occluded", "0").strip() == "1",  # type: ignore[union-attr]
                group_of=group_of.strip() == "1",
            )
        )
    image_path = root.findtext("path") or str(Path(path).with_suffix(".jpg"))
    return VocAnnotation(image_path, width, height, objects)


def _read_voc_reference(path: str | Path) -> VocAnnotation:
    """The reference reader (ElementPath lookups); :func:`read_voc` gives the same result faster."""
    try:
        root = etree.parse(str(path)).getroot()
        size = root.find("size")
        width, height = int(size.findtext("width")), int(size.findtext("height"))
        objects = []
        for obj in root.iter("object"):
            bb = obj.find("bndbox")
            box = _edges(*(int(float(bb.findtext(k))) for k in ("xmin", "ymin", "xmax", "ymax")))
            objects.append(
                VocObject(
                    name=obj.findtext("name"),
                    box=box,  # type: ignore[arg-type]
                    difficult=obj.findtext("difficult", "0").strip() == "1",
                    truncated=obj.findtext("truncated", "0").strip() == "1",
                    occluded=obj.findtext("occluded", "0").strip() == "1",
                    group_of=obj.findtext("openimages/IsGroupOf", "0").strip() == "1",
                )
            )
        image_path = root.findtext("path") or str(Path(path).with_suffix(".jpg"))
    except (etree.XMLSyntaxError, AttributeError, TypeError, ValueError, OverflowError) as err:
        raise DataFormatError(f"{path}: not a valid Pascal VOC annotation ({err})") from None
    return VocAnnotation(image_path, width, height, objects)
