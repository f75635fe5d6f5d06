"""VOC files (every selected class per image, pixel coordinates, attributes kept) and keras-yolo3 lines."""

import xml.etree.ElementTree as ET

import pyarrow.parquet as pq
import pytest
from conftest import APPLE, BANANA, ORANGE, V5_COLUMNS, make_jpeg, v5_row, write_csv

from oidyolo.data.boxes import scan_boxes
from oidyolo.data.download import Entry, write_manifest
from oidyolo.data.voc import read_voc, write_voc
from oidyolo.data.yolo_format import format_line, parse_line, read_annotations, read_classes
from oidyolo.data.yolo_lines import build_annotations, in_val_fraction
from oidyolo.errors import ConfigError, DataFormatError

A, B, C = "00000000000000a1", "00000000000000b2", "00000000000000c3"


@pytest.fixture
def built(tmp_path):
    """Apple selected image A; Orange selected B. A also holds an (occluded) orange, which must be labelled."""
    rows = [
        v5_row(A, APPLE, (0.1, 0.5, 0.2, 0.6)),
        v5_row(A, ORANGE, (0.5, 0.9, 0.1, 0.4), attrs=(1, 0, 0, 0, 0)),
        v5_row(B, ORANGE, (0.0, 1.0, 0.0, 1.0), attrs=(0, 1, -1, 0, 0)),
        v5_row(C, BANANA, (0.2, 0.3, 0.2, 0.3)),
    ]
    csv = write_csv(tmp_path / "boxes.csv", V5_COLUMNS, rows)
    boxes = {}
    for name, mid in (("Apple", APPLE), ("Orange", ORANGE)):
        boxes[name] = tmp_path / f"{name}.parquet"
        pq.write_table(scan_boxes(csv, [mid])[0], boxes[name])
    store = tmp_path / "data" / "images" / "train"
    a, b = make_jpeg(store / f"{A}.jpg", (200, 100)), make_jpeg(store / f"{B}.jpg", (50, 40))
    write_manifest([Entry(A, str(a), 200, 100, "downloaded")], tmp_path / "apple.tsv")
    write_manifest(
        [Entry(B, str(b), 50, 40, "stored"), Entry(C, "x", 0, 0, "missing", "not found")], tmp_path / "orange.tsv"
    )
    voc = tmp_path / "voc"
    n = write_voc(
        voc,
        split="train",
        manifests=[tmp_path / "apple.tsv", tmp_path / "orange.tsv"],
        class_boxes=boxes,
        filters={"IsOccluded": [0]},
        database="Open Images v6",
    )
    return tmp_path, voc, n


def test_one_voc_file_per_stored_image_with_every_selected_class(built):
    _, voc, n = built
    assert n == 2 and sorted(p.name for p in voc.iterdir()) == [f"{A}.xml", f"{B}.xml"]
    ann = read_voc(voc / f"{A}.xml")
    assert [(o.name, o.box) for o in ann.objects] == [("Apple", (20, 20, 100, 60)), ("Orange", (100, 10, 180, 40))]
    # the orange fails the IsOccluded filter: kept (never left unlabelled) but marked difficult
    assert [o.difficult for o in ann.objects] == [False, True]
    assert (ann.width, ann.height) == (200, 100)


def test_voc_keeps_open_images_attributes_and_standard_fields(built):
    _, voc, _ = built
    root = ET.parse(voc / f"{B}.xml").getroot()  # the standard library reader, as VOC tools use
    obj = root.find("object")
    assert root.findtext("filename") == f"{B}.jpg" and root.findtext("size/depth") == "3"
    # the whole 50x40 image, in the devkit's 1-based inclusive pixels
    assert [obj.findtext(f"bndbox/{k}") for k in ("xmin", "ymin", "xmax", "ymax")] == ["1", "1", "50", "40"]
    assert obj.findtext("truncated") == "1" and obj.findtext("difficult") == "0"
    assert obj.findtext("openimages/IsGroupOf") == "-1" and obj.findtext("openimages/LabelName") == ORANGE
    assert root.findtext("source/database") == "Open Images v6"


