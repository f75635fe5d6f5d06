"""Where each Open Images version keeps its box metadata, relative to the metadata base URL.

The base is ``https://storage.googleapis.com/openimages`` for the real dataset; a mirror or the demo source
holds the same relative paths under a local directory. Images live apart, under ``{images_url}/{split}/{ImageID}.jpg``
(the public bucket ``s3://open-images-dataset``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from oidyolo.errors import ConfigError

SPLITS = ("train", "validation", "test")
VERSIONS = ("v4", "v5", "v6", "v7")

OPENIMAGES_METADATA_URL = "https://storage.googleapis.com/openimages"
OPENIMAGES_IMAGES_URL = "s3://open-images-dataset"
OPENIMAGES_IMAGES_HTTPS_URL = "https://open-images-dataset.s3.amazonaws.com"

_HIERARCHY = "2018_04/bbox_labels_600_hierarchy.json"


@dataclass(frozen=True)
class Known:
    """Official byte count and md5 of a file, where published (``None`` where not)."""

    size: int | None = None
    md5: str | None = None


@dataclass(frozen=True)
class VersionFiles:
    version: str
    classes: str
    hierarchy: str
    boxes: dict[str, str]
    known: dict[str, Known] = field(default_factory=dict)

    def boxes_path(self, split: str) -> str:
        try:
            return self.boxes[split]
        except KeyError:
            raise ConfigError(
                f"Open Images {self.version} has no split {split!r}; choose one of {', '.join(self.boxes)}"
            ) from None

    def known_for(self, relpath: str) -> Known:
        return self.known.get(relpath, Known())


# Sizes and md5s of the official files: the v5/v6 ones from the git-annex keys of datasets-mila/datasets--open_images
# (MD5E-s{size}--{md5} symlink targets), the 2018_04 (v4, and v5's train) ones as published with the files and
# collected in issue 11 (no md5 is published for the 2018_04 validation and test files: their size is checked).
_KNOWN = {
    "v5/class-descriptions-boxable.csv": Known(12_011, "9846fd22fd2e68b45e3f3810a4c2a32a"),
    "v6/oidv6-train-annotations-bbox.csv": Known(2_258_447_590, "3c3e70cfaba5757ea5c2604b19cac3b2"),
    "v5/validation-annotations-bbox.csv": Known(25_105_048, "c5e8200df129ea6867e913e8b21fcab9"),
    "v5/test-annotations-bbox.csv": Known(77_484_237, "1cc058a7003b4e73d47642276e9b123b"),
    "2018_04/train/train-annotations-bbox.csv": Known(1_194_033_454, "dc89115275ad6d0c771bd6590aa71ac3"),
    "2018_04/validation/validation-annotations-bbox.csv": Known(17_074_036),
    "2018_04/test/test-annotations-bbox.csv": Known(52_174_204),
}

_V5_EVAL = {"validation": "v5/validation-annotations-bbox.csv", "test": "v5/test-annotations-bbox.csv"}

_FILES = {
    "v4": VersionFiles(
        "v4",
        classes="2018_04/class-descriptions-boxable.csv",
        hierarchy=_HIERARCHY,
        boxes={s: f"2018_04/{s}/{s}-annotations-bbox.csv" for s in SPLITS},
    ),
    "v5": VersionFiles(
        "v5",
        classes="v5/class-descriptions-boxable.csv",
        hierarchy=_HIERARCHY,
        boxes={"train": "2018_04/train/train-annotations-bbox.csv", **_V5_EVAL},
    ),
    "v6": VersionFiles(
        "v6",
        classes="v5/class-descriptions-boxable.csv",
        hierarchy=_HIERARCHY,
        boxes={"train": "v6/oidv6-train-annotations-bbox.csv", **_V5_EVAL},
    ),
    # v7 added point labels; its boxes and boxable classes are v6's. FiftyOne's v7 loader reads the classes from
    # v5/class-descriptions-boxable.csv (voxel51/fiftyone fiftyone/utils/openimages.py, _ANNOTATION_DOWNLOAD_URLS),
    # a file with a published md5; a re-export with a `LabelName,DisplayName` header parses too (catalog.py).
    "v7": VersionFiles(
        "v7",
        classes="v5/class-descriptions-boxable.csv",
        hierarchy=_HIERARCHY,
        boxes={"train": "v6/oidv6-train-annotations-bbox.csv", **_V5_EVAL},
    ),
}


def version_files(version: str) -> VersionFiles:
    """The file layout of an Open Images version (``v4`` .. ``v7``)."""
    try:
        vf = _FILES[version]
    except KeyError:
        raise ConfigError(f"unknown Open Images version {version!r}; choose one of {', '.join(VERSIONS)}") from None
    return VersionFiles(vf.version, vf.classes, vf.hierarchy, vf.boxes, _KNOWN)
