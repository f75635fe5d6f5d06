"""The class catalogue (MID <-> display name) and the class hierarchy of Open Images.

Names resolve case-insensitively; a typo fails with the closest names. The shipped copies of the official files
(``oidyolo/resources``) make resolution work before anything is downloaded.
"""

from __future__ import annotations

import csv
import difflib
import io
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache, cached_property
from importlib import resources
from pathlib import Path

from oidyolo.errors import DataFormatError, UnknownClassError

_MID = re.compile(r"^/[mg]/[0-9a-z_]+$")


def resource_path(name: str) -> Path:
    """Path of a file shipped in ``oidyolo/resources`` (the one place reference data is read from)."""
    return Path(str(resources.files("oidyolo") / "resources" / name))


def slugify(name: str) -> str:
    """A file-name-safe, wildcard-safe form of a display name: ``Kitchen & dining room table`` ->
    ``Kitchen_and_dining_room_table``."""
    slug = re.sub(r"[^0-9A-Za-z]+", "_", name.replace("&", " and ")).strip("_")
    if not slug:
        raise UnknownClassError(f"class name {name!r} has no letters or digits")
    return slug


@dataclass(frozen=True)
class ClassCatalog:
    """Display names by MID, in file order."""

    names: dict[str, str]  # MID -> display name

    @classmethod
    def from_text(cls, text: str, *, where: str = "class descriptions") -> ClassCatalog:
        # v4/v5 files have no header; v7 (and some re-exports) start with `LabelName,DisplayName`.
        names: dict[str, str] = {}
        for n, row in enumerate(csv.reader(io.StringIO(text)), 1):
            if not row or not any(field.strip() for field in row):
                continue
            if len(row) != 2:
                raise DataFormatError(f"{where}:{n}: expected `MID,DisplayName`, got {len(row)} fields")
            mid, name = row[0].strip(), row[1].strip()
            if not _MID.match(mid):
                if n == 1:
                    continue  # header row
                raise DataFormatError(f"{where}:{n}: {mid!r} is not an Open Images MID like /m/014j1m")
            names[mid] = name
        if not names:
            raise DataFormatError(f"{where}: no classes")
        return cls(names)

    @classmethod
    def from_file(cls, path: str | Path) -> ClassCatalog:
        try:
            text = Path(path).read_text(encoding="utf-8-sig")
        except UnicodeDecodeError as err:
            raise DataFormatError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
        return cls.from_text(text, where=str(path))

    @classmethod
    def shipped(cls) -> ClassCatalog:
        return _shipped_catalog()

    @cached_property
    def _by_lower(self) -> dict[str, str]:
        return {name.casefold(): mid for mid, name in self.names.items()}

    def mid(self, name: str) -> str:
        """The MID of a display name, case-insensitively; an unknown name raises with suggestions."""
        by_lower = self._by_lower
        key = " ".join(name.split()).casefold()
        if key in by_lower:
            return by_lower[key]
        if _MID.match(name.strip()) and name.strip() in self.names:
            return name.strip()
        close = difflib.get_close_matches(key, by_lower, n=5, cutoff=0.6)
        close += [k for k in by_lower if key and key in k and k not in close][: 5 - len(close)]
        hint = f" Did you mean: {', '.join(self.names[by_lower[c]] for c in close)}?" if close else ""
        raise UnknownClassError(
            f"unknown Open Images class {name!r}.{hint} (`python -m oidyolo classes TEXT` searches the names)"
        )

    def name(self, mid: str) -> str:
        return self.names.get(mid, mid)

    def canonical(self, name: str) -> str:
        """The display name as spelled in the catalogue."""
        return self.names[self.mid(name)]

    def search(self, query: str) -> list[str]:
        """Display names containing ``query`` (case-insensitive), best matches first."""
        q = query.casefold().strip()
        hits = [n for n in self.names.values() if q in n.casefold()]
        hits.sort(key=lambda n: (n.casefold() != q, not n.casefold().startswith(q), n.casefold()))
        return hits


