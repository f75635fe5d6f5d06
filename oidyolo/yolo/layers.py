"""Darknet building blocks: the conv + BN + LeakyReLU(0.1) unit and the residual block.

Layer names carry the index of the matching layer in the darknet ``.cfg`` (``conv_12``, ``bn_12``, ``leaky_12``,
``shortcut_15``, ...), which is also how OpenCV names them. That keeps the names stable, puts them in darknet order,
and lets the darknet importer check its mapping layer by layer.
"""

from __future__ import annotations

import keras

# Darknet normalises with (x - mean) / (sqrt(var) + 1e-6); Keras with (x - mean) / sqrt(var + eps). A small eps
# keeps the two close, and the darknet importer folds the remaining difference into the moving variance, so
# converted weights reproduce darknet. 1e-5 (PyTorch's default) rather than 1e-6: from-scratch training stays
# stable on channels whose variance collapses.
BN_EPSILON = 1e-5
# Darknet's rolling statistics use 0.99 / 0.01, which is also Keras' default momentum.
BN_MOMENTUM = 0.99
LEAKY_SLOPE = 0.1
# keras-yolo3 puts l2(5e-4) on every conv kernel (darknet's decay=0.0005).
DEFAULT_WEIGHT_DECAY = 5e-4


def _regularizer(weight_decay: float) -> keras.regularizers.Regularizer | None:
    return keras.regularizers.L2(weight_decay) if weight_decay > 0 else None


def darknet_conv(
    x: keras.KerasTensor,
    filters: int,
    kernel_size: int,
    *,
    index: int,
    strides: int = 1,
    weight_decay: float = DEFAULT_WEIGHT_DECAY,
) -> keras.KerasTensor:
    """Conv (no bias) + BatchNorm + LeakyReLU(0.1), named after darknet layer ``index``.

    A stride-2 conv pads one pixel on the top and left only and then runs 'valid': darknet pads 1 on every side, and
    on even sizes only the top/left pad is ever read. Keras 'same' would pad bottom/right instead and shift the
    sampling grid by one pixel.
    """
    if strides > 1:
        x = keras.layers.ZeroPadding2D(((1, 0), (1, 0)), name=f"pad_{index}")(x)
    x = keras.layers.Conv2D(
        filters,
        kernel_size,
        strides=strides,
        padding="valid" if strides > 1 else "same",
        use_bias=False,
        kernel_regularizer=_regularizer(weight_decay),
        name=f"conv_{index}",
    )(x)
    x = keras.layers.BatchNormalization(momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name=f"bn_{index}")(x)
    return keras.layers.LeakyReLU(negative_slope=LEAKY_SLOPE, name=f"leaky_{index}")(x)


def output_conv(
    x: keras.KerasTensor, filters: int, *, index: int, weight_decay: float = DEFAULT_WEIGHT_DECAY
) -> keras.KerasTensor:
    """The linear 1x1 conv (with bias, no BN, no activation) that emits raw YOLO predictions."""
    return keras.layers.Conv2D(
        filters, 1, padding="same", use_bias=True, kernel_regularizer=_regularizer(weight_decay), name=f"conv_{index}"
    )(x)


def residual_block(
    x: keras.KerasTensor, filters: int, *, index: int, weight_decay: float = DEFAULT_WEIGHT_DECAY
) -> keras.KerasTensor:
    """Darknet-53 residual unit: 1x1 conv to ``filters // 2``, 3x3 conv back to ``filters``, add the input.

    ``index`` is the darknet index of the 1x1 conv; the 3x3 conv is ``index + 1`` and the shortcut ``index + 2``.
    """
    y = darknet_conv(x, filters // 2, 1, index=index, weight_decay=weight_decay)
    y = darknet_conv(y, filters, 3, index=index + 1, weight_decay=weight_decay)
    return keras.layers.Add(name=f"shortcut_{index + 2}")([x, y])
