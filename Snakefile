# oidyolo: Open Images classes -> class CSVs -> images -> Pascal VOC -> keras-yolo3 annotations -> YOLOv3.
# Configure in config.yaml (validated by schemas/config.schema.yaml); run with `snakemake --cores 8`.
from snakemake.utils import min_version

min_version("9.20")


configfile: "config.yaml"


report: "report/workflow.rst"


include: "rules/common.smk"
include: "rules/source.smk"
include: "rules/select.smk"
include: "rules/images.smk"
include: "rules/convert.smk"
include: "rules/train.smk"
include: "rules/report.smk"
include: "rules/formats.smk"
include: "rules/export.smk"


rule all:
    default_target: True
    input:
        "results/yolo/train.txt",
        "results/yolo/val.txt",
        "results/yolo/test.txt",
        "results/yolo/classes.txt",
        "results/eval/metrics.json",
        "results/report/dataset.png",
        "results/report/loss.png",
