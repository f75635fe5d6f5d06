"""Image integrity checks that are cheap enough to run on every downloaded file.

Sizes come from the JPEG header (no decode); verification decodes at 1/8 scale (libjpeg's DCT scaling still reads
every entropy-coded byte, so truncation and corruption are caught) at a fraction of a full decode's cost. Pixels are
never EXIF-rotated: Open Images boxes refer to the stored pixel grid.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

from PIL import Image

from oidyolo.errors import DataFormatError

# Open Images images are at most 1024 px on the long side; anything far larger is refused before decoding.
MAX_PIXELS = 64_000_000


def _sniff(head: bytes) -> str:
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(b"\x89PNG"):
        return "PNG"
    if head.lstrip()[:1] == b"<":
        return "HTML/XML text"
    if head.startswith((b"GIF8", b"RIFF", b"BM")):
        return "GIF/WebP/BMP"
    return "unknown bytes" if head else "an empty file"


def verify_jpeg(data: bytes, *, where: str = "image") -> tuple[int, int]:
    """``(width, height)`` of a decodable JPEG; raises :class:`DataFormatError` saying what the bytes are instead."""
    kind = _sniff(data[:16])
    if kind != "JPEG":
        raise DataFormatError(f"{where}: not a JPEG ({kind}, {len(data)} bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                width, height = img.size
                if width * height > MAX_PIXELS:
                    raise DataFormatError(f"{where}: {width}x{height} exceeds the {MAX_PIXELS:,}-pixel limit")
                img.draft(
                    img.mode if img.mode in ("L", "RGB", "CMYK") else "RGB", (max(1, width // 8), max(1, height // 8))
                )
                img.load()
    except DataFormatError:
        raise
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise DataFormatError(f"{where}: corrupt JPEG ({err})") from None
    if width < 1 or height < 1:
        raise DataFormatError(f"{where}: zero-size image")
    return width, height


def header_size(path: str | Path) -> tuple[int, int]:
    """Width and height from the file header, without decoding pixels."""
    width, height, _ = image_header(path)
    return width, height


# JPEG start-of-frame markers (baseline, progressive, lossless, ...): C0-CF less DHT (C4), JPG (C8) and DAC (CC).
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def _jpeg_frame(path: str | Path) -> tuple[int, int, int] | None:
    """(width, height, components) from a JPEG's frame header, skipping the segments before it; ``None`` if the
    bytes are not laid out as expected (the caller then asks PIL). About 10x cheaper than ``Image.open``."""
    fd = os.open(path, os.O_RDONLY)
    try:
        head = os.read(fd, 2048)  # the frame header follows the APP segments; EXIF can push it further
        pos = 2
        if head[:2] != b"\xff\xd8":
            return None
        while True:
            if pos + 10 > len(head):
                head += os.pread(fd, max(8192, pos + 10 - len(head)), len(head))
                if pos + 10 > len(head):
                    return None
            if head[pos] != 0xFF or head[pos + 1] in (0xD8, 0xD9, 0xDA, 0xFF):
                return None
            if head[pos + 1] in _SOF:  # FF Cn, length, precision, height, width, components
                return (int.from_bytes(head[pos + 7 : pos + 9], "big"), int.from_bytes(head[pos + 5 : pos + 7], "big"),
                        head[pos + 9])  # fmt: skip
            pos += 2 + int.from_bytes(head[pos + 2 : pos + 4], "big")
    finally:
        os.close(fd)


def image_header(path: str | Path) -> tuple[int, int, int]:
    """Width, height and colour channels (1 grayscale, 3 YCbCr/RGB, 4 CMYK) from the header, without decoding."""
    try:
        frame = _jpeg_frame(path)
        if frame is not None and frame[0] and frame[1] and frame[2] in (1, 3, 4):
            return frame
        with Image.open(path) as img:
            return (*img.size, len(img.getbands()))
    except FileNotFoundError:
        raise DataFormatError(f"image {path} does not exist") from None
    except (OSError, SyntaxError, ValueError) as err:
        raise DataFormatError(f"{path}: unreadable image header ({err})") from None


def looks_complete(path: str | Path) -> bool:
    """Cheap check for a stored JPEG: SOI at the start and EOI at the end (a truncated write lacks the EOI)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(3)
            fh.seek(-2, 2)
            tail = fh.read(2)
    except OSError:
        return False
    return head == b"\xff\xd8\xff" and tail == b"\xff\xd9"
