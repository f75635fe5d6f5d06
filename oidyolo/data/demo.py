"""A deterministic demo source laid out exactly like Open Images, for machines that cannot reach the real one.

``generate_demo(out_dir, spec)`` writes

* ``out_dir/openimages/<relpath>``: the class descriptions, the hierarchy and one bbox CSV per split, at the relative
  paths of :func:`oidyolo.data.versions.version_files` (the metadata base URL of the real dataset), and
* ``out_dir/open-images-dataset/<split>/<ImageID>.jpg``: the images (the public bucket's key layout).

Images show procedurally drawn apples, oranges and bananas (plus a few lemons, strawberries, balls and coffee cups) on
varied backgrounds. Each box is the pixel extent of the object's drawn mask, so a detector can learn them exactly. The
attribute columns follow Open Images' conventions: full-extent boxes, ``IsOccluded`` when more than 15 % of the object
is hidden by objects drawn later, ``IsTruncated`` (box clipped at the border), ``IsGroupOf`` (one box over a cluster
of 5+ same-class objects and no individual boxes), ``IsDepiction`` (flat cartoon drawing) and ``-1`` for unknown.

Every image is drawn from its own ``numpy.random.default_rng((seed, split, index))`` stream, so the output is
byte-identical for a given spec whatever the generation order. Only numpy, Pillow and the stdlib are used (no
TensorFlow), so data rules stay light.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import io
import json
import math
import os
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from oidyolo.data.versions import SPLITS, VERSIONS, version_files
from oidyolo.errors import ConfigError, DataFormatError

# The classes the demo trains on; the summary's multi-class count refers to these.
TARGET_CLASSES = ("Apple", "Orange", "Banana")
# A few more fruit, so a hierarchy query for "Fruit" finds several subclasses.
EXTRA_FRUIT = ("Lemon", "Strawberry")
# Boxed non-fruit objects, so the CSV holds other classes as real files do.
DISTRACTORS = ("Ball", "Coffee cup")
ALL_CLASSES = TARGET_CLASSES + EXTRA_FRUIT + DISTRACTORS

BOX_COLUMNS = [
    *("ImageID", "Source", "LabelName", "Confidence", "XMin", "XMax", "YMin", "YMax"),
    *("IsOccluded", "IsTruncated", "IsGroupOf", "IsDepiction", "IsInside"),
]
XCLICK_COLUMNS = [f"XClick{i}{axis}" for axis in "XY" for i in range(1, 5)]

METADATA_DIR = "openimages"  # stands for https://storage.googleapis.com/openimages
IMAGES_DIR = "open-images-dataset"  # stands for s3://open-images-dataset

OCCLUDED_FRACTION = 0.15  # hidden share above which IsOccluded=1
_MIN_VISIBLE = 0.5  # placements that would hide more than half of an earlier object are rejected
_UNKNOWN_RATE = 0.03  # rows whose attributes are all -1
_ACTIVEMIL_RATE = 0.08
_GROUP_PERIOD = 32  # one image in 32 holds a group-of cluster (~3 %)
_SPECIAL_MODES_MIN_IMAGES = 40  # splits this large get two grayscale and one CMYK JPEG


@dataclass(frozen=True)
class DemoSpec:
    """What to generate. The defaults make the workflow's demo source (300 train, 80 validation, 80 test images)."""

    version: str = "v6"
    seed: int = 0
    images: dict[str, int] = field(default_factory=lambda: {"train": 300, "validation": 80, "test": 80})
    min_side: int = 256
    max_side: int = 512
    # Rows whose image is not written to the bucket (real Open Images lists a few such images).
    missing: dict[str, int] = field(default_factory=lambda: {"train": 2})
    quality: int = 90

    def __post_init__(self) -> None:
        if self.version not in VERSIONS:
            raise ConfigError(f"unknown Open Images version {self.version!r}; choose one of {', '.join(VERSIONS)}")
        if self.seed < 0:
            raise ConfigError(f"demo seed must be >= 0, got {self.seed}")
        for name, counts in (("images", self.images), ("missing", self.missing)):
            for split, n in counts.items():
                if split not in SPLITS:
                    raise ConfigError(f"demo {name}: unknown split {split!r}; choose from {', '.join(SPLITS)}")
                if n < 0:
                    raise ConfigError(f"demo {name}[{split!r}] must be >= 0, got {n}")
        for split, n in self.missing.items():
            if n > self.images.get(split, 0):
                raise ConfigError(f"demo missing[{split!r}]={n} exceeds the split's {self.images.get(split, 0)} images")
        if not 64 <= self.min_side <= self.max_side:
            raise ConfigError(f"demo sides need 64 <= min_side <= max_side, got {self.min_side}, {self.max_side}")
        if not 1 <= self.quality <= 100:
            raise ConfigError(f"demo JPEG quality must be in 1..100, got {self.quality}")

    def count(self, split: str) -> int:
        return self.images.get(split, 0)


@dataclass
class SplitSummary:
    images: int = 0  # rows' images, written or not
    written: int = 0
    boxes: dict[str, int] = field(default_factory=dict)  # per class display name
    multi_class_images: int = 0  # images holding 2+ of TARGET_CLASSES
    truncated: int = 0
    occluded: int = 0
    group_of: int = 0
    depiction: int = 0
    unknown_attributes: int = 0  # rows with -1 attributes
    missing_ids: list[str] = field(default_factory=list)
    grayscale_ids: list[str] = field(default_factory=list)
    cmyk_ids: list[str] = field(default_factory=list)


@dataclass
class DemoSummary:
    version: str
    seed: int
    splits: dict[str, SplitSummary] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"


# ----------------------------------------------------------------------------------------------------------------------
# Planning: IDs, sizes, which images are missing, grayscale or CMYK.


@dataclass(frozen=True)
class ImagePlan:
    split: str
    index: int
    image_id: str
    mode: str  # "RGB", "L" or "CMYK": the mode of the written JPEG
    missing: bool  # listed in the CSV but not written to the bucket


def _split_code(split: str) -> int:
    return zlib.crc32(split.encode())


