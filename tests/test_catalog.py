import json

import pytest

from oidyolo.data.catalog import ClassCatalog, Hierarchy, resolve_classes, slugify
from oidyolo.errors import DataFormatError, UnknownClassError


@pytest.fixture(scope="module")
def catalog() -> ClassCatalog:
    return ClassCatalog.shipped()


def test_shipped_catalog_has_all_boxable_classes(catalog):
    assert len(catalog.names) == 601
    assert catalog.mid("Apple") == "/m/014j1m"


@pytest.mark.parametrize("query", ["apple", "APPLE", "  Apple ", "aPpLe"])
def test_names_resolve_case_insensitively(catalog, query):
    assert catalog.mid(query) == "/m/014j1m"


def test_multiword_and_punctuated_names(catalog):
    assert catalog.canonical("polar   bear") == "Polar bear"
    assert catalog.mid("kitchen & dining room table") == "/m/0h8n5zk"
    assert catalog.mid("band-aid") == "/m/0j496"


def test_typo_suggests_the_closest_names(catalog):
    with pytest.raises(UnknownClassError, match=r"Did you mean: Apple") as err:
        catalog.mid("Appel")
    assert "'Appel'" in str(err.value)


def test_unrelated_name_has_no_suggestion_but_a_hint(catalog):
    with pytest.raises(UnknownClassError, match="python -m oidyolo classes") as err:
        catalog.mid("Qzxwv")
    assert "Did you mean" not in str(err.value)


@pytest.mark.parametrize(
    ("name", "slug"),
    [
        ("Apple", "Apple"),
        ("Polar bear", "Polar_bear"),
        ("Kitchen & dining room table", "Kitchen_and_dining_room_table"),
        ("Band-aid", "Band_aid"),
        ("Wine glass", "Wine_glass"),
    ],
)
def test_slugs_are_safe_file_names(name, slug):
    assert slugify(name) == slug


def test_every_shipped_slug_is_unique_and_safe(catalog):
    slugs = [slugify(n) for n in catalog.names.values()]
    assert len(set(slugs)) == len(slugs)
    assert all(s.replace("_", "").isalnum() for s in slugs)


def test_hierarchy_expands_subcategories_not_parts(catalog):
    h = Hierarchy.shipped()
    fruit = {catalog.name(m) for m in h.descendants(catalog.mid("Fruit"))}
    assert {"Apple", "Orange", "Banana", "Lemon", "Strawberry"} <= fruit
    assert "Fruit" not in fruit
    bicycle = {catalog.name(m) for m in h.descendants(catalog.mid("Bicycle"))}
    assert "Bicycle wheel" not in bicycle  # a Part edge, not "is a"
    vehicle = {catalog.name(m) for m in h.descendants(catalog.mid("Vehicle"))}
    assert "Car" in vehicle  # two levels down: Car < Land vehicle < Vehicle


def test_resolve_reports_every_typo_at_once(catalog):
    with pytest.raises(UnknownClassError) as err:
        resolve_classes(["Appel", "Orange", "Bananna"], catalog)
    assert "Appel" in str(err.value) and "Bananna" in str(err.value)


def test_resolve_with_hierarchy_labels_subclasses_as_the_parent(catalog):
    (fruit,) = resolve_classes(["fruit"], catalog, Hierarchy.shipped())
    assert fruit.name == "Fruit" and fruit.mids[0] == catalog.mid("Fruit")
    assert catalog.mid("Apple") in fruit.mids


def test_resolve_rejects_empty_and_duplicate_requests(catalog):
    with pytest.raises(UnknownClassError, match="no classes"):
        resolve_classes([], catalog)
    with pytest.raises(UnknownClassError, match="twice"):
        resolve_classes(["Apple", "apple"], catalog)


def test_v7_class_file_with_header(tmp_path):
    path = tmp_path / "oidv7-class-descriptions-boxable.csv"
    path.write_text("LabelName,DisplayName\n/m/014j1m,Apple\n/m/0cyhj_,Orange\n")
    assert ClassCatalog.from_file(path).names == {"/m/014j1m": "Apple", "/m/0cyhj_": "Orange"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("/m/014j1m,Apple\nnot-a-mid,Pear\n", "not an Open Images MID"),
        ("/m/014j1m,Apple,extra\n", "expected `MID,DisplayName`"),
        ("", "no classes"),
    ],
)
def test_malformed_class_files_are_refused(tmp_path, text, message):
    path = tmp_path / "classes.csv"
    path.write_text(text)
    with pytest.raises(DataFormatError, match=message):
        ClassCatalog.from_file(path)


def test_malformed_hierarchy_is_refused(tmp_path):
    path = tmp_path / "h.json"
    path.write_text("{not json")
    with pytest.raises(DataFormatError, match="not a valid hierarchy"):
        Hierarchy.from_file(path)
    path.write_text(json.dumps({"Subcategory": []}))
    with pytest.raises(DataFormatError, match="LabelName"):
        Hierarchy.from_file(path)
