"""Snakemake adapter: fetch a split's bbox CSV with resume and integrity checks."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from oidyolo.data.sources import Remote, fetch_file
from oidyolo.data.versions import Known
from oidyolo.runner import logged_step

with logged_step(snakemake.log[0], "fetch_boxes"):
    p = snakemake.params
    # download.timeout and .retries are read from the config, not rule params: they cannot change the fetched
    # bytes, so editing them must not refetch a 2 GB file.
    download = snakemake.config.get("download", {})
    result = fetch_file(
        Remote(p.url, dict(p.options)),
        p.relpath,
        snakemake.output[0],
        known=Known(**p.known),
        timeout=download.get("timeout", 60),
        retries=download.get("retries", 5),
    )
    print(f"{p.relpath}: {result.size:,} bytes, md5 {result.md5}, resumed from byte {result.resumed_from:,}")
