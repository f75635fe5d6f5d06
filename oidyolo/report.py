"""Plots for ``snakemake --report``: dataset statistics, loss curves, per-class AP. matplotlib only (no TensorFlow).

Every figure is drawn on a ``Figure`` with the Agg canvas, so no display and no global pyplot state is needed.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

from oidyolo.data.yolo_format import read_annotations, read_classes


def _figure(width: float = 7, height: float = 4.5):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def dataset_stats(annotations: Mapping[str, str | Path], classes_txt: str | Path) -> list[dict]:
    """Rows ``{split, class, images, boxes}`` for each annotation file (``{"train": path, "val": path}``)."""
    classes = read_classes(classes_txt)
    rows = []
    for split, path in annotations.items():
        lines = read_annotations(path, num_classes=len(classes))
        boxes, images = Counter(), Counter()
        for line in lines:
            ids = [int(c) for c in line.boxes[:, 4]]
            boxes.update(ids)
            images.update(set(ids))
        for i, name in enumerate(classes):
            rows.append({"split": split, "class": name, "images": images[i], "boxes": boxes[i]})
        rows.append({"split": split, "class": "(all)", "images": len(lines), "boxes": sum(boxes.values())})
    return rows


def write_dataset_report(
    annotations: Mapping[str, str | Path], classes_txt: str | Path, out_tsv: str | Path, out_png: str | Path
) -> list[dict]:
    rows = dataset_stats(annotations, classes_txt)
    with open(out_tsv, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=["split", "class", "images", "boxes"], delimiter="\t")
        writer.writeheader()
        writer.writerows(rows)
    fig = _figure(8, 4)
    splits = list(annotations)
    classes = [r["class"] for r in rows if r["split"] == splits[0] and r["class"] != "(all)"]
    for k, key in enumerate(("images", "boxes")):
        ax = fig.add_subplot(1, 2, k + 1)
        width = 0.8 / len(splits)
        for j, split in enumerate(splits):
            values = [next(r[key] for r in rows if r["split"] == split and r["class"] == c) for c in classes]
            ax.bar([i + j * width for i in range(len(classes))], values, width, label=split)
        ax.set_xticks([i + width * (len(splits) - 1) / 2 for i in range(len(classes))], classes, rotation=30)
        ax.set_title(f"{key} per class")
        ax.legend()
    fig.savefig(out_png)
    return rows


def plot_history(history_csv: str | Path, out_png: str | Path) -> None:
    """Training and validation loss per epoch (log scale), and each loss term."""
    with open(history_csv, newline="") as fh:
        rows = list(csv.DictReader(fh))
    fig = _figure(9, 4)
    ax = fig.add_subplot(1, 2, 1)
    for key in ("loss", "val_loss"):
        ax.plot(*_series(rows, key), marker="." if key.startswith("val_") else None, label=key)
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_title("loss")
    ax.legend()
    ax = fig.add_subplot(1, 2, 2)
    for key in ("xy_loss", "wh_loss", "conf_loss", "class_loss"):
        ax.plot(*_series(rows, f"val_{key}"), marker=".", label=f"val {key}")
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_title("validation loss terms")
    ax.legend(fontsize=8)
    fig.savefig(out_png)


def _series(rows: list[dict[str, str]], key: str) -> tuple[list[int], list[float]]:
    """(1-based epochs, values) of the rows where ``key`` has a value: with ``train.validation_freq`` > 1 the
    validation columns are empty on the epochs that were not validated."""
    points = [(int(r["epoch"]) + 1, float(r[key])) for r in rows if r.get(key)]
    return [e for e, _ in points], [v for _, v in points]


def plot_ap(metrics_json: str | Path, out_png: str | Path) -> None:
    metrics = json.loads(Path(metrics_json).read_text())
    names: Sequence[str] = list(metrics["per_class_AP50"])
    fig = _figure(7, 4)
    ax = fig.add_subplot()
    for offset, key, label in ((-0.2, "per_class_AP50", "AP50"), (0.2, "per_class_AP50_95", "AP50:95")):
        values = [metrics[key][n] or 0.0 for n in names]
        ax.bar([i + offset for i in range(len(names))], values, 0.4, label=label)
    ax.set_xticks(range(len(names)), names, rotation=30)
    ax.set_ylim(0, 1)
    ax.set_title(f"per-class AP (mAP50 {metrics['mAP50'] or 0:.3f}, mAP50:95 {metrics['mAP50_95'] or 0:.3f})")
    ax.legend()
    fig.savefig(out_png)
