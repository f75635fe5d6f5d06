"""Snakemake adapter: generate the demo source (see oidyolo.data.demo)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from oidyolo.data.demo import DemoSpec, generate_demo
from oidyolo.runner import logged_step

with logged_step(snakemake.log[0], "demo_source"):
    p = snakemake.params
    summary = generate_demo(
        Path(snakemake.output[0]),
        DemoSpec(version=p.version, seed=p.seed, images=dict(p.images), missing=dict(p.missing)),
    )
    print(summary.to_json())
