"""Training: keras-yolo3's two-stage schedule on Keras 3, resumable, on whatever devices are present.

Stage 1 trains with the backbone frozen (when a pretrained darknet start is given; from scratch every layer trains,
since a random frozen backbone would teach nothing), stage 2 unfreezes everything at a lower learning rate.
Callbacks (:mod:`oidyolo.yolo.callbacks`): best checkpoint by ``val_det_loss`` (the detection loss without the L2
term, comparable across stages), ReduceLROnPlateau and EarlyStopping (stage 2) on the same, CSV log, TensorBoard.

Resume: after every epoch each stage backs up the weights with the optimizer state, then the epoch number and the
callbacks' counters, each written under a temporary name and renamed, in a state folder that Snakemake does not own,
keyed by a fingerprint of the configuration and the input files. A kill at any moment leaves the last complete
backup; the rerun continues from it (history rows of epochs it redoes are replaced, so every epoch is logged once)
and, since each epoch's data order and augmentation are seeded by the epoch, gives the history an uninterrupted run
would; a changed configuration starts afresh.
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

from oidyolo.atomic import atomic_write
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
DISTRIBUTE = ("auto", "mirrored", "multiworker", "none")


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
    # auto (mirrored over several GPUs), mirrored (all GPUs, else all logical CPUs), multiworker (one process per
    # node: Slurm's tasks or TF_CONFIG), none
    distribute: str = "auto"
    reduce_lr_patience: int = 3
    early_stopping_patience: int = 10
    steps_per_epoch: int | None = None  # None: one pass over the training set
    validation_steps: int | None = None
    ignore_thresh: float | None = None
    weight_decay: float = 5e-4
    cache: str = "auto"  # auto (memory within cache_memory_mb, else disk), memory, disk, none
    cache_memory_mb: float = 512
    validation_freq: int = 1  # validate every k epochs (the last epoch of each stage always)
    jit_compile: bool | str = "auto"  # XLA for the train step; auto: off (no gain measured on CPU, see BENCHMARKS)
    # plateau: keras-yolo3's constant rate cut by ReduceLROnPlateau (stage 2); cosine: per stage, a linear warm-up
    # over its first epoch from a tenth of the rate, then a cosine decay to a hundredth by its last epoch
    schedule: str = "plateau"

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
        if self.mixed_precision not in ("auto", "on", "off"):
            raise ConfigError(f"train.mixed_precision must be auto, on or off, got {self.mixed_precision!r}")
        if self.distribute not in DISTRIBUTE:
            raise ConfigError(f"train.distribute must be one of {', '.join(DISTRIBUTE)}, got {self.distribute!r}")
        if self.cache not in ("auto", "memory", "disk", "none"):
            raise ConfigError(f"train.cache must be auto, memory, disk or none, got {self.cache!r}")
        if self.schedule not in ("plateau", "cosine"):
            raise ConfigError(f"train.schedule must be plateau or cosine, got {self.schedule!r}")
        if self.validation_freq < 1:
            raise ConfigError(f"train.validation_freq must be >= 1, got {self.validation_freq}")

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
    """The distribution strategy; call before any other TF op (MultiWorkerMirroredStrategy insists)."""
    if mode == "multiworker":
        resolver = cluster_resolver(tf)
        return tf.distribute.MultiWorkerMirroredStrategy(cluster_resolver=resolver)
    gpus = tf.config.list_logical_devices("GPU")
    if mode == "none" or (mode == "auto" and len(gpus) < 2):
        return tf.distribute.get_strategy()
    devices = [d.name for d in gpus] or [d.name for d in tf.config.list_logical_devices("CPU")]
    return tf.distribute.MirroredStrategy(devices=devices)


def cluster_resolver(tf):
    """Slurm's when run as a Slurm job step of several tasks (one per node, each its node's GPUs), else
    ``TF_CONFIG``'s."""
    if int(os.environ.get("SLURM_STEP_NUM_TASKS", os.environ.get("SLURM_NTASKS", "1"))) > 1:
        gpus = len(tf.config.list_physical_devices("GPU"))  # Slurm already limits each task to its own
        return tf.distribute.cluster_resolver.SlurmClusterResolver(
            gpus_per_node=gpus, gpus_per_task=gpus, auto_set_gpu=False
        )
    if not os.environ.get("TF_CONFIG"):
        raise ConfigError(
            "train.distribute: multiworker needs a Slurm job step of several tasks (srun --ntasks N) or TF_CONFIG "
            "naming the workers"
        )
    return tf.distribute.cluster_resolver.TFConfigClusterResolver()


