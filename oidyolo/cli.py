"""``python -m oidyolo``: every workflow step from the command line (a thin face over the package).

Data commands never import TensorFlow; training commands import it only when run.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from oidyolo.errors import OidyoloError


def _cmd_classes(args: argparse.Namespace) -> int:
    from oidyolo.data.catalog import ClassCatalog, Hierarchy

    catalog = ClassCatalog.from_file(args.catalog) if args.catalog else ClassCatalog.shipped()
    hierarchy = Hierarchy.from_file(args.hierarchy) if args.hierarchy else Hierarchy.shipped()
    hits = catalog.search(args.query)
    if not hits:
        catalog.mid(args.query)  # raises with "Did you mean"
    for name in hits:
        mid = catalog.mid(name)
        subs = [catalog.name(m) for m in hierarchy.descendants(mid)]
        line = f"{name}\t{mid}"
        if subs:
            line += f"\tsubclasses: {', '.join(subs)}"
        print(line)
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from oidyolo.data.demo import DemoSpec, generate_demo

    spec = DemoSpec(
        version=args.version,
        seed=args.seed,
        images={"train": args.train, "validation": args.validation, "test": args.test},
        missing={"train": args.missing},
    )
    print(generate_demo(Path(args.out), spec).to_json())
    return 0


def _remote(url: str, options: str | None):
    from oidyolo.data.sources import Remote

    return Remote(url, json.loads(options) if options else {})


def _cmd_fetch(args: argparse.Namespace) -> int:
    from oidyolo.data.sources import fetch_file
    from oidyolo.data.versions import Known, version_files

    files = version_files(args.version)
    relpaths = {"classes": files.classes, "hierarchy": files.hierarchy}
    for split in args.split:
        relpaths[split] = files.boxes_path(split)
    remote = _remote(args.url, args.options)
    for name, relpath in relpaths.items():
        known = files.known_for(relpath) if args.verify else Known()
        dest = Path(args.out) / Path(relpath).name
        result = fetch_file(remote, relpath, dest, known=known, timeout=args.timeout, retries=args.retries)
        print(f"{name}\t{result.path}\t{result.size}\t{result.md5}")
    return 0


def _parse_filters(items: Sequence[str]) -> dict[str, list[int]]:
    from oidyolo.errors import ConfigError

    filters: dict[str, list[int]] = {}
    for item in items:
        key, sep, values = item.partition("=")
        try:
            if not sep:
                raise ValueError
            filters[key] = [int(v) for v in values.split(",")]
        except ValueError:
            raise ConfigError(f"--filter {item!r}: use ATTRIBUTE=VALUES, e.g. IsGroupOf=0 or IsOccluded=0,-1") from None
    return filters


def _cmd_select(args: argparse.Namespace) -> int:
    from oidyolo.data.catalog import ClassCatalog, Hierarchy, resolve_classes
    from oidyolo.data.select import extract_class, select_class

    hierarchy = Hierarchy.shipped() if args.expand_hierarchy else None
    (cls,) = resolve_classes([args.cls], ClassCatalog.shipped(), hierarchy)
    filters, out = _parse_filters(args.filter), Path(args.out)  # a bad filter fails before any work
    if args.index and not Path(args.index).exists():
        from oidyolo.data.boxes import build_index

        print(f"indexing {args.csv} into {args.index} (once: later selections read only their rows)", file=sys.stderr)
        build_index(args.csv, args.index)
    out.parent.mkdir(parents=True, exist_ok=True)
    # a big class goes to a parquet beside the output once it outgrows the memory budget, and is selected from it
    with tempfile.TemporaryDirectory(prefix=f".{out.name}.", dir=out.parent) as spill:
        boxes = extract_class(
            args.csv, cls.mids, None, strict=args.strict, label=cls.name, index=args.index, spill_dir=spill
        )
        select_class(boxes, out, name=cls.name, filters=filters, limit=args.limit, seed=args.seed)
    return 0


def _cmd_download(args: argparse.Namespace) -> int:
    from oidyolo.data.download import DownloadConfig, check_missing, download_images, write_manifest
    from oidyolo.data.select import read_selection

    ids = read_selection(args.selection)["ImageID"].to_pylist()
    config = DownloadConfig(
        workers=args.workers, retries=args.retries, max_missing_fraction=args.max_missing, timeout=args.timeout
    )
    remote = _remote(args.url, args.options)
    entries = download_images(ids, split=args.split, remote=remote, store=args.store, config=config)
    write_manifest(entries, args.manifest)
    print(check_missing(entries, args.max_missing, label=args.split))
    return 0


def _cmd_anchors(args: argparse.Namespace) -> int:
    from oidyolo.data.anchors import anchors_from_annotations, write_anchors

    size = (args.input_size, args.input_size)
    anchors, iou = anchors_from_annotations(args.annotations, size, k=args.k, seed=args.seed)
    write_anchors(args.out, anchors)
    print(f"{args.k} anchors for input {args.input_size}: mean IoU {iou:.3f} -> {args.out}")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    import yaml

    from oidyolo.yolo.train import TrainConfig, TrainInputs, train

    raw: dict = {}
    if args.config:
        raw = dict((yaml.safe_load(Path(args.config).read_text()) or {}).get("train", {}))
        raw.pop("anchors", None)
        raw.pop("darknet_weights", None)
    for key in ("variant", "input_size", "epochs", "batch_size", "learning_rate", "steps_per_epoch"):
        value = getattr(args, key)
        if value is not None:
            raw[key] = value
    cfg = TrainConfig.from_dict(raw)
    d = Path(args.data)
    inputs = TrainInputs(d / "train.txt", d / "val.txt", d / "classes.txt", Path(args.anchors or d / "anchors.txt"))
    inputs.pretrained = Path(args.pretrained) if args.pretrained else None
    train(inputs, args.out, cfg)
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from oidyolo.yolo.evaluate import evaluate

    metrics = evaluate(args.weights, args.val, args.out, voc_dir=args.voc)
    print(json.dumps({k: metrics[k] for k in ("mAP50", "mAP50_95", "per_class_AP50")}, indent=2))
    return 0


def _cmd_detect(args: argparse.Namespace) -> int:
    from oidyolo.yolo.predict import detect, detect_video, draw, image_files, is_video, load_detector

    body, spec = load_detector(args.weights, variant=args.variant)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    nms = dict(score_threshold=args.score, iou_threshold=args.iou)
    if is_video(args.images):
        stem = Path(args.images).stem
        video, lines = out / f"{stem}.detections{Path(args.images).suffix}", out / f"{stem}.detections.jsonl"
        frames = detect_video(body, spec, args.images, video, lines, **nms)
        print(f"{args.images}: {frames} frames -> {video}, {lines}")
        return 0
    results = []
    for dets in detect(body, spec, image_files(args.images), **nms):
        draw(dets.path, dets, spec.classes, out / f"{Path(dets.path).stem}.jpg")
        results.append(dets.to_json(spec.classes))
        print(f"{dets.path}: {len(dets.scores)} detections")
    (out / "detections.json").write_text(json.dumps(results, indent=2) + "\n")
    return 0


def _cmd_convert(args: argparse.Namespace) -> int:
    from oidyolo.data.yolo_format import read_classes
    from oidyolo.yolo.darknet import convert_darknet, convert_with_spec, guess_variant, shipped_cfg

    cfg = args.cfg or shipped_cfg(args.variant or guess_variant(args.weights))
    names = read_classes(args.names) if args.names else None
    if args.start_only:  # a (possibly partial) start for training: no model.json
        loaded = convert_darknet(cfg, args.weights, args.out)
    else:
        loaded, _ = convert_with_spec(cfg, args.weights, args.out, names)
    print(f"converted {args.weights} ({loaded.summary()}) -> {args.out}")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from oidyolo.yolo.export import export

    out = export(
        args.weights, args.format, args.out, variant=args.variant, score=args.score, iou=args.iou,
        max_detections=args.max_detections, quantize=args.quantize,
    )  # fmt: skip
    print(f"exported {args.weights} as {args.format} -> {out}")
    return 0


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value <= 3600:  # also refuses nan
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds between 0 and 3600")
    return value


def _retries(text: str) -> int:
    """``--retries``: 0..20, as ``download.retries`` in the schema."""
    if not text.strip().isdigit() or int(text) > 20:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of retries between 0 and 20")
    return int(text)


class _Help(argparse.HelpFormatter):
    """Each option's default after its help, where it has one and the help does not already say it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        unset = action.default is None or action.default is False or action.default == []  # not 0: a real default
        if not unset and action.default is not argparse.SUPPRESS and "default" not in text:
            text += " (default: %(default)s)"
        return text


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m oidyolo", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(
        dest="command", required=True, parser_class=functools.partial(argparse.ArgumentParser, formatter_class=_Help)
    )

    p = sub.add_parser("classes", help="list class names matching TEXT, with their MIDs and subclasses")
    p.add_argument("query", metavar="TEXT", help="part of a class name, any case (e.g. 'fruit')")
    p.add_argument("--catalog", help="a class-descriptions CSV (default: the shipped Open Images one)")
    p.add_argument("--hierarchy", help="a hierarchy JSON (default: the shipped one)")
    p.set_defaults(func=_cmd_classes)

    p = sub.add_parser("demo", help="generate the offline demo source in Open Images' layout")
    p.add_argument("out", help="folder to write the source into (metadata CSVs and images, as the real bucket)")
    p.add_argument("--version", default="v6", help="the Open Images layout to imitate: v4, v5, v6 or v7")
    p.add_argument("--seed", type=int, default=0, help="seed of the generated images and boxes")
    p.add_argument("--train", type=int, default=300, help="images in the train split")
    p.add_argument("--validation", type=int, default=80, help="images in the validation split")
    p.add_argument("--test", type=int, default=0, help="images in the test split")
    p.add_argument("--missing", type=int, default=2, help="train images listed in the CSV but absent from the bucket")
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("fetch", help="fetch class descriptions, hierarchy and bbox CSVs (resumable, checked)")
    p.add_argument("--url", default="https://storage.googleapis.com/openimages", help="metadata base URL or dir")
    p.add_argument("--options", help="fsspec storage options as JSON")
    p.add_argument("--version", default="v6", help="Open Images version: v4, v5, v6 or v7")
    p.add_argument("--split", action="append", default=[], help="train, validation or test (repeatable)")
    p.add_argument("--no-verify", dest="verify", action="store_false", help="skip published size/md5 checks")
    p.add_argument("--timeout", type=_seconds, default=60.0, help="seconds a request may stall before a retry")
    p.add_argument("--retries", type=_retries, default=5, help="retries per request (each one try of --timeout)")
    p.add_argument("--out", required=True, help="folder for the fetched files (kept: a rerun resumes or skips)")
    p.set_defaults(func=_cmd_fetch)

    p = sub.add_parser("select", help="stream a bbox CSV into one class's CSV (filters, seeded limit)")
    p.add_argument("csv", help="a split's bbox CSV (any of the v4-v7 layouts: columns are read by name)")
    p.add_argument("--class", dest="cls", required=True, help="the class name, any case ('apple'); see `classes`")
    p.add_argument("--expand-hierarchy", action="store_true", help="also take the boxes of its subclasses")
    p.add_argument(
        "--filter",
        action="append",
        default=[],
        metavar="ATTR=V[,V]",
        help="keep only images whose boxes of the class all have ATTR (IsOccluded, IsTruncated, IsGroupOf, "
        "IsDepiction, IsInside) in the values (1, 0, -1 = unknown); repeatable",
    )
    p.add_argument("--limit", type=int, help="at most this many images, chosen by a seeded hash (default: all)")
    p.add_argument(
        "--seed", type=int, default=42, help="the limit's seed (a higher --limit keeps the images chosen before)"
    )
    p.add_argument("--strict", action="store_true", help="fail on a malformed row instead of skipping it")
    p.add_argument(
        "--index",
        metavar="DIR",
        help="the CSV's LabelName index (built here on first use, one pass): each later select of any class from "
        "the same CSV reads only that class's rows",
    )
    p.add_argument("--out", required=True, help="the class CSV to write")
    p.set_defaults(func=_cmd_select)

    p = sub.add_parser("download", help="download the images of a class CSV into the shared store")
    p.add_argument("selection", help="a class CSV (from `select`)")
    p.add_argument("--split", required=True, help="the split the images are in: train, validation or test")
    p.add_argument("--url", default="s3://open-images-dataset", help="images base URL or dir")
    p.add_argument("--options", help='fsspec storage options as JSON, e.g. \'{"endpoint_url": "http://..."}\'')
    p.add_argument("--store", default="data/images", help="the shared image store (an image of two classes once)")
    p.add_argument("--manifest", required=True, help="TSV to write: each image, its path, size and status")
    p.add_argument("--workers", type=int, default=32, help="concurrent downloads")
    p.add_argument("--retries", type=_retries, default=5, help="retries per request (each one try of --timeout)")
    p.add_argument("--max-missing", type=float, default=0.05, help="fail if a larger fraction of images is missing")
    p.add_argument("--timeout", type=_seconds, default=60.0, help="seconds a request may stall before a retry")
    p.set_defaults(func=_cmd_download)

    p = sub.add_parser("anchors", help="k-means anchors for an annotation file, in the input frame")
    p.add_argument("annotations", help="a keras-yolo3 annotation file (path x1,y1,x2,y2,class ...)")
    p.add_argument("--k", type=int, default=9, help="9 for YOLOv3, 6 for tiny")
    p.add_argument("--input-size", type=int, default=416, help="the network's input size the anchors are for")
    p.add_argument("--seed", type=int, default=0, help="seed of the k-means start")
    p.add_argument("--out", required=True, help="anchors file to write (keras-yolo3's one line)")
    p.set_defaults(func=_cmd_anchors)

    p = sub.add_parser("train", help="train YOLOv3 on DATA/{train,val,classes,anchors}.txt (two stages, resumable)")
    p.add_argument("--data", default="results/yolo", help="folder with train.txt, val.txt, classes.txt")
    p.add_argument("--anchors", help="anchors file (default DATA/anchors.txt)")
    p.add_argument("--config", help="a config.yaml whose train: section to use")

    # The defaults are TrainConfig's, which --config's train: section and these options override.
    def over(default: str) -> str:
        return f" (overrides --config; default without either: {default})"

    p.add_argument("--variant", choices=["full", "tiny"], help="YOLOv3 or YOLOv3-tiny" + over("tiny"))
    p.add_argument("--input-size", type=int, help="input side in pixels, a multiple of 32" + over("416"))
    stages = {"type": int, "nargs": 2, "metavar": ("STAGE1", "STAGE2")}
    p.add_argument("--epochs", **stages, help="epochs of each stage" + over("50 50"))
    p.add_argument("--batch-size", **stages, help="batch size of each stage" + over("32 8"))
    p.add_argument("--learning-rate", **stages | {"type": float}, help="of each stage" + over("0.001 0.0001"))
    p.add_argument("--steps-per-epoch", type=int, help="cap on batches per epoch (default: the whole set)")
    p.add_argument("--pretrained", help="a converted darknet start (convert-darknet output)")
    p.add_argument("--out", default="results/model", help="folder for weights, model.json, logs and checkpoints")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("evaluate", help="mAP (COCO, pycocotools), PR curves and examples on an annotation file")
    p.add_argument("--weights", required=True, help="a .weights.h5 with model.json beside it")
    p.add_argument("--val", default="results/yolo/val.txt", help="annotation file to evaluate on (keep it held out)")
    p.add_argument("--voc", help="VOC folder: group-of/difficult boxes there are ignore regions")
    p.add_argument("--out", default="results/eval", help="folder for metrics.json, PR curves and examples")
    p.set_defaults(func=_cmd_evaluate)

    weights_help = "a .weights.h5 with model.json beside it, a darknet .weights file or an exported .keras"
    p = sub.add_parser("detect", help="detect objects in an image, a folder or a video: JSON plus drawn boxes")
    p.add_argument("images", metavar="IMAGE_DIR_OR_VIDEO", help="a .jpg/.png, a folder of them, or a .mp4/.avi")
    p.add_argument("--weights", required=True, help=weights_help)
    p.add_argument("--variant", choices=["full", "tiny"], help="of a darknet .weights file (default: from its size)")
    p.add_argument("--out", required=True, help="folder for detections.json and the drawn images (or video)")
    p.add_argument("--score", type=float, default=0.3, help="score threshold")
    p.add_argument("--iou", type=float, default=0.45, help="NMS IoU threshold")
    p.set_defaults(func=_cmd_detect)

    p = sub.add_parser("convert-darknet", help="convert darknet .weights into a Keras 3 .weights.h5 + model.json")
    p.add_argument("weights", help="a darknet .weights file (e.g. yolov3.weights or yolov3-tiny.weights)")
    p.add_argument("--variant", choices=["full", "tiny"], help="default: from the file's size")
    p.add_argument("--cfg", help="darknet .cfg (default: the shipped yolov3 / yolov3-tiny cfg)")
    p.add_argument("--names", help="class names, one per line (default: the 80 COCO names)")
    p.add_argument("--start-only", action="store_true", help="a training start (partial files too): no model.json")
    p.add_argument("--out", required=True, help="the .weights.h5 to write (and model.json beside it)")
    p.set_defaults(func=_cmd_convert)

    p = sub.add_parser("export", help="export a detector as .keras, TensorFlow SavedModel or TFLite")
    p.add_argument("--weights", required=True, help=weights_help)
    p.add_argument("--variant", choices=["full", "tiny"], help="of a darknet .weights file (default: from its size)")
    p.add_argument("--format", required=True, choices=["keras", "saved_model", "tflite"], help="what to export")
    p.add_argument("--out", required=True, help="a .keras file, a SavedModel folder or a .tflite file")
    p.add_argument("--score", type=float, default=0.3, help="score threshold inside the graph")
    p.add_argument("--iou", type=float, default=0.45, help="NMS IoU threshold inside the graph")
    p.add_argument("--max-detections", type=int, default=100, help="detections kept per image")
    p.add_argument("--quantize", choices=["float16"], help="TFLite only: float16 weights")
    p.set_defaults(func=_cmd_export)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ start-up chatter, for commands that load it
    try:
        return args.func(args)
    except OidyoloError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