def test_class_names_are_escaped_in_xml(tmp_path):
    from oidyolo.data.voc import annotation_xml

    row = dict(
        Class='Kitchen & dining <room> "table"',
        IsTruncated=0,
        IsOccluded=0,
        Difficult=False,
        XMin=0.1,
        XMax=0.2,
        YMin=0.1,
        YMax=0.2,
        LabelName="/m/0h8n5zk",
        Source="xclick",
        Confidence=1.0,
        IsGroupOf=0,
        IsDepiction=0,
        IsInside=0,
    )
    xml = annotation_xml(Entry(A, "p.jpg", 10, 10, "stored"), [row], split="train", database="x")
    assert ET.fromstring(xml).findtext("object/name") == row["Class"]


def test_yolo_annotations_from_voc(built):
    tmp, voc, _ = built
    out = tmp / "yolo"
    out.mkdir()
    train, _ = build_annotations(
        train_voc=voc,
        val_voc=voc,
        classes=["Apple", "Orange"],
        out_train=out / "train.txt",
        out_val=out / "val.txt",
        out_classes=out / "classes.txt",
    )
    lines = (out / "train.txt").read_text().splitlines()
    assert lines[0].split()[1:] == ["20,20,100,60,0", "100,10,180,40,1"]
    assert read_classes(out / "classes.txt") == ["Apple", "Orange"]
    assert train.boxes == 3 and train.per_class == {"Apple": 1, "Orange": 2}
    assert [a.path for a in read_annotations(out / "train.txt", num_classes=2)] == [
        str(tmp / "data" / "images" / "train" / f"{A}.jpg"),
        str(tmp / "data" / "images" / "train" / f"{B}.jpg"),
    ]


def test_difficult_boxes_can_be_left_out(built):
    tmp, voc, _ = built
    stats, _ = build_annotations(
        train_voc=voc,
        val_voc=voc,
        classes=["Apple", "Orange"],
        out_train=tmp / "t.txt",
        out_val=tmp / "v.txt",
        out_classes=tmp / "c.txt",
        include_difficult=False,
    )
    assert stats.dropped["difficult boxes"] == 1 and stats.boxes == 2


def test_val_fraction_is_a_stable_seeded_partition():
    ids = [f"{i:016x}" for i in range(2000)]
    picked = [i for i in ids if in_val_fraction(i, 0.1, seed=3)]
    assert 150 < len(picked) < 250
    assert picked == [i for i in ids if in_val_fraction(i, 0.1, seed=3)]
    assert picked != [i for i in ids if in_val_fraction(i, 0.1, seed=4)]


def test_build_refuses_ambiguous_or_empty_validation(built):
    tmp, voc, _ = built
    common = dict(train_voc=voc, classes=["Apple"], out_train=tmp / "t", out_val=tmp / "v", out_classes=tmp / "c")
    with pytest.raises(ConfigError, match="either a validation split or val_fraction"):
        build_annotations(val_voc=voc, val_fraction=0.2, **common)
    with pytest.raises(ConfigError, match="between 0 and 1"):
        build_annotations(val_voc=None, val_fraction=1.5, **common)
    (tmp / "empty").mkdir()
    with pytest.raises(ConfigError, match="validation set is empty"):
        build_annotations(val_voc=tmp / "empty", **common)


