"""Backbones: Darknet-53 (YOLOv3) and the 7-conv tiny backbone (YOLOv3-tiny).

Each is a functional ``keras.Model`` that returns its feature maps in increasing stride order, so the head can pick
the skip connections without reaching into layer indices (keras-yolo3's ``darknet.layers[152]``).
"""

from __future__ import annotations

from collections.abc import Sequence

import keras

from oidyolo.yolo.layers import DEFAULT_WEIGHT_DECAY, darknet_conv, residual_block

DARKNET53_NAME = "darknet53"
TINY_BACKBONE_NAME = "darknet_tiny"

# (filters, residual blocks) of the five Darknet-53 stages, each opened by a stride-2 conv.
DARKNET53_STAGES: tuple[tuple[int, int], ...] = ((64, 1), (128, 2), (256, 8), (512, 8), (1024, 4))


def darknet53(
    input_shape: Sequence[int | None] = (None, None, 3), *, weight_decay: float = DEFAULT_WEIGHT_DECAY
) -> keras.Model:
    """Darknet-53 (darknet layers 0-74). Outputs ``[stride 8 (256 ch), stride 16 (512 ch), stride 32 (1024 ch)]``."""
    inputs = keras.Input(shape=tuple(input_shape), name="backbone_image")
    x = darknet_conv(inputs, 32, 3, index=0, weight_decay=weight_decay)
    index = 1
    features = []
    for filters, blocks in DARKNET53_STAGES:
        x = darknet_conv(x, filters, 3, strides=2, index=index, weight_decay=weight_decay)
        index += 1
        for _ in range(blocks):
            x = residual_block(x, filters, index=index, weight_decay=weight_decay)
            index += 3
        features.append(x)
    assert index == 75, index  # darknet layers 0..74
    # Strides 8, 16, 32: the outputs of shortcut_36, shortcut_61 and shortcut_74.
    return keras.Model(inputs, features[2:], name=DARKNET53_NAME)


def tiny_darknet(
    input_shape: Sequence[int | None] = (None, None, 3), *, weight_decay: float = DEFAULT_WEIGHT_DECAY
) -> keras.Model:
    """YOLOv3-tiny backbone (darknet layers 0-12). Outputs ``[stride 16 (256 ch), stride 32 (1024 ch)]``."""
    inputs = keras.Input(shape=tuple(input_shape), name="backbone_image")
    x = inputs
    for i, filters in enumerate((16, 32, 64, 128, 256)):
        x = darknet_conv(x, filters, 3, index=2 * i, weight_decay=weight_decay)
        if i == 4:
            stride16 = x  # leaky_8, the route target of the second head
        x = keras.layers.MaxPooling2D(2, strides=2, padding="same", name=f"maxpool_{2 * i + 1}")(x)
    x = darknet_conv(x, 512, 3, index=10, weight_decay=weight_decay)
    # Darknet's size-2 stride-1 maxpool pads one pixel bottom/right, as Keras 'same' does.
    x = keras.layers.MaxPooling2D(2, strides=1, padding="same", name="maxpool_11")(x)
    x = darknet_conv(x, 1024, 3, index=12, weight_decay=weight_decay)
    return keras.Model(inputs, [stride16, x], name=TINY_BACKBONE_NAME)
