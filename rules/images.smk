# Stage 3: images. Every class's images go into one shared store (data/images/{split}/{ImageID}.jpg), so an image
# selected by two classes is downloaded once; the per-class manifest records where each image is and its size.


localrules:
    download_images,


rule download_images:
    input:
        "results/select/{split}/{cls}.csv",
    output:
        "results/images/{split}/{cls}.tsv",
    log:
        "logs/download_images/{split}/{cls}.log",
    benchmark:
        "benchmarks/download_images/{split}/{cls}.tsv"
    conda:
        "../envs/data.yaml"
    params:
        url=PLAN.images_remote.url,
        options=PLAN.images_remote.options,
        store=STORE,
        label=lambda wc: f"{wc.split}/{PLAN.cls(wc.cls).name}",
        workers=config["download"]["workers"],
        retries=config["download"]["retries"],
        max_missing_fraction=config["download"]["max_missing_fraction"],
        timeout=config["download"]["timeout"],
    script:
        "../workflow_scripts/download_images.py"
