"""What the demo holds: its classes and CSV columns, the spec, the summary, and the plan of each split's images."""

from __future__ import annotations

import hashlib
import json
import zlib
from dataclasses import asdict, dataclass, field

import numpy as np

from oidyolo.data.versions import SPLITS, VERSIONS
from oidyolo.errors import ConfigError

# The classes the demo trains on; the summary's multi-class count refers to these.
TARGET_CLASSES = ("Apple", "Orange", "Banana")
# A few more fruit, so a hierarchy query for "Fruit" finds several subclasses.
EXTRA_FRUIT = ("Lemon", "Strawberry")
# Boxed non-fruit objects, so the CSV holds other classes as real files do.
DISTRACTORS = ("Ball", "Coffee cup")
ALL_CLASSES = TARGET_CLASSES + EXTRA_FRUIT + DISTRACTORS

BOX_COLUMNS = [
    *("ImageID", "Source", "LabelName", "Confidence", "XMin", "XMax", "YMin", "YMax"),
    *("IsOccluded", "IsTruncated", "IsGroupOf", "IsDepiction", "IsInside"),
]
XCLICK_COLUMNS = [f"XClick{i}{axis}" for axis in "XY" for i in range(1, 5)]

METADATA_DIR = "openimages"  # stands for https://storage.googleapis.com/openimages
IMAGES_DIR = "open-images-dataset"  # stands for s3://open-images-dataset

_SPECIAL_MODES_MIN_IMAGES = 40  # splits this large get two grayscale and one CMYK JPEG


@dataclass(frozen=True)
class DemoSpec:
    """What to generate. The defaults make the workflow's demo source (300 train, 80 validation, 80 test images)."""

    version: str = "v6"
    seed: int = 0
    images: dict[str, int] = field(default_factory=lambda: {"train": 300, "validation": 80, "test": 80})
    min_side: int = 256
    max_side: int = 512
    # Rows whose image is not written to the bucket (real Open Images lists a few such images).
    missing: dict[str, int] = field(default_factory=lambda: {"train": 2})
    quality: int = 90

    def __post_init__(self) -> None:
        if self.version not in VERSIONS:
            raise ConfigError(f"unknown Open Images version {self.version!r}; choose one of {', '.join(VERSIONS)}")
        if self.seed < 0:
            raise ConfigError(f"demo seed must be >= 0, got {self.seed}")
        for name, counts in (("images", self.images), ("missing", self.missing)):
            for split, n in counts.items():
                if split not in SPLITS:
                    raise ConfigError(f"demo {name}: unknown split {split!r}; choose from {', '.join(SPLITS)}")
                if n < 0:
                    raise ConfigError(f"demo {name}[{split!r}] must be >= 0, got {n}")
        for split, n in self.missing.items():
            if n > self.images.get(split, 0):
                raise ConfigError(f"demo missing[{split!r}]={n} exceeds the split's {self.images.get(split, 0)} images")
        if not 64 <= self.min_side <= self.max_side:
            raise ConfigError(f"demo sides need 64 <= min_side <= max_side, got {self.min_side}, {self.max_side}")
        if not 1 <= self.quality <= 100:
            raise ConfigError(f"demo JPEG quality must be in 1..100, got {self.quality}")

    def count(self, split: str) -> int:
        return self.images.get(split, 0)


@dataclass
class SplitSummary:
    images: int = 0  # rows' images, written or not
    written: int = 0
    boxes: dict[str, int] = field(default_factory=dict)  # per class display name
    multi_class_images: int = 0  # images holding 2+ of TARGET_CLASSES
    truncated: int = 0
    occluded: int = 0
    group_of: int = 0
    depiction: int = 0
    unknown_attributes: int = 0  # rows with -1 attributes
    missing_ids: list[str] = field(default_factory=list)
    grayscale_ids: list[str] = field(default_factory=list)
    cmyk_ids: list[str] = field(default_factory=list)


@dataclass
class DemoSummary:
    version: str
    seed: int
    splits: dict[str, SplitSummary] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"


# ----------------------------------------------------------------------------------------------------------------------
# Planning: IDs, sizes, which images are missing, grayscale or CMYK.


@dataclass(frozen=True)
class ImagePlan:
    split: str
    index: int
    image_id: str
    mode: str  # "RGB", "L" or "CMYK": the mode of the written JPEG
    missing: bool  # listed in the CSV but not written to the bucket


def split_code(split: str) -> int:
    return zlib.crc32(split.encode())


def _image_ids(spec: DemoSpec) -> dict[str, list[str]]:
    """16 hex characters per image from (seed, split, index); a (never yet seen) collision is re-hashed with a salt."""
    seen: set[str] = set()
    ids: dict[str, list[str]] = {}
    for split in SPLITS:
        ids[split] = []
        for index in range(spec.count(split)):
            salt = 0
            while True:
                key = f"oidyolo-demo:{spec.seed}:{split}:{index}:{salt}".encode()
                image_id = hashlib.blake2b(key, digest_size=8).hexdigest()
                if image_id not in seen:
                    break
                salt += 1
            seen.add(image_id)
            ids[split].append(image_id)
    return ids


def plan_images(spec: DemoSpec, split: str) -> list[ImagePlan]:
    """The images of one split, in index order."""
    n = spec.count(split)
    ids = _image_ids(spec)[split]
    rng = np.random.default_rng((spec.seed, split_code(split), 0xD3A0))
    missing = {int(i) for i in rng.choice(n, size=spec.missing.get(split, 0), replace=False)} if n else set()
    modes = ["RGB"] * n
    if n >= _SPECIAL_MODES_MIN_IMAGES:
        present = [i for i in range(n) if i not in missing]
        special = rng.choice(present, size=3, replace=False)
        modes[int(special[0])] = modes[int(special[1])] = "L"
        modes[int(special[2])] = "CMYK"
    return [ImagePlan(split, i, ids[i], modes[i], i in missing) for i in range(n)]