def _image_ids(spec: DemoSpec) -> dict[str, list[str]]:
    """16 hex characters per image from (seed, split, index); a (never yet seen) collision is re-hashed with a salt."""
    seen: set[str] = set()
    ids: dict[str, list[str]] = {}
    for split in SPLITS:
        ids[split] = []
        for index in range(spec.count(split)):
            salt = 0
            while True:
                key = f"oidyolo-demo:{spec.seed}:{split}:{index}:{salt}".encode()
                image_id = hashlib.blake2b(key, digest_size=8).hexdigest()
                if image_id not in seen:
                    break
                salt += 1
            seen.add(image_id)
            ids[split].append(image_id)
    return ids


def plan_images(spec: DemoSpec, split: str) -> list[ImagePlan]:
    """The images of one split, in index order."""
    n = spec.count(split)
    ids = _image_ids(spec)[split]
    rng = np.random.default_rng((spec.seed, _split_code(split), 0xD3A0))
    missing = {int(i) for i in rng.choice(n, size=spec.missing.get(split, 0), replace=False)} if n else set()
    modes = ["RGB"] * n
    if n >= _SPECIAL_MODES_MIN_IMAGES:
        present = [i for i in range(n) if i not in missing]
        special = rng.choice(present, size=3, replace=False)
        modes[int(special[0])] = modes[int(special[1])] = "L"
        modes[int(special[2])] = "CMYK"
    return [ImagePlan(split, i, ids[i], modes[i], i in missing) for i in range(n)]


# ----------------------------------------------------------------------------------------------------------------------
# Object shapes. Each works in a local frame: U, V are pixel-centre coordinates relative to the object's centre in
# units of its radius, rotated with the object (V points "down" in the object); X, Y are the same without rotation
# (for lighting that stays fixed in the image). ``parts`` returns named boolean masks drawn in order (later parts
# on top); their union is the object's mask and so its box.

Parts = dict[str, np.ndarray]


@dataclass
class _Frame:
    x0: int  # window origin in image pixels (may be negative)
    y0: int
    U: np.ndarray
    V: np.ndarray
    X: np.ndarray
    Y: np.ndarray
    radius: float  # pixels per local unit


def _frame(cx: float, cy: float, radius: float, extent: float, theta: float) -> _Frame:
    half = math.ceil(extent * radius) + 2
    x0, y0 = math.floor(cx) - half, math.floor(cy) - half
    xs = (np.arange(x0, x0 + 2 * half + 1, dtype=np.float32) + 0.5 - cx) / radius
    ys = (np.arange(y0, y0 + 2 * half + 1, dtype=np.float32) + 0.5 - cy) / radius
    X, Y = np.meshgrid(xs, ys)
    c, s = math.cos(theta), math.sin(theta)
    return _Frame(x0, y0, X * c + Y * s, -X * s + Y * c, X, Y, radius)


def _ellipse(U: np.ndarray, V: np.ndarray, cu: float, cv: float, a: float, b: float, angle: float = 0.0) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    du, dv = U - cu, V - cv
    return ((du * c + dv * s) / a) ** 2 + ((-du * s + dv * c) / b) ** 2 <= 1.0


def _lighting(F: _Frame, p: dict) -> np.ndarray:
    """A soft sphere shading: bright towards the light (upper left), darker at the far rim."""
    d = np.sqrt((F.X - p["light"][0]) ** 2 + (F.Y - p["light"][1]) ** 2)
    return np.clip(1.18 - 0.42 * d, 0.45, 1.12)


def _highlight(F: _Frame, p: dict, size: float = 0.045) -> np.ndarray:
    lx, ly = p["light"]
    return np.exp(-((F.X - 0.8 * lx) ** 2 + (F.Y - 0.8 * ly) ** 2) / size)[..., None]


def _jitter(rng: np.random.Generator, rgb: tuple[float, float, float], amount: float = 0.08) -> np.ndarray:
    """A base colour with per-channel and brightness jitter."""
    c = np.asarray(rgb, dtype=np.float32) * (1 + rng.uniform(-amount, amount, 3)) * rng.uniform(0.88, 1.1)
    return np.clip(c, 0, 255).astype(np.float32)


class _Shape:
    extent = 1.3  # local half-size that bounds every part
    max_tilt = math.pi  # rotation range (+-)

    def params(self, rng: np.random.Generator) -> dict:
        return {"light": (rng.uniform(-0.6, -0.2), rng.uniform(-0.7, -0.3))}

    def parts(self, F: _Frame, p: dict) -> Parts:
        raise NotImplementedError

    def flat_colours(self, p: dict) -> dict[str, np.ndarray]:
        """Solid colours of the parts for depictions."""
        raise NotImplementedError

    def paint(self, F: _Frame, p: dict, parts: Parts, rng: np.random.Generator) -> np.ndarray:
        raise NotImplementedError


