"""Snakemake adapter: download a class's images into the shared store and write its manifest."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from oidyolo.data.download import DownloadConfig, check_missing, download_images, write_manifest
from oidyolo.data.select import read_selection
from oidyolo.data.sources import Remote
from oidyolo.runner import logged_step

with logged_step(snakemake.log[0], "download_images"):
    p = snakemake.params
    ids = read_selection(snakemake.input[0])["ImageID"].to_pylist()
    config = DownloadConfig(
        workers=p.workers, retries=p.retries, max_missing_fraction=p.max_missing_fraction, timeout=p.timeout
    )
    entries = download_images(
        ids,
        split=snakemake.wildcards.split,
        remote=Remote(p.url, dict(p.options)),
        store=p.store,
        config=config,
        label=p.label,
    )
    print(check_missing(entries, p.max_missing_fraction, label=p.label))
    write_manifest(entries, snakemake.output[0])
