"""Darknet import: ``.cfg`` + ``.weights`` -> our Keras body -> a Keras 3 ``.weights.h5``.

The cfg is parsed by hand (its sections repeat, so configparser does not fit) only to learn each conv's shape,
batch-norm flag and input channels; the graph itself is :func:`~oidyolo.yolo.model.build_yolov3`'s, whose layer
``conv_<i>`` is the cfg's layer ``i``. The importer checks every conv against that layer before it copies weights,
so a cfg that is not YOLOv3/YOLOv3-tiny is refused rather than mis-mapped.

``.weights`` layout: int32 major, minor, revision; ``seen`` as int64 when ``major * 10 + minor >= 2`` (and both are
below 1000), else int32; then, per conv in cfg order, the biases (or BN betas) ``F``, with BN the scales, rolling
means and rolling variances ``3F``, then the kernel ``(F, C_in, k, k)``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import h5py
import keras
import numpy as np

from oidyolo.data.yolo_format import read_classes
from oidyolo.errors import ConfigError, DataFormatError
from oidyolo.variants import VARIANTS, Variant, get_variant
from oidyolo.yolo.layers import BN_EPSILON
from oidyolo.yolo.model import build_yolov3, iter_layers
from oidyolo.yolo.modelspec import SPEC_NAME, ModelSpec

# Darknet's batch norm divides by sqrt(var) + DARKNET_BN_EPSILON (src/blas.c normalize_cpu).
DARKNET_BN_EPSILON = 1e-6
SUPPORTED_SECTIONS = ("net", "convolutional", "maxpool", "shortcut", "route", "upsample", "yolo")


@dataclass(frozen=True)
class CfgSection:
    """One ``[section]`` of a darknet cfg; ``index`` is its darknet layer index (-1 for ``[net]``)."""

    kind: str
    options: dict[str, str]
    index: int
    line: int


@dataclass(frozen=True)
class ConvSpec:
    index: int
    filters: int
    size: int
    stride: int
    batch_norm: bool
    activation: str
    in_channels: int

    @property
    def float_count(self) -> int:
        return self.filters * (4 if self.batch_norm else 1) + self.filters * self.in_channels * self.size**2


@dataclass(frozen=True)
class DarknetSpec:
    """What a YOLOv3 cfg says about its weights: variant, classes, anchors, masks and the convs in order."""

    variant: Variant
    num_classes: int
    anchors: np.ndarray  # (k, 2) float32, (w, h) in input pixels, as listed in the cfg
    masks: list[list[int]]  # per [yolo] section in cfg order (= model output order, stride 32 first)
    input_hw: tuple[int, int]
    convs: tuple[ConvSpec, ...]

    @property
    def float_count(self) -> int:
        return sum(c.float_count for c in self.convs)


# pjreddie/darknet's cfgs (verbatim; tests/fixtures/darknet/README.md gives their commits), shipped with the package
# under the names in the variants table.
RESOURCES = Path(__file__).resolve().parents[1] / "resources"


def shipped_cfg(variant: str) -> Path:
    """Path of darknet's own cfg for ``variant`` (80 COCO classes), the one that matches its published weights."""
    path = RESOURCES / get_variant(variant).darknet_cfg
    if not path.is_file():
        raise ConfigError(f"the package lacks {path.name} in {RESOURCES}; pass the darknet .cfg explicitly")
    return path


def parse_cfg(path: str | Path) -> list[CfgSection]:
    """Sections of a darknet cfg in file order. Whitespace is dropped and ``#``/``;`` lines skipped, as darknet does."""
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise DataFormatError(f"cannot read darknet cfg {path}: {e}") from None
    sections: list[CfgSection] = []
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = re.sub(r"\s+", "", raw)
        if not line or line[0] in "#;":
            continue
        if line[0] == "[":
            if not line.endswith("]"):
                raise DataFormatError(f"{path}:{lineno}: malformed section header {raw.strip()!r}")
            kind = line[1:-1]
            index = -1 if kind in ("net", "network") else sum(1 for s in sections if s.index >= 0)
            sections.append(CfgSection("net" if index < 0 else kind, {}, index, lineno))
        elif "=" in line and sections:
            key, value = line.split("=", 1)
            sections[-1].options[key] = value
        else:
            raise DataFormatError(f"{path}:{lineno}: expected [section] or key=value, got {raw.strip()!r}")
    if not sections or sections[0].kind != "net":
        raise DataFormatError(f"{path}: a darknet cfg starts with a [net] section")
    return sections