class _Apple(_Shape):
    extent = 1.35
    max_tilt = 0.6

    def params(self, rng: np.random.Generator) -> dict:
        kind = rng.choice(3, p=[0.55, 0.3, 0.15])
        base = [(196, 28, 34), (132, 196, 58), (214, 60, 36)][kind]
        return {
            **super().params(rng),
            "colour": _jitter(rng, base),
            "streaks": kind == 2,
            "leaf": bool(rng.random() < 0.5),
            "leaf_side": float(rng.choice([-1.0, 1.0])),
            "stem_bend": rng.uniform(-0.15, 0.2),
            "squash": rng.uniform(0.92, 1.06),
        }

    def parts(self, F: _Frame, p: dict) -> Parts:
        U, V = F.U, F.V * p["squash"]
        phi = np.arctan2(U, -V)  # 0 at the top
        radius = 1 - 0.14 * np.exp(-((phi / 0.32) ** 2)) - 0.05 * np.exp(-(((np.abs(phi) - math.pi) / 0.35) ** 2))
        # A little wider at the shoulders than at the bottom, as apples are.
        body = np.hypot(U * (1 - 0.06 * V), V) <= radius
        stem = (np.abs(F.U - p["stem_bend"] * (-F.V - 0.75)) < 0.06) & (F.V > -1.25) & (F.V < -0.7)
        parts = {"body": body, "stem": stem}
        if p["leaf"]:
            side = p["leaf_side"]
            parts["leaf"] = _ellipse(F.U, F.V, 0.27 * side, -1.02, 0.27, 0.1, -0.45 * side)
        return parts

    def flat_colours(self, p: dict) -> dict[str, np.ndarray]:
        return {"body": p["colour"], "stem": np.float32([100, 60, 25]), "leaf": np.float32([60, 150, 40])}

    def paint(self, F: _Frame, p: dict, parts: Parts, rng: np.random.Generator) -> np.ndarray:
        rgb = p["colour"] * _lighting(F, p)[..., None]
        if p["streaks"]:  # a blush apple: yellow-green streaks running top to bottom
            streak = np.clip(np.sin(np.arctan2(F.U, F.V + 1.5) * 40 + 3 * np.sin(F.U * 5)), 0, 1) * (0.6 + 0.4 * F.V)
            rgb = rgb + (streak * 35)[..., None] * np.float32([0.3, 1.0, 0.1])
        rgb = rgb + _highlight(F, p) * 140
        rgb = np.where(parts["stem"][..., None], np.float32([95, 60, 28]), rgb)
        if "leaf" in parts:
            vein = np.abs(F.V + 1.02 + 0.3 * p["leaf_side"] * (F.U - 0.27 * p["leaf_side"])) < 0.02
            leaf = np.where(vein[..., None], np.float32([90, 170, 70]), np.float32([55, 140, 40]))
            rgb = np.where(parts["leaf"][..., None], leaf, rgb)
        return rgb


class _Orange(_Shape):
    extent = 1.1

    def params(self, rng: np.random.Generator) -> dict:
        return {
            **super().params(rng),
            "colour": _jitter(rng, (246, 140, 22), 0.06),
            "wobble": rng.uniform(0, 2 * math.pi),
            "navel": (rng.uniform(-0.3, 0.3), rng.uniform(-0.3, 0.3)),
        }

    def parts(self, F: _Frame, p: dict) -> Parts:
        phi = np.arctan2(F.V, F.U)
        return {"body": np.hypot(F.U, F.V) <= 1 + 0.015 * np.sin(7 * phi + p["wobble"])}

    def flat_colours(self, p: dict) -> dict[str, np.ndarray]:
        return {"body": p["colour"]}

    def paint(self, F: _Frame, p: dict, parts: Parts, rng: np.random.Generator) -> np.ndarray:
        # Dimpled peel: fine noise plus sparse darker pores.
        noise = rng.standard_normal(F.U.shape).astype(np.float32)
        peel = 1 + 0.06 * noise - 0.12 * (noise > 1.9)
        rgb = p["colour"] * (_lighting(F, p) * peel)[..., None] + _highlight(F, p, 0.06) * 90
        nu, nv = p["navel"]
        navel = np.hypot(F.U - nu, F.V - nv) <= 0.075
        return np.where(navel[..., None], np.float32([150, 95, 35]), rgb)


class _Banana(_Shape):
    """A crescent: the band around a circular arc, thickest mid-length, with a stalk at one end and a dark tip."""

    extent = 1.35

    def params(self, rng: np.random.Generator) -> dict:
        span = rng.uniform(1.2, 1.9)  # arc angle, radians
        arc = 1 / math.sin(span / 2)  # chord half-length 1
        ripe = rng.random() < 0.8
        return {
            **super().params(rng),
            "span": span,
            "arc": arc,
            "centre": arc * (1 + math.cos(span / 2)) / 2,  # centres the crescent vertically
            "thick": rng.uniform(0.22, 0.32),
            "colour": _jitter(rng, (242, 208, 48) if ripe else (190, 200, 60), 0.06),
            "spots": bool(rng.random() < 0.3),
        }

    def _coords(self, F: _Frame, p: dict) -> tuple[np.ndarray, np.ndarray]:
        """s: 0..1 along the arc (stalk end to tip); w: signed distance across the band."""
        psi = np.arctan2(F.U, F.V + p["centre"])
        return psi / p["span"] + 0.5, np.hypot(F.U, F.V + p["centre"]) - p["arc"]

    def parts(self, F: _Frame, p: dict) -> Parts:
        s, w = self._coords(F, p)
        half = p["thick"] * np.clip(np.sin(np.pi * np.clip(s, 0, 1)), 0, 1) ** 0.55
        body = (s >= 0.03) & (s <= 1) & (np.abs(w) <= half)
        stalk = (s > -0.06) & (s < 0.08) & (np.abs(w) <= 0.055)
        tip = body & (s > 0.95)
        return {"body": body, "stalk": stalk, "tip": tip}

    def flat_colours(self, p: dict) -> dict[str, np.ndarray]:
        return {"body": p["colour"], "stalk": np.float32([110, 100, 40]), "tip": np.float32([70, 45, 20])}

    def paint(self, F: _Frame, p: dict, parts: Parts, rng: np.random.Generator) -> np.ndarray:
        _, w = self._coords(F, p)
        across = np.clip(w / (p["thick"] + 1e-6), -1, 1)
        # Lighter on the outer curve, darker on the inner one, with faint ridges along the length.
        shade = 1.0 + 0.18 * across - 0.1 * (np.abs(np.abs(across) - 0.5) < 0.06)
        rgb = p["colour"] * (shade * np.clip(_lighting(F, p) + 0.15, 0, 1.1))[..., None]
        if p["spots"]:
            spots = rng.random(F.U.shape) < 0.004
            spots = spots | np.roll(spots, 1, 0) | np.roll(spots, 1, 1)
            rgb = np.where(spots[..., None], np.float32([110, 75, 30]), rgb)
        rgb = np.where(parts["stalk"][..., None], np.float32([120, 110, 45]), rgb)
        return np.where(parts["tip"][..., None], np.float32([75, 48, 22]), rgb)


