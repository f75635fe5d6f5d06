"""Training: keras-yolo3's two-stage schedule on Keras 3, resumable, on whatever devices are present.

Stage 1 trains with the backbone frozen (when a pretrained darknet start is given; from scratch every layer trains,
since a random frozen backbone would teach nothing), stage 2 unfreezes everything at a lower learning rate.
Callbacks: best checkpoint by ``val_loss``, ReduceLROnPlateau and EarlyStopping (stage 2), CSV log, TensorBoard.

Resume: after every epoch each stage backs up the weights with the optimizer state, then the epoch number, each
written under a temporary name and renamed, in a state folder that Snakemake does not own, keyed by a fingerprint of
the configuration and the input files. A kill at any moment leaves the last complete backup; the rerun continues
from it (history rows of epochs it redoes are replaced, so every epoch is logged once); a changed configuration
starts afresh.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from oidyolo.data.anchors import read_anchors
from oidyolo.data.yolo_format import read_classes
from oidyolo.errors import ConfigError, OidyoloError
from oidyolo.variants import get_variant
from oidyolo.yolo.augment import AugmentConfig
from oidyolo.yolo.modelspec import SPEC_NAME, ModelSpec

STAGE_1 = "trained_weights_stage_1.weights.h5"
FINAL = "trained_weights_final.weights.h5"
BEST = "trained_weights_best.weights.h5"
HISTORY = "history.csv"


class TrainingError(OidyoloError):
    """Training cannot go on (NaN loss, empty data)."""


@dataclass(frozen=True)
class TrainConfig:
    variant: str = "tiny"
    input_size: tuple[int, int] = (416, 416)  # (height, width), multiples of 32
    epochs: tuple[int, int] = (50, 50)  # stage 1, stage 2
    batch_size: tuple[int, int] = (32, 8)
    learning_rate: tuple[float, float] = (1e-3, 1e-4)
    freeze: int = 2  # stage-1 freezing of the loaded layers: 1 backbone only, 2 all but the output convs
    max_boxes: int = 100
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    seed: int = 0
    mixed_precision: str = "auto"  # auto (on a GPU), on, off
    distribute: str = "auto"  # auto (mirrored over several GPUs), mirrored (all GPUs, else all logical CPUs), none
    reduce_lr_patience: int = 3
    early_stopping_patience: int = 10
    steps_per_epoch: int | None = None  # None: one pass over the training set
    validation_steps: int | None = None
    ignore_thresh: float | None = None
    weight_decay: float = 5e-4
    cache_images: bool = True

    def __post_init__(self) -> None:
        get_variant(self.variant)
        h, w = self.input_size
        if h <= 0 or w <= 0 or h % 32 or w % 32:
            raise ConfigError(f"train.input_size must be positive multiples of 32, got {self.input_size}")
        if min(self.epochs) < 0 or sum(self.epochs) < 1:
            raise ConfigError(f"train.epochs must be >= 0 per stage and >= 1 in total, got {self.epochs}")
        if min(self.batch_size) < 1 or min(self.learning_rate) <= 0:
            raise ConfigError("train.batch_size must be >= 1 and train.learning_rate > 0")
        if self.freeze not in (0, 1, 2):
            raise ConfigError(f"train.freeze must be 0, 1 or 2, got {self.freeze}")
        if self.mixed_precision not in ("auto", "on", "off") or self.distribute not in ("auto", "mirrored", "none"):
            raise ConfigError("train.mixed_precision is auto/on/off and train.distribute auto/mirrored/none")

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> TrainConfig:
        raw = dict(raw)
        aug = dict(raw.pop("augment", {}) or {})
        if "scale" in aug:
            aug["scale"] = tuple(aug["scale"])
        for key in ("input_size", "epochs", "batch_size", "learning_rate"):
            if key in raw and isinstance(raw[key], list):
                raw[key] = tuple(raw[key])
        if isinstance(raw.get("input_size"), int):
            raw["input_size"] = (raw["input_size"], raw["input_size"])
        try:
            return cls(augment=AugmentConfig(**aug), **raw)
        except TypeError as err:
            raise ConfigError(f"train: {err}") from None


@dataclass
class TrainResult:
    summary: dict[str, Any]
    body: Any  # the trained keras body, holding the final weights


@dataclass
class TrainInputs:
    train_txt: Path
    val_txt: Path
    classes_txt: Path
    anchors_txt: Path
    pretrained: Path | None = None


def fingerprint(cfg: TrainConfig, inputs: TrainInputs) -> str:
    """Hash of the configuration and the contents of every input file: a resume is only valid against both."""
    h = hashlib.sha256(json.dumps(asdict(cfg), sort_keys=True, default=str).encode())
    for path in (inputs.train_txt, inputs.val_txt, inputs.classes_txt, inputs.anchors_txt, inputs.pretrained):
        if path is not None:
            h.update(Path(path).read_bytes() if Path(path).stat().st_size < 64 << 20 else str(path).encode())
    return h.hexdigest()


def describe_devices(tf) -> str:
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        names = ", ".join(tf.config.experimental.get_device_details(g).get("device_name", g.name) for g in gpus)
        return f"training on {len(gpus)} GPU(s): {names}"
    return f"no GPU found: training on the CPU ({os.cpu_count()} cores); expect hours for full YOLOv3 at 416"


def choose_strategy(tf, mode: str):
    gpus = tf.config.list_logical_devices("GPU")
    if mode == "none" or (mode == "auto" and len(gpus) < 2):
        return tf.distribute.get_strategy()
    devices = [d.name for d in gpus] or [d.name for d in tf.config.list_logical_devices("CPU")]
    return tf.distribute.MirroredStrategy(devices=devices)


def train(
    inputs: TrainInputs,
    out_dir: str | Path,
    cfg: TrainConfig,
    *,
    state_dir: str | Path | None = None,
    threads: int | None = None,
) -> TrainResult:
    """Train and write ``STAGE_1``, ``FINAL`` (and ``BEST``), ``model.json`` and ``history.csv`` into ``out_dir``."""
    import keras
    import tensorflow as tf

    from oidyolo.yolo.darknet import load_pretrained
    from oidyolo.yolo.dataset import build_dataset
    from oidyolo.yolo.model import YoloDetector, build_yolov3, freeze_backbone, unfreeze_all

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state = Path(state_dir) if state_dir else out / "_state"
    if threads:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(max(1, min(threads, 2)))
    keras.utils.set_random_seed(cfg.seed)

    classes = read_classes(inputs.classes_txt)
    anchors = read_anchors(inputs.anchors_txt)
    expected = get_variant(cfg.variant).num_anchors
    if len(anchors) != expected:
        raise ConfigError(f"{inputs.anchors_txt} holds {len(anchors)} anchors; {cfg.variant} YOLOv3 needs {expected}")
    spec = ModelSpec(cfg.variant, tuple(classes), tuple(map(tuple, anchors.tolist())), tuple(cfg.input_size))
    spec.save(out / SPEC_NAME)

    key = fingerprint(cfg, inputs)
    stamp = state / "fingerprint"
    if state.exists() and (not stamp.exists() or stamp.read_text() != key):
        print("training state is from another configuration or dataset: starting afresh", file=sys.stderr)
        shutil.rmtree(state)
    resuming = state.exists()
    state.mkdir(parents=True, exist_ok=True)
    stamp.write_text(key)
    if not resuming:
        (out / HISTORY).unlink(missing_ok=True)

    print(describe_devices(tf), file=sys.stderr)
    gpus = tf.config.list_physical_devices("GPU")
    if cfg.mixed_precision == "on" or (cfg.mixed_precision == "auto" and gpus):
        keras.mixed_precision.set_global_policy("mixed_float16")
        print("mixed precision: float16 compute, float32 weights and loss", file=sys.stderr)
    strategy = choose_strategy(tf, cfg.distribute)
    if strategy.num_replicas_in_sync > 1:
        print(f"data parallel over {strategy.num_replicas_in_sync} devices (MirroredStrategy)", file=sys.stderr)

    common = dict(num_classes=len(classes), anchors=anchors, input_shape=tuple(cfg.input_size), seed=cfg.seed)
    common["max_boxes"] = cfg.max_boxes

    def datasets(batch: int):
        repeat = cfg.steps_per_epoch is not None
        train_ds = build_dataset(
            inputs.train_txt, batch_size=batch, augment=True, shuffle=True, repeat=repeat,
            cache_decoded=cfg.cache_images, augment_config=cfg.augment, **common,
        )  # fmt: skip
        val_ds = build_dataset(
            inputs.val_txt, batch_size=batch, augment=False, shuffle=False, cache_decoded=cfg.cache_images, **common
        )
        return train_ds, val_ds

    with strategy.scope():
        body = build_yolov3(len(classes), cfg.variant, weight_decay=cfg.weight_decay)
        detector = YoloDetector(body, anchors, len(classes), ignore_thresh=cfg.ignore_thresh)
        detector(tf.zeros((1, *cfg.input_size, 3)))  # build, so a backup can be loaded into it
    if inputs.pretrained:
        loaded, skipped = load_pretrained(body, inputs.pretrained)
        print(f"pretrained start: loaded {len(loaded)} layers, skipped {len(skipped)} ({', '.join(skipped)})")

    best = _BestBody(out / BEST, _best_so_far(out / HISTORY) if resuming else math.inf)
    guard = _NanGuard()
    stage1_done = state / "stage_1_done.weights.h5"
    e1, e2 = cfg.epochs
    history: dict[str, list[float]] = {}
    started = time.monotonic()
    if stage1_done.exists():
        body.load_weights(str(stage1_done))
        print("resuming: stage 1 was already done", file=sys.stderr)
    else:
        if e1:
            if inputs.pretrained and cfg.freeze:
                frozen = freeze_backbone(detector, cfg.freeze, only=loaded)  # only what the start held
                print(f"stage 1: {frozen} layers frozen (freeze mode {cfg.freeze})", file=sys.stderr)
            else:
                print("stage 1: no pretrained start, so every layer trains", file=sys.stderr)
            with strategy.scope():
                detector.compile(optimizer=keras.optimizers.Adam(learning_rate=cfg.learning_rate[0]))
            start = _restore(detector, state / "stage_1", 0, strategy, out / HISTORY)
            train_ds, val_ds = datasets(cfg.batch_size[0])
            callbacks = [*_logging_callbacks(out, best, guard), _Backup(state / "stage_1")]
            h = detector.fit(
                train_ds, validation_data=val_ds, initial_epoch=start, epochs=e1, steps_per_epoch=cfg.steps_per_epoch,
                validation_steps=cfg.validation_steps, callbacks=callbacks, verbose=2, shuffle=False,
            )  # fmt: skip
            _check_finite(h.history, "stage 1", guard)
            _merge(history, h.history)
        _save_atomic(body, stage1_done)
        shutil.rmtree(state / "stage_1", ignore_errors=True)
    shutil.copyfile(stage1_done, out / STAGE_1)

    if e2:
        unfreeze_all(detector)
        with strategy.scope():
            detector.compile(optimizer=keras.optimizers.Adam(learning_rate=cfg.learning_rate[1]))
        start = _restore(detector, state / "stage_2", e1, strategy, out / HISTORY)
        train_ds, val_ds = datasets(cfg.batch_size[1])
        callbacks = [
            keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.1, patience=cfg.reduce_lr_patience),
            keras.callbacks.EarlyStopping(monitor="val_loss", patience=cfg.early_stopping_patience),
            *_logging_callbacks(out, best, guard),
            _Backup(state / "stage_2"),  # last: an epoch counts as done only once everything above has run
        ]
        h = detector.fit(
            train_ds, validation_data=val_ds, initial_epoch=start, epochs=e1 + e2,
            steps_per_epoch=cfg.steps_per_epoch, validation_steps=cfg.validation_steps, callbacks=callbacks,
            verbose=2, shuffle=False,
        )  # fmt: skip
        _check_finite(h.history, "stage 2", guard)
        _merge(history, h.history)
    # The final weights are the best by val_loss over both stages (keras-yolo3 kept the last epoch's).
    if best.path.exists():
        body.load_weights(str(best.path))
    _save_atomic(body, out / FINAL)
    shutil.rmtree(state, ignore_errors=True)
    summary = {
        "seconds": round(time.monotonic() - started, 1),
        "best_val_loss": best.best if math.isfinite(best.best) else None,
        "epochs_run": len(history.get("loss", [])),
        "resumed": resuming,
    }
    print(json.dumps(summary), file=sys.stderr)
    return TrainResult(summary, body)


def _logging_callbacks(out: Path, best: _BestBody, guard: _NanGuard) -> list:
    import keras

    return [
        guard,
        best,
        _CsvHistory(out / HISTORY),
        keras.callbacks.TensorBoard(log_dir=str(out / "tensorboard"), write_graph=False, profile_batch=0),
    ]


def _restore(detector, folder: Path, default_epoch: int, strategy, history_csv: Path) -> int:
    """Load a stage's backup (weights and optimizer state) if there is one; returns the epoch to continue from.
    History rows from that epoch on are dropped: those epochs run again and log again."""
    meta, weights = folder / "epoch.json", folder / "latest.weights.h5"
    epoch = default_epoch
    if meta.exists() and weights.exists():
        try:
            epoch = int(json.loads(meta.read_text())["epoch"])
            with strategy.scope():
                detector.optimizer.build(detector.trainable_variables)
            detector.load_weights(str(weights))
            print(f"resuming at epoch {epoch + 1} from the backup in {folder}", file=sys.stderr)
        except (OSError, ValueError, KeyError) as err:
            print(f"warning: the backup in {folder} is unreadable ({err}); the stage starts again", file=sys.stderr)
            shutil.rmtree(folder, ignore_errors=True)
            epoch = default_epoch
    _drop_history_from(history_csv, epoch)
    return epoch


def _drop_history_from(history_csv: Path, epoch: int) -> None:
    import csv

    if not history_csv.exists():
        return
    with open(history_csv, newline="") as fh:
        rows = list(csv.reader(fh))
    keep = [rows[0], *(r for r in rows[1:] if r and int(r[0]) < epoch)] if rows else []
    if len(keep) != len(rows):
        tmp = history_csv.with_name(history_csv.name + ".part")
        with open(tmp, "w", newline="") as fh:
            csv.writer(fh).writerows(keep)
        os.replace(tmp, history_csv)


def _best_so_far(history_csv: Path) -> float:
    """The lowest val_loss logged before an interruption, so a resumed run keeps the best weights it had."""
    import csv

    if not history_csv.exists():
        return math.inf
    with open(history_csv, newline="") as fh:
        values = [float(r["val_loss"]) for r in csv.DictReader(fh) if r.get("val_loss")]
    return min((v for v in values if math.isfinite(v)), default=math.inf)


def _merge(into: dict[str, list[float]], new: dict[str, list[float]]) -> None:
    for k, v in new.items():
        into.setdefault(k, []).extend(float(x) for x in v)


def _check_finite(history: dict[str, list[float]], stage: str, guard: _NanGuard) -> None:
    losses = history.get("loss", [])
    if any(not math.isfinite(x) for x in losses) or guard.tripped:
        raise TrainingError(
            f"{stage}: the loss became NaN or infinite, so training stopped. Lower train.learning_rate, check the "
            "anchors file and the boxes in train.txt (zero-size boxes are dropped upstream), or set "
            "train.mixed_precision: off."
        )


def _save_atomic(body, path: Path) -> None:
    tmp = path.with_name(path.name.removesuffix(".weights.h5") + ".part.weights.h5")
    body.save_weights(str(tmp))
    os.replace(tmp, path)


def _callback_base():
    import keras

    return keras.callbacks.Callback


class _NanGuard(_callback_base()):  # type: ignore[misc]
    """Stop at the first non-finite batch loss (TerminateOnNaN, remembered so we can explain it)."""

    def __init__(self) -> None:
        super().__init__()
        self.tripped = False

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        loss = (logs or {}).get("loss")
        if loss is not None and not np.isfinite(float(loss)):
            self.tripped = True
            self.model.stop_training = True


class _BestBody(_callback_base()):  # type: ignore[misc]
    """Save the *body* weights (what inference loads) whenever ``val_loss`` improves."""

    def __init__(self, path: Path, best: float = math.inf) -> None:
        super().__init__()
        self.path = path
        self.best = best

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        value = (logs or {}).get("val_loss")
        if value is not None and math.isfinite(float(value)) and float(value) < self.best:
            self.best = float(value)
            _save_atomic(self.model.body, self.path)


class _CsvHistory(_callback_base()):  # type: ignore[misc]
    """One row per epoch with a fixed header, appended across both stages and across resumes (Keras' CSVLogger
    keeps the first stage's header, which lacks the learning rate that stage 2's callbacks add)."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        import csv

        row = {k: float(v) for k, v in (logs or {}).items()}
        row["learning_rate"] = float(np.asarray(self.model.optimizer.learning_rate))
        row["epoch"] = epoch
        if self.path.exists() and self.path.stat().st_size:
            with open(self.path, newline="") as fh:
                fields = next(csv.reader(fh))
        else:
            fields = ["epoch", "learning_rate", *sorted(k for k in row if k not in ("epoch", "learning_rate"))]
            self.path.write_text(",".join(fields) + "\n")
        with open(self.path, "a", newline="") as fh:
            csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore").writerow(row)


class _Backup(_callback_base()):  # type: ignore[misc]
    """The resume point: weights with optimizer state, then the finished epoch count, each atomically."""

    def __init__(self, folder: Path) -> None:
        super().__init__()
        self.folder = folder

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        _save_atomic(self.model, self.folder / "latest.weights.h5")
        tmp = self.folder / "epoch.json.part"
        tmp.write_text(json.dumps({"epoch": epoch + 1}))
        os.replace(tmp, self.folder / "epoch.json")
