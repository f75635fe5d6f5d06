from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

tf = pytest.importorskip("tensorflow")

from oidyolo.data.anchors import COCO_ANCHORS, COCO_TINY_ANCHORS, anchor_masks  # noqa: E402
from oidyolo.errors import ConfigError, DataFormatError  # noqa: E402
from oidyolo.yolo.augment import (  # noqa: E402
    AugmentConfig,
    AugmentParams,
    apply_params_numpy,
    apply_params_tf,
    letterbox_size,
)
from oidyolo.yolo.dataset import build_dataset, encode_targets_numpy, reference_generator  # noqa: E402
from oidyolo.yolo.targets import encode_targets  # noqa: E402

GREEN, RED = (30, 200, 40), (230, 20, 20)
NO_COLOUR = AugmentConfig(hue=0.0, sat=1.0, val=1.0)


def _image(path: Path, size: tuple[int, int], rect: tuple[int, int, int, int], mode: str = "RGB") -> None:
    """A green JPEG with a solid red rectangle (x1, y1, x2, y2 exclusive) in the given mode."""
    im = Image.new("RGB", size, GREEN)
    ImageDraw.Draw(im).rectangle([rect[0], rect[1], rect[2] - 1, rect[3] - 1], fill=RED)
    im.convert(mode).save(path, quality=95)


@pytest.fixture
def data(tmp_path):
    """Three small JPEGs (RGB, grayscale, CMYK) with a red box each, plus their annotation file."""
    specs = [
        ("rgb.jpg", (200, 100), (20, 10, 120, 90), "RGB"),  # wide
        ("gray.jpg", (60, 120), (6, 12, 54, 108), "L"),  # tall
        ("cmyk.jpg", (96, 64), (10, 8, 50, 40), "CMYK"),  # exactly the input size
    ]
    lines = []
    for name, size, rect, mode in specs:
        _image(tmp_path / name, size, rect, mode)
        lines.append(f"{name} {rect[0]},{rect[1]},{rect[2]},{rect[3]},{len(lines)}")
    ann = tmp_path / "train.txt"
    ann.write_text("\n".join(lines) + "\n")
    return ann


def _batches(ann, **kw):
    kw = {"num_classes": 3, "anchors": COCO_ANCHORS, "input_shape": (64, 96), "image_root": ann.parent, **kw}
    return [(x.numpy(), {k: v.numpy() for k, v in t.items()}) for x, t in build_dataset(ann, **kw)]


def test_batch_shapes_and_dtypes(data):
    (x, t), (x2, _) = _batches(data, batch_size=2, augment=True, max_boxes=7)
    assert x.shape == (2, 64, 96, 3) and x.dtype == np.float32 and x2.shape[0] == 1
    assert x.min() >= 0.0 and x.max() <= 1.0
    assert t["boxes"].shape == (2, 7, 5)
    assert t["grid_0"].shape == (2, 2, 3, 3, 8)
    assert t["grid_1"].shape == (2, 4, 6, 3, 8)
    assert t["grid_2"].shape == (2, 8, 12, 3, 8)
    assert all(v.dtype == np.float32 for v in t.values())
    (_, tiny), *_ = _batches(data, anchors=COCO_TINY_ANCHORS, batch_size=3, augment=False)
    assert sorted(tiny) == ["boxes", "grid_0", "grid_1"]


