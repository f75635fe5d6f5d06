"""Model builders and the trainable detector.

* :func:`build_yolov3` builds the *body*: images ``(B, H, W, 3)`` RGB in [0, 1] -> a list of raw outputs, stride 32
  first, ``(B, H/s, W/s, 3 * (5 + C))``. It is what gets saved, converted from darknet and exported.
* :class:`YoloDetector` wraps a body with its anchors and the loss, so that ``compile(optimizer=...)`` and
  ``fit(dataset of (images, targets))`` train it (keras-hub style: the task owns the loss via ``compute_loss``).
* :func:`freeze_backbone` / :func:`unfreeze_all` implement keras-yolo3's two-stage schedule.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from oidyolo.errors import ConfigError
from oidyolo.variants import get_variant
from oidyolo.yolo.anchor_masks import Variant, check_variant, masks_for, variant_for_anchors
from oidyolo.yolo.backbone import DARKNET53_NAME, TINY_BACKBONE_NAME, darknet53, tiny_darknet
from oidyolo.yolo.head import FULL_OUTPUT_LAYERS, TINY_OUTPUT_LAYERS, output_filters, tiny_head, yolov3_head
from oidyolo.yolo.layers import DEFAULT_WEIGHT_DECAY
from oidyolo.yolo.loss import LOSS_COMPONENTS, yolo_loss


def build_yolov3(
    num_classes: int,
    variant: str = "full",
    input_shape: Sequence[int | None] = (None, None, 3),
    *,
    weight_decay: float = DEFAULT_WEIGHT_DECAY,
) -> keras.Model:
    """YOLOv3 (``variant="full"``, Darknet-53) or YOLOv3-tiny body for ``num_classes`` classes.

    Returns a functional model mapping float32 RGB images in [0, 1] ``(B, H, W, 3)``, H and W multiples of 32, to
    ``[stride 32, stride 16(, stride 8)]`` raw outputs ``(B, H/s, W/s, 3 * (5 + C))`` (no activation). Layer names
    follow the darknet cfg indices (``conv_0`` ... ``conv_105``), so weights transfer by name. ``weight_decay`` is
    the L2 factor on every conv kernel (keras-yolo3: 5e-4; 0 disables it).
    """
    variant = check_variant(variant)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int | np.integer) or num_classes < 1:
        raise ConfigError(f"num_classes must be a positive integer, got {num_classes!r}")
    input_shape = tuple(input_shape)
    if len(input_shape) != 3 or input_shape[2] != 3:
        raise ConfigError(f"input_shape must be (height, width, 3), got {input_shape}")
    for size in input_shape[:2]:
        if size is not None and (size <= 0 or size % 32):
            raise ConfigError(f"input height and width must be positive multiples of 32, got {input_shape[:2]}")
    num_classes = int(num_classes)
    inputs = keras.Input(shape=input_shape, name="image")
    if variant == "full":
        features = darknet53(input_shape, weight_decay=weight_decay)(inputs)
        outputs = yolov3_head(features, num_classes, weight_decay=weight_decay)
    else:
        features = tiny_darknet(input_shape, weight_decay=weight_decay)(inputs)
        outputs = tiny_head(features, num_classes, weight_decay=weight_decay)
    return keras.Model(inputs, outputs, name=get_variant(variant).body_name)


def body_variant(body: keras.Model) -> Variant:
    """``"full"`` or ``"tiny"`` from the number of outputs of a body built by :func:`build_yolov3`."""
    n = len(body.outputs)
    if n not in (2, 3):
        raise ConfigError(f"a YOLOv3 body has 3 outputs (tiny: 2), this model has {n}")
    return "full" if n == 3 else "tiny"


def body_num_classes(body: keras.Model) -> int:
    """Class count from the width of the body's outputs."""
    channels = body.outputs[0].shape[-1]
    if channels is None or channels % 3 or channels // 3 < 6:
        raise ConfigError(f"output width {channels} is not 3 * (5 + C)")
    return channels // 3 - 5


def iter_layers(model: keras.Model) -> Iterator[keras.Layer]:
    """Leaf layers of a model, descending into nested models (the backbone), in build order."""
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from iter_layers(layer)
        else:
            yield layer


def find_layer(model: keras.Model, name: str) -> keras.Layer:
    """A leaf layer by name, wherever it sits in nested models."""
    for layer in iter_layers(model):
        if layer.name == name:
            return layer
    raise KeyError(f"no layer {name!r} in model {model.name!r}")


def _scale_for_replicas(value: tf.Tensor) -> tf.Tensor:
    # Keras 3 convention: each replica returns loss / num_replicas, so the summed gradients are the global mean.
    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    return value / float(replicas) if replicas > 1 else value


