"""Hostile and unusual images: each is verified or refused with a specific reason, and pixels are never rotated
without their boxes."""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest
from PIL import Image

from oidyolo.data.imagecheck import MAX_PIXELS, header_size, looks_complete, verify_jpeg
from oidyolo.errors import DataFormatError


def jpeg(mode: str = "RGB", size=(64, 48), **save) -> bytes:
    buf = io.BytesIO()
    color = {"RGB": (200, 30, 30), "L": 128, "CMYK": (0, 200, 200, 0)}[mode]
    Image.new(mode, size, color).save(buf, "JPEG", quality=90, **save)
    return buf.getvalue()


@pytest.mark.parametrize("mode", ["RGB", "L", "CMYK"])
def test_rgb_grayscale_and_cmyk_jpegs_verify(mode):
    assert verify_jpeg(jpeg(mode), where="x") == (64, 48)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "an empty file"),
        (b"<html><body>404 Not Found</body></html>", "HTML/XML text"),
        (b"<?xml version='1.0'?><Error><Code>SlowDown</Code></Error>", "HTML/XML text"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "PNG"),
        (b"GIF89a" + b"\x00" * 40, "GIF/WebP/BMP"),
        (b"\x00\x01\x02garbage", "unknown bytes"),
    ],
)
def test_non_jpeg_bodies_are_refused_naming_what_they_are(data, reason):
    with pytest.raises(DataFormatError, match=f"not a JPEG \\({reason}"):
        verify_jpeg(data, where="img")


def test_sixteen_bit_png_saved_as_jpg_is_refused():
    buf = io.BytesIO()
    Image.fromarray(np.full((8, 8), 40000, dtype=np.uint16)).save(buf, "PNG")
    with pytest.raises(DataFormatError, match=r"not a JPEG \(PNG"):
        verify_jpeg(buf.getvalue())


@pytest.mark.parametrize("cut", [0.3, 0.6, 0.95])
def test_truncated_jpegs_are_refused(cut):
    data = jpeg(size=(256, 256))
    with pytest.raises(DataFormatError, match="corrupt JPEG"):
        verify_jpeg(data[: int(len(data) * cut)])


def _claim_size(data: bytes, width: int, height: int) -> bytes:
    """The same JPEG with its SOF header claiming another size (a decompression-bomb shape, no memory needed)."""
    data = bytearray(data)
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def test_decompression_bomb_dimensions_are_refused_before_decoding():
    bomb = _claim_size(jpeg(), 60000, 60000)
    assert MAX_PIXELS < 60000 * 60000
    with pytest.raises(DataFormatError, match=r"pixel limit|corrupt JPEG"):
        verify_jpeg(bomb)


def test_exif_orientation_never_rotates_pixels(tmp_path):
    """A JPEG tagged Orientation=6 (rotate 90 on display) keeps its stored size everywhere we read it, so boxes,
    which refer to the stored pixels, stay valid."""
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "rotated.jpg"
    path.write_bytes(jpeg(size=(80, 40), exif=exif.tobytes()))
    assert Image.open(path).getexif()[0x0112] == 6
    assert header_size(path) == (80, 40)
    assert verify_jpeg(path.read_bytes()) == (80, 40)
    tf = pytest.importorskip("tensorflow")
    decoded = tf.io.decode_image(tf.io.read_file(str(path)), channels=3, expand_animations=False)
    assert tuple(decoded.shape[:2]) == (40, 80)  # (height, width) as stored: TensorFlow ignores EXIF too


def test_store_check_catches_a_truncated_file(tmp_path):
    good, bad = tmp_path / "good.jpg", tmp_path / "bad.jpg"
    data = jpeg()
    good.write_bytes(data)
    bad.write_bytes(data[:-10])
    assert looks_complete(good) and not looks_complete(bad)
    assert not looks_complete(tmp_path / "absent.jpg")