class _Lemon(_Shape):
    """An ellipse with a pointed nub at each end of the long axis."""

    extent = 1.05

    def params(self, rng: np.random.Generator) -> dict:
        return {
            **super().params(rng),
            "minor": rng.uniform(0.62, 0.74),
            "colour": _jitter(rng, (250, 228, 60), 0.05),
        }

    def parts(self, F: _Frame, p: dict) -> Parts:
        phi = np.arctan2(F.V, F.U)
        b = p["minor"]
        r = b / np.sqrt((b * np.cos(phi)) ** 2 + np.sin(phi) ** 2)
        nub = 0.17 * (np.exp(-((phi / 0.16) ** 2)) + np.exp(-(((np.abs(phi) - math.pi) / 0.16) ** 2)))
        return {"body": np.hypot(F.U, F.V) <= (r + nub) / 1.17}

    def flat_colours(self, p: dict) -> dict[str, np.ndarray]:
        return {"body": p["colour"]}

    def paint(self, F: _Frame, p: dict, parts: Parts, rng: np.random.Generator) -> np.ndarray:
        peel = 1 + 0.035 * rng.standard_normal(F.U.shape).astype(np.float32)
        return p["colour"] * (_lighting(F, p) * peel)[..., None] + _highlight(F, p) * 80


class _Strawberry(_Shape):
    """A rounded triangle pointing down, dotted with seeds, under a green calyx."""

    extent = 1.1
    max_tilt = 0.7

    def params(self, rng: np.random.Generator) -> dict:
        return {
            **super().params(rng),
            "colour": _jitter(rng, (214, 30, 44), 0.07),
            "seed_jitter": rng.uniform(-0.3, 0.3, (64, 64, 2)).astype(np.float32),
            "calyx_turn": rng.uniform(0, 2 * math.pi),
        }

    def parts(self, F: _Frame, p: dict) -> Parts:
        t = (F.V + 0.75) / 1.75  # 0 at the shoulders, 1 at the tip
        tc = np.clip(t, 0, 1)
        half = 0.92 * (1 - tc) ** 0.75 * np.sqrt(np.clip(tc / 0.16, 0, 1)) + 0.06 * (1 - tc)
        body = (t >= 0) & (t <= 1) & (np.abs(F.U) <= half)
        # Calyx: a five-pointed star of sepals over the shoulders, plus a short stalk.
        du, dv = F.U, F.V + 0.72
        ang = np.arctan2(dv, du)
        star = np.hypot(du, dv) <= 0.2 + 0.28 * np.abs(np.cos(2.5 * ang + p["calyx_turn"])) ** 3
        calyx = star & (dv > -0.25)
        stalk = (np.abs(F.U) < 0.05) & (F.V > -1.05) & (F.V < -0.7)
        return {"body": body, "calyx": calyx | stalk}

    def flat_colours(self, p: dict) -> dict[str, np.ndarray]:
        return {"body": p["colour"], "calyx": np.float32([55, 150, 45])}

    def paint(self, F: _Frame, p: dict, parts: Parts, rng: np.random.Generator) -> np.ndarray:
        rgb = p["colour"] * _lighting(F, p)[..., None] + _highlight(F, p, 0.03) * 110
        # Seeds on a jittered grid: one per cell, a small yellow dot.
        cell = 0.2
        gu, gv = np.floor(F.U / cell), np.floor(F.V / cell)
        j = p["seed_jitter"][gu.astype(np.int64) % 64, gv.astype(np.int64) % 64]
        su = (gu + 0.5 + j[..., 0]) * cell
        sv = (gv + 0.5 + j[..., 1]) * cell
        seed = np.hypot(F.U - su, (F.V - sv) * 0.7) <= 0.028 + 0.4 / F.radius
        rgb = np.where(seed[..., None], np.float32([240, 215, 100]), rgb)
        green = np.float32([55, 150, 45]) * np.clip(_lighting(F, p), 0.6, 1.1)[..., None]
        return np.where(parts["calyx"][..., None], green, rgb)


class _Ball(_Shape):
    """A beach ball: six coloured sectors around a white cap."""

    extent = 1.05

    def params(self, rng: np.random.Generator) -> dict:
        palettes = [
            [(40, 80, 200), (240, 240, 240), (40, 170, 190)],
            [(120, 60, 180), (240, 240, 240), (40, 110, 220)],
            [(30, 140, 80), (240, 240, 240), (50, 60, 170)],
        ]
        return {
            **super().params(rng),
            "colours": [_jitter(rng, c, 0.05) for c in palettes[rng.integers(len(palettes))]],
            "turn": rng.uniform(0, 2 * math.pi),
        }

    def parts(self, F: _Frame, p: dict) -> Parts:
        return {"body": np.hypot(F.U, F.V) <= 1}

    def flat_colours(self, p: dict) -> dict[str, np.ndarray]:
        return {"body": p["colours"][0]}

    def paint(self, F: _Frame, p: dict, parts: Parts, rng: np.random.Generator) -> np.ndarray:
        sector = (np.floor((np.arctan2(F.V, F.U) + p["turn"]) / (math.pi / 3)).astype(np.int64)) % 3
        rgb = np.stack(p["colours"])[sector]
        rgb = np.where((np.hypot(F.U, F.V) < 0.18)[..., None], np.float32([245, 245, 245]), rgb)
        return rgb * _lighting(F, p)[..., None] + _highlight(F, p, 0.04) * 100