def is_chief(strategy) -> bool:
    """True unless this process is a non-chief worker of a multi-worker run (only the chief writes outputs)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return True
    if resolver.task_type == "chief":
        return True
    return resolver.task_type == "worker" and resolver.task_id == 0 and "chief" not in resolver.cluster_spec().jobs


def count_lines(path: Path) -> int:
    with open(path, encoding="utf-8") as fh:
        return sum(1 for line in fh if line.strip())


@dataclass
class _Run:
    """What both stages share; ``train`` reads as the schedule: prepare, stage 1, stage 2, finish."""

    cfg: TrainConfig
    inputs: TrainInputs
    out: Path
    state: Path
    cache_dir: Path
    strategy: Any
    detector: Any
    best: Any
    guard: Any
    resuming: bool
    n_train: int
    history: dict[str, list[float]] = field(default_factory=dict)
    loaded: list[str] | None = None  # layers the pretrained start held

    def datasets(self, batch: int, first_epoch: int, start: int):
        """The training stream from epoch ``start`` of a stage that begins at ``first_epoch``, and validation."""
        from oidyolo.yolo.dataset import build_dataset

        cfg = self.cfg
        anchors = read_anchors(self.inputs.anchors_txt)
        common = dict(
            num_classes=len(read_classes(self.inputs.classes_txt)), anchors=anchors, input_shape=tuple(cfg.input_size),
            seed=cfg.seed, max_boxes=cfg.max_boxes, cache=cfg.cache, cache_dir=self.cache_dir,
            cache_budget_mb=cfg.cache_memory_mb, batch_size=batch,
        )  # fmt: skip
        steps = self.steps_per_epoch(batch)
        train_ds = build_dataset(
            self.inputs.train_txt, augment=True, shuffle=True, repeat=True, first_epoch=first_epoch,
            skip_batches=(start - first_epoch) * steps, augment_config=cfg.augment, **common,
        )  # fmt: skip
        val_ds = build_dataset(self.inputs.val_txt, augment=False, shuffle=False, **common)
        return train_ds, val_ds

    def steps_per_epoch(self, batch: int) -> int:
        return self.cfg.steps_per_epoch or math.ceil(self.n_train / batch)

    def fit(self, stage: int, first_epoch: int, last_epoch: int, extra: list, optimizer) -> None:
        """Compile, restore this stage's backup (weights, optimizer, callback state) and fit its epochs."""
        from oidyolo.yolo import callbacks as cb

        cfg = self.cfg
        with self.strategy.scope():
            self.detector.compile(optimizer=optimizer, jit_compile=cfg.jit_compile is True)
        folder = self.state / f"stage_{stage}"
        stateful = {"best": self.best, **{type(c).__name__: c for c in extra}}
        start = _restore(self.detector, folder, first_epoch, self.strategy, self.out / HISTORY, stateful)
        batch = cfg.batch_size[stage - 1]
        train_ds, val_ds = self.datasets(batch, first_epoch, start)
        if cfg.distribute == "multiworker":
            _local_symbolic_build(self.detector, train_ds)
        callbacks = [
            cb.DetectionLoss(), *extra, self.guard, self.best, cb.CsvHistory(self.out / HISTORY, _HISTORY_FIELDS),
            *_tensorboard(self.out), cb.Backup(folder, stateful),
        ]  # fmt: skip
        # Validate every k epochs counted from the stage's start, and always on its last epoch.
        freq = [e + 1 for e in range(first_epoch, last_epoch) if (e - first_epoch + 1) % cfg.validation_freq == 0]
        freq = sorted({*freq, last_epoch})
        h = self.detector.fit(
            train_ds, validation_data=val_ds, initial_epoch=start, epochs=last_epoch,
            steps_per_epoch=self.steps_per_epoch(batch), validation_steps=cfg.validation_steps,
            validation_freq=freq if cfg.validation_freq > 1 else 1, callbacks=callbacks, verbose=2, shuffle=False,
        )  # fmt: skip
        _check_finite(h.history, f"stage {stage}", self.guard)
        _merge(self.history, h.history)


_HISTORY_FIELDS = [
    "det_loss", "loss", "class_loss", "conf_loss", "wh_loss", "xy_loss",
    "val_det_loss", "val_loss", "val_class_loss", "val_conf_loss", "val_wh_loss", "val_xy_loss",
]  # fmt: skip


def train(
    inputs: TrainInputs,
    out_dir: str | Path,
    cfg: TrainConfig,
    *,
    state_dir: str | Path | None = None,
    cache_dir: str | Path | None = None,
    threads: int | None = None,
) -> TrainResult:
    """Train and write ``STAGE_1``, ``FINAL`` (and ``BEST``), ``model.json`` and ``history.csv`` into ``out_dir``.

    ``cache_dir`` holds the shrunk images of ``train.cache: disk`` (default ``out_dir/_cache``; kept, so a rerun
    with other hyper-parameters reuses it)."""
    run = _prepare(inputs, Path(out_dir), cfg, state_dir, cache_dir, threads)
    started = time.monotonic()
    _stage_1(run)
    _stage_2(run)
    return _finish(run, started)