@dataclass(frozen=True)
class Hierarchy:
    """Subcategory edges of ``bbox_labels_600_hierarchy.json`` (``Part`` edges are not "is a" and are ignored)."""

    children: dict[str, tuple[str, ...]]  # MID -> direct subcategory MIDs

    @classmethod
    def from_json(cls, data: dict, *, where: str = "hierarchy") -> Hierarchy:
        children: dict[str, list[str]] = {}

        def walk(node: dict) -> None:
            if not isinstance(node, dict) or "LabelName" not in node:
                raise DataFormatError(f"{where}: a node lacks `LabelName`")
            kids = node.get("Subcategory", [])
            bucket = children.setdefault(node["LabelName"], [])
            for kid in kids:
                walk(kid)
                if kid["LabelName"] not in bucket:
                    bucket.append(kid["LabelName"])

        walk(data)
        return cls({mid: tuple(kids) for mid, kids in children.items()})

    @classmethod
    def from_file(cls, path: str | Path) -> Hierarchy:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8-sig"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise DataFormatError(f"{path}: not a valid hierarchy JSON ({err})") from None
        return cls.from_json(data, where=str(path))

    @classmethod
    def shipped(cls) -> Hierarchy:
        return _shipped_hierarchy()

    def distances(self, mid: str) -> dict[str, int]:
        """Subcategory steps from ``mid`` down to each MID below it (``mid`` itself at 0; the shortest path where a
        class has several parents)."""
        dist = {mid: 0}
        frontier = [mid]
        while frontier:
            nxt = []
            for node in frontier:
                for kid in self.children.get(node, ()):
                    if kid not in dist:
                        dist[kid] = dist[node] + 1
                        nxt.append(kid)
            frontier = nxt
        return dist

    def descendants(self, mid: str) -> list[str]:
        """All subcategories below ``mid`` (depth-first, each once), not including ``mid``."""
        out: list[str] = []
        stack = list(reversed(self.children.get(mid, ())))
        while stack:
            node = stack.pop()
            if node in out:
                continue
            out.append(node)
            stack.extend(reversed(self.children.get(node, ())))
        return out


@dataclass(frozen=True)
class ResolvedClass:
    """A requested class: its display name, file slug, own MID and every MID whose boxes it takes; ``ceded`` lists
    the subclasses whose boxes go to a more specific requested class instead, as ``(MID, that class's name)``."""

    name: str
    slug: str
    mid: str
    mids: tuple[str, ...]
    ceded: tuple[tuple[str, str], ...] = ()


def ceded_line(name: str, ceded: Iterable[Sequence[str]], catalog: ClassCatalog) -> str:
    """The log line saying which of ``name``'s subclasses went to a more specific requested class ("" if none)."""
    given = "; ".join(f"{catalog.name(mid)} ({mid}) to {winner}" for mid, winner in ceded)
    return (
        f"{name}: boxes of subclasses also requested go to the most specific requested class: {given}" if given else ""
    )


def resolve_classes(
    requested: Iterable[str],
    catalog: ClassCatalog,
    hierarchy: Hierarchy | None = None,
) -> list[ResolvedClass]:
    """Resolve display names (all typos reported at once); with ``hierarchy`` each class takes its subclasses."""
    requested = list(requested)
    if not requested:
        raise UnknownClassError("no classes requested: list at least one Open Images class name")
    out: list[ResolvedClass] = []
    errors: list[str] = []
    for raw in requested:
        try:
            mid = catalog.mid(raw)
        except UnknownClassError as err:
            errors.append(str(err))
            continue
        mids = (mid, *hierarchy.descendants(mid)) if hierarchy else (mid,)
        out.append(ResolvedClass(catalog.names[mid], slugify(catalog.names[mid]), mid, mids))
    if errors:
        raise UnknownClassError("\n".join(errors))
    seen: dict[str, str] = {}
    for cls in out:
        if cls.slug in seen:
            raise UnknownClassError(f"class {cls.name!r} is requested twice (as {seen[cls.slug]!r} and {cls.name!r})")
        seen[cls.slug] = cls.name
    return _most_specific(out, hierarchy) if hierarchy else out


def _most_specific(classes: list[ResolvedClass], hierarchy: Hierarchy) -> list[ResolvedClass]:
    """Give every MID claimed by several requested classes (``[Fruit, Apple]`` both claim Apple) to the closest one
    above it (fewest subcategory steps; Apple itself at 0), ties to the class requested first: a box is written once.
    """
    dist = [hierarchy.distances(c.mid) for c in classes]
    owner: dict[str, int] = {}
    for i, cls in enumerate(classes):
        for mid in cls.mids:
            j = owner.get(mid)
            if j is None or dist[i][mid] < dist[j][mid]:
                owner[mid] = i
    out = []
    for i, cls in enumerate(classes):
        keep = tuple(m for m in cls.mids if owner[m] == i)
        ceded = tuple((m, classes[owner[m]].name) for m in cls.mids if owner[m] != i)
        out.append(ResolvedClass(cls.name, cls.slug, cls.mid, keep, ceded))
    return out


@cache
def _shipped_catalog() -> ClassCatalog:
    return ClassCatalog.from_file(resource_path("class-descriptions-boxable.csv"))


@cache
def _shipped_hierarchy() -> Hierarchy:
    return Hierarchy.from_file(resource_path("bbox_labels_600_hierarchy.json"))
