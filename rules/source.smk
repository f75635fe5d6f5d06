# Stage 1: the source. The demo is generated offline in Open Images' own layout; every source (demo, mirror,
# the real dataset) is then fetched by the same code into a local cache that no rerun downloads again.


localrules:
    demo_source,
    fetch_catalog,
    fetch_boxes,


rule demo_source:
    output:
        directory(DEMO_DIR),
    log:
        "logs/demo_source.log",
    benchmark:
        "benchmarks/demo_source.tsv"
    conda:
        "../envs/data.yaml"
    params:
        version=PLAN.version,
        seed=config["demo"]["seed"],
        images={
            "train": config["demo"]["train_images"],
            "validation": config["demo"]["validation_images"],
            "test": (
                config["demo"]["validation_images"]
                if config["demo"]["test_images"] is None
                else config["demo"]["test_images"]
            ),
        },
        missing={"train": config["demo"]["missing_images"]},
    script:
        "../workflow_scripts/demo_source.py"


rule fetch_catalog:
    input:
        source_ready,
    output:
        classes=f"{METADATA}/class-descriptions-boxable.csv",
        hierarchy=f"{METADATA}/bbox_labels_600_hierarchy.json",
    log:
        "logs/fetch_catalog.log",
    benchmark:
        "benchmarks/fetch_catalog.tsv"
    conda:
        "../envs/data.yaml"
    params:
        url=PLAN.metadata_remote.url,
        options=PLAN.metadata_remote.options,
        relpaths=[PLAN.relpath("classes"), PLAN.relpath("hierarchy")],
        known=[
            vars(PLAN.known(PLAN.relpath("classes"))),
            vars(PLAN.known(PLAN.relpath("hierarchy"))),
        ],
    script:
        "../workflow_scripts/fetch_catalog.py"


rule fetch_boxes:
    input:
        source_ready,
    output:
        f"{METADATA}/{{split}}-annotations-bbox.csv",
    log:
        "logs/fetch_boxes/{split}.log",
    benchmark:
        "benchmarks/fetch_boxes/{split}.tsv"
    retries: 2
    conda:
        "../envs/data.yaml"
    params:
        url=PLAN.metadata_remote.url,
        options=PLAN.metadata_remote.options,
        relpath=lambda wc: PLAN.relpath("boxes", wc.split),
        known=lambda wc: vars(PLAN.known(PLAN.relpath("boxes", wc.split))),
    script:
        "../workflow_scripts/fetch_boxes.py"
