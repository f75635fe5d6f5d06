# Stage 4-5: Pascal VOC (one file per image with every selected class in it), then the keras-yolo3 files.


rule voc:
    input:
        manifests=class_files("results/images/{split}/{cls}.tsv"),
        boxes=class_files("results/boxes/{split}/{cls}.parquet"),
    output:
        directory("results/voc/{split}"),
    log:
        "logs/voc/{split}.log",
    benchmark:
        "benchmarks/voc/{split}.tsv"
    conda:
        "../envs/data.yaml"
    params:
        names=PLAN.names,
        filters=config["filters"],
        database=f"Open Images {PLAN.version}",
    script:
        "../workflow_scripts/voc.py"


rule yolo_annotations:
    input:
        train=f"results/voc/{PLAN.train_split}",
        val=val_voc,
        test=test_voc,
    output:
        train="results/yolo/train.txt",
        val="results/yolo/val.txt",
        test="results/yolo/test.txt",
        classes="results/yolo/classes.txt",
    log:
        "logs/yolo_annotations.log",
    benchmark:
        "benchmarks/yolo_annotations.tsv"
    conda:
        "../envs/data.yaml"
    params:
        classes=PLAN.names,
        val_fraction=config["val_fraction"],
        test_fraction=config["test_fraction"],
        seed=config["seed"],
        include_difficult=config["yolo"]["include_difficult"],
        absolute_paths=config["yolo"]["absolute_paths"],
    script:
        "../workflow_scripts/yolo_annotations.py"
