"""Pascal VOC XML: one file per selected image, holding every selected class present in it.

Open Images coordinates are fractions of the image size (0 = left/top edge, 1 = right/bottom edge). VOC wants
pixels: we write ``round(fraction * size)`` clamped to the image, as 0-based pixel edges, with the size read from
the stored JPEG's header. ``truncated``/``occluded`` keep VOC's 0/1 meaning (Open Images' -1, unknown, becomes 0);
every Open Images attribute is kept verbatim under ``<openimages>``, so nothing is lost.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from lxml import etree

from oidyolo.data.boxes import ATTRIBUTES, BOX_SCHEMA
from oidyolo.data.download import Entry, read_manifest
from oidyolo.data.select import Filters, box_passes, normalize_filters
from oidyolo.errors import DataFormatError


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


def to_pixels(fraction: float, size: int) -> int:
    return min(size, max(0, round(fraction * size)))


def annotation_xml(entry: Entry, rows: list[dict], *, split: str, database: str) -> bytes:
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
    _text(size, "depth", 3)
    _text(root, "segmented", 0)
    for row in rows:
        obj = etree.SubElement(root, "object")
        _text(obj, "name", row["Class"])
        _text(obj, "pose", "Unspecified")
        _text(obj, "truncated", int(row["IsTruncated"] == 1))
        _text(obj, "occluded", int(row["IsOccluded"] == 1))
        _text(obj, "difficult", int(row["Difficult"]))
        box = etree.SubElement(obj, "bndbox")
        _text(box, "xmin", to_pixels(row["XMin"], entry.width))
        _text(box, "ymin", to_pixels(row["YMin"], entry.height))
        _text(box, "xmax", to_pixels(row["XMax"], entry.width))
        _text(box, "ymax", to_pixels(row["YMax"], entry.height))
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
    out.mkdir(parents=True, exist_ok=True)
    entries = selected_entries(manifests)
    norm = normalize_filters(filters)  # type: ignore[arg-type]
    classes = [ClassBoxes(name, pq.read_table(path, schema=BOX_SCHEMA), norm) for name, path in class_boxes.items()]
    table = boxes_in_images(classes, sorted(entries))
    by_image: dict[str, list[dict]] = {}
    for row in table.to_pylist():
        by_image.setdefault(row["ImageID"], []).append(row)
    difficult = 0
    for image_id, entry in entries.items():
        rows = by_image.get(image_id)
        if not rows:
            raise DataFormatError(f"image {image_id} is in a manifest but has no boxes of any selected class")
        difficult += sum(r["Difficult"] for r in rows)
        xml = annotation_xml(entry, rows, split=split, database=database)
        tmp = out / f".{image_id}.xml.part"
        tmp.write_bytes(xml)
        tmp.replace(out / f"{image_id}.xml")
    print(
        f"voc {split}: {len(entries)} images, {table.num_rows} boxes ({difficult} marked difficult by the filters)",
        file=sys.stderr,
    )
    return len(entries)


@dataclass(frozen=True)
class VocObject:
    name: str
    box: tuple[int, int, int, int]
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


def read_voc(path: str | Path) -> VocAnnotation:
    """Parse a VOC file (ours or any standard one; Open Images extras are optional)."""
    try:
        root = etree.parse(str(path)).getroot()
        size = root.find("size")
        width, height = int(size.findtext("width")), int(size.findtext("height"))
        objects = []
        for obj in root.iter("object"):
            bb = obj.find("bndbox")
            box = tuple(int(float(bb.findtext(k))) for k in ("xmin", "ymin", "xmax", "ymax"))
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
    except (etree.XMLSyntaxError, AttributeError, TypeError, ValueError) as err:
        raise DataFormatError(f"{path}: not a valid Pascal VOC annotation ({err})") from None
    return VocAnnotation(image_path, width, height, objects)
