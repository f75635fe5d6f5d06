# Stage 2: class CSVs. One pass indexes the split's bbox CSV by LabelName (for every class, so adding a class
# leaves it as it is); each class's job then reads only its own rows (and, with expand_hierarchy, its
# subclasses') and applies the filters and the seeded image limit. A changed filter or limit rereads those rows
# (no scan: 0.3x grep -F for a small class, 1x for one of 1.28M boxes), so a class costs one job start-up, not two.


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


rule select_class:
    input:
        csv=split_boxes_csv,
        index=rules.index_boxes.output[0],
        catalog=rules.fetch_catalog.output.classes,
    output:
        boxes="results/boxes/{split}/{cls}.parquet",
        selection="results/select/{split}/{cls}.csv",
    log:
        "logs/select_class/{split}/{cls}.log",
    benchmark:
        "benchmarks/select_class/{split}/{cls}.tsv"
    conda:
        "../envs/data.yaml"
    params:
        name=lambda wc: PLAN.cls(wc.cls).name,
        mids=lambda wc: list(PLAN.cls(wc.cls).mids),
        ceded=lambda wc: [list(c) for c in PLAN.cls(wc.cls).ceded],
        strict=config["strict_csv"],
        filters=config["filters"],
        limit=lambda wc: PLAN.limit(wc.split),
        seed=config["seed"],
    script:
        "../workflow_scripts/select_class.py"