def _prepare(inputs: TrainInputs, out: Path, cfg: TrainConfig, state_dir, cache_dir, threads: int | None) -> _Run:
    """Devices, strategy, model spec, resume state and the model (with its pretrained start)."""
    import keras
    import tensorflow as tf

    from oidyolo.yolo import callbacks as cb
    from oidyolo.yolo.darknet import load_pretrained
    from oidyolo.yolo.model import YoloDetector, build_yolov3

    if threads:
        # Snakemake passes the rule's threads (8) even on a 2-core machine; more op threads than CPUs only spin.
        threads = min(threads, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else threads)
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(max(1, min(threads, 2)))
    strategy = choose_strategy(tf, cfg.distribute)  # first: MultiWorkerMirroredStrategy wants no TF op before it
    if not is_chief(strategy):  # a worker computes what the chief does but writes its copies aside
        out = out / f"_worker_{strategy.cluster_resolver.task_id}"
        state_dir = None
    out.mkdir(parents=True, exist_ok=True)
    state = Path(state_dir) if state_dir else out / "_state"
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
    if strategy.num_replicas_in_sync > 1:
        print(
            f"data parallel over {strategy.num_replicas_in_sync} devices ({type(strategy).__name__})", file=sys.stderr
        )
    with strategy.scope():
        body = build_yolov3(len(classes), cfg.variant, weight_decay=cfg.weight_decay)
        detector = YoloDetector(body, anchors, len(classes), ignore_thresh=cfg.ignore_thresh)
        detector(tf.zeros((1, *cfg.input_size, 3)))  # build, so a backup can be loaded into it
    loaded = None
    if inputs.pretrained:
        loaded, skipped = load_pretrained(body, inputs.pretrained)
        print(f"pretrained start: loaded {len(loaded)} layers, skipped {len(skipped)} ({', '.join(skipped)})")
    return _Run(
        cfg, inputs, out, state, Path(cache_dir) if cache_dir else out / "_cache", strategy, detector,
        cb.BestBody(out / BEST), cb.NanGuard(), resuming, count_lines(inputs.train_txt), loaded=loaded,
    )  # fmt: skip


def _stage_1(run: _Run) -> None:
    """Frozen backbone with a pretrained start (else every layer), epochs ``[0, e1)``; its result is kept."""
    import keras

    from oidyolo.yolo.callbacks import save_atomic
    from oidyolo.yolo.model import freeze_backbone

    cfg, e1 = run.cfg, run.cfg.epochs[0]
    done = run.state / "stage_1_done.weights.h5"
    if done.exists():
        run.detector.body.load_weights(str(done))
        _restore_best(run)
        print("resuming: stage 1 was already done", file=sys.stderr)
    else:
        if e1:
            if run.inputs.pretrained and cfg.freeze:
                frozen = freeze_backbone(run.detector, cfg.freeze, only=run.loaded)  # only what the start held
                print(f"stage 1: {frozen} layers frozen (freeze mode {cfg.freeze})", file=sys.stderr)
            else:
                print("stage 1: no pretrained start, so every layer trains", file=sys.stderr)
            with run.strategy.scope():
                optimizer = keras.optimizers.Adam(learning_rate=_rate(run, 1, e1))
            run.fit(1, 0, e1, [], optimizer)
        save_atomic(run.detector.body, done)
        _save_best_state(run)
        shutil.rmtree(run.state / "stage_1", ignore_errors=True)
    shutil.copyfile(done, run.out / STAGE_1)


def _stage_2(run: _Run) -> None:
    """Everything trains at the lower rate, epochs ``[e1, e1 + e2)``, with LR plateau and early stopping."""
    import keras

    from oidyolo.yolo import callbacks as cb
    from oidyolo.yolo.model import unfreeze_all

    cfg = run.cfg
    e1, e2 = cfg.epochs
    if not e2:
        return
    unfreeze_all(run.detector)
    with run.strategy.scope():
        optimizer = keras.optimizers.Adam(learning_rate=_rate(run, 2, e2))
    extra = [cb.EarlyStopping(monitor=cb.MONITOR, mode="min", patience=cfg.early_stopping_patience)]
    if cfg.schedule == "plateau":  # a schedule owns the rate; the plateau callback could not set it
        extra.insert(
            0, cb.ReduceLROnPlateau(monitor=cb.MONITOR, mode="min", factor=0.1, patience=cfg.reduce_lr_patience)
        )
    run.fit(2, e1, e1 + e2, extra, optimizer)


