# Stage 2: class CSVs. One pass indexes the split's bbox CSV by LabelName (for every class, so adding a class
# leaves it as it is); each class's extraction then reads only its own rows (and, with expand_hierarchy, its
# subclasses'); selection applies the filters and the seeded image limit, so changing those never rescans.


rule index_boxes:
    input:
        split_boxes_csv,
    output:
        directory("results/index/{split}"),
    log:
        "logs/index_boxes/{split}.log",
    benchmark:
        "benchmarks/index_boxes/{split}.tsv"
    conda:
        "../envs/data.yaml"
    threads: 2
    script:
        "../workflow_scripts/index_boxes.py"


rule extract_class:
    input:
        csv=split_boxes_csv,
        index=rules.index_boxes.output[0],
        catalog=rules.fetch_catalog.output.classes,
    output:
        "results/boxes/{split}/{cls}.parquet",
    log:
        "logs/extract_class/{split}/{cls}.log",
    benchmark:
        "benchmarks/extract_class/{split}/{cls}.tsv"
    conda:
        "../envs/data.yaml"
    params:
        name=lambda wc: PLAN.cls(wc.cls).name,
        mids=lambda wc: list(PLAN.cls(wc.cls).mids),
        ceded=lambda wc: [list(c) for c in PLAN.cls(wc.cls).ceded],
        strict=config["strict_csv"],
    script:
        "../workflow_scripts/extract_class.py"


rule select_class:
    input:
        "results/boxes/{split}/{cls}.parquet",
    output:
        "results/select/{split}/{cls}.csv",
    log:
        "logs/select_class/{split}/{cls}.log",
    benchmark:
        "benchmarks/select_class/{split}/{cls}.tsv"
    conda:
        "../envs/data.yaml"
    params:
        name=lambda wc: PLAN.cls(wc.cls).name,
        filters=config["filters"],
        limit=lambda wc: PLAN.limit(wc.split),
        seed=config["seed"],
    script:
        "../workflow_scripts/select_class.py"
