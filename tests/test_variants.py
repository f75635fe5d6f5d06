"""The variants table against darknet's own cfgs (shipped verbatim) and against the bodies Keras builds."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from oidyolo.errors import ConfigError
from oidyolo.variants import VARIANTS, get_variant, variant_for_anchors, variant_for_outputs


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_the_table_agrees_with_darknets_cfg(name: str) -> None:
    pytest.importorskip("keras")
    from oidyolo.yolo.darknet import describe_cfg, shipped_cfg

    v, cfg = VARIANTS[name], describe_cfg(shipped_cfg(name))
    assert cfg.variant == name and shipped_cfg(name).name == v.darknet_cfg
    np.testing.assert_array_equal(cfg.anchors, v.coco_anchor_array())
    assert cfg.masks == [list(m) for m in v.masks]
    assert len(cfg.convs) == v.darknet_convs
    # strides halve from 32, one per output; anchors sorted by area, as the masks assume
    assert v.strides == tuple(32 // 2**i for i in range(len(v.masks)))
    areas = v.coco_anchor_array().prod(1)
    assert (np.diff(areas) > 0).all() and sorted(i for m in v.masks for i in m) == list(range(v.num_anchors))


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_the_keras_body_has_the_tables_outputs(name: str) -> None:
    pytest.importorskip("keras")
    from oidyolo.yolo.model import build_yolov3

    v = VARIANTS[name]
    body = build_yolov3(3, name, input_shape=(64, 96, 3))
    assert body.name == v.body_name
    assert [tuple(o.shape[1:3]) for o in body.outputs] == [(64 // s, 96 // s) for s in v.strides]
    assert variant_for_outputs(len(body.outputs)) is v


def test_lookups_refuse_unknown_values_clearly() -> None:
    assert variant_for_anchors(9).name == "full" and variant_for_anchors(6).name == "tiny"
    with pytest.raises(ConfigError, match=r"9 \(full\) or 6 \(tiny\) anchors, got 5"):
        variant_for_anchors(5)
    with pytest.raises(ConfigError, match="'full', 'tiny', got 'huge'"):
        get_variant("huge")
    with pytest.raises(ConfigError, match="got 4"):
        variant_for_outputs(4)


def test_the_table_never_loads_tensorflow() -> None:
    code = "import sys, oidyolo.variants, oidyolo.data.anchors; sys.exit('tensorflow' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