def test_zero_size_boxes_are_dropped_with_a_count(tmp_path):
    # Another writer's devkit file: xmax = xmin - 1 spans no pixel; xmin = xmax is a 1-pixel box, kept.
    voc = tmp_path / "voc"
    voc.mkdir()
    (voc / f"{A}.xml").write_text(
        "<annotation><path>img.jpg</path><size><width>10</width><height>10</height></size>"
        "<object><name>Apple</name><bndbox><xmin>4</xmin><ymin>3</ymin><xmax>3</xmax><ymax>8</ymax></bndbox></object>"
        "<object><name>Apple</name><bndbox><xmin>2</xmin><ymin>2</ymin><xmax>5</xmax><ymax>5</ymax></bndbox></object>"
        "<object><name>Apple</name><bndbox><xmin>7</xmin><ymin>7</ymin><xmax>7</xmax><ymax>7</ymax></bndbox></object>"
        "</annotation>"
    )
    stats, _ = build_annotations(
        train_voc=voc,
        val_voc=voc,
        classes=["Apple"],
        out_train=tmp_path / "t",
        out_val=tmp_path / "v",
        out_classes=tmp_path / "c",
    )
    assert stats.dropped["zero-size boxes"] == 1 and (tmp_path / "t").read_text() == "img.jpg 1,1,5,5,0 6,6,7,7,0\n"


def test_format_and_parse_lines():
    line = format_line("data/images/train/x.jpg", [(1, 2, 30, 40, 0), (5, 6, 7, 8, 2)])
    assert line == "data/images/train/x.jpg 1,2,30,40,0 5,6,7,8,2"
    parsed = parse_line(line, num_classes=3)
    assert parsed.boxes.tolist() == [[1, 2, 30, 40, 0], [5, 6, 7, 8, 2]]
    with pytest.raises(DataFormatError, match="whitespace"):
        format_line("my images/x.jpg", [])
    with pytest.raises(DataFormatError, match="class id out of range"):
        parse_line(line, num_classes=2)
    with pytest.raises(DataFormatError, match="integers"):
        parse_line("x.jpg 1.5,2,3,4,0")
    with pytest.raises(DataFormatError, match="degenerate"):
        parse_line("x.jpg 5,2,3,4,0")


def _faster_rcnn_boxes(xml_path):
    """Boxes as py-faster-rcnn's pascal_voc reader stores them (every coordinate minus 1, into uint16), and the
    horizontally flipped copies its training adds (``x1' = W - x2 - 1``, ``x2' = W - x1 - 1``, asserting x2' >= x1')."""
    import numpy as np

    root = ET.parse(xml_path).getroot()
    width = int(root.findtext("size/width"))
    raw = [
        [float(o.findtext(f"bndbox/{k}")) - 1 for k in ("xmin", "ymin", "xmax", "ymax")] for o in root.iter("object")
    ]
    boxes = np.array(raw).astype(np.uint16)
    flipped = boxes.copy()
    flipped[:, 0] = width - boxes[:, 2] - 1
    flipped[:, 2] = width - boxes[:, 0] - 1
    return width, int(root.findtext("size/height")), boxes, flipped


EDGE_BOXES = [  # (XMin, XMax, YMin, YMax): on the left/top edge, the right/bottom edge, the whole image, slivers
    (0.0, 0.3, 0.0, 0.4), (0.7, 1.0, 0.6, 1.0), (0.0, 1.0, 0.0, 1.0), (0.5, 0.501, 0.2, 0.201),
    (0.999, 1.0, 0.0, 0.001),
]  # fmt: skip


