"""The drawn objects: one class per demo class, each painting named part masks in a local frame."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# Each works in a local frame: U, V are pixel-centre coordinates relative to the object's centre in
# units of its radius, rotated with the object (V points "down" in the object); X, Y are the same without rotation
# (for lighting that stays fixed in the image). ``parts`` returns named boolean masks drawn in order (later parts
# on top); their union is the object's mask and so its box.

Parts = dict[str, np.ndarray]


@dataclass
class Frame:
    x0: int  # window origin in image pixels (may be negative)
    y0: int
    U: np.ndarray
    V: np.ndarray
    X: np.ndarray
    Y: np.ndarray
    radius: float  # pixels per local unit


def frame(cx: float, cy: float, radius: float, extent: float, theta: float) -> Frame:
    half = math.ceil(extent * radius) + 2
    x0, y0 = math.floor(cx) - half, math.floor(cy) - half
    xs = (np.arange(x0, x0 + 2 * half + 1, dtype=np.float32) + 0.5 - cx) / radius
    ys = (np.arange(y0, y0 + 2 * half + 1, dtype=np.float32) + 0.5 - cy) / radius
    X, Y = np.meshgrid(xs, ys)
    c, s = math.cos(theta), math.sin(theta)
    return Frame(x0, y0, X * c + Y * s, -X * s + Y * c, X, Y, radius)


def _ellipse(U: np.ndarray, V: np.ndarray, cu: float, cv: float, a: float, b: float, angle: float = 0.0) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    du, dv = U - cu, V - cv
    return ((du * c + dv * s) / a) ** 2 + ((-du * s + dv * c) / b) ** 2 <= 1.0


def _lighting(F: Frame, p: dict) -> np.ndarray:
    """A soft sphere shading: bright towards the light (upper left), darker at the far rim."""
    d = np.sqrt((F.X - p["light"][0]) ** 2 + (F.Y - p["light"][1]) ** 2)
    return np.clip(1.18 - 0.42 * d, 0.45, 1.12)


def _highlight(F: Frame, p: dict, size: float = 0.045) -> np.ndarray:
    lx, ly = p["light"]
    return np.exp(-((F.X - 0.8 * lx) ** 2 + (F.Y - 0.8 * ly) ** 2) / size)[..., None]


def _jitter(rng: np.random.Generator, rgb: tuple[float, float, float], amount: float = 0.08) -> np.ndarray:
    """A base colour with per-channel and brightness jitter."""
    c = np.asarray(rgb, dtype=np.float32) * (1 + rng.uniform(-amount, amount, 3)) * rng.uniform(0.88, 1.1)
    return np.clip(c, 0, 255).astype(np.float32)


class Shape:
    extent = 1.3  # local half-size that bounds every part
    max_tilt = math.pi  # rotation range (+-)

    def params(self, rng: np.random.Generator) -> dict:
        return {"light": (rng.uniform(-0.6, -0.2), rng.uniform(-0.7, -0.3))}

    def parts(self, F: Frame, p: dict) -> Parts:
        raise NotImplementedError

    def flat_colours(self, p: dict) -> dict[str, np.ndarray]:
        """Solid colours of the parts for depictions."""
        raise NotImplementedError

    def paint(self, F: Frame, p: dict, parts: Parts, rng: np.random.Generator) -> np.ndarray:
        raise NotImplementedError


class _Apple(Shape):
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

    def parts(self, F: Frame, p: dict) -> Parts:
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

    def paint(self, F: Frame, p: dict, parts: Parts, rng: np.random.Generator) -> np.ndarray:
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


class _Orange(Shape):
    extent = 1.1

    def params(self, rng: np.random.Generator) -> dict:
        return {
            **super().params(rng),
            "colour": _jitter(rng, (246, 140, 22), 0.06),
            "wobble": rng.uniform(0, 2 * math.pi),
            "navel": (rng.uniform(-0.3, 0.3), rng.uniform(-0.3, 0.3)),
        }

    def parts(self, F: Frame, p: dict) -> Parts:
        phi = np.arctan2(F.V, F.U)
        return {"body": np.hypot(F.U, F.V) <= 1 + 0.015 * np.sin(7 * phi + p["wobble"])}

    def flat_colours(self, p: dict) -> dict[str, np.ndarray]:
        return {"body": p["colour"]}

    def paint(self, F: Frame, p: dict, parts: Parts, rng: np.random.Generator) -> np.ndarray:
        # Dimpled peel: fine noise plus sparse darker pores.
        noise = rng.standard_normal(F.U.shape).astype(np.float32)
        peel = 1 + 0.06 * noise - 0.12 * (noise > 1.9)
        rgb = p["colour"] * (_lighting(F, p) * peel)[..., None] + _highlight(F, p, 0.06) * 90
        nu, nv = p["navel"]
        navel = np.hypot(F.U - nu, F.V - nv) <= 0.075
        return np.where(navel[..., None], np.float32([150, 95, 35]), rgb)


class _Banana(Shape):
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

    def _coords(self, F: Frame, p: dict) -> tuple[np.ndarray, np.ndarray]:
        """s: 0..1 along the arc (stalk end to tip); w: signed distance across the band."""
        psi = np.arctan2(F.U, F.V + p["centre"])
        return psi / p["span"] + 0.5, np.hypot(F.U, F.V + p["centre"]) - p["arc"]

    def parts(self, F: Frame, p: dict) -> Parts:
        s, w = self._coords(F, p)
        half = p["thick"] * np.clip(np.sin(np.pi * np.clip(s, 0, 1)), 0, 1) ** 0.55
        body = (s >= 0.03) & (s <= 1) & (np.abs(w) <= half)
        stalk = (s > -0.06) & (s < 0.08) & (np.abs(w) <= 0.055)
        tip = body & (s > 0.95)
        return {"body": body, "stalk": stalk, "tip": tip}

    def flat_colours(self, p: dict) -> dict[str, np.ndarray]:
        return {"body": p["colour"], "stalk": np.float32([110, 100, 40]), "tip": np.float32([70, 45, 20])}

    def paint(self, F: Frame, p: dict, parts: Parts, rng: np.random.Generator) -> np.ndarray:
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


class _Lemon(Shape):
    """An ellipse with a pointed nub at each end of the long axis."""

    extent = 1.05

    def params(self, rng: np.random.Generator) -> dict:
        return {
            **super().params(rng),
            "minor": rng.uniform(0.62, 0.74),
            "colour": _jitter(rng, (250, 228, 60), 0.05),
        }

    def parts(self, F: Frame, p: dict) -> Parts:
        phi = np.arctan2(F.V, F.U)
        b = p["minor"]
        r = b / np.sqrt((b * np.cos(phi)) ** 2 + np.sin(phi) ** 2)
        nub = 0.17 * (np.exp(-((phi / 0.16) ** 2)) + np.exp(-(((np.abs(phi) - math.pi) / 0.16) ** 2)))
        return {"body": np.hypot(F.U, F.V) <= (r + nub) / 1.17}

    def flat_colours(self, p: dict) -> dict[str, np.ndarray]:
        return {"body": p["colour"]}

    def paint(self, F: Frame, p: dict, parts: Parts, rng: np.random.Generator) -> np.ndarray:
        peel = 1 + 0.035 * rng.standard_normal(F.U.shape).astype(np.float32)
        return p["colour"] * (_lighting(F, p) * peel)[..., None] + _highlight(F, p) * 80


class _Strawberry(Shape):
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

    def parts(self, F: Frame, p: dict) -> Parts:
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

    def paint(self, F: Frame, p: dict, parts: Parts, rng: np.random.Generator) -> np.ndarray:
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


class _Ball(Shape):
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

    def parts(self, F: Frame, p: dict) -> Parts:
        return {"body": np.hypot(F.U, F.V) <= 1}

    def flat_colours(self, p: dict) -> dict[str, np.ndarray]:
        return {"body": p["colours"][0]}

    def paint(self, F: Frame, p: dict, parts: Parts, rng: np.random.Generator) -> np.ndarray:
        sector = (np.floor((np.arctan2(F.V, F.U) + p["turn"]) / (math.pi / 3)).astype(np.int64)) % 3
        rgb = np.stack(p["colours"])[sector]
        rgb = np.where((np.hypot(F.U, F.V) < 0.18)[..., None], np.float32([245, 245, 245]), rgb)
        return rgb * _lighting(F, p)[..., None] + _highlight(F, p, 0.04) * 100


class _Cup(Shape):
    """A coffee cup: a tapering body with a rim showing the coffee, and a handle ring."""

    extent = 1.05
    max_tilt = 0.3

    def params(self, rng: np.random.Generator) -> dict:
        base = [(236, 236, 232), (60, 95, 180), (200, 60, 60), (120, 120, 125)][rng.integers(4)]
        return {**super().params(rng), "colour": _jitter(rng, base, 0.05), "side": float(rng.choice([-1.0, 1.0]))}

    def parts(self, F: Frame, p: dict) -> Parts:
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

    def paint(self, F: Frame, p: dict, parts: Parts, rng: np.random.Generator) -> np.ndarray:
        # Cylinder shading: brightest a third of the way across, darker towards both sides.
        shade = np.clip(1.12 - 0.5 * np.abs(F.U * p["side"] + 0.2) ** 1.5, 0.55, 1.1)
        rgb = p["colour"] * shade[..., None]
        return np.where(parts["coffee"][..., None], np.float32([92, 56, 30]), rgb)


SHAPES: dict[str, Shape] = {
    "Apple": _Apple(),
    "Orange": _Orange(),
    "Banana": _Banana(),
    "Lemon": _Lemon(),
    "Strawberry": _Strawberry(),
    "Ball": _Ball(),
    "Coffee cup": _Cup(),
}
