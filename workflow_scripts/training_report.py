"""Snakemake adapter: loss curves and per-class AP chart."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from oidyolo.report import plot_ap, plot_history
from oidyolo.runner import logged_step

with logged_step(snakemake.log[0], "training_report"):
    plot_history(snakemake.input.history, snakemake.output.loss)
    plot_ap(snakemake.input.metrics, snakemake.output.ap)