def test_letterbox_boxes_and_pixels_by_hand(data):
    (x, t), *_ = _batches(data, batch_size=3, augment=False, shuffle=False)
    # rgb 200x100 into w96 x h64: scale 0.48, resized 96x48, dy = (64 - 48) // 2 = 8.
    # gray 60x120: scale 64/120, resized 32x64, dx = (96 - 32) // 2 = 32.  cmyk 96x64: identity.
    expected = [
        [20 * 0.48, 10 * 0.48 + 8, 120 * 0.48, 90 * 0.48 + 8, 0],
        [6 * 32 / 60 + 32, 12 * 64 / 120, 54 * 32 / 60 + 32, 108 * 64 / 120, 1],
        [10, 8, 50, 40, 2],
    ]
    np.testing.assert_allclose(t["boxes"][:, 0], expected, rtol=1e-6)
    assert not t["boxes"][:, 1:].any()
    assert (x[0, :8] == 0.5).all() and (x[0, 56:] == 0.5).all()  # gray bars above and below
    assert (x[1, :, :32] == 0.5).all() and (x[1, :, 64:] == 0.5).all()  # and left/right of the tall one
    for i, (name, box) in enumerate(zip(["rgb", "gray", "cmyk"], expected, strict=True)):
        # The box's colour inside (2 px in from the edges) and the background's just below it, as Pillow sees them.
        src = np.asarray(Image.open(data.parent / f"{name}.jpg").convert("RGB"), np.float32) / 255
        x1, y1, x2, y2 = int(np.ceil(box[0])), int(np.ceil(box[1])), int(box[2]), int(box[3])
        assert np.abs(x[i, y1 + 2 : y2 - 2, x1 + 2 : x2 - 2] - src[src.shape[0] // 2, 25]).max() < 0.1, name
        assert np.abs(x[i, y2 + 2, x1 + 2 : x2 - 2] - src[-1, -1]).max() < 0.1, name


def test_grayscale_and_cmyk_decode_as_rgb(data):
    (x, _), *_ = _batches(data, batch_size=3, augment=False, shuffle=False)
    gray = x[1, 30, 40]  # in the red box of the grayscale image: three equal channels of red's luma
    luma = (RED[0] * 299 + RED[1] * 587 + RED[2] * 114) / 1000 / 255
    np.testing.assert_allclose(gray, [luma] * 3, atol=0.03)
    cmyk_ref = np.asarray(Image.open(data.parent / "cmyk.jpg").convert("RGB"), np.float32) / 255
    # Same size as the input, so no resampling; the JPEG decoders differ slightly at the box's chroma edges only.
    assert np.abs(x[2] - cmyk_ref).mean() < 0.005
    np.testing.assert_allclose(x[2, 12:36, 14:46], cmyk_ref[12:36, 14:46], atol=0.04)


def _random_boxes(rng, n, input_shape=(64, 96), num_classes=4):
    h, w = input_shape
    xy = rng.uniform(0, [w - 2, h - 2], size=(n, 2))
    wh = rng.uniform(1.5, [w, h], size=(n, 2)) * rng.choice([0.1, 0.4, 1.0], size=(n, 1))
    x2y2 = np.minimum(xy + np.maximum(wh, 1.5), [w, h])
    return np.concatenate([xy, x2y2, rng.integers(0, num_classes, (n, 1))], axis=1).astype(np.float32)


@pytest.mark.parametrize("anchors", [COCO_ANCHORS, COCO_TINY_ANCHORS], ids=["full", "tiny"])
def test_tf_encoding_matches_numpy_reference(anchors):
    masks = anchor_masks(len(anchors))
    boxes = _random_boxes(np.random.default_rng(0), 60)  # 60 boxes on a tiny grid: shared cells included
    ref = encode_targets_numpy(boxes, anchors, masks, 4, (64, 96))
    got = encode_targets(tf.constant(boxes), anchors, masks, 4, (64, 96))
    assert sorted(got) == sorted(ref)
    for k in ref:
        np.testing.assert_allclose(got[k].numpy(), ref[k], atol=1e-6, err_msg=k)
    assert sum(int(g[..., 4].sum()) for g in ref.values()) < 60  # collisions did happen (later box wins)


def test_numpy_encoding_by_hand():
    # A 120x90 box is closest to anchor 6 (116x90): layer 0 (stride 32), slot 0. Centre (70, 45) in a 96x64 input:
    # cell col 70 // 32 = 2, row 45 // 32 = 1. A 10x14 box goes to anchor 0: layer 2 (stride 8), slot 0.
    boxes = np.array([[10, 0, 130, 90, 2], [1, 1, 11, 15, 0]], np.float32)
    out = encode_targets_numpy(boxes, COCO_ANCHORS, anchor_masks(9), 3, (64, 96))
    np.testing.assert_allclose(out["grid_0"][1, 2, 0], [70 / 96, 45 / 64, 120 / 96, 90 / 64, 1, 0, 0, 1])
    np.testing.assert_allclose(out["grid_2"][1, 0, 0], [6 / 96, 8 / 64, 10 / 96, 14 / 64, 1, 1, 0, 0])
    assert out["grid_0"][..., 4].sum() == 1 and out["grid_1"][..., 4].sum() == 0 and out["grid_2"][..., 4].sum() == 1


def test_pipeline_grids_match_reference_on_its_boxes(data):
    for x, t in _batches(data, batch_size=2, augment=True, seed=3):
        for i in range(len(x)):
            ref = encode_targets_numpy(t["boxes"][i], COCO_ANCHORS, anchor_masks(9), 3, (64, 96))
            for k in ref:
                np.testing.assert_allclose(t[k][i], ref[k], atol=1e-6)


def _red_box_check(image, box, margin=2):
    """Pixels inside the box (margin in) are red; a band just outside (where inside the canvas) is not."""
    w = image.shape[1]
    x1, y1, x2, y2 = int(np.ceil(box[0])), int(np.ceil(box[1])), int(box[2]), int(box[3])
    inner = image[y1 + margin : y2 - margin, x1 + margin : x2 - margin]
    if inner.size:
        assert np.abs(inner - np.array(RED) / 255).max() < 0.15
    red = np.array(RED) / 255
    for xs in (x1 - margin - 1, x2 + margin):
        if 0 <= xs < w and y2 - y1 > 2 * margin:
            assert np.abs(image[y1 + margin : y2 - margin, xs] - red).max(axis=-1).min() > 0.3


@pytest.mark.parametrize("flip", [False, True])
def test_augment_params_move_boxes_with_pixels_tf_vs_numpy(tmp_path, flip):
    _image(tmp_path / "a.jpg", (80, 60), (8, 10, 40, 50))  # red box in the left half
    params = AugmentParams(nw=120, nh=70, dx=-20, dy=-3, flip=flip, hue=0.0, sat=1.0, val=1.0)
    im = Image.open(tmp_path / "a.jpg")
    box = np.array([[8, 10, 40, 50, 0]], np.float32)
    img_tf, boxes_tf = apply_params_tf(tf.constant(np.asarray(im)), tf.constant(box), params, (64, 96))
    img_np, boxes_np = apply_params_numpy(im, box, params, (64, 96))
    # x: 8 * 1.5 - 20 = -8 -> clipped 0, 40 * 1.5 - 20 = 40; y: 10 * 70/60 - 3, 50 * 70/60 - 3; flipped: 96 - x.
    x1, x2 = (56.0, 96.0) if flip else (0.0, 40.0)
    np.testing.assert_allclose(boxes_tf.numpy(), [[x1, 10 * 70 / 60 - 3, x2, 50 * 70 / 60 - 3, 0]], rtol=1e-5)
    np.testing.assert_allclose(boxes_np, boxes_tf.numpy(), rtol=1e-5)
    _red_box_check(img_tf.numpy(), boxes_tf.numpy()[0])
    _red_box_check(img_np, boxes_np[0])
    assert np.abs(img_tf.numpy() - img_np).mean() < 0.03  # bilinear vs PIL bicubic: close, not equal


def test_augmented_boxes_stay_inside_and_on_their_pixels(tmp_path):
    _image(tmp_path / "a.jpg", (120, 80), (10, 20, 50, 70))
    (tmp_path / "t.txt").write_text("a.jpg 10,20,50,70,1\n" * 6)
    seen_flip = set()
    for x, t in _batches(tmp_path / "t.txt", batch_size=6, augment_config=NO_COLOUR, seed=5):
        for img, boxes in zip(x, t["boxes"], strict=True):
            kept = boxes[boxes[:, 2] > 0]
            assert (kept[:, :4] >= 0).all() and (kept[:, [0, 2]] <= 96).all() and (kept[:, [1, 3]] <= 64).all()
            assert ((kept[:, 2] - kept[:, 0] > 1) & (kept[:, 3] - kept[:, 1] > 1)).all()
            for box in kept:
                _red_box_check(img, box)
                # The red box is in the left third of the source: after a flip its centre tends right.
                seen_flip.add(bool((box[0] + box[2]) / 2 > 48))
    assert seen_flip == {False, True}  # both flip states were exercised


def test_colour_augmentation_changes_pixels_not_geometry(tmp_path):
    _image(tmp_path / "a.jpg", (96, 64), (10, 8, 50, 40))
    (tmp_path / "t.txt").write_text("a.jpg 10,8,50,40,0\n" * 4)
    cfg = AugmentConfig(jitter=0.0, scale=(1.0, 1.0), flip=False, hue=0.1, sat=1.5, val=1.5)
    (x, t), *_ = _batches(tmp_path / "t.txt", batch_size=4, augment_config=cfg)
    np.testing.assert_allclose(t["boxes"][:, 0], [[10, 8, 50, 40, 0]] * 4)  # scale 1, no jitter: identity
    assert np.ptp(x[:, 20, 20], axis=0).max() > 0.02  # four different colour draws of the same red pixel


def test_max_boxes_cap(tmp_path):
    _image(tmp_path / "a.jpg", (96, 64), (0, 0, 1, 1))
    boxes = " ".join(f"{x},{y},{x + 8},{y + 8},{(x + y) % 3}" for x in range(0, 88, 10) for y in range(0, 56, 10))
    (tmp_path / "t.txt").write_text(f"a.jpg {boxes}\n")
    (_, val), *_ = _batches(tmp_path / "t.txt", augment=False, max_boxes=5)
    np.testing.assert_allclose(val["boxes"][0, :, :4], [[0, 0, 8, 8], [0, 10, 8, 18], [0, 20, 8, 28],
                                                        [0, 30, 8, 38], [0, 40, 8, 48]])  # fmt: skip
    (_, aug), *_ = _batches(tmp_path / "t.txt", augment=True, max_boxes=5, augment_config=NO_COLOUR)
    assert (aug["boxes"][0, :, 2] > 0).sum() == 5
    for t in (val, aug):
        assert sum(t[f"grid_{i}"][..., 4].sum() for i in range(3)) <= 5


def test_seeded_pipeline_is_deterministic(data):
    a1, a2 = _batches(data, batch_size=3, seed=11), _batches(data, batch_size=3, seed=11)
    for (xa, ta), (xb, tb) in zip(a1, a2, strict=True):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ta["boxes"], tb["boxes"])
    b = _batches(data, batch_size=3, seed=12)
    assert not np.array_equal(a1[0][0], b[0][0])
    # The next epoch of a repeating dataset draws new augmentations; epoch 1 is the same whether the stream
    # starts at epoch 0 (and gets there) or starts there (a resume), also when skipping into it by batches.
    kw = dict(num_classes=3, anchors=COCO_ANCHORS, input_shape=(64, 96), batch_size=2, seed=11, image_root=data.parent)
    stream = [x.numpy() for x, _ in build_dataset(data, repeat=True, **kw).take(4)]  # 2 batches per epoch
    np.testing.assert_array_equal(stream[0][:2], _batches(data, batch_size=2, seed=11)[0][0])
    assert not np.array_equal(stream[0], stream[2])
    resumed = [x.numpy() for x, _ in build_dataset(data, repeat=True, first_epoch=1, **kw).take(2)]
    skipped = [x.numpy() for x, _ in build_dataset(data, repeat=True, skip_batches=3, **kw).take(1)]
    for got, want in zip(resumed + skipped, stream[2:] + stream[3:], strict=True):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("cache", ["memory", "disk", "auto"])
def test_cache_gives_the_same_batches_as_decoding(data, tmp_path, cache):
    """Images no larger than the cache side are cached as they are: identical augmented batches. The letterbox's
    side is 96, so the 60x120 image is shrunk for it: the same boxes, pixels within resampling noise."""
    kw = {"batch_size": 3, "seed": 3, "augment_config": AugmentConfig(scale=(0.5, 2.5))}  # cache side 240 >= 200
    for augment in (False, True):
        plain = _batches(data, augment=augment, **kw)
        cached = _batches(data, augment=augment, cache=cache, cache_dir=tmp_path / "c", **kw)
        if cache == "disk" or not augment:  # JPEG re-encoding at quality 95 / a shrink: close, not equal
            assert np.abs(plain[0][0] - cached[0][0]).mean() < 0.01
        else:
            np.testing.assert_array_equal(plain[0][0], cached[0][0])
        np.testing.assert_array_equal(plain[0][1]["boxes"], cached[0][1]["boxes"])


def test_cache_shrinks_large_images_and_their_boxes(tmp_path):
    """A 1000x500 image cached for a 64x96 letterbox is kept at 96x48, boxes scaled alike; the letterbox of
    the shrunk image matches the one of the original (the same box, pixels within resampling noise)."""
    from oidyolo.yolo.dataset import cache_side, cached_sizes, write_disk_cache

    _image(tmp_path / "big.jpg", (1000, 500), (100, 50, 600, 450))
    (tmp_path / "t.txt").write_text("big.jpg 100,50,600,450,0\n")
    assert cache_side((64, 96), augment=False) == 96
    assert cache_side((64, 96), augment=True, cfg=AugmentConfig(scale=(0.5, 1.5))) == 144
    small = cached_sizes(np.array([[500, 1000]]), 96)
    assert small.tolist() == [[48, 96]]
    (cached,) = write_disk_cache([str(tmp_path / "big.jpg")], small, tmp_path / "c")
    assert Image.open(cached).size == (96, 48)
    plain = _batches(tmp_path / "t.txt", batch_size=1, augment=False, num_classes=1)
    for cache in ("memory", "disk"):
        got = _batches(tmp_path / "t.txt", batch_size=1, augment=False, num_classes=1, cache=cache,
                       cache_dir=tmp_path / "c")  # fmt: skip
        np.testing.assert_allclose(got[0][1]["boxes"][0, 0], plain[0][1]["boxes"][0, 0], atol=0.01)
        assert np.abs(got[0][0] - plain[0][0]).mean() < 0.02


def test_auto_cache_picks_memory_within_the_budget_else_disk():
    from oidyolo.yolo.dataset import choose_cache

    sizes = np.array([[512, 512]] * 4)  # 3 MiB decoded
    assert choose_cache("auto", sizes, budget_mb=4) == "memory"
    assert choose_cache("auto", sizes, budget_mb=2) == "disk"
    assert choose_cache("none", sizes, budget_mb=2) == "none"
    with pytest.raises(ConfigError, match=r"train\.cache must be one of"):
        choose_cache("ram", sizes, budget_mb=2)


def test_bad_images_are_named(tmp_path):
    (tmp_path / "t.txt").write_text("nope.jpg 1,1,5,5,0\n")
    with pytest.raises(DataFormatError, match=r"nope\.jpg: missing"):
        build_dataset(tmp_path / "t.txt", num_classes=1, anchors=COCO_ANCHORS, image_root=tmp_path)
    (tmp_path / "bad.jpg").write_text("<html>not an image</html>")
    (tmp_path / "t.txt").write_text("bad.jpg 1,1,5,5,0\n")
    with pytest.raises(DataFormatError, match=r"bad\.jpg: unreadable"):
        build_dataset(tmp_path / "t.txt", num_classes=1, anchors=COCO_ANCHORS, image_root=tmp_path)
    _image(tmp_path / "ok.jpg", (20, 20), (0, 0, 5, 5))
    (tmp_path / "t.txt").write_text("ok.jpg 1,1,25,5,0\n")
    with pytest.raises(DataFormatError, match=r"ok\.jpg: a box lies outside the 20x20 image"):
        build_dataset(tmp_path / "t.txt", num_classes=1, anchors=COCO_ANCHORS, image_root=tmp_path)


def test_letterbox_size_exact_integers():
    assert letterbox_size((480, 640), (416, 416)) == (416, 312, 0, 52)
    assert letterbox_size((100, 200), (64, 96)) == (96, 48, 0, 8)
    assert letterbox_size((120, 60), (64, 96)) == (32, 64, 32, 0)


def test_reference_generator_matches_pipeline_structure(data):
    (x, t), *_ = _batches(data, batch_size=3, augment=False, shuffle=False)
    kw = {"num_classes": 3, "anchors": COCO_ANCHORS, "input_shape": (64, 96), "image_root": data.parent}
    rx, rt = next(reference_generator(data, batch_size=3, augment=False, **kw))
    assert rx.shape == x.shape and sorted(rt) == sorted(t)
    np.testing.assert_allclose(rt["boxes"], t["boxes"], rtol=1e-6)
    for k in ("grid_0", "grid_1", "grid_2"):
        np.testing.assert_allclose(rt[k], t[k], atol=1e-6)
    rx, rt = next(reference_generator(data, batch_size=2, augment=True, **kw))
    assert rx.shape == (2, 64, 96, 3) and rt["grid_0"].shape == (2, 2, 3, 3, 8)


def test_image_without_boxes_and_bad_input_shape(tmp_path):
    _image(tmp_path / "a.jpg", (50, 40), (0, 0, 1, 1))
    (tmp_path / "t.txt").write_text("a.jpg\n")
    for augment in (False, True):
        (x, t), *_ = _batches(tmp_path / "t.txt", augment=augment)
        assert x.shape == (1, 64, 96, 3) and not any(v.any() for v in t.values())
    with pytest.raises(ConfigError, match="multiples of 32"):
        build_dataset(tmp_path / "t.txt", num_classes=1, anchors=COCO_ANCHORS, input_shape=(100, 96))
