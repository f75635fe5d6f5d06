# The figures `snakemake --report report.html` renders: dataset statistics, loss curves, per-class AP.


rule dataset_report:
    input:
        train="results/yolo/train.txt",
        val="results/yolo/val.txt",
        classes="results/yolo/classes.txt",
    output:
        tsv="results/report/dataset.tsv",
        png=report(
            "results/report/dataset.png",
            category="Dataset",
            caption="../report/dataset.rst",
        ),
    log:
        "logs/dataset_report.log",
    benchmark:
        "benchmarks/dataset_report.tsv"
    conda:
        "../envs/report.yaml"
    script:
        "../workflow_scripts/dataset_report.py"


rule training_report:
    input:
        history=rules.train.output.history,
        metrics=rules.evaluate.output.metrics,
    output:
        loss=report(
            "results/report/loss.png",
            category="Training",
            caption="../report/loss.rst",
        ),
        ap=report(
            "results/report/ap.png",
            category="Evaluation",
            caption="../report/ap.rst",
        ),
    log:
        "logs/training_report.log",
    benchmark:
        "benchmarks/training_report.tsv"
    conda:
        "../envs/report.yaml"
    script:
        "../workflow_scripts/training_report.py"
