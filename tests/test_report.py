"""The report's plots from the files training writes."""

from __future__ import annotations

import csv

from PIL import Image

from oidyolo.report import _series, plot_history

TERMS = ("xy_loss", "wh_loss", "conf_loss", "class_loss")


def test_loss_curves_plot_a_history_validated_every_third_epoch(tmp_path):
    """With train.validation_freq 3 the validation columns are empty on the other epochs (as Keras logs them)."""
    history = tmp_path / "history.csv"
    columns = ["epoch", "loss", "val_loss", *TERMS, *(f"val_{t}" for t in TERMS)]
    with open(history, "w", newline="") as fh:
        writer = csv.DictWriter(fh, columns)
        writer.writeheader()
        for epoch in range(7):
            validated = epoch % 3 == 2 or epoch == 6
            row = {"epoch": epoch, "loss": 100 / (epoch + 1), **{t: 10 / (epoch + 1) for t in TERMS}}
            if validated:
                row |= {"val_loss": 120 / (epoch + 1), **{f"val_{t}": 12 / (epoch + 1) for t in TERMS}}
            writer.writerow(row)
    with open(history, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert _series(rows, "val_loss") == ([3, 6, 7], [40.0, 20.0, 120 / 7])
    assert _series(rows, "loss")[0] == [1, 2, 3, 4, 5, 6, 7]
    out = tmp_path / "loss.png"
    plot_history(history, out)
    with Image.open(out) as png:
        assert png.format == "PNG" and png.width > 300
