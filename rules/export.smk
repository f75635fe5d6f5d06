# Export of the trained detector (not in the default target): `snakemake --cores 2 export`.


rule export:
    input:
        weights=rules.train.output.final,
        spec=rules.train.output.spec,
    output:
        keras="results/export/model.keras",
        saved_model=directory("results/export/saved_model"),
        tflite="results/export/model.tflite",
        tflite16="results/export/model_float16.tflite",
    log:
        "logs/export.log",
    benchmark:
        "benchmarks/export.tsv"
    conda:
        "../envs/train.yaml"
    params:
        **config["export"],
    script:
        "../workflow_scripts/export.py"