def _local_symbolic_build(detector, dataset) -> None:
    """Keras 3 ``fit`` builds metrics from one batch that it averages with ``strategy.reduce`` eagerly, which
    MultiWorkerMirroredStrategy cannot do (keras-team/keras#20585); build them from a local batch instead (the
    model and optimizer are built already, only the shapes matter)."""
    import tensorflow as tf
    from keras.src.backend.tensorflow import trainer

    sample = next(iter(dataset))

    def build(iterator=None, data_batch=None) -> None:
        with detector.distribute_strategy.scope():
            detector._symbolic_build(data_batch=sample)

    detector._maybe_symbolic_build = build
    # The same Keras path then averages the scalar logs with reduce(axis=0), which a scalar has not.
    if not getattr(trainer.reduce_per_replica, "_oidyolo", False):
        original = trainer.reduce_per_replica

        def reduce_per_replica(values, strategy, reduction):
            if trainer._collective_all_reduce_multi_worker(strategy) and reduction in ("auto", "mean"):
                return tf.nest.map_structure(lambda v: strategy.reduce("MEAN", v, axis=None), values)
            return original(values, strategy, reduction)

        reduce_per_replica._oidyolo = True  # type: ignore[attr-defined]
        trainer.reduce_per_replica = reduce_per_replica


def _rate(run: _Run, stage: int, epochs: int):
    """The stage's learning rate: a float (plateau), or warm-up + cosine over its steps, which follows
    ``optimizer.iterations`` and so resumes exactly with the optimizer state."""
    import keras

    lr = run.cfg.learning_rate[stage - 1]
    if run.cfg.schedule == "plateau":
        return lr
    steps = run.steps_per_epoch(run.cfg.batch_size[stage - 1])
    warm = min(steps, max(1, epochs * steps // 4))
    return keras.optimizers.schedules.CosineDecay(
        lr / 10, max(1, epochs * steps - warm), alpha=0.01, warmup_target=lr, warmup_steps=warm
    )


def _finish(run: _Run, started: float) -> TrainResult:
    """The final weights are the best by ``val_det_loss`` over both stages (keras-yolo3 kept the last epoch's)."""
    from oidyolo.yolo.callbacks import save_atomic

    body = run.detector.body
    if run.best.path.exists():
        body.load_weights(str(run.best.path))
    save_atomic(body, run.out / FINAL)
    shutil.rmtree(run.state, ignore_errors=True)
    summary = {
        "seconds": round(time.monotonic() - started, 1),
        "best_val_det_loss": run.best.best if math.isfinite(run.best.best) else None,
        "epochs_run": len(run.history.get("loss", [])),
        "resumed": run.resuming,
    }
    print(json.dumps(summary), file=sys.stderr)
    return TrainResult(summary, body)


def _save_best_state(run: _Run) -> None:
    (run.state / "best.json").write_text(json.dumps(run.best.state()))


def _restore_best(run: _Run) -> None:
    path = run.state / "best.json"
    if path.exists():
        run.best.restore(json.loads(path.read_text()))


def _tensorboard(out: Path) -> list:
    import keras

    return [keras.callbacks.TensorBoard(log_dir=str(out / "tensorboard"), write_graph=False, profile_batch=0)]


def _restore(detector, folder: Path, default_epoch: int, strategy, history_csv: Path, stateful: dict) -> int:
    """Load a stage's backup (weights, optimizer state, callback state) if there is one; returns the epoch to
    continue from. History rows from that epoch on are dropped: those epochs run again and log again."""
    from oidyolo.yolo.callbacks import read_backup

    epoch = default_epoch
    try:
        meta = read_backup(folder)
        if meta is not None:
            with strategy.scope():
                detector.optimizer.build(detector.trainable_variables)
            detector.load_weights(str(folder / "latest.weights.h5"))
            epoch = int(meta["epoch"])
            for name, state in meta.get("callbacks", {}).items():
                if name in stateful:
                    stateful[name].restore(state)
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

        def write(tmp: Path) -> None:
            with open(tmp, "w", newline="") as fh:
                csv.writer(fh).writerows(keep)

        atomic_write(history_csv, write)


def _merge(into: dict[str, list[float]], new: dict[str, list[float]]) -> None:
    for k, v in new.items():
        into.setdefault(k, []).extend(float(x) for x in v)


def _check_finite(history: dict[str, list[float]], stage: str, guard) -> None:
    losses = history.get("loss", [])
    if any(not math.isfinite(x) for x in losses) or guard.tripped:
        raise TrainingError(
            f"{stage}: the loss became NaN or infinite, so training stopped. Lower train.learning_rate, check the "
            "anchors file and the boxes in train.txt (zero-size boxes are dropped upstream), or set "
            "train.mixed_precision: off."
        )
