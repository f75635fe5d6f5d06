# Exports for other trainers, built from the keras-yolo3 files (and each image's VOC file for its size and
# group-of flags). Not in the default target: `snakemake results/coco/val.json` or `snakemake results/ultralytics`.


rule coco:
    input:
        lines="results/yolo/{part}.txt",
        classes=rules.yolo_annotations.output.classes,
        voc=export_voc_dirs,
    output:
        "results/coco/{part}.json",
    log:
        "logs/coco/{part}.log",
    benchmark:
        "benchmarks/coco/{part}.tsv"
    wildcard_constraints:
        part="train|val",
    conda:
        "../envs/data.yaml"
    script:
        "../workflow_scripts/coco_export.py"


rule ultralytics:
    input:
        train=rules.yolo_annotations.output.train,
        val=rules.yolo_annotations.output.val,
        classes=rules.yolo_annotations.output.classes,
        voc=export_voc_dirs,
    output:
        directory("results/ultralytics"),
    log:
        "logs/ultralytics.log",
    benchmark:
        "benchmarks/ultralytics.tsv"
    conda:
        "../envs/data.yaml"
    script:
        "../workflow_scripts/ultralytics_export.py"