def _int(section: CfgSection, key: str, default: int | None = None) -> int:
    value = section.options.get(key)
    if value is None:
        if default is None:
            raise DataFormatError(f"[{section.kind}] at line {section.line} lacks {key}=")
        return default
    try:
        return int(value)
    except ValueError:
        raise DataFormatError(f"[{section.kind}] at line {section.line}: {key}={value} is not an integer") from None


def _ints(section: CfgSection, key: str) -> list[int]:
    try:
        return [int(float(v)) for v in section.options.get(key, "").split(",") if v]
    except ValueError:
        raise DataFormatError(f"[{section.kind}] at line {section.line}: bad list {key}=") from None


def describe_cfg(path: str | Path) -> DarknetSpec:
    """Read a YOLOv3 or YOLOv3-tiny cfg: convs (with their input channels), classes, anchors and masks."""
    sections = parse_cfg(path)
    net, layers = sections[0], sections[1:]
    channels: list[int] = []  # output channels per darknet layer index
    convs: list[ConvSpec] = []
    yolos: list[CfgSection] = []
    prev = _int(net, "channels", 3)
    for s in layers:
        if s.kind not in SUPPORTED_SECTIONS or s.kind == "net":
            raise DataFormatError(f"{path}:{s.line}: [{s.kind}] is not part of YOLOv3/YOLOv3-tiny")
        if s.kind == "convolutional":
            size, filters = _int(s, "size", 1), _int(s, "filters", 1)
            padding = size // 2 if _int(s, "pad", 0) else _int(s, "padding", 0)
            if _int(s, "groups", 1) != 1 or padding != size // 2:
                raise DataFormatError(f"{path}:{s.line}: only ungrouped convs with 'same' padding are supported")
            activation = s.options.get("activation", "logistic")
            batch_norm = bool(_int(s, "batch_normalize", 0))
            convs.append(ConvSpec(s.index, filters, size, _int(s, "stride", 1), batch_norm, activation, prev))
            prev = filters
        elif s.kind == "route":
            refs = [r + s.index if r < 0 else r for r in _ints(s, "layers")]
            if not refs or any(not 0 <= r < s.index for r in refs):
                raise DataFormatError(f"{path}:{s.line}: bad route layers={s.options.get('layers')}")
            prev = sum(channels[r] for r in refs)
        elif s.kind == "yolo":
            yolos.append(s)
        channels.append(prev)  # maxpool, shortcut, upsample and yolo keep the channel count

    if len(yolos) not in (2, 3):
        raise DataFormatError(f"{path}: YOLOv3 has 3 [yolo] sections (tiny: 2), found {len(yolos)}")
    classes = {_int(y, "classes") for y in yolos}
    anchor_lists = {tuple(_ints(y, "anchors")) for y in yolos}
    if len(classes) != 1 or len(anchor_lists) != 1:
        raise DataFormatError(f"{path}: the [yolo] sections disagree on classes or anchors")
    flat = anchor_lists.pop()
    if not flat or len(flat) % 2:
        raise DataFormatError(f"{path}: anchors= must hold w,h pairs")
    return DarknetSpec(
        variant="full" if len(yolos) == 3 else "tiny",
        num_classes=classes.pop(),
        anchors=np.array(flat, dtype=np.float32).reshape(-1, 2),
        masks=[_ints(y, "mask") for y in yolos],
        input_hw=(_int(net, "height", 416), _int(net, "width", 416)),
        convs=tuple(convs),
    )