class _Cup(_Shape):
    """A coffee cup: a tapering body with a rim showing the coffee, and a handle ring."""

    extent = 1.05
    max_tilt = 0.3

    def params(self, rng: np.random.Generator) -> dict:
        base = [(236, 236, 232), (60, 95, 180), (200, 60, 60), (120, 120, 125)][rng.integers(4)]
        return {**super().params(rng), "colour": _jitter(rng, base, 0.05), "side": float(rng.choice([-1.0, 1.0]))}

    def parts(self, F: _Frame, p: dict) -> Parts:
        U, V = F.U * p["side"], F.V
        half = 0.6 - 0.1 * (V + 0.72) / 1.55
        body = ((V >= -0.72) & (V <= 0.83) & (np.abs(U) <= half)) | _ellipse(U, V, 0, 0.83, 0.5, 0.09)
        rim = _ellipse(U, V, 0, -0.72, 0.6, 0.13)
        ring = np.hypot(U - 0.6, V + 0.05)
        handle = (ring <= 0.34) & (ring >= 0.19) & (U > 0.5)
        coffee = _ellipse(U, V, 0, -0.72, 0.52, 0.09)
        return {"body": body | rim, "handle": handle, "coffee": coffee}

    def flat_colours(self, p: dict) -> dict[str, np.ndarray]:
        return {"body": p["colour"], "handle": p["colour"], "coffee": np.float32([90, 55, 30])}

    def paint(self, F: _Frame, p: dict, parts: Parts, rng: np.random.Generator) -> np.ndarray:
        # Cylinder shading: brightest a third of the way across, darker towards both sides.
        shade = np.clip(1.12 - 0.5 * np.abs(F.U * p["side"] + 0.2) ** 1.5, 0.55, 1.1)
        rgb = p["colour"] * shade[..., None]
        return np.where(parts["coffee"][..., None], np.float32([92, 56, 30]), rgb)


_SHAPES: dict[str, _Shape] = {
    "Apple": _Apple(),
    "Orange": _Orange(),
    "Banana": _Banana(),
    "Lemon": _Lemon(),
    "Strawberry": _Strawberry(),
    "Ball": _Ball(),
    "Coffee cup": _Cup(),
}


# ----------------------------------------------------------------------------------------------------------------------
# Backgrounds: gradients, smooth noise, tablecloth checks, wood grain, blurred blobs. Colours are muted so the
# saturated objects stand out, as fruit on a table does.