@keras.saving.register_keras_serializable(package="oidyolo")
class YoloDetector(keras.Model):
    """A YOLOv3 body + its anchors + the keras-yolo3 loss, trainable with plain ``compile``/``fit``.

    ``call`` returns the body's raw outputs as float32 (also under ``mixed_float16``). ``fit`` expects batches of
    ``(images, targets)`` with ``targets = {"boxes": (B, M, 5), "grid_0": ..., "grid_1": ..., ["grid_2": ...]}``.
    The loss terms are logged as ``xy_loss``, ``wh_loss``, ``conf_loss`` and ``class_loss``; ``loss`` also holds
    the L2 weight decay. Save ``detector.body.save_weights("x.weights.h5")``, not the detector.

    ``ignore_thresh`` defaults to keras-yolo3's 0.5 (full) or 0.7 (tiny). ``class_names``, ``input_size`` and
    ``masks`` are optional metadata for inference; with them a saved ``.keras`` file is a self-contained detector
    (``keras.saving.load_model`` after ``import oidyolo``; see :mod:`oidyolo.yolo.export`).
    """

    def __init__(
        self,
        body: keras.Model,
        anchors: np.ndarray,
        num_classes: int,
        ignore_thresh: float | None = None,
        *,
        class_names: Sequence[str] | None = None,
        input_size: Sequence[int] | None = None,
        masks: Sequence[Sequence[int]] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        anchors = np.asarray(anchors, dtype=np.float32)
        if anchors.ndim != 2 or anchors.shape[1] != 2:
            raise ConfigError(f"anchors must have shape (9, 2) or (6, 2), got {anchors.shape}")
        variant = variant_for_anchors(len(anchors))
        if body_variant(body) != variant:
            raise ConfigError(f"{len(anchors)} anchors do not fit a body with {len(body.outputs)} outputs")
        if body_num_classes(body) != num_classes:
            raise ConfigError(
                f"body outputs {body.outputs[0].shape[-1]} channels, but {num_classes} classes need "
                f"{output_filters(num_classes)}"
            )
        self.body = body
        self.anchors = anchors
        self.num_classes = int(num_classes)
        self.variant = variant
        self.masks = [list(m) for m in masks] if masks is not None else masks_for(variant)
        if class_names is not None and len(class_names) != num_classes:
            raise ConfigError(f"{len(class_names)} class names for {num_classes} classes")
        self.class_names = None if class_names is None else [str(c) for c in class_names]
        self.input_size = None if input_size is None else [int(v) for v in input_size]
        self.ignore_thresh = float(get_variant(variant).ignore_thresh if ignore_thresh is None else ignore_thresh)
        self.loss_trackers = [keras.metrics.Mean(name=name) for name in LOSS_COMPONENTS]

    def call(self, images: tf.Tensor, training: bool | None = None) -> list[tf.Tensor]:
        return [keras.ops.cast(o, "float32") for o in self.body(images, training=training)]

    def get_config(self) -> dict[str, Any]:
        config = {"name": self.name, "trainable": self.trainable}
        config.update(
            body=keras.saving.serialize_keras_object(self.body),
            anchors=self.anchors.tolist(),
            num_classes=self.num_classes,
            ignore_thresh=self.ignore_thresh,
            class_names=self.class_names,
            input_size=self.input_size,
            masks=self.masks,
        )
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> YoloDetector:
        config = dict(config)
        body = keras.saving.deserialize_keras_object(config.pop("body"))
        return cls(body, np.asarray(config.pop("anchors"), np.float32), **config)

    def compute_loss(
        self,
        x: Any = None,
        y: dict[str, tf.Tensor] | None = None,
        y_pred: list[tf.Tensor] | None = None,
        sample_weight: Any = None,
        training: bool = True,
    ) -> tf.Tensor:
        """keras-yolo3 loss of ``y_pred`` against the targets dict ``y`` (``sample_weight`` is not supported)."""
        if y is None:
            raise ValueError("YoloDetector needs targets: the dataset must yield (images, targets)")
        if sample_weight is not None:
            raise ValueError("YoloDetector does not support sample weights")
        if y_pred is None:
            y_pred = self(x, training=training)
        terms = yolo_loss(y_pred, y, self.anchors, self.masks, self.num_classes, self.ignore_thresh)
        for tracker, name in zip(self.loss_trackers, LOSS_COMPONENTS, strict=True):
            tracker.update_state(terms[name])
        loss = terms["loss"]
        if self.losses:  # L2 weight decay of the conv kernels
            loss = loss + tf.add_n([tf.cast(r, tf.float32) for r in self.losses])
        return _scale_for_replicas(loss)


def _body_of(model: keras.Model) -> keras.Model:
    return model.body if isinstance(model, YoloDetector) else model


def freeze_backbone(model: keras.Model, mode: int, *, only: Collection[str] | None = None) -> int:
    """keras-yolo3's ``freeze_body``: 1 freezes the backbone, 2 everything but the final 1x1 output convs.

    Works on a :class:`YoloDetector` or a body; 0 freezes nothing. Undoes any earlier freezing first. ``only``
    (the layers a pretrained start loaded) limits the freezing to those layers, so a partial darknet file's random
    remainder still trains. Returns the number of weight-carrying layers now frozen. Recompile afterwards: Keras
    picks up ``trainable`` at compile.
    """
    if mode not in (0, 1, 2):
        raise ConfigError(f"freeze mode must be 0 (none), 1 (backbone) or 2 (all but the output convs), got {mode!r}")
    body = _body_of(model)
    unfreeze_all(body)
    variant = body_variant(body)
    if mode == 1:
        body.get_layer(DARKNET53_NAME if variant == "full" else TINY_BACKBONE_NAME).trainable = False
    elif mode == 2:
        keep = FULL_OUTPUT_LAYERS if variant == "full" else TINY_OUTPUT_LAYERS
        for layer in body.layers:
            if layer.name not in keep:
                layer.trainable = False
    if only is not None:
        frozen = {layer.name for layer in iter_layers(body) if not layer.trainable} & set(only)
        unfreeze_all(body)
        for layer in iter_layers(body):  # leaf by leaf: a frozen nested model would hide trainable leaves
            if layer.name in frozen:
                layer.trainable = False
    return sum(1 for layer in iter_layers(body) if layer.weights and not layer.trainable)


def unfreeze_all(model: keras.Model) -> None:
    """Make every layer trainable again (recompile afterwards)."""
    # Toggle: Keras' TF tracking skips `x.trainable = True` when x.trainable is already True, even if sublayers
    # are frozen, so `True` alone would not reach them.
    for target in {id(m): m for m in (model, _body_of(model))}.values():
        target.trainable = False
        target.trainable = True
