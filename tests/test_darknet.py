"""Darknet import, proved against OpenCV's darknet reader on the real yolov3/yolov3-tiny cfgs with synthetic weights."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")
keras = pytest.importorskip("keras")

from helpers import write_darknet_weights  # noqa: E402

from oidyolo.errors import ConfigError, DataFormatError  # noqa: E402
from oidyolo.yolo.anchor_masks import masks_for  # noqa: E402
from oidyolo.yolo.darknet import (  # noqa: E402
    convert_darknet,
    describe_cfg,
    inspect_weights_file,
    load_darknet_weights,
    load_pretrained,
    parse_cfg,
    shipped_cfg,
)
from oidyolo.yolo.model import build_yolov3, find_layer, iter_layers  # noqa: E402

FIXTURES = Path(__file__).resolve().parents[1] / "oidyolo" / "resources"  # darknet's own cfgs, shipped
FULL_CFG = FIXTURES / "yolov3.cfg"
TINY_CFG = FIXTURES / "yolov3-tiny.cfg"
HEADS = {"full": ["conv_81", "conv_93", "conv_105"], "tiny": ["conv_15", "conv_22"]}


def _small_cfg(src: Path, dst: Path, size: int) -> Path:
    """A copy of a fixture cfg with width/height set to ``size`` (OpenCV sizes its net from the cfg)."""
    text, n = re.subn(r"(?m)^(width|height)=\d+$", lambda m: f"{m.group(1)}={size}", src.read_text())
    assert n == 2
    dst.write_text(text)
    return dst


def test_cfg_float_counts_match_the_keras_models() -> None:
    full, tiny = describe_cfg(FULL_CFG), describe_cfg(TINY_CFG)
    assert (full.variant, full.num_classes, len(full.convs)) == ("full", 80, 75)
    assert (tiny.variant, tiny.num_classes, len(tiny.convs)) == ("tiny", 80, 13)
    assert full.float_count == 62_001_757 == build_yolov3(80, "full").count_params()
    assert tiny.float_count == 8_858_734 == build_yolov3(80, "tiny").count_params()
    assert full.masks == masks_for("full") and tiny.masks == masks_for("tiny")
    assert full.anchors.shape == (9, 2) and tiny.anchors.shape == (6, 2)
    assert full.anchors[0].tolist() == [10, 13] and tiny.anchors[-1].tolist() == [344, 319]


@pytest.mark.parametrize(("cfg", "variant"), [(FULL_CFG, "full"), (TINY_CFG, "tiny")])
def test_our_convs_are_the_cfg_convs_in_order(cfg: Path, variant: str) -> None:
    # Keras lists functional layers topologically (by depth), so compare by the darknet index in the names.
    convs = [layer for layer in iter_layers(build_yolov3(80, variant)) if isinstance(layer, keras.layers.Conv2D)]
    ours = sorted(convs, key=lambda layer: int(layer.name.split("_")[1]))
    spec = describe_cfg(cfg)
    assert [layer.name for layer in ours] == [f"conv_{c.index}" for c in spec.convs]
    assert [tuple(layer.kernel.shape) for layer in ours] == [
        (c.size, c.size, c.in_channels, c.filters) for c in spec.convs
    ]


def test_parse_cfg_handles_repeated_sections_and_spacing() -> None:
    sections = parse_cfg(TINY_CFG)
    assert sections[0].kind == "net" and sections[0].index == -1
    assert [s.index for s in sections[1:]] == list(range(24))
    assert sections[17].kind == "yolo" and sections[17].options["mask"] == "3,4,5"  # "mask = 3,4,5" in the file


@pytest.mark.parametrize(
    ("cfg", "variant", "size", "gain"), [(TINY_CFG, "tiny", 160, 1.5), (FULL_CFG, "full", 128, 1.0)]
)
def test_converter_matches_opencv(tmp_path: Path, cfg: Path, variant: str, size: int, gain: float) -> None:
    small = _small_cfg(cfg, tmp_path / cfg.name, size)
    spec = describe_cfg(small)
    weights = tmp_path / "synthetic.weights"
    write_darknet_weights(spec, weights, gain=gain)

    rng = np.random.default_rng(1)
    image = rng.uniform(0, 1, (1, size, size, 3)).astype(np.float32)
    net = cv2.dnn.readNetFromDarknet(str(small), str(weights))
    net.setInput(np.ascontiguousarray(image.transpose(0, 3, 1, 2)))
    reference = [o.transpose(0, 2, 3, 1) for o in net.forward(HEADS[variant])]  # NCHW -> NHWC
    del net

    body = build_yolov3(80, variant)
    load_darknet_weights(body, small, weights)
    ours = [o.numpy() for o in body(image, training=False)]
    other = [o.numpy() for o in body(rng.uniform(0, 1, image.shape).astype(np.float32), training=False)]

    for ref, out, alt in zip(reference, ours, other, strict=True):
        assert out.shape == ref.shape
        scale = float(np.abs(ref).max())
        # float32 through 13 (tiny) / 75 (full) convs with different summation orders (oneDNN vs OpenCV) and
        # OpenCV's sqrt(var + 1e-6) vs darknet's sqrt(var) + 1e-6 leave ~1e-5 relative; 1e-4 gives margin while a
        # mis-mapped layer, a transposed kernel or a shifted stride-2 pad is off by O(scale).
        tol = 1e-4 * max(scale, 1.0)
        assert np.abs(out - ref).max() < tol
        # The comparison means something only if the image matters far more than the tolerance.
        assert np.abs(alt - out).max() > 100 * tol


def _tiny_weights(tmp_path: Path, **kwargs: int) -> Path:
    weights = tmp_path / "tiny.weights"
    write_darknet_weights(describe_cfg(TINY_CFG), weights, gain=1.0, **kwargs)
    return weights


@pytest.mark.parametrize("delta", [-1, 1])
def test_wrong_float_count_is_refused_with_both_counts(tmp_path: Path, delta: int) -> None:
    weights = _tiny_weights(tmp_path, extra_floats=max(delta, 0))
    if delta < 0:
        weights.write_bytes(weights.read_bytes()[:-4])
    with pytest.raises(DataFormatError) as err:
        convert_darknet(TINY_CFG, weights, tmp_path / "out.weights.h5")
    assert "8858734" in str(err.value) and str(8858734 + delta) in str(err.value)
    assert not (tmp_path / "out.weights.h5").exists()


def test_sixteen_byte_header_of_old_weights(tmp_path: Path) -> None:
    weights = _tiny_weights(tmp_path)
    data = weights.read_bytes()
    # v0.1 stores `seen` as int32: the same payload behind a 16-byte header.
    weights.write_bytes(np.array([0, 1, 0, 7], "<i4").tobytes() + data[20:])
    body = build_yolov3(80, "tiny")
    load_darknet_weights(body, TINY_CFG, weights)
    first_bias = np.frombuffer(data, "<f4", 16, offset=20)  # conv_0's BN betas
    np.testing.assert_array_equal(find_layer(body, "bn_0").beta.numpy(), first_bias)


def test_a_cfg_that_is_not_yolov3_is_refused(tmp_path: Path) -> None:
    text = TINY_CFG.read_text().replace("filters=512\nsize=3", "filters=384\nsize=3", 1)
    other = tmp_path / "other.cfg"
    other.write_text(text)
    spec = describe_cfg(other)
    weights = tmp_path / "other.weights"
    write_darknet_weights(spec, weights, gain=1.0)
    with pytest.raises(DataFormatError, match="conv_10"):
        convert_darknet(other, weights, tmp_path / "out.weights.h5")
    bad = tmp_path / "bad.cfg"
    bad.write_text(TINY_CFG.read_text().replace("[upsample]", "[reorg]"))
    with pytest.raises(DataFormatError, match="reorg"):
        describe_cfg(bad)


def test_convert_then_load_pretrained_into_other_class_count(tmp_path: Path) -> None:
    weights = _tiny_weights(tmp_path)
    out = tmp_path / "tiny80.weights.h5"
    with pytest.raises(ConfigError):
        convert_darknet(TINY_CFG, weights, tmp_path / "tiny80.h5")
    loaded = convert_darknet(TINY_CFG, weights, out)
    assert loaded.spec.variant == "tiny" and not loaded.partial and inspect_weights_file(out) == ("tiny", 80)

    reference = build_yolov3(80, "tiny")
    reference.load_weights(str(out))
    body = build_yolov3(3, "tiny")
    loaded, skipped = load_pretrained(body, out)
    assert skipped == ["conv_15", "conv_22"]
    assert len(loaded) == 11 + 11  # 11 BN convs: conv + bn each
    for name in loaded:
        for a, b in zip(find_layer(body, name).get_weights(), find_layer(reference, name).get_weights(), strict=True):
            np.testing.assert_array_equal(a, b)
    # Same class count: everything loads and predictions are identical.
    same = build_yolov3(80, "tiny")
    assert load_pretrained(same, out)[1] == []
    x = np.random.default_rng(0).uniform(0, 1, (1, 64, 64, 3)).astype(np.float32)
    for a, b in zip(same(x), reference(x), strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_shipped_cfgs_are_darknets_own() -> None:
    with pytest.raises(ConfigError):
        shipped_cfg("huge")
    # The published weights read exactly these float counts with darknet's own cfgs (80 COCO classes).
    for variant, floats in (("full", 62_001_757), ("tiny", 8_858_734)):
        spec = describe_cfg(shipped_cfg(variant))
        assert (spec.variant, spec.num_classes, spec.float_count) == (variant, 80, floats)


def test_darknet53_conv74_loads_the_backbone_and_stage_1_freezes_exactly_it(tmp_path: Path) -> None:
    """darknet's `partial` output for Darknet-53 (darknet53.conv.74: layers 0-73, the 52 backbone convs)."""
    from dataclasses import replace

    from oidyolo.yolo.darknet import guess_variant
    from oidyolo.yolo.model import freeze_backbone

    spec = describe_cfg(FULL_CFG)
    backbone = tuple(c for c in spec.convs if c.index < 75)
    assert len(backbone) == 52
    partial = tmp_path / "darknet53.conv.74"
    write_darknet_weights(replace(spec, convs=backbone), partial, gain=1.0)
    assert guess_variant(partial) == "full"
    out = tmp_path / "start.weights.h5"
    loaded = convert_darknet(FULL_CFG, partial, out)
    assert loaded.partial and loaded.summary().startswith("partial file: loaded 52 of 75 convs (darknet layers 0-73)")
    with pytest.raises(ConfigError, match="partial file"):
        convert_darknet(FULL_CFG, partial, tmp_path / "detector.weights.h5", full_only=True)
    assert not (tmp_path / "detector.weights.h5").exists()

    body = build_yolov3(3, "full")
    names, skipped = load_pretrained(body, out)
    darknet53 = {layer.name for layer in iter_layers(body.get_layer("darknet53")) if layer.weights}
    assert set(names) == darknet53 and len(names) == 52 + 52  # conv + bn each
    assert "conv_75" in skipped and "conv_105" in skipped
    frozen = freeze_backbone(body, 2, only=names)
    assert frozen == len(names)
    assert {layer.name for layer in iter_layers(body) if layer.weights and not layer.trainable} == darknet53
    # The head (random here) trains: its kernels are among the trainable weights.
    assert len(body.trainable_weights) > 0 and find_layer(body, "conv_75").trainable
