"""Backgrounds: gradients, smooth noise, tablecloth checks, wood grain, blurred blobs. Colours are muted so the
saturated objects stand out, as fruit on a table does."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageFilter


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


def draw_background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    bg = _BACKGROUNDS[rng.integers(len(_BACKGROUNDS))](rng, h, w)
    if rng.random() < 0.3:  # a faint second texture over the first
        bg = 0.75 * bg + 0.25 * _BACKGROUNDS[rng.integers(len(_BACKGROUNDS))](rng, h, w)
    return bg.astype(np.float32)