@pytest.mark.parametrize("mode", ["RGB", "L", "CMYK"])
def test_voc_is_devkit_valid_and_reads_back_as_the_yolo_pixels(tmp_path, mode):
    from PIL import Image

    rows = [v5_row(A, APPLE, box) for box in EDGE_BOXES]
    csv = write_csv(tmp_path / "boxes.csv", V5_COLUMNS, rows)
    pq.write_table(scan_boxes(csv, [APPLE])[0], tmp_path / "apple.parquet")
    image = tmp_path / "store" / f"{A}.jpg"
    image.parent.mkdir()
    Image.new(mode, (64, 48)).save(image, "JPEG")
    write_manifest([Entry(A, str(image), 64, 48, "downloaded")], tmp_path / "m.tsv")
    voc = tmp_path / "voc"
    write_voc(voc, split="train", manifests=[tmp_path / "m.tsv"], class_boxes={"Apple": tmp_path / "apple.parquet"},
              filters=None)  # fmt: skip
    root = ET.parse(voc / f"{A}.xml").getroot()
    assert root.findtext("size/depth") == {"RGB": "3", "L": "1", "CMYK": "4"}[mode]
    width, height, boxes, flipped = _faster_rcnn_boxes(voc / f"{A}.xml")
    assert len(boxes) == len(EDGE_BOXES)
    # no underflow to 65535: every box inside the image, with x1 < x2 and y1 < y2, and its flipped copy valid
    assert (boxes[:, [0, 2]] < width).all() and (boxes[:, [1, 3]] < height).all()
    assert (boxes[:, 0] < boxes[:, 2]).all() and (boxes[:, 1] < boxes[:, 3]).all()
    assert (flipped[:, 2] >= flipped[:, 0]).all() and (flipped < width).all()
    # the devkit integers, then the same boxes read back as the 0-based edges keras-yolo3 gets
    spans = [[int(o.findtext(f"bndbox/{k}")) for k in ("xmin", "ymin", "xmax", "ymax")] for o in root.iter("object")]
    assert spans[:3] == [[1, 1, 19, 19], [46, 30, 64, 48], [1, 1, 64, 48]]
    assert spans[3:] == [[33, 11, 34, 12], [63, 1, 64, 2]]  # slivers: the smallest box with xmin < xmax, inside
    assert [o.box for o in read_voc(voc / f"{A}.xml").objects] == [(a - 1, b - 1, c, d) for a, b, c, d in spans]
    build_annotations(train_voc=voc, val_voc=voc, classes=["Apple"], out_train=tmp_path / "t.txt",
                      out_val=tmp_path / "v.txt", out_classes=tmp_path / "c.txt")  # fmt: skip
    line = read_annotations(tmp_path / "t.txt", num_classes=1)[0]
    assert line.boxes[:3, :4].tolist() == [[0, 0, 19, 19], [45, 29, 64, 48], [0, 0, 64, 48]]
    assert len(line.boxes) == len(EDGE_BOXES)  # no box is lost to zero size any more


def test_image_header_reads_what_pil_reads(tmp_path):
    """The frame-header reader behind ``<depth>`` against PIL on grayscale, CMYK, progressive and EXIF-heavy JPEGs;
    anything else (PNG, a truncated file) goes to PIL and its error."""
    from PIL import Image

    from oidyolo.data.imagecheck import image_header

    exif = Image.Exif()
    exif[0x010E] = "x" * 20_000  # an ImageDescription that pushes the frame header past the first read
    cases = {"rgb": ("RGB", {}), "gray": ("L", {}), "cmyk": ("CMYK", {}), "progressive": ("RGB", {"progressive": True}),
             "exif": ("RGB", {"exif": exif})}  # fmt: skip
    for name, (mode, opts) in cases.items():
        path = tmp_path / f"{name}.jpg"
        Image.new(mode, (77, 41)).save(path, "JPEG", **opts)
        with Image.open(path) as img:
            assert image_header(path) == (*img.size, len(img.getbands())), name
    Image.new("RGB", (5, 6)).save(tmp_path / "p.png")
    assert image_header(tmp_path / "p.png") == (5, 6, 3)
    (tmp_path / "t.jpg").write_bytes((tmp_path / "rgb.jpg").read_bytes()[:30])
    with pytest.raises(DataFormatError, match="unreadable image header"):
        image_header(tmp_path / "t.jpg")


def test_a_class_without_training_boxes_is_an_error_before_training(built):
    tmp, voc, _ = built
    out = {"out_train": tmp / "t.txt", "out_val": tmp / "v.txt", "out_classes": tmp / "c.txt"}
    with pytest.raises(ConfigError, match=r"no training boxes of 'Polar bear' in .*voc: remove it from `classes`"):
        build_annotations(train_voc=voc, val_voc=voc, classes=["Apple", "Polar bear", "Orange"], **out)
    assert not any(p.exists() for p in out.values())  # nothing written
