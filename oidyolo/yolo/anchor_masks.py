"""Per-variant lookups for the model, the loss and the decoder, read from the variants table
(:mod:`oidyolo.variants`). Outputs are ordered stride 32 first, so mask 0 holds the largest anchors.
"""

from __future__ import annotations

from oidyolo import variants
from oidyolo.variants import Variant, get_variant

__all__ = ["Variant", "check_variant", "masks_for", "strides_for", "variant_for_anchors"]


def check_variant(variant: str) -> Variant:
    return get_variant(variant).name


def masks_for(variant: str) -> list[list[int]]:
    """Anchor indices per output (strides 32, 16[, 8]): ``[[6,7,8],[3,4,5],[0,1,2]]`` or ``[[3,4,5],[0,1,2]]``."""
    return [list(m) for m in get_variant(variant).masks]


def strides_for(variant: str) -> list[int]:
    """Output strides in model output order: ``[32, 16, 8]`` or ``[32, 16]``."""
    return list(get_variant(variant).strides)


def variant_for_anchors(num_anchors: int) -> Variant:
    """9 anchors mean full YOLOv3, 6 mean tiny."""
    return variants.variant_for_anchors(num_anchors).name
