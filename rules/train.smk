# Stage 6-7: anchors, training (the GPU rule), evaluation. Hyper-parameters are params, so editing them reruns
# only training and what follows.


rule anchors:
    input:
        "results/yolo/train.txt",
    output:
        "results/yolo/anchors.txt",
    log:
        "logs/anchors.log",
    benchmark:
        "benchmarks/anchors.tsv"
    conda:
        "../envs/data.yaml"
    params:
        mode=config["train"]["anchors"],
        variant=config["train"]["variant"],
        input_size=TRAIN["input_size"],
        seed=config["seed"],
    script:
        "../workflow_scripts/anchors.py"


rule convert_darknet:
    input:
        config["train"]["darknet_weights"] or [],
    output:
        "results/model/darknet_start.weights.h5",
    log:
        "logs/convert_darknet.log",
    benchmark:
        "benchmarks/convert_darknet.tsv"
    conda:
        "../envs/train.yaml"
    params:
        variant=config["train"]["variant"],
    script:
        "../workflow_scripts/convert_darknet.py"


rule train:
    input:
        train="results/yolo/train.txt",
        val="results/yolo/val.txt",
        classes="results/yolo/classes.txt",
        anchors="results/yolo/anchors.txt",
        pretrained=pretrained_start,
    output:
        stage1="results/model/trained_weights_stage_1.weights.h5",
        final="results/model/trained_weights_final.weights.h5",
        spec="results/model/model.json",
        history="results/model/history.csv",
    log:
        "logs/train.log",
    benchmark:
        "benchmarks/train.tsv"
    conda:
        "../envs/train.yaml"
    threads: 8
    resources:
        gpu=1,
        mem_mb=16000,
        runtime=24 * 60,
    params:
        train=TRAIN,
        state="results/model/_state",
    script:
        "../workflow_scripts/train.py"


rule evaluate:
    input:
        weights=rules.train.output.final,
        spec=rules.train.output.spec,
        test="results/yolo/test.txt",
        val="results/yolo/val.txt",
        test_voc=test_voc_dir,
        val_voc=val_voc_dir,
    output:
        metrics="results/eval/metrics.json",
        pr=report(
            "results/eval/pr_curve.png",
            category="Evaluation",
            caption="../report/pr_curve.rst",
        ),
        examples=report(
            directory("results/eval/examples"),
            patterns=["{name}.jpg"],
            category="Evaluation",
            subcategory="Validation images",
            caption="../report/examples.rst",
        ),
    log:
        "logs/evaluate.log",
    benchmark:
        "benchmarks/evaluate.tsv"
    conda:
        "../envs/train.yaml"
    params:
        **config["evaluate"],
        test_split=PLAN.test_split
        or f"{PLAN.val_split or PLAN.train_split} (test_fraction)",
        val_split=PLAN.val_split or f"{PLAN.train_split} (val_fraction)",
    script:
        "../workflow_scripts/evaluate.py"
