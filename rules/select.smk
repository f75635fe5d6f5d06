# Stage 2: class CSVs. One streaming scan of the split's bbox CSV per class keeps every box of the class (and,
# with expand_hierarchy, of its subclasses); selection then applies the filters and the seeded image limit, so
# changing those never rescans the big file.


rule extract_class:
    input:
        csv=split_boxes_csv,
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
