"""Snakemake adapter: fetch the class descriptions and the hierarchy, and check that both parse."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from oidyolo.data.catalog import ClassCatalog, Hierarchy
from oidyolo.data.sources import Remote, fetch_file
from oidyolo.runner import logged_step

with logged_step(snakemake.log[0], "fetch_catalog"):
    p = snakemake.params
    remote = Remote(p.url, dict(p.options))
    for relpath, dest in zip(p.relpaths, (snakemake.output.classes, snakemake.output.hierarchy), strict=True):
        fetch_file(remote, relpath, dest)
    catalog = ClassCatalog.from_file(snakemake.output.classes)
    hierarchy = Hierarchy.from_file(snakemake.output.hierarchy)
    print(f"{len(catalog.names)} classes, {len(hierarchy.children)} hierarchy nodes")