def _muted(rng: np.random.Generator, lo: float = 50, hi: float = 215) -> np.ndarray:
    c = rng.uniform(lo, hi, 3)
    return (0.45 * c + 0.55 * c.mean()).astype(np.float32)


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cells: int) -> np.ndarray:
    """Value noise in 0..1: a coarse random grid upsampled bicubically."""
    small = rng.random((max(2, h * cells // max(h, w)), max(2, w * cells // max(h, w)))).astype(np.float32)
    up = np.asarray(Image.fromarray(small, "F").resize((w, h), Image.Resampling.BICUBIC))
    return np.clip(up, 0, 1)


def _bg_gradient(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    a = rng.uniform(0, 2 * math.pi)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    t = (xs * math.cos(a) + ys * math.sin(a)) / (abs(w * math.cos(a)) + abs(h * math.sin(a)))
    t = (t - t.min())[..., None]
    return _muted(rng) * (1 - t) + _muted(rng) * t


def _bg_noise(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    t = 0.6 * _smooth_noise(rng, h, w, int(rng.integers(4, 10))) + 0.4 * _smooth_noise(rng, h, w, 24)
    return _muted(rng) + t[..., None] * (_muted(rng) - _muted(rng))


def _bg_tablecloth(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    period = rng.uniform(12, 48)
    a = rng.uniform(-0.25, 0.25)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    u, v = xs * math.cos(a) + ys * math.sin(a), -xs * math.sin(a) + ys * math.cos(a)
    su = (np.floor(u / period) % 2).astype(np.float32)
    sv = (np.floor(v / period) % 2).astype(np.float32) if rng.random() < 0.7 else np.zeros_like(su)
    tint = (su + sv)[..., None] / 2
    return np.float32([232, 228, 220]) * (1 - tint) + _muted(rng, 40, 200) * tint


def _bg_wood(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    warp = _smooth_noise(rng, h, w, 6)
    freq = rng.uniform(0.04, 0.12)
    grain = 0.5 + 0.5 * np.sin(ys * freq + 9 * warp + 0.3 * np.sin(xs * 0.02))
    plank = rng.uniform(60, 160)
    seams = ((ys % plank) < 2).astype(np.float32)
    tone = (0.75 + 0.25 * grain) * (1 - 0.45 * seams)
    base = np.float32([rng.uniform(120, 190), rng.uniform(80, 125), rng.uniform(45, 75)])
    return base * tone[..., None]


def _bg_blobs(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    small = Image.new("RGB", (max(8, w // 4), max(8, h // 4)), tuple(int(c) for c in _muted(rng)))
    draw = ImageDraw.Draw(small)
    sw, sh = small.size
    for _ in range(int(rng.integers(6, 16))):
        cx, cy, r = rng.uniform(0, sw), rng.uniform(0, sh), rng.uniform(4, sw / 3)
        draw.ellipse((cx - r, cy - r * rng.uniform(0.5, 1.5), cx + r, cy + r), fill=tuple(int(c) for c in _muted(rng)))
    small = small.filter(ImageFilter.GaussianBlur(rng.uniform(3, 8)))
    return np.asarray(small.resize((w, h), Image.Resampling.BILINEAR), dtype=np.float32)


_BACKGROUNDS: tuple[Callable[[np.random.Generator, int, int], np.ndarray], ...] = (
    _bg_gradient,
    _bg_noise,
    _bg_tablecloth,
    _bg_wood,
    _bg_blobs,
)


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    bg = _BACKGROUNDS[rng.integers(len(_BACKGROUNDS))](rng, h, w)
    if rng.random() < 0.3:  # a faint second texture over the first
        bg = 0.75 * bg + 0.25 * _BACKGROUNDS[rng.integers(len(_BACKGROUNDS))](rng, h, w)
    return bg.astype(np.float32)


# ----------------------------------------------------------------------------------------------------------------------
# Rendering one image.


@dataclass
class DemoObject:
    """One annotated box: a single object or, for group-of, a whole cluster."""

    label: str  # display name
    height: int
    width: int
    pieces: list[tuple[int, int, np.ndarray]]  # (y0, x0, in-image mask) of each drawn object
    area: int = 0  # in-image pixels of the union mask
    visible: int = 0  # of which not covered by objects drawn later
    truncated: bool = False
    depiction: bool = False
    group_of: bool = False
    unknown: bool = False  # attributes written as -1
    source: str = "xclick"
    click_order: tuple[int, int, int, int] = (0, 1, 2, 3)

    @property
    def mask(self) -> np.ndarray:
        """The union of the object's drawn pixels inside the image, full image size."""
        full = np.zeros((self.height, self.width), dtype=bool)
        for y0, x0, m in self.pieces:
            full[y0 : y0 + m.shape[0], x0 : x0 + m.shape[1]] |= m
        return full

    @property
    def box_px(self) -> tuple[int, int, int, int]:
        """Pixel extent (x0, y0, x1, y1), ends exclusive: the normalised box times width/height."""
        x0 = min(x + int(np.flatnonzero(m.any(0))[0]) for y, x, m in self.pieces)
        x1 = max(x + int(np.flatnonzero(m.any(0))[-1]) + 1 for y, x, m in self.pieces)
        y0 = min(y + int(np.flatnonzero(m.any(1))[0]) for y, x, m in self.pieces)
        y1 = max(y + int(np.flatnonzero(m.any(1))[-1]) + 1 for y, x, m in self.pieces)
        return x0, y0, x1, y1

    @property
    def occluded(self) -> bool:
        return self.visible < (1 - OCCLUDED_FRACTION) * self.area

    def attributes(self) -> list[int]:
        if self.unknown:
            return [-1] * 5
        return [int(self.occluded), int(self.truncated), int(self.group_of), int(self.depiction), 0]

    def clicks(self) -> list[float]:
        """The four extreme points (left, top, right, bottom) in ``click_order``: XClick1X..4X, XClick1Y..4Y."""
        mask = self.mask
        x0, y0, x1, y1 = self.box_px
        h, w = mask.shape

        def middle(indices: np.ndarray) -> float:
            return float(indices[len(indices) // 2]) + 0.5

        points = [
            (x0 / w, middle(np.flatnonzero(mask[:, x0])) / h),
            (middle(np.flatnonzero(mask[y0])) / w, y0 / h),
            (x1 / w, middle(np.flatnonzero(mask[:, x1 - 1])) / h),
            (middle(np.flatnonzero(mask[y1 - 1])) / w, y1 / h),
        ]
        ordered = [points[i] for i in self.click_order]
        return [p[0] for p in ordered] + [p[1] for p in ordered]


@dataclass
class RenderedImage:
    plan: ImagePlan
    pixels: np.ndarray  # uint8 (H, W, 3), before conversion to the JPEG's mode
    background: np.ndarray | None  # uint8 (H, W, 3): the image without its objects, if asked for
    objects: list[DemoObject]

    @property
    def height(self) -> int:
        return self.pixels.shape[0]

    @property
    def width(self) -> int:
        return self.pixels.shape[1]

    def image(self) -> Image.Image:
        img = Image.fromarray(self.pixels, "RGB")
        return img if self.plan.mode == "RGB" else img.convert(self.plan.mode)

    def jpeg(self, quality: int) -> bytes:
        buf = io.BytesIO()
        self.image().save(buf, format="JPEG", quality=quality)
        return buf.getvalue()


class _Canvas:
    """The image being drawn, plus a map of which annotation owns each pixel (for occlusion bookkeeping)."""

    def __init__(self, pixels: np.ndarray) -> None:
        self.pixels = pixels
        self.h, self.w = pixels.shape[:2]
        self.owner = np.full((self.h, self.w), -1, dtype=np.int16)
        self.objects: list[DemoObject] = []

    def clip(self, F: _Frame, mask: np.ndarray) -> tuple[int, int, np.ndarray, bool]:
        """The part of a window mask inside the image, and whether any of it falls outside."""
        y0, x0 = max(F.y0, 0), max(F.x0, 0)
        y1, x1 = min(F.y0 + mask.shape[0], self.h), min(F.x0 + mask.shape[1], self.w)
        if y1 <= y0 or x1 <= x0:
            return y0, x0, np.zeros((0, 0), dtype=bool), True
        inside = mask[y0 - F.y0 : y1 - F.y0, x0 - F.x0 : x1 - F.x0]
        return y0, x0, inside, int(inside.sum()) < int(mask.sum())

    def fits(self, y0: int, x0: int, m: np.ndarray, owner: int) -> bool:
        """Whether drawing ``m`` keeps every other annotation at least half visible."""
        under = self.owner[y0 : y0 + m.shape[0], x0 : x0 + m.shape[1]][m]
        lost = np.bincount(under + 1, minlength=len(self.objects) + 1)[1:]
        return all(i == owner or obj.visible - lost[i] >= _MIN_VISIBLE * obj.area for i, obj in enumerate(self.objects))

    def draw(self, y0: int, x0: int, m: np.ndarray, rgb: np.ndarray, owner: int) -> None:
        region = self.owner[y0 : y0 + m.shape[0], x0 : x0 + m.shape[1]]
        obj = self.objects[owner]
        under = region[m]
        lost = np.bincount(under + 1, minlength=len(self.objects) + 1)[1:]
        for i, n in enumerate(lost):
            if i != owner:
                self.objects[i].visible -= int(n)
        new = int((under != owner).sum())  # pixels of this annotation not already its own
        obj.area += new
        obj.visible += new
        region[m] = owner
        self.pixels[y0 : y0 + m.shape[0], x0 : x0 + m.shape[1]][m] = rgb[m]
        obj.pieces.append((y0, x0, m))


def _erode(mask: np.ndarray, k: int) -> np.ndarray:
    out = mask.copy()
    for _ in range(k):
        core = out[1:-1, 1:-1] & out[:-2, 1:-1] & out[2:, 1:-1] & out[1:-1, :-2] & out[1:-1, 2:]
        out = np.zeros_like(out)
        out[1:-1, 1:-1] = core
    return out


def _paint(
    shape: _Shape, F: _Frame, p: dict, parts: Parts, mask: np.ndarray, rng: np.random.Generator, flat: bool
) -> np.ndarray:
    if not flat:
        return shape.paint(F, p, parts, rng)
    # A depiction: solid colours with a black outline, like a clip-art drawing.
    colours = shape.flat_colours(p)
    rgb = np.zeros((*mask.shape, 3), dtype=np.float32)
    for name, m in parts.items():
        rgb[m] = colours[name]
    edge = mask & ~_erode(mask, max(1, round(F.radius / 10)))
    rgb[edge] = 10
    return rgb


def _try_place(
    canvas: _Canvas,
    rng: np.random.Generator,
    label: str,
    owner: int,
    radius: float,
    centre: tuple[float, float],
    flat: bool,
    min_inside: float = 0.4,
) -> bool:
    """Draw one object if it is mostly inside the image and hides no earlier annotation too much."""
    shape = _SHAPES[label]
    p = shape.params(rng)
    F = _frame(centre[0], centre[1], radius, shape.extent, rng.uniform(-shape.max_tilt, shape.max_tilt))
    parts = shape.parts(F, p)
    mask = np.logical_or.reduce(list(parts.values()))
    y0, x0, inside, truncated = canvas.clip(F, mask)
    n_inside = int(inside.sum())
    if n_inside < max(24, min_inside * int(mask.sum())):
        return False
    rows, cols = np.flatnonzero(inside.any(1)), np.flatnonzero(inside.any(0))
    if rows[-1] - rows[0] < 4 or cols[-1] - cols[0] < 4:
        return False
    if not canvas.fits(y0, x0, inside, owner):
        return False
    rgb = _paint(shape, F, p, parts, mask, rng, flat)
    sy, sx = y0 - F.y0, x0 - F.x0
    canvas.draw(y0, x0, inside, rgb[sy : sy + inside.shape[0], sx : sx + inside.shape[1]], owner)
    canvas.objects[owner].truncated |= truncated
    return True


def _image_size(rng: np.random.Generator, spec: DemoSpec) -> tuple[int, int]:
    long_side = int(rng.integers(spec.min_side, spec.max_side + 1))
    aspect = math.exp(rng.uniform(math.log(0.6), math.log(1.7)))
    short_side = max(spec.min_side, round(long_side / max(aspect, 1 / aspect)))
    return (long_side, short_side) if aspect >= 1 else (short_side, long_side)


def _class_plan(rng: np.random.Generator) -> list[str]:
    """The labels of one image's objects, in draw order."""
    k = int(rng.choice([1, 2, 3], p=[0.55, 0.33, 0.12]))
    main = [str(c) for c in rng.choice(TARGET_CLASSES, size=k, replace=False)]
    n = int(rng.choice(np.arange(1, 9), p=[0.2, 0.2, 0.16, 0.13, 0.1, 0.09, 0.07, 0.05]))
    labels = main + [str(rng.choice(main)) for _ in range(max(0, n - k))]
    if rng.random() < 0.12:
        labels += [str(rng.choice(EXTRA_FRUIT))] * int(rng.integers(1, 3))
    if rng.random() < 0.15:
        labels.append(str(rng.choice(DISTRACTORS)))
    return [labels[i] for i in rng.permutation(len(labels))]


def _new_object(canvas: _Canvas, label: str, **kwargs: object) -> int:
    canvas.objects.append(DemoObject(label, canvas.h, canvas.w, [], **kwargs))
    return len(canvas.objects) - 1


def _place_group(canvas: _Canvas, rng: np.random.Generator, short: int) -> None:
    """A tight cluster of 5+ small same-class objects, annotated as one group-of box."""
    label = str(rng.choice(TARGET_CLASSES + EXTRA_FRUIT))
    owner = _new_object(canvas, label, group_of=True)
    count = int(rng.integers(5, 10))
    radius = short * rng.uniform(0.035, 0.055)
    spread = radius * (1.0 + 0.45 * math.sqrt(count))
    cx = rng.uniform(spread + radius * 1.5, canvas.w - spread - radius * 1.5)
    cy = rng.uniform(spread + radius * 1.5, canvas.h - spread - radius * 1.5)
    placed = 0
    for _ in range(count * 4):
        if placed == count:
            break
        a, d = rng.uniform(0, 2 * math.pi), spread * math.sqrt(rng.random())
        placed += _try_place(canvas, rng, label, owner, radius, (cx + d * math.cos(a), cy + d * math.sin(a)), False)


def _place_objects(canvas: _Canvas, rng: np.random.Generator, labels: list[str], flat_image: bool) -> None:
    short = min(canvas.h, canvas.w)
    # Fewer, larger objects or more, smaller ones: the largest size shrinks with the count.
    top = max(0.1, 0.6 / math.sqrt(max(1, len(labels) - 1)))
    for label in labels:
        flat = flat_image or rng.random() < 0.02
        owner = _new_object(canvas, label, depiction=flat)
        # Log-uniform, skewed towards the larger sizes so that tiny objects do not dominate.
        size = 0.05 * (top / 0.05) ** (rng.random() ** 0.6)
        truncate = rng.random() < 0.15
        for attempt in range(10):
            radius = max(3.0, size * short / 2 * 0.85**attempt)
            if truncate and attempt < 5:  # centre near a border so the object is cut by it
                off = rng.uniform(-0.5, 0.4) * radius
                side = int(rng.integers(4))
                along = rng.uniform(0, canvas.h if side < 2 else canvas.w)
                centre = [(off, along), (canvas.w - off, along), (along, off), (along, canvas.h - off)][side]
            elif canvas.objects[:-1] and rng.random() < 0.3:  # next to an earlier object, so they overlap
                other = canvas.objects[int(rng.integers(len(canvas.objects) - 1))]
                x0, y0, x1, y1 = other.box_px if other.pieces else (0, 0, canvas.w, canvas.h)
                centre = (rng.uniform(x0, x1), rng.uniform(y0, y1))
            else:
                centre = (rng.uniform(radius, canvas.w - radius), rng.uniform(radius, canvas.h - radius))
            if _try_place(canvas, rng, label, owner, radius, centre, flat):
                break
        else:
            canvas.objects.pop()  # nowhere to put it


def render_image(spec: DemoSpec, plan: ImagePlan, with_background: bool = False) -> RenderedImage:
    """Draw one image and its annotations; a pure function of (spec, plan).

    ``with_background`` also returns the background without the objects, finished (noise, blur) like the image, so
    a test can see exactly which pixels the objects changed.
    """
    rng = np.random.default_rng((spec.seed, _split_code(plan.split), plan.index))
    w, h = _image_size(rng, spec)
    background = _background(rng, h, w)
    canvas = _Canvas(background.copy())
    if (plan.index + spec.seed) % _GROUP_PERIOD == _GROUP_PERIOD // 2:
        _place_group(canvas, rng, min(h, w))
    labels = _class_plan(rng)
    _place_objects(canvas, rng, labels, flat_image=rng.random() < 0.05)
    canvas.objects = [o for o in canvas.objects if o.pieces]
    for obj in canvas.objects:
        obj.unknown = not obj.group_of and rng.random() < _UNKNOWN_RATE
        obj.source = "activemil" if not obj.group_of and rng.random() < _ACTIVEMIL_RATE else "xclick"
        obj.click_order = tuple(int(i) for i in np.roll(np.arange(4)[:: rng.choice([-1, 1])], rng.integers(4)))
    # Camera-like finish: sensor noise, sometimes a slight blur.
    noise = rng.normal(0, rng.uniform(1.5, 5), (h, w, 1)).astype(np.float32)
    blur = rng.uniform(0.4, 0.9) if rng.random() < 0.5 else 0.0

    def finish(pixels: np.ndarray) -> np.ndarray:
        img = Image.fromarray(np.clip(pixels + noise, 0, 255).round().astype(np.uint8), "RGB")
        return np.asarray(img.filter(ImageFilter.GaussianBlur(blur)) if blur else img)

    return RenderedImage(plan, finish(canvas.pixels), finish(background) if with_background else None, canvas.objects)


# ----------------------------------------------------------------------------------------------------------------------
# Writing the layout.


def _resource(name: str) -> bytes:
    return (importlib.resources.files("oidyolo") / "resources" / name).read_bytes()


def class_mids() -> dict[str, str]:
    """Display name -> MID of the demo's classes, from the shipped class descriptions."""
    mids: dict[str, str] = {}
    for line in _resource("class-descriptions-boxable.csv").decode().splitlines():
        mid, _, name = line.partition(",")
        if name in ALL_CLASSES:
            mids[name] = mid
    if missing := [c for c in ALL_CLASSES if c not in mids]:
        raise DataFormatError(f"shipped class-descriptions-boxable.csv lacks {', '.join(missing)}")
    return mids


def _write_atomic(path: Path, data: bytes) -> None:
    """Write via a temporary name in the same directory, so no partial file ever sits at ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _fmt(v: float) -> str:
    return f"{v:.6f}"


def box_rows(rendered: RenderedImage, mids: dict[str, str], xclick: bool) -> list[list[str]]:
    """The CSV rows of one image (unsorted)."""
    rows = []
    for obj in rendered.objects:
        x0, y0, x1, y1 = obj.box_px
        coords = [x0 / rendered.width, x1 / rendered.width, y0 / rendered.height, y1 / rendered.height]
        row = [rendered.plan.image_id, obj.source, mids[obj.label], "1", *map(_fmt, coords)]
        row += [str(a) for a in obj.attributes()]
        if xclick:
            row += list(map(_fmt, obj.clicks())) if obj.source == "xclick" else ["-1"] * 8
        rows.append(row)
    return rows


def _row_key(row: list[str]) -> tuple:
    # Real files are sorted by ImageID, then label, then coordinates.
    return (row[0], row[2], *map(float, row[4:8]))


def _split_summary(rendered: list[RenderedImage]) -> SplitSummary:
    s = SplitSummary(images=len(rendered))
    for r in rendered:
        plan = r.plan
        if plan.missing:
            s.missing_ids.append(plan.image_id)
        else:
            s.written += 1
        if plan.mode == "L":
            s.grayscale_ids.append(plan.image_id)
        elif plan.mode == "CMYK":
            s.cmyk_ids.append(plan.image_id)
        s.multi_class_images += len({o.label for o in r.objects} & set(TARGET_CLASSES)) >= 2
        for o in r.objects:
            s.boxes[o.label] = s.boxes.get(o.label, 0) + 1
            attrs = o.attributes()
            s.occluded += attrs[0] == 1
            s.truncated += attrs[1] == 1
            s.group_of += attrs[2] == 1
            s.depiction += attrs[3] == 1
            s.unknown_attributes += o.unknown
    s.boxes = dict(sorted(s.boxes.items()))
    return s


def _write_metadata(root: Path, spec: DemoSpec) -> None:
    vf = version_files(spec.version)
    classes = _resource("class-descriptions-boxable.csv")
    if spec.version == "v7":  # the v7 file is the only one with a header row
        classes = b"LabelName,DisplayName\n" + classes
    _write_atomic(root / vf.classes, classes)
    _write_atomic(root / vf.hierarchy, _resource("bbox_labels_600_hierarchy.json"))


def generate_demo(out_dir: Path, spec: DemoSpec = DemoSpec()) -> DemoSummary:
    """Write the demo source under ``out_dir`` (see the module docstring for the layout)."""
    out_dir = Path(out_dir)
    meta = out_dir / METADATA_DIR
    vf = version_files(spec.version)
    mids = class_mids()
    _write_metadata(meta, spec)
    summary = DemoSummary(spec.version, spec.seed)
    for split in SPLITS:
        if spec.count(split) == 0:
            continue
        xclick = spec.version in ("v6", "v7") and split == "train"
        rows: list[list[str]] = []
        rendered: list[RenderedImage] = []
        for plan in plan_images(spec, split):
            r = render_image(spec, plan)
            if not plan.missing:
                _write_atomic(out_dir / IMAGES_DIR / split / f"{plan.image_id}.jpg", r.jpeg(spec.quality))
            rows += box_rows(r, mids, xclick)
            r.pixels = np.empty((0, 0, 3), np.uint8)  # keep only the annotations in memory
            rendered.append(r)
        rows.sort(key=_row_key)
        header = BOX_COLUMNS + (XCLICK_COLUMNS if xclick else [])
        text = "\n".join(",".join(r) for r in [header, *rows]) + "\n"
        _write_atomic(meta / vf.boxes_path(split), text.encode())
        summary.splits[split] = _split_summary(rendered)
    return summary