def read_weights_header(data: bytes) -> tuple[tuple[int, int, int, int], int]:
    """``((major, minor, revision, seen), header_bytes)`` of a darknet ``.weights`` file's contents."""
    if len(data) < 16:
        raise DataFormatError(f"a darknet .weights file has a header of at least 16 bytes, this one has {len(data)}")
    major, minor, revision = (int(v) for v in np.frombuffer(data, "<i4", 3))
    wide_seen = major * 10 + minor >= 2 and major < 1000 and minor < 1000
    size = 20 if wide_seen else 16
    if len(data) < size:
        raise DataFormatError(f"a darknet .weights file (version {major}.{minor}) has a {size}-byte header")
    seen = int(np.frombuffer(data, "<i8" if wide_seen else "<i4", 1, offset=12)[0])
    return (major, minor, revision, seen), size


def _conv_boundaries(spec: DarknetSpec) -> np.ndarray:
    """Cumulative float counts after each conv: ``[0, after conv 1, ..., spec.float_count]``."""
    return np.cumsum([0] + [c.float_count for c in spec.convs])


def read_darknet_weights(weights_path: str | Path, spec: DarknetSpec) -> tuple[np.ndarray, int]:
    """The float32 payload of a ``.weights`` file and how many of ``spec``'s convs it holds.

    A full file holds every conv. A partial one (darknet's ``partial`` command: ``darknet53.conv.74``,
    ``yolov3-tiny.conv.15``) holds the first n convs and must end exactly after one of them; a file that ends
    mid-conv, holds more floats than the cfg or stray bytes is refused with the numbers.
    """
    try:
        data = Path(weights_path).read_bytes()
    except OSError as e:
        raise DataFormatError(f"cannot read darknet weights {weights_path}: {e}") from None
    _, offset = read_weights_header(data)
    actual, stray = divmod(len(data) - offset, 4)
    expected = spec.float_count
    bounds = _conv_boundaries(spec)
    where = f"the cfg ({spec.variant} YOLOv3, {spec.num_classes} classes)"
    if stray:
        raise DataFormatError(f"{weights_path} holds {actual} float32 values and {stray} stray bytes: not .weights")
    if actual > expected:
        raise DataFormatError(
            f"{weights_path} holds {actual} float32 values, but {where} needs exactly {expected}: expected "
            f"{expected}, actual {actual}. Check that the .weights file belongs to this .cfg."
        )
    n = int(np.searchsorted(bounds, actual, side="right")) - 1  # convs entirely inside the file
    if bounds[n] != actual or n == 0:
        conv = spec.convs[n] if n < len(spec.convs) else spec.convs[-1]
        raise DataFormatError(
            f"{weights_path} holds {actual} float32 values: {where} needs {expected} for all {len(spec.convs)} "
            f"convs, and a partial file must end on a layer boundary, but this one ends "
            f"{actual - int(bounds[n])} floats into darknet layer {conv.index} (conv {n + 1} of {len(spec.convs)}, "
            f"{conv.float_count} floats; the previous boundary is at {int(bounds[n])}, the next at "
            f"{int(bounds[min(n + 1, len(spec.convs))])}). Check that the .weights file belongs to this .cfg."
        )
    return np.frombuffer(data, "<f4", actual, offset=offset), n


@dataclass(frozen=True)
class DarknetLoad:
    """What :func:`load_darknet_weights` copied: the cfg, the convs the file held, and their Keras layer names."""

    spec: DarknetSpec
    convs: tuple[ConvSpec, ...]
    layers: tuple[str, ...]  # conv_i (and bn_i) of every loaded conv

    @property
    def partial(self) -> bool:
        return len(self.convs) < len(self.spec.convs)

    def summary(self) -> str:
        kind = "partial file" if self.partial else "full file"
        last = self.convs[-1].index
        floats = sum(c.float_count for c in self.convs)
        of = f"{len(self.convs)} of {len(self.spec.convs)} convs"
        return f"{kind}: loaded {of} (darknet layers 0-{last}), {floats:,} floats"


