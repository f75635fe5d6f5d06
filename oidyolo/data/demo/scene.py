"""Rendering one image: the canvas with its occlusion bookkeeping, object placement, and the annotated result."""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter

from oidyolo.data.demo.backgrounds import draw_background
from oidyolo.data.demo.shapes import SHAPES, Frame, Parts, Shape, frame
from oidyolo.data.demo.spec import DISTRACTORS, EXTRA_FRUIT, TARGET_CLASSES, DemoSpec, ImagePlan, split_code

OCCLUDED_FRACTION = 0.15  # hidden share above which IsOccluded=1
_MIN_VISIBLE = 0.5  # placements that would hide more than half of an earlier object are rejected
_UNKNOWN_RATE = 0.03  # rows whose attributes are all -1
_ACTIVEMIL_RATE = 0.08
_GROUP_PERIOD = 32  # one image in 32 holds a group-of cluster (~3 %)


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

    def clip(self, F: Frame, mask: np.ndarray) -> tuple[int, int, np.ndarray, bool]:
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
    shape: Shape, F: Frame, p: dict, parts: Parts, mask: np.ndarray, rng: np.random.Generator, flat: bool
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
    shape = SHAPES[label]
    p = shape.params(rng)
    F = frame(centre[0], centre[1], radius, shape.extent, rng.uniform(-shape.max_tilt, shape.max_tilt))
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
    rng = np.random.default_rng((spec.seed, split_code(plan.split), plan.index))
    w, h = _image_size(rng, spec)
    background = draw_background(rng, h, w)
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
