"""The training callbacks: detection loss, best checkpoint, LR plateau and early stop that survive a resume, CSV
history, NaN guard and the per-epoch backup.

Model selection watches ``val_det_loss``: the detection loss (xy + wh + conf + class) without the L2 term. Keras 3
adds the L2 of *trainable* weights only, so ``val_loss`` jumps when stage 2 unfreezes the backbone and is not
comparable across stages; ``val_det_loss`` is.

Every stateful callback here exposes ``state()`` (a JSON-able dict) and takes it back with ``restore``; the backup
stores them beside the weights, so a resumed run waits, reduces and stops exactly where an uninterrupted one would.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import keras
import numpy as np

from oidyolo.atomic import atomic_write, write_text_atomic
from oidyolo.yolo.loss import LOSS_COMPONENTS

MONITOR = "val_det_loss"


def save_atomic(model: keras.Model, path: Path) -> None:
    atomic_write(path, lambda tmp: model.save_weights(str(tmp)), suffix=".weights.h5")  # Keras wants the suffix


class DetectionLoss(keras.callbacks.Callback):
    """Adds ``det_loss`` (and ``val_det_loss`` on validated epochs) to the logs: the sum of the loss terms,
    regularisation left out. Must come first, so the callbacks after it see the keys."""

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if logs is None:
            return
        for prefix in ("", "val_"):
            keys = [prefix + k for k in LOSS_COMPONENTS]
            if all(k in logs for k in keys):
                logs[prefix + "det_loss"] = float(sum(float(logs[k]) for k in keys))


class NanGuard(keras.callbacks.Callback):
    """Stop at the first non-finite batch loss (TerminateOnNaN, remembered so we can explain it)."""

    def __init__(self) -> None:
        super().__init__()
        self.tripped = False

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        loss = (logs or {}).get("loss")
        if loss is not None and not np.isfinite(float(loss)):
            self.tripped = True
            self.model.stop_training = True


class BestBody(keras.callbacks.Callback):
    """Save the *body* weights (what inference loads) whenever ``val_det_loss`` improves."""

    def __init__(self, path: Path, best: float = math.inf) -> None:
        super().__init__()
        self.path = path
        self.best = best

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        value = (logs or {}).get(MONITOR)
        if value is not None and math.isfinite(float(value)) and float(value) < self.best:
            self.best = float(value)
            save_atomic(self.model.body, self.path)

    def state(self) -> dict[str, Any]:
        return {"best": self.best}

    def restore(self, state: dict[str, Any]) -> None:
        self.best = float(state.get("best", self.best))


class _Resumable:
    """Mixin for Keras' plateau callbacks: saved counters come back after ``on_train_begin`` resets them, and
    epochs without validation (``validation_freq`` > 1) are skipped instead of warned about."""

    STATE: tuple[str, ...] = ()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._saved: dict[str, Any] = {}

    def restore(self, state: dict[str, Any]) -> None:
        self._saved = dict(state)

    def state(self) -> dict[str, Any]:
        values = {k: getattr(self, k) for k in self.STATE}
        return {k: v if v is None or isinstance(v, int) else float(v) for k, v in values.items()}

    def on_train_begin(self, logs: dict | None = None) -> None:
        super().on_train_begin(logs)  # type: ignore[misc]
        for k, v in self._saved.items():
            setattr(self, k, v)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if (logs or {}).get(self.monitor) is not None:  # type: ignore[attr-defined]
            super().on_epoch_end(epoch, logs)  # type: ignore[misc]


class ReduceLROnPlateau(_Resumable, keras.callbacks.ReduceLROnPlateau):
    STATE = ("wait", "cooldown_counter", "best")


class EarlyStopping(_Resumable, keras.callbacks.EarlyStopping):
    STATE = ("wait", "best", "best_epoch")


class CsvHistory(keras.callbacks.Callback):
    """One row per epoch with a fixed header, appended across both stages and across resumes (Keras' CSVLogger
    keeps the first stage's header, which lacks the learning rate that stage 2's callbacks add). Epochs without
    validation leave the ``val_`` cells empty."""

    def __init__(self, path: Path, fields: list[str] | None = None) -> None:
        super().__init__()
        self.path = path
        self.fields = fields

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        row = {k: float(v) for k, v in (logs or {}).items()}
        row["learning_rate"] = float(np.asarray(self.model.optimizer.learning_rate))
        row["epoch"] = epoch
        if self.path.exists() and self.path.stat().st_size:
            with open(self.path, newline="") as fh:
                fields = next(csv.reader(fh))
        else:
            names = set(row) | set(self.fields or [])
            fields = ["epoch", "learning_rate", *sorted(k for k in names if k not in ("epoch", "learning_rate"))]
            self.path.write_text(",".join(fields) + "\n")
        with open(self.path, "a", newline="") as fh:
            csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore").writerow(row)


class Backup(keras.callbacks.Callback):
    """The resume point: weights with optimizer state, then the finished epoch count with the other callbacks'
    state, each atomically. Put it last: an epoch counts as done only once everything before it has run."""

    def __init__(self, folder: Path, stateful: dict[str, Any]) -> None:
        super().__init__()
        self.folder = folder
        self.stateful = stateful

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        save_atomic(self.model, self.folder / "latest.weights.h5")
        meta = {"epoch": epoch + 1, "callbacks": {name: cb.state() for name, cb in self.stateful.items()}}
        write_text_atomic(self.folder / "epoch.json", json.dumps(meta))


def read_backup(folder: Path) -> dict[str, Any] | None:
    """The backup's ``epoch.json`` if it and its weights are there (raises ValueError/KeyError when garbled)."""
    meta, weights = folder / "epoch.json", folder / "latest.weights.h5"
    if not (meta.exists() and weights.exists()):
        return None
    data = json.loads(meta.read_text())
    int(data["epoch"])
    return data