def _check_layer(spec: ConvSpec, layers: dict[str, keras.Layer]) -> tuple[keras.Layer, keras.Layer | None]:
    conv = layers.get(f"conv_{spec.index}")
    bn = layers.get(f"bn_{spec.index}")
    shape = (spec.size, spec.size, spec.in_channels, spec.filters)
    leaky = f"leaky_{spec.index}" in layers
    problem = None
    if conv is None or not isinstance(conv, keras.layers.Conv2D):
        problem = "has no such conv"
    elif tuple(conv.kernel.shape) != shape:
        problem = f"has kernel {tuple(conv.kernel.shape)}, the cfg wants {shape}"
    elif tuple(conv.strides) != (spec.stride, spec.stride):
        problem = f"has stride {conv.strides}, the cfg wants {spec.stride}"
    elif spec.batch_norm != (bn is not None) or spec.batch_norm == conv.use_bias:
        problem = "disagrees with the cfg on batch norm"
    elif spec.activation not in ("leaky", "linear") or (spec.activation == "leaky") != leaky:
        problem = f"disagrees with the cfg's activation={spec.activation}"
    if problem:
        raise DataFormatError(f"darknet layer {spec.index}: our model's conv_{spec.index} {problem}")
    return conv, bn


def load_darknet_weights(body: keras.Model, cfg_path: str | Path, weights_path: str | Path) -> DarknetLoad:
    """Copy darknet weights (a full or a partial file) into a body built by ``build_yolov3`` for the cfg."""
    spec = describe_cfg(cfg_path)
    layers = {layer.name: layer for layer in iter_layers(body)}
    ours = sorted(int(n[5:]) for n, layer in layers.items() if isinstance(layer, keras.layers.Conv2D))
    if ours != [c.index for c in spec.convs]:
        raise DataFormatError(
            f"{cfg_path} has {len(spec.convs)} convs, our {body.name} has {len(ours)} at other positions: "
            "the cfg is not the YOLOv3 or YOLOv3-tiny this model builds"
        )
    checked = [(c, *_check_layer(c, layers)) for c in spec.convs]  # all checks before any copy
    floats, n = read_darknet_weights(weights_path, spec)
    pos = 0

    def take(k: int) -> np.ndarray:
        nonlocal pos
        pos += k
        return floats[pos - k : pos]

    names: list[str] = []
    for c, conv, bn in checked[:n]:
        bias = take(c.filters)
        if c.batch_norm:
            gamma, mean, var = take(c.filters), take(c.filters), take(c.filters)
        kernel = take(c.filters * c.in_channels * c.size**2).reshape(c.filters, c.in_channels, c.size, c.size)
        kernel = kernel.transpose(2, 3, 1, 0)  # (F, C_in, k, k) -> HWIO
        if bn is None:
            conv.set_weights([kernel, bias])
            names.append(conv.name)
        else:
            conv.set_weights([kernel])
            # Choose the Keras variance so sqrt(var' + eps) == sqrt(var) + 1e-6: exact darknet arithmetic for
            # every channel whose variance exceeds BN_EPSILON.
            std = np.sqrt(np.maximum(var.astype(np.float64), 0.0)) + DARKNET_BN_EPSILON
            keras_var = np.maximum(std**2 - BN_EPSILON, 0.0).astype(np.float32)
            bn.set_weights([gamma, bias, mean, keras_var])
            names += [conv.name, bn.name]
    assert pos == len(floats)
    return DarknetLoad(spec, spec.convs[:n], tuple(names))


