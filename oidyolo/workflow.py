"""What the workflow will do, derived from a validated config: resolved classes, splits, sources and paths.

The Snakemake rules read everything from a :class:`Plan`, so they hold no logic, and the same plan is unit-testable
without Snakemake (this module never imports it).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from oidyolo.data.catalog import ClassCatalog, Hierarchy, ResolvedClass, resolve_classes
from oidyolo.data.download import read_manifest
from oidyolo.data.sources import Remote
from oidyolo.data.versions import OPENIMAGES_IMAGES_URL, OPENIMAGES_METADATA_URL, Known, version_files
from oidyolo.errors import ConfigError

DEMO_DIR = "data/demo"
STORE = "data/images"


@dataclass(frozen=True)
class Plan:
    config: Mapping[str, Any]
    classes: tuple[ResolvedClass, ...]

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Plan:
        """Check what the schema cannot (class names, split combinations) and resolve the classes."""
        hierarchy = Hierarchy.shipped() if config.get("expand_hierarchy") else None
        classes = resolve_classes(config["classes"], ClassCatalog.shipped(), hierarchy)
        plan = cls(config, tuple(classes))
        files = version_files(plan.version)
        for split in plan.splits:
            files.boxes_path(split)
        if config.get("val_split") is None and config.get("val_fraction") is None:
            raise ConfigError("set val_split (an Open Images split) or val_fraction (a share of train_split)")
        if config.get("val_split") is not None and config.get("val_fraction") is not None:
            raise ConfigError("set either val_split or val_fraction, not both (val_split: null to use val_fraction)")
        if config.get("val_split") == plan.train_split:
            raise ConfigError(f"val_split and train_split are both {plan.train_split!r}; use val_fraction instead")
        test_split, test_fraction = config.get("test_split", "test"), config.get("test_fraction")
        if (test_split is None) == (test_fraction is None):
            raise ConfigError(
                "set test_split (an Open Images split) or test_fraction (a share of the validation images), one of "
                "them (test_split: null to use test_fraction)"
            )
        if test_split is not None and test_split in (plan.train_split, plan.val_split):
            raise ConfigError(
                f"test_split {test_split!r} is also the training or validation split; the reported mAP must come "
                "from held-out images: choose another split or test_split: null with test_fraction"
            )
        if plan.source == "mirror" and "mirror" not in config.get("sources", {}):
            raise ConfigError("source: mirror needs sources.mirror.metadata_url and sources.mirror.images_url")
        return plan

    # -- the config, named -------------------------------------------------------------------------------------
    @property
    def source(self) -> str:
        return self.config.get("source", "demo")

    @property
    def version(self) -> str:
        return self.config.get("version", "v6")

    @property
    def train_split(self) -> str:
        return self.config.get("train_split", "train")

    @property
    def val_split(self) -> str | None:
        return self.config.get("val_split", "validation")

    @property
    def test_split(self) -> str | None:
        return self.config.get("test_split", "test")

    @property
    def splits(self) -> list[str]:
        return [self.train_split] + [s for s in (self.val_split, self.test_split) if s]

    @property
    def slugs(self) -> list[str]:
        return [c.slug for c in self.classes]

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.classes]

    def cls(self, slug: str) -> ResolvedClass:
        for c in self.classes:
            if c.slug == slug:
                return c
        raise ConfigError(f"no configured class has the file name {slug!r}")

    def limit(self, split: str) -> int | None:
        limit = self.config.get("limit")
        return limit.get(split) if isinstance(limit, Mapping) else limit

    # -- sources -----------------------------------------------------------------------------------------------
    def _remote_config(self) -> Mapping[str, Any]:
        if self.source == "demo":
            return {
                "metadata_url": f"{DEMO_DIR}/openimages",
                "images_url": f"{DEMO_DIR}/open-images-dataset",
                "verify_checksums": False,
            }
        default = {"metadata_url": OPENIMAGES_METADATA_URL, "images_url": OPENIMAGES_IMAGES_URL}
        return self.config.get("sources", {}).get(self.source, default)

    @property
    def metadata_remote(self) -> Remote:
        rc = self._remote_config()
        return Remote(rc["metadata_url"], dict(rc.get("metadata_options") or {}))

    @property
    def images_remote(self) -> Remote:
        rc = self._remote_config()
        return Remote(rc["images_url"], dict(rc.get("images_options") or {}))

    def known(self, relpath: str) -> Known:
        if not self._remote_config().get("verify_checksums", True):
            return Known()
        return version_files(self.version).known_for(relpath)

    # -- training ------------------------------------------------------------------------------------------------
    def train_settings(self) -> dict[str, Any]:
        """The ``train:`` section as :class:`oidyolo.yolo.train.TrainConfig` takes it (sizes as [height, width])."""
        raw = dict(self.config.get("train", {}))
        raw.pop("anchors", None)
        raw.pop("darknet_weights", None)
        size = raw.get("input_size", 416)
        raw["input_size"] = [size, size] if isinstance(size, int) else list(size)
        raw["seed"] = self.config.get("seed", 42)
        return raw

    # -- paths ---------------------------------------------------------------------------------------------------
    @property
    def metadata_dir(self) -> str:
        return f"data/metadata/{self.source}/{self.version}"

    def relpath(self, what: str, split: str | None = None) -> str:
        files = version_files(self.version)
        if what == "classes":
            return files.classes
        if what == "hierarchy":
            return files.hierarchy
        return files.boxes_path(split or "")

    def manifest(self, split: str, slug: str) -> str:
        return f"results/images/{split}/{slug}.tsv"

    def stale_manifests(self, root: str | Path = ".") -> dict[str, list[str]]:
        """Existing manifests that list stored images which are no longer in the store, with the missing IDs.

        Snakemake does not rerun a finished job because a file it wrote outside its declared outputs vanished, so
        the workflow asks for these manifests' download jobs to be rerun (they fetch only what is missing).
        """
        stale: dict[str, list[str]] = {}
        for split in self.splits:
            # One directory listing per split, not a stat per image: this runs on every Snakemake invocation.
            store = Path(root) / STORE / split
            present = set(os.listdir(store)) if store.is_dir() else set()
            for slug in self.slugs:
                path = Path(root) / self.manifest(split, slug)
                if not path.is_file():
                    continue
                try:
                    entries = read_manifest(path)
                except OSError:
                    continue
                gone = [e.image_id for e in entries if e.ok and not _present(Path(e.path), store, present, root)]
                if gone:
                    stale[self.manifest(split, slug)] = gone
        return stale


def _present(path: Path, store: Path, listing: set[str], root: str | Path) -> bool:
    """Is the image still there? Checked against the store's listing; paths elsewhere are stat'ed."""
    if Path(root) / path.parent == store:
        return path.name in listing
    return (Path(root) / path).exists()
