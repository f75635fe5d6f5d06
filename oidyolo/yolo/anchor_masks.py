"""Anchor masks, strides and per-variant constants shared by the model, the loss and the decoder.

The masks and strides come from :mod:`oidyolo.data.anchors` (one source of truth for both wings). Outputs are ordered
stride 32 first, so mask 0 holds the largest anchors.
"""

from __future__ import annotations

from typing import Literal

from oidyolo.data.anchors import FULL_MASKS, FULL_STRIDES, TINY_MASKS, TINY_STRIDES
from oidyolo.errors import ConfigError

__all__ = [
    "FULL_MASKS",
    "FULL_STRIDES",
    "IGNORE_THRESH",
    "TINY_MASKS",
    "TINY_STRIDES",
    "Variant",
    "check_variant",
    "masks_for",
    "strides_for",
    "variant_for_anchors",
]

Variant = Literal["full", "tiny"]

# keras-yolo3's ignore thresholds: 0.5 for YOLOv3, 0.7 for tiny (its train.py).
IGNORE_THRESH: dict[str, float] = {"full": 0.5, "tiny": 0.7}


def check_variant(variant: str) -> Variant:
    if variant not in ("full", "tiny"):
        raise ConfigError(f"model variant must be 'full' or 'tiny', got {variant!r}")
    return variant  # type: ignore[return-value]


def masks_for(variant: str) -> list[list[int]]:
    """Anchor indices per output (strides 32, 16[, 8]): ``[[6,7,8],[3,4,5],[0,1,2]]`` or ``[[3,4,5],[0,1,2]]``."""
    masks = FULL_MASKS if check_variant(variant) == "full" else TINY_MASKS
    return [list(m) for m in masks]


def strides_for(variant: str) -> list[int]:
    """Output strides in model output order: ``[32, 16, 8]`` or ``[32, 16]``."""
    return list(FULL_STRIDES if check_variant(variant) == "full" else TINY_STRIDES)


def variant_for_anchors(num_anchors: int) -> Variant:
    """9 anchors mean full YOLOv3, 6 mean tiny."""
    if num_anchors == 9:
        return "full"
    if num_anchors == 6:
        return "tiny"
    raise ConfigError(f"YOLOv3 needs 9 anchors (or 6 for tiny), got {num_anchors}")
