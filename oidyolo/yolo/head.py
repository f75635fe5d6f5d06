"""YOLOv3 necks and heads: from backbone features to raw per-anchor predictions, stride 32 first.

Full YOLOv3 (darknet layers 75-105): at each scale five alternating 1x1/3x3 convs, then a 3x3 conv and the linear
1x1 output conv; the 5th conv's output goes through a 1x1 conv, is upsampled x2 and concatenated (upsampled first,
darknet's ``route -1, 61``) with the backbone feature of the next finer stride. The tiny head (layers 13-22) is the
same idea with one conv per stage.
"""

from __future__ import annotations

import keras

from oidyolo.yolo.layers import DEFAULT_WEIGHT_DECAY, darknet_conv, output_conv

ANCHORS_PER_OUTPUT = 3
# Darknet indices of the linear output convs, in output order (stride 32 first).
FULL_OUTPUT_LAYERS = ("conv_81", "conv_93", "conv_105")
TINY_OUTPUT_LAYERS = ("conv_15", "conv_22")


def output_filters(num_classes: int) -> int:
    """Channels of a raw output: per anchor ``tx, ty, tw, th, objectness`` and one logit per class."""
    return ANCHORS_PER_OUTPUT * (5 + num_classes)


def _five_convs(x: keras.KerasTensor, filters: int, first: int, weight_decay: float) -> keras.KerasTensor:
    for k in range(5):
        x = darknet_conv(
            x, filters * (2 if k % 2 else 1), 3 if k % 2 else 1, index=first + k, weight_decay=weight_decay
        )
    return x


def _upsample_concat(
    x: keras.KerasTensor, skip: keras.KerasTensor, filters: int, first: int, weight_decay: float
) -> keras.KerasTensor:
    x = darknet_conv(x, filters, 1, index=first, weight_decay=weight_decay)
    x = keras.layers.UpSampling2D(2, interpolation="nearest", name=f"upsample_{first + 1}")(x)
    return keras.layers.Concatenate(name=f"route_{first + 2}")([x, skip])


def yolov3_head(
    features: list[keras.KerasTensor], num_classes: int, *, weight_decay: float = DEFAULT_WEIGHT_DECAY
) -> list[keras.KerasTensor]:
    """``features`` = Darknet-53 outputs ``[c3, c4, c5]`` (strides 8, 16, 32) -> raw outputs, stride 32 first."""
    c3, c4, c5 = features
    n_out = output_filters(num_classes)
    outputs = []
    x = c5
    # (first conv index, base filters, skip feature for the next scale)
    for first, filters, skip in ((75, 512, c4), (87, 256, c3), (99, 128, None)):
        x = _five_convs(x, filters, first, weight_decay)
        y = darknet_conv(x, filters * 2, 3, index=first + 5, weight_decay=weight_decay)
        outputs.append(output_conv(y, n_out, index=first + 6, weight_decay=weight_decay))
        if skip is not None:
            # darknet: route -4 (back to the 5th conv), 1x1 conv, upsample, route -1 + skip
            x = _upsample_concat(x, skip, filters // 2, first + 9, weight_decay)
    return outputs


def tiny_head(
    features: list[keras.KerasTensor], num_classes: int, *, weight_decay: float = DEFAULT_WEIGHT_DECAY
) -> list[keras.KerasTensor]:
    """``features`` = tiny backbone outputs ``[c4, c5]`` (strides 16, 32) -> raw outputs, stride 32 first."""
    c4, c5 = features
    n_out = output_filters(num_classes)
    x = darknet_conv(c5, 256, 1, index=13, weight_decay=weight_decay)
    y = darknet_conv(x, 512, 3, index=14, weight_decay=weight_decay)
    out32 = output_conv(y, n_out, index=15, weight_decay=weight_decay)
    x = _upsample_concat(x, c4, 128, 18, weight_decay)
    y = darknet_conv(x, 256, 3, index=21, weight_decay=weight_decay)
    out16 = output_conv(y, n_out, index=22, weight_decay=weight_decay)
    return [out32, out16]
