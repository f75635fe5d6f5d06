"""Fair checkpoint choice: the best weights are chosen by the detection loss without the L2 term, so a stage-2
improvement is kept even though unfreezing the backbone adds its L2 to ``val_loss``."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("tensorflow")

from oidyolo.data.anchors import COCO_TINY_ANCHORS


def _detector():
    from oidyolo.yolo.model import YoloDetector, build_yolov3

    body = build_yolov3(3, "tiny", weight_decay=5e-4)
    detector = YoloDetector(body, COCO_TINY_ANCHORS, 3)
    detector(np.zeros((1, 64, 64, 3), np.float32))
    return detector


def _l2(detector) -> float:
    return float(sum(float(r) for r in detector.losses))


def test_frozen_backbone_lacks_its_l2_in_val_loss():
    """The premise: Keras counts the L2 of trainable weights only, so val_loss is not comparable across stages."""
    from oidyolo.yolo.model import freeze_backbone, unfreeze_all

    detector = _detector()
    freeze_backbone(detector, 1)
    frozen = _l2(detector)
    unfreeze_all(detector)
    assert _l2(detector) > frozen > 0


def test_a_stage_2_improvement_is_never_lost_to_the_l2_difference(tmp_path):
    from oidyolo.yolo import callbacks as cb
    from oidyolo.yolo.loss import LOSS_COMPONENTS
    from oidyolo.yolo.model import freeze_backbone, unfreeze_all

    detector = _detector()
    best = cb.BestBody(tmp_path / "best.weights.h5")
    callbacks = [cb.DetectionLoss(), best]
    for c in callbacks:
        c.set_model(detector)

    def epoch(epoch: int, terms: list[float]) -> dict:
        logs = {f"val_{k}": v for k, v in zip(LOSS_COMPONENTS, terms, strict=False)}
        if terms:
            logs["val_loss"] = sum(terms) + _l2(detector)  # what Keras reports: detection + trainable L2
        for c in callbacks:
            c.on_epoch_end(epoch, logs)
        return logs

    freeze_backbone(detector, 1)
    stage_1 = epoch(0, [1.0, 1.0, 5.0, 1.0])
    unfreeze_all(detector)
    for w in detector.body.weights:  # stage 2 moves the weights ...
        w.assign(w + 0.001)
    stage_2_weights = [np.asarray(w) for w in detector.body.weights]
    stage_2 = epoch(1, [1.0, 1.0, 4.9, 1.0])  # ... and the detection loss improves a little
    assert stage_2["val_det_loss"] < stage_1["val_det_loss"]
    # The L2 the unfrozen backbone adds makes val_loss worse: selecting by it would keep stage 1.
    assert stage_2["val_loss"] > stage_1["val_loss"]
    assert best.best == pytest.approx(stage_2["val_det_loss"])
    detector.body.load_weights(str(best.path))
    for got, want in zip(detector.body.weights, stage_2_weights, strict=True):
        np.testing.assert_array_equal(np.asarray(got), want)
    # An epoch without validation (validation_freq > 1) neither saves nor counts.
    epoch(2, [])
    assert best.best == pytest.approx(stage_2["val_det_loss"])