def convert_darknet(
    cfg_path: str | Path, weights_path: str | Path, out_path: str | Path, *, full_only: bool = False
) -> DarknetLoad:
    """Build the body for the cfg (variant, class count), load the darknet weights and save a ``.weights.h5``.

    Refuses (``DataFormatError``) a cfg that is not YOLOv3/YOLOv3-tiny and a weights file that holds more floats
    than the cfg (YOLOv3-80: 62,001,757; tiny-80: 8,858,734) or ends mid-layer, before writing anything. The file
    records the loaded layers (attribute ``LOADED_ATTR``), so :func:`load_pretrained` takes only those from a
    partial file; ``full_only`` refuses a partial file (a detector needs every layer). Returns what the cfg said
    (anchors, masks, ...) and what was loaded.
    """
    if not str(out_path).endswith(".weights.h5"):
        raise ConfigError(f"Keras 3 weight files must end in '.weights.h5', got {out_path}")
    spec = describe_cfg(cfg_path)
    body = build_yolov3(spec.num_classes, spec.variant, weight_decay=0.0)
    loaded = load_darknet_weights(body, cfg_path, weights_path)
    if full_only and loaded.partial:
        raise ConfigError(
            f"{weights_path} is a {loaded.summary()}: a start for training (train.darknet_weights, "
            "convert-darknet --start-only), not a detector"
        )
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name[: -len('.weights.h5')]}.part.weights.h5")  # Keras insists on the suffix
    body.save_weights(str(tmp))
    with h5py.File(tmp, "a") as f:
        f.attrs[LOADED_ATTR] = json.dumps(list(loaded.layers))
    os.replace(tmp, out)
    return loaded


LOADED_ATTR = "oidyolo_darknet_loaded_layers"
COCO_NAMES = RESOURCES / "coco.names"


def coco_names() -> list[str]:
    """The 80 COCO class names in darknet's output order (shipped ``coco.names``)."""
    return read_classes(COCO_NAMES)


def guess_variant(weights_path: str | Path) -> Variant:
    """The shipped cfg (full or tiny) whose layer boundaries a ``.weights`` file's float count ends on."""
    try:
        data = Path(weights_path).read_bytes()[:20]
        size = Path(weights_path).stat().st_size
    except OSError as e:
        raise DataFormatError(f"cannot read darknet weights {weights_path}: {e}") from None
    _, offset = read_weights_header(data)
    floats = (size - offset) / 4
    fits = [v for v in VARIANTS if floats in set(_conv_boundaries(describe_cfg(shipped_cfg(v)))[1:])]
    if len(fits) != 1:
        raise ConfigError(
            f"{weights_path} ({size:,} bytes) does not tell whether it is YOLOv3 or YOLOv3-tiny: pass --variant"
        )
    return fits[0]  # type: ignore[return-value]


def model_spec_for(loaded: DarknetLoad, names: Sequence[str] | None = None) -> ModelSpec:
    """``model.json`` content for a converted file: class names (default COCO's), the cfg's anchors, masks, size."""
    spec = loaded.spec
    names = list(coco_names() if names is None else names)
    if len(names) != spec.num_classes:
        raise ConfigError(f"{len(names)} class names for a cfg with classes={spec.num_classes}: pass --names")
    return ModelSpec(
        spec.variant,
        tuple(names),
        tuple(tuple(float(v) for v in a) for a in spec.anchors),
        spec.input_hw,
        masks=tuple(tuple(m) for m in spec.masks),
    )


def convert_with_spec(
    cfg_path: str | Path, weights_path: str | Path, out_path: str | Path, names: Sequence[str] | None = None
) -> tuple[DarknetLoad, ModelSpec]:
    """:func:`convert_darknet` plus a ``model.json`` beside the output, so ``detect``/``export`` take it as is."""
    spec = describe_cfg(cfg_path)
    if names is not None and len(names) != spec.num_classes:  # refuse before converting
        raise ConfigError(f"{len(names)} class names for a cfg with classes={spec.num_classes}")
    loaded = convert_darknet(cfg_path, weights_path, out_path, full_only=True)
    model_spec = model_spec_for(loaded, names)
    model_spec.save(Path(out_path).with_name(SPEC_NAME))
    return loaded, model_spec


def cache_dir() -> Path:
    """Where darknet files given to ``detect``/``export`` are converted once (``OIDYOLO_CACHE`` or ~/.cache)."""
    root = os.environ.get("OIDYOLO_CACHE")
    base = Path(root) if root else Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "oidyolo"
    return base / "darknet"


