# Validation, the plan derived from the config, and path helpers. No step logic lives here.
import os
import sys

sys.path.insert(0, workflow.basedir)  # the oidyolo package, also without `pip install`

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from oidyolo.errors import OidyoloError
from oidyolo.workflow import DEMO_DIR, STORE, Plan

validate(config, "../schemas/config.schema.yaml")

try:
    PLAN = Plan.from_config(config)
except OidyoloError as err:
    raise WorkflowError(f"config.yaml: {err}") from None


wildcard_constraints:
    split="train|validation|test",
    cls="|".join(PLAN.slugs),


# Images live in a shared store outside the declared outputs, and Snakemake does not rerun a job because such a
# file vanished. So a manifest listing a vanished image is marked out of date (its mtime set before its input's):
# its download job reruns and fetches only what is missing.
if workflow.is_main_process:
    for _path, _gone in PLAN.stale_manifests().items():
        logger.warning(
            f"{_path}: {len(_gone)} stored image(s) are gone, e.g. {_gone[0]}; they will be fetched again"
        )
        os.utime(_path, (0, 0))

METADATA = PLAN.metadata_dir
TRAIN = PLAN.train_settings()


def source_ready(wildcards):
    """The demo source must be generated before anything is fetched from it."""
    return [DEMO_DIR] if PLAN.source == "demo" else []


def split_boxes_csv(wildcards):
    return f"{METADATA}/{wildcards.split}-annotations-bbox.csv"


def class_files(pattern):
    """One path per configured class, for a split wildcard left open: class_files('results/x/{split}/{cls}.csv')."""

    def paths(wildcards):
        return [pattern.format(split=wildcards.split, cls=slug) for slug in PLAN.slugs]

    return paths


def val_voc(wildcards):
    return [f"results/voc/{PLAN.val_split}"] if PLAN.val_split else []


def test_voc(wildcards):
    return [f"results/voc/{PLAN.test_split}"] if PLAN.test_split else []


def test_voc_dir(wildcards):
    """The VOC folder of the test images (the validation images' when test_fraction carves them out)."""
    return (
        f"results/voc/{PLAN.test_split}" if PLAN.test_split else val_voc_dir(wildcards)
    )


def val_voc_dir(wildcards):
    """The VOC folder of the validation images (the train split's when val_fraction carves them out of it)."""
    return f"results/voc/{PLAN.val_split or PLAN.train_split}"


def export_voc_dirs(wildcards):
    """The VOC folders the exported lines come from (validation may be carved out of the train split)."""
    return sorted({f"results/voc/{PLAN.train_split}", val_voc_dir(wildcards)})


def pretrained_start(wildcards):
    return (
        [rules.convert_darknet.output[0]] if config["train"]["darknet_weights"] else []
    )
