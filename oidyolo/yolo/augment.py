"""Training augmentation and validation letterbox, in TF ops (the pipeline) and PIL/numpy (the reference).

Semantics follow keras-yolo3's ``get_random_data``: aspect-ratio jitter and scale, random placement on a gray canvas
(which may crop), horizontal flip, HSV distortion; boxes move with the pixels, are clipped to the canvas, and boxes
with width or height <= 1 px are dropped. Both paths split into *sampling* the geometry and colour parameters and
*applying* them, so the TF and numpy versions can be checked against each other on the same parameters. The
validation letterbox is the same transform with fixed centred parameters and no colour change.

``input_shape`` is ``(height, width)``. Images come out float32 RGB in [0, 1] on gray 0.5.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import tensorflow as tf

from oidyolo.errors import ConfigError

GRAY = 0.5


@dataclass(frozen=True)
class AugmentConfig:
    """keras-yolo3 ``get_random_data`` knobs; ``scale`` is the range of the longer side relative to the input."""

    jitter: float = 0.3
    scale: tuple[float, float] = (0.25, 2.0)
    hue: float = 0.1
    sat: float = 1.5
    val: float = 1.5
    flip: bool = True

    def __post_init__(self) -> None:
        if not 0 <= self.jitter < 1:
            raise ConfigError(f"jitter must be in [0, 1), got {self.jitter}")
        if not 0 < self.scale[0] <= self.scale[1]:
            raise ConfigError(f"scale must be 0 < low <= high, got {self.scale}")
        if not 0 <= self.hue <= 0.5 or self.sat < 1 or self.val < 1:
            raise ConfigError("hue must be in [0, 0.5]; sat and val must be >= 1 (1 = no change)")


class AugmentParams(NamedTuple):
    """One draw: resize to ``(nh, nw)``, paste at ``(dx, dy)`` (may be negative), flip, hue shift, sat/val factors."""

    nw: int | tf.Tensor
    nh: int | tf.Tensor
    dx: int | tf.Tensor
    dy: int | tf.Tensor
    flip: bool | tf.Tensor
    hue: float | tf.Tensor
    sat: float | tf.Tensor
    val: float | tf.Tensor


# ---------------------------------------------------------------- parameters


def letterbox_size(image_hw: tuple[int, int], input_shape: tuple[int, int]) -> tuple[int, int, int, int]:
    """``(nw, nh, dx, dy)`` of the centred letterbox, in exact integer arithmetic (no 415.999 -> 415)."""
    ih, iw = image_hw
    h, w = input_shape
    if w * ih <= h * iw:  # width-bound
        nw, nh = w, max(1, ih * w // iw)
    else:
        nw, nh = max(1, iw * h // ih), h
    return nw, nh, (w - nw) // 2, (h - nh) // 2


def _letterbox_params_tf(image_hw: tf.Tensor, input_shape: tuple[int, int]) -> AugmentParams:
    ih, iw = image_hw[0], image_hw[1]
    h, w = input_shape
    width_bound = w * ih <= h * iw
    nw = tf.where(width_bound, w, tf.maximum(1, iw * h // ih))
    nh = tf.where(width_bound, tf.maximum(1, ih * w // iw), h)
    return AugmentParams(nw, nh, (w - nw) // 2, (h - nh) // 2, False, 0.0, 1.0, 1.0)


def sample_params_tf(
    seed: tf.Tensor, image_hw: tf.Tensor, input_shape: tuple[int, int], cfg: AugmentConfig
) -> AugmentParams:
    """Draw one set of parameters from a stateless ``seed`` (shape ``[2]``): same seed, same draw."""
    u = tf.random.stateless_uniform([11], seed=seed, dtype=tf.float32)
    h, w = input_shape
    ih, iw = tf.cast(image_hw[0], tf.float32), tf.cast(image_hw[1], tf.float32)
    j = cfg.jitter
    new_ar = iw / ih * (1 - j + 2 * j * u[0]) / (1 - j + 2 * j * u[1])
    scale = cfg.scale[0] + (cfg.scale[1] - cfg.scale[0]) * u[2]
    tall = new_ar < 1
    nh_f = tf.where(tall, tf.floor(scale * h), tf.floor(tf.floor(scale * w) / new_ar))
    nw_f = tf.where(tall, tf.floor(tf.floor(scale * h) * new_ar), tf.floor(scale * w))
    nw = tf.maximum(1, tf.cast(nw_f, tf.int32))
    nh = tf.maximum(1, tf.cast(nh_f, tf.int32))
    # int() of a value in [0, w - nw): truncation toward zero, as keras-yolo3 (negative when the image overhangs).
    dx = tf.cast(u[3] * tf.cast(w - nw, tf.float32), tf.int32)
    dy = tf.cast(u[4] * tf.cast(h - nh, tf.float32), tf.int32)
    flip = u[5] < 0.5 if cfg.flip else tf.constant(False)
    hue = (2 * u[6] - 1) * cfg.hue
    sat = 1 + (cfg.sat - 1) * u[7]
    val = 1 + (cfg.val - 1) * u[8]
    sat = tf.where(u[9] < 0.5, sat, 1 / sat)  # multiply or divide with equal chance
    val = tf.where(u[10] < 0.5, val, 1 / val)
    return AugmentParams(nw, nh, dx, dy, flip, hue, sat, val)


def sample_params_numpy(
    rng: np.random.Generator, image_wh: tuple[int, int], input_shape: tuple[int, int], cfg: AugmentConfig
) -> AugmentParams:
    """The same distribution as :func:`sample_params_tf`, from a numpy generator (the reference path)."""
    u = rng.random(11)
    h, w = input_shape
    iw, ih = image_wh
    j = cfg.jitter
    new_ar = iw / ih * (1 - j + 2 * j * u[0]) / (1 - j + 2 * j * u[1])
    scale = cfg.scale[0] + (cfg.scale[1] - cfg.scale[0]) * u[2]
    if new_ar < 1:
        nh = int(scale * h)
        nw = int(nh * new_ar)
    else:
        nw = int(scale * w)
        nh = int(nw / new_ar)
    nw, nh = max(1, nw), max(1, nh)
    dx, dy = int(u[3] * (w - nw)), int(u[4] * (h - nh))
    sat = 1 + (cfg.sat - 1) * u[7]
    val = 1 + (cfg.val - 1) * u[8]
    return AugmentParams(
        nw,
        nh,
        dx,
        dy,
        bool(cfg.flip and u[5] < 0.5),
        float((2 * u[6] - 1) * cfg.hue),
        float(sat if u[9] < 0.5 else 1 / sat),
        float(val if u[10] < 0.5 else 1 / val),
    )


# ---------------------------------------------------------------- boxes


def transform_boxes_numpy(
    boxes: np.ndarray, image_wh: tuple[int, int], params: AugmentParams, input_shape: tuple[int, int]
) -> np.ndarray:
    """Map ``(N, 5)`` boxes in image pixels into the canvas; clip; drop those with w or h <= 1 px. float32."""
    h, w = input_shape
    iw, ih = image_wh
    b = np.asarray(boxes, dtype=np.float32).reshape(-1, 5).copy()
    b[:, [0, 2]] = b[:, [0, 2]] * np.float32(params.nw / iw) + np.float32(params.dx)
    b[:, [1, 3]] = b[:, [1, 3]] * np.float32(params.nh / ih) + np.float32(params.dy)
    if params.flip:
        b[:, [0, 2]] = w - b[:, [2, 0]]
    b[:, [0, 2]] = np.clip(b[:, [0, 2]], 0, w)
    b[:, [1, 3]] = np.clip(b[:, [1, 3]], 0, h)
    return b[((b[:, 2] - b[:, 0]) > 1) & ((b[:, 3] - b[:, 1]) > 1)]


def transform_boxes_tf(
    boxes: tf.Tensor, image_hw: tf.Tensor, params: AugmentParams, input_shape: tuple[int, int]
) -> tf.Tensor:
    """TF twin of :func:`transform_boxes_numpy`."""
    h, w = input_shape
    sx = tf.cast(params.nw, tf.float32) / tf.cast(image_hw[1], tf.float32)
    sy = tf.cast(params.nh, tf.float32) / tf.cast(image_hw[0], tf.float32)
    x1 = boxes[:, 0] * sx + tf.cast(params.dx, tf.float32)
    x2 = boxes[:, 2] * sx + tf.cast(params.dx, tf.float32)
    y1 = boxes[:, 1] * sy + tf.cast(params.dy, tf.float32)
    y2 = boxes[:, 3] * sy + tf.cast(params.dy, tf.float32)
    x1, x2 = tf.where(params.flip, w - x2, x1), tf.where(params.flip, w - x1, x2)
    x1, x2 = tf.clip_by_value(x1, 0.0, w), tf.clip_by_value(x2, 0.0, w)
    y1, y2 = tf.clip_by_value(y1, 0.0, h), tf.clip_by_value(y2, 0.0, h)
    out = tf.stack([x1, y1, x2, y2, boxes[:, 4]], axis=1)
    return tf.boolean_mask(out, ((x2 - x1) > 1) & ((y2 - y1) > 1))


# ---------------------------------------------------------------- pixels


def _place_tf(image: tf.Tensor, params: AugmentParams, input_shape: tuple[int, int]) -> tf.Tensor:
    """Resize float image to ``(nh, nw)`` and paste it at ``(dx, dy)`` on a gray canvas, cropping any overhang."""
    h, w = input_shape
    size = tf.stack([params.nh, params.nw])
    # Downscaling needs anti-aliasing: "area" gives it at a third of the cost of bilinear with antialias=True.
    # Upscaling does not, and there plain bilinear is smooth where "area" would be blocky.
    down = (params.nh < tf.shape(image)[0]) | (params.nw < tf.shape(image)[1])
    resized = tf.cond(
        down, lambda: tf.image.resize(image, size, method="area"), lambda: tf.image.resize(image, size, "bilinear")
    )
    sx, sy = tf.maximum(0, -params.dx), tf.maximum(0, -params.dy)  # first source pixel on the canvas
    ox, oy = tf.maximum(0, params.dx), tf.maximum(0, params.dy)  # where it lands
    cw = tf.minimum(w - ox, params.nw - sx)
    ch = tf.minimum(h - oy, params.nh - sy)
    crop = resized[sy : sy + ch, sx : sx + cw]
    canvas = tf.pad(crop - GRAY, [[oy, h - oy - ch], [ox, w - ox - cw], [0, 0]]) + GRAY
    return tf.ensure_shape(canvas, [h, w, 3])


def _hsv_tf(image: tf.Tensor, params: AugmentParams) -> tf.Tensor:
    hsv = tf.image.rgb_to_hsv(image)
    hue = hsv[..., 0] + params.hue
    hue = hue - tf.floor(hue)  # wrap into [0, 1)
    sat = tf.clip_by_value(hsv[..., 1] * params.sat, 0.0, 1.0)
    val = tf.clip_by_value(hsv[..., 2] * params.val, 0.0, 1.0)
    return tf.clip_by_value(tf.image.hsv_to_rgb(tf.stack([hue, sat, val], axis=-1)), 0.0, 1.0)


def apply_params_tf(
    image: tf.Tensor, boxes: tf.Tensor, params: AugmentParams, input_shape: tuple[int, int], *, colour: bool = True
) -> tuple[tf.Tensor, tf.Tensor]:
    """Apply one parameter draw to a uint8 ``(ih, iw, 3)`` image and its ``(N, 5)`` boxes."""
    image_hw = tf.shape(image)[:2]
    canvas = _place_tf(tf.image.convert_image_dtype(image, tf.float32), params, input_shape)
    if not (isinstance(params.flip, bool) and not params.flip):  # static no-flip (letterbox) skips the op
        canvas = tf.cond(params.flip, lambda: tf.reverse(canvas, axis=[1]), lambda: canvas)
    if colour:
        canvas = _hsv_tf(canvas, params)
    return canvas, transform_boxes_tf(boxes, image_hw, params, input_shape)


def random_augment_tf(
    image: tf.Tensor, boxes: tf.Tensor, seed: tf.Tensor, input_shape: tuple[int, int], cfg: AugmentConfig
) -> tuple[tf.Tensor, tf.Tensor]:
    """keras-yolo3 training augmentation of one uint8 image, stateless in ``seed``."""
    params = sample_params_tf(seed, tf.shape(image)[:2], input_shape, cfg)
    colour = cfg.hue > 0 or cfg.sat > 1 or cfg.val > 1
    return apply_params_tf(image, boxes, params, input_shape, colour=colour)


def letterbox_tf(image: tf.Tensor, boxes: tf.Tensor, input_shape: tuple[int, int]) -> tuple[tf.Tensor, tf.Tensor]:
    """Validation transform: centred aspect-preserving resize onto gray, boxes mapped alike."""
    params = _letterbox_params_tf(tf.shape(image)[:2], input_shape)
    return apply_params_tf(image, boxes, params, input_shape, colour=False)


# ---------------------------------------------------------------- PIL / numpy reference


def apply_params_numpy(
    image, boxes: np.ndarray, params: AugmentParams, input_shape: tuple[int, int], *, colour: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Reference of :func:`apply_params_tf` on a PIL image, done the keras-yolo3 way: PIL bicubic resize, paste,
    flip, matplotlib HSV. Returns float32 ``(h, w, 3)`` in [0, 1] and the kept boxes."""
    from matplotlib.colors import hsv_to_rgb, rgb_to_hsv
    from PIL import Image

    h, w = input_shape
    image = image.convert("RGB")  # keras-yolo3 forgot this: gray/CMYK JPEGs broke its HSV step
    image_wh = image.size
    canvas = Image.new("RGB", (w, h), (128, 128, 128))
    canvas.paste(image.resize((params.nw, params.nh), Image.BICUBIC), (params.dx, params.dy))
    if params.flip:
        canvas = canvas.transpose(Image.FLIP_LEFT_RIGHT)
    x = np.asarray(canvas, dtype=np.float32) / 255.0
    if colour:
        x = rgb_to_hsv(x)
        x[..., 0] = (x[..., 0] + params.hue) % 1.0
        x[..., 1:] *= [params.sat, params.val]
        x = hsv_to_rgb(np.clip(x, 0, 1)).astype(np.float32)
    return x, transform_boxes_numpy(boxes, image_wh, params, input_shape)


def letterbox_numpy(image, boxes: np.ndarray, input_shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Reference letterbox of a PIL image (keras-yolo3's ``random=False`` path)."""
    nw, nh, dx, dy = letterbox_size(image.size[::-1], input_shape)
    params = AugmentParams(nw, nh, dx, dy, False, 0.0, 1.0, 1.0)
    return apply_params_numpy(image, boxes, params, input_shape, colour=False)
