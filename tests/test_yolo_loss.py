"""The YOLOv3 loss: against a plain-loop reference of keras-yolo3's semantics, and its guards."""

from __future__ import annotations

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from helpers import ANCHORS, C, encode  # noqa: E402

from oidyolo.yolo.anchor_masks import masks_for  # noqa: E402
from oidyolo.yolo.loss import LOSS_COMPONENTS, yolo_loss  # noqa: E402


def _bce(z: float, x: float) -> float:
    return max(x, 0.0) - x * z + np.log1p(np.exp(-abs(x)))


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    iw = max(min(a[2], b[2]) - max(a[0], b[0]), 0.0)
    ih = max(min(a[3], b[3]) - max(a[1], b[1]), 0.0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - iw * ih
    return iw * ih / union if union > 0 else 0.0


def reference_loss(outputs: list[np.ndarray], targets: dict, variant: str, ignore_thresh: float) -> dict[str, float]:
    """keras-yolo3's yolo_loss written as plain loops over images, cells and anchors, in float64."""
    anchors, masks = ANCHORS[variant].astype(np.float64), masks_for(variant)
    batch, in_h, in_w = outputs[0].shape[0], outputs[0].shape[1] * 32, outputs[0].shape[2] * 32
    sums = dict.fromkeys(LOSS_COMPONENTS, 0.0)
    for layer, out in enumerate(outputs):
        _, gh, gw, _ = out.shape
        raw = out.astype(np.float64).reshape(batch, gh, gw, 3, 5 + C)
        true = targets[f"grid_{layer}"].astype(np.float64)
        for b in range(batch):
            gts = [g[:4] / [in_w, in_h, in_w, in_h] for g in targets["boxes"][b] if g[2] > g[0] and g[3] > g[1]]
            for j in range(gh):
                for i in range(gw):
                    for a in range(3):
                        t, y, anchor = raw[b, j, i, a], true[b, j, i, a], anchors[masks[layer][a]]
                        px, py = (1 / (1 + np.exp(-t[0])) + i) / gw, (1 / (1 + np.exp(-t[1])) + j) / gh
                        pw, ph = np.exp(t[2]) * anchor[0] / in_w, np.exp(t[3]) * anchor[1] / in_h
                        pred = np.array([px - pw / 2, py - ph / 2, px + pw / 2, py + ph / 2])
                        best = max([_iou(pred, g) for g in gts], default=0.0)
                        obj = y[4]
                        conf = _bce(obj, t[4])
                        sums["conf_loss"] += obj * conf + (1 - obj) * conf * (best < ignore_thresh)
                        if obj:
                            scale = 2 - y[2] * y[3]
                            txy = [y[0] * gw - i, y[1] * gh - j]
                            ratio = y[2:4] * [in_w, in_h] / anchor
                            twh = np.where(ratio > 0, np.log(np.where(ratio > 0, ratio, 1)), 0)
                            sums["xy_loss"] += scale * sum(_bce(txy[k], t[k]) for k in range(2))
                            sums["wh_loss"] += scale * 0.5 * float(np.sum((twh - t[2:4]) ** 2))
                            sums["class_loss"] += sum(_bce(y[5 + k], t[5 + k]) for k in range(C))
    return {k: v / batch for k, v in sums.items()}


def _random_case(variant: str, size: tuple[int, int], seed: int) -> tuple[list[np.ndarray], dict]:
    rng = np.random.default_rng(seed)
    h, w = size
    boxes = np.zeros((2, 6, 5), np.float32)  # image 0: 4 boxes + 2 padding rows, image 1: 2 boxes
    for b, n in ((0, 4), (1, 2)):
        xy = rng.uniform(0, [w * 0.6, h * 0.6], (n, 2))
        wh = rng.uniform(4, [w * 0.4, h * 0.4], (n, 2))
        boxes[b, :n] = np.concatenate([xy, xy + wh, rng.integers(0, C, (n, 1))], axis=1)
    targets = encode(boxes, variant, size)
    outputs = [rng.normal(0, 1.0, (2, h // s, w // s, 3 * (5 + C))).astype(np.float32) for s in (32, 16, 8)]
    return outputs[: len(masks_for(variant))], targets


def _loss(outputs: list, targets: dict, variant: str, ignore_thresh: float = 0.5) -> dict[str, float]:
    terms = yolo_loss(
        [tf.constant(o) for o in outputs], targets, ANCHORS[variant], masks_for(variant), C, ignore_thresh
    )
    return {k: float(v) for k, v in terms.items()}


@pytest.mark.parametrize(("variant", "size"), [("tiny", (64, 96)), ("full", (64, 64))])
def test_loss_matches_plain_loop_reference(variant: str, size: tuple[int, int]) -> None:
    outputs, targets = _random_case(variant, size, seed=3)
    # Pull some predictions onto the GT boxes so the ignore mask is exercised (random ones rarely reach IoU 0.5).
    outputs[0][..., 2:4] += 1.5
    ours = _loss(outputs, targets, variant, ignore_thresh=0.3)
    ref = reference_loss(outputs, targets, variant, ignore_thresh=0.3)
    for name in LOSS_COMPONENTS:
        assert ours[name] == pytest.approx(ref[name], rel=1e-4), name
    assert ours["loss"] == pytest.approx(sum(ref.values()), rel=1e-4)
    assert ref["xy_loss"] > 0 and ref["class_loss"] > 0
    # The ignore mask must matter in this case, or the comparison above proves nothing about it.
    assert reference_loss(outputs, targets, variant, 1.01)["conf_loss"] > ref["conf_loss"] + 1e-3


def test_loss_is_per_image_sum_averaged_over_the_batch() -> None:
    outputs, targets = _random_case("tiny", (64, 64), seed=4)
    one = _loss([o[:1] for o in outputs], {k: v[:1] for k, v in targets.items()}, "tiny")
    two = _loss(
        [np.concatenate([o[:1], o[:1]]) for o in outputs],
        {k: np.concatenate([v[:1]] * 2) for k, v in targets.items()},
        "tiny",
    )
    padded = dict(targets, boxes=np.concatenate([targets["boxes"], np.zeros((2, 10, 5), np.float32)], axis=1))
    for name in one:
        assert two[name] == pytest.approx(one[name], rel=1e-5)
    assert _loss(outputs, padded, "tiny") == pytest.approx(_loss(outputs, targets, "tiny"), rel=1e-6)


def _grads_finite(outputs: list[np.ndarray], targets: dict, variant: str) -> tuple[dict[str, float], bool]:
    variables = [tf.Variable(o) for o in outputs]
    with tf.GradientTape() as tape:
        terms = yolo_loss(variables, targets, ANCHORS[variant], masks_for(variant), C, 0.5)
    grads = tape.gradient(terms["loss"], variables)
    return {k: float(v) for k, v in terms.items()}, all(bool(np.isfinite(g.numpy()).all()) for g in grads)


def test_empty_images_give_a_finite_confidence_only_loss() -> None:
    outputs, _ = _random_case("tiny", (64, 64), seed=5)
    for boxes in (np.zeros((2, 4, 5), np.float32), np.zeros((2, 0, 5), np.float32)):
        terms, finite = _grads_finite(outputs, encode(boxes, "tiny", (64, 64)), "tiny")
        assert finite and all(np.isfinite(v) for v in terms.values())
        assert terms["xy_loss"] == terms["wh_loss"] == terms["class_loss"] == 0.0
        assert terms["conf_loss"] > 0


def test_zero_size_boxes_and_extreme_outputs_stay_finite() -> None:
    outputs, targets = _random_case("tiny", (64, 64), seed=6)
    # A degenerate box in "boxes" and an object cell whose target size is 0 (log(0) without the guard).
    targets["boxes"][1, 3] = [10, 10, 10, 30, 1]
    targets["grid_1"][1, 0, 0, 0, :5] = [0.1, 0.1, 0.0, 0.0, 1.0]
    outputs[0][..., 2:4] = 200.0  # exp() would overflow float32 in the ignore-mask boxes
    outputs[1][..., 4] = -200.0
    terms, finite = _grads_finite(outputs, targets, "tiny")
    assert finite and all(np.isfinite(v) for v in terms.values())


def test_perfect_predictions_beat_random_ones() -> None:
    outputs, targets = _random_case("full", (64, 96), seed=7)
    perfect = []
    for layer, out in enumerate(outputs):
        y = targets[f"grid_{layer}"]
        gh, gw = y.shape[1:3]
        anchors = ANCHORS["full"][masks_for("full")[layer]]
        cols, rows = np.meshgrid(np.arange(gw), np.arange(gh))
        rel = np.clip(y[..., :2] * [gw, gh] - np.stack([cols, rows], -1)[:, :, None], 1e-4, 1 - 1e-4)
        ratio = np.maximum(y[..., 2:4] * [96, 64] / anchors, 1e-9)
        t = np.concatenate(
            [np.log(rel / (1 - rel)), np.log(ratio), np.where(y[..., 4:] > 0, 12.0, -12.0)], axis=-1
        ).astype(np.float32)
        perfect.append(t.reshape(out.shape))
    good, bad = _loss(perfect, targets, "full"), _loss(outputs, targets, "full")
    assert good["loss"] < 0.1 * bad["loss"]
    assert good["wh_loss"] < 1e-6 and good["class_loss"] < 1e-3