def cached_conversion(weights_path: str | Path, variant: str | None = None) -> Path:
    """A darknet ``.weights`` file converted (once, keyed by its md5) with the shipped cfg: the ``.weights.h5``."""
    variant = get_variant(variant).name if variant else guess_variant(weights_path)
    digest = hashlib.md5()
    try:
        with open(weights_path, "rb") as f:
            while chunk := f.read(1 << 22):
                digest.update(chunk)
    except OSError as e:
        raise DataFormatError(f"cannot read darknet weights {weights_path}: {e}") from None
    out = cache_dir() / f"{variant}-{digest.hexdigest()}" / "model.weights.h5"
    if not (out.is_file() and out.with_name(SPEC_NAME).is_file()):
        loaded, _ = convert_with_spec(shipped_cfg(variant), weights_path, out)
        print(f"converted {weights_path} ({loaded.summary()}) once into {out.parent}", file=sys.stderr)
    return out


def inspect_weights_file(path: str | Path) -> tuple[Variant, int]:
    """``(variant, num_classes)`` of a ``.weights.h5`` saved from a body built by ``build_yolov3``.

    Keras 3 stores variables by position, not by layer name, so this reads the structure: 75 conv kernels mean
    YOLOv3, 13 tiny, and the output convs are the only ones with a bias, ``3 * (5 + C)`` wide.
    """
    kernels: list[tuple[int, ...]] = []
    heads: set[int] = set()

    def visit(name: str, obj: object) -> None:
        if isinstance(obj, h5py.Group) and name.endswith("/vars") and "0" in obj and len(obj["0"].shape) == 4:
            kernels.append(obj["0"].shape)
            if "1" in obj:
                heads.add(obj["0"].shape[-1])

    try:
        with h5py.File(path, "r") as f:
            f.visititems(visit)
    except OSError as e:
        raise DataFormatError(f"cannot read Keras weights {path}: {e}") from None
    variant: Variant | None = next((v.name for v in VARIANTS.values() if v.darknet_convs == len(kernels)), None)
    if variant is None or len(heads) != 1 or next(iter(heads)) % 3 or next(iter(heads)) // 3 < 6:
        raise DataFormatError(f"{path} is not a YOLOv3 body's .weights.h5 ({len(kernels)} conv kernels)")
    return variant, next(iter(heads)) // 3 - 5


def load_pretrained(body: keras.Model, converted_path: str | Path) -> tuple[list[str], list[str]]:
    """Load every layer of ``body`` whose name and weight shapes match the file; skip the rest.

    ``converted_path`` is a ``.weights.h5`` of a YOLOv3 body (from :func:`convert_darknet` or a saved body) of any
    class count: the class-dependent output convs of another count are skipped, and so is every layer a partial
    darknet file did not hold. Returns the names of the loaded and the skipped weight-carrying layers.
    """
    variant, num_classes = inspect_weights_file(converted_path)
    with h5py.File(converted_path, "r") as f:  # a partial darknet file: only what it held
        recorded = json.loads(f.attrs[LOADED_ATTR]) if LOADED_ATTR in f.attrs else None
    source = build_yolov3(num_classes, variant, weight_decay=0.0)
    try:
        source.load_weights(str(converted_path))
    except ValueError as e:
        raise DataFormatError(f"{converted_path} does not fit a {variant} YOLOv3 body: {e}") from None
    source_layers = {layer.name: layer for layer in iter_layers(source)}
    loaded, skipped = [], []
    for layer in iter_layers(body):
        if not layer.weights:
            continue
        src = source_layers.get(layer.name)
        fits = src is not None and [w.shape for w in src.weights] == [w.shape for w in layer.weights]
        if fits and (recorded is None or layer.name in recorded):
            layer.set_weights(src.get_weights())
            loaded.append(layer.name)
        else:
            skipped.append(layer.name)
    return loaded, skipped
