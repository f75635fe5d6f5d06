"""Snakemake adapter: fetch the class descriptions and the hierarchy, and check that both parse."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from oidyolo.data.catalog import ClassCatalog, Hierarchy
from oidyolo.data.sources import Remote, fetch_file
from oidyolo.data.versions import Known
from oidyolo.runner import logged_step

with logged_step(snakemake.log[0], "fetch_catalog"):
    p = snakemake.params
    remote = Remote(p.url, dict(p.options))
    download = snakemake.config.get("download", {})  # like fetch_boxes: these cannot change the fetched bytes
    outputs = (snakemake.output.classes, snakemake.output.hierarchy)
    for relpath, dest, known in zip(p.relpaths, outputs, p.known, strict=True):
        result = fetch_file(
            remote,
            relpath,
            dest,
            known=Known(**known),
            timeout=download.get("timeout", 60),
            retries=download.get("retries", 5),
        )
        print(f"{relpath}: {result.size:,} bytes, md5 {result.md5}" + (" (the published md5)" if known["md5"] else ""))
    catalog = ClassCatalog.from_file(snakemake.output.classes)
    hierarchy = Hierarchy.from_file(snakemake.output.hierarchy)
    print(f"{len(catalog.names)} classes, {len(hierarchy.children)} hierarchy nodes")
