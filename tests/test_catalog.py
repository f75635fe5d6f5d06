import json

import pytest

from oidyolo.data.catalog import ClassCatalog, Hierarchy, ceded_line, resolve_classes, slugify
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


def test_overlapping_hierarchy_requests_give_each_mid_to_the_most_specific_class(catalog):
    hierarchy = Hierarchy.shipped()
    apple, fruit = catalog.mid("Apple"), catalog.mid("Fruit")
    plain = {name: set(resolve_classes([name], catalog, hierarchy)[0].mids) for name in ("Food", "Fruit")}
    resolved = resolve_classes(["Food", "Fruit", "Apple"], catalog, hierarchy)
    by_name = {c.name: c for c in resolved}
    assert by_name["Apple"].mids == (apple,) and by_name["Apple"].ceded == ()
    assert by_name["Fruit"].ceded == ((apple, "Apple"),)
    assert set(by_name["Fruit"].mids) == plain["Fruit"] - {apple}  # the rest of Fruit stays Fruit
    # Food's fruit go to Fruit (closer than Food), Apple to Apple; Food keeps everything else below it
    assert (fruit, "Fruit") in by_name["Food"].ceded and (apple, "Apple") in by_name["Food"].ceded
    assert set(by_name["Food"].mids) == plain["Food"] - plain["Fruit"]
    # every MID is claimed exactly once, and none is lost
    claimed = [m for c in resolved for m in c.mids]
    assert len(claimed) == len(set(claimed)) and set(claimed) == plain["Food"] | {apple}
    assert "Apple (/m/014j1m) to Apple" in ceded_line("Fruit", by_name["Fruit"].ceded, catalog)
    assert ceded_line("Apple", (), catalog) == ""


def test_a_class_under_two_requested_parents_goes_to_the_one_requested_first(catalog):
    teddy = catalog.mid("Teddy bear")  # a Subcategory of both Bear and Toy, one step below each
    for order in (["Toy", "Bear"], ["Bear", "Toy"]):
        first, second = resolve_classes(order, catalog, Hierarchy.shipped())
        assert teddy in first.mids and teddy not in second.mids and second.ceded == ((teddy, first.name),)


def test_without_hierarchy_nothing_overlaps(catalog):
    fruit, apple = resolve_classes(["Fruit", "Apple"], catalog)
    assert (fruit.mids, apple.mids, fruit.ceded) == ((catalog.mid("Fruit"),), (catalog.mid("Apple"),), ())


def test_class_file_header_handling(tmp_path):
    """The official files have no header (the first row is a class); a `LabelName,DisplayName` header, as in
    re-exports, is skipped; anything else that is not a MID is an error, on the first line too if a MID follows."""
    shipped = ClassCatalog.shipped()
    first_mid = next(iter(shipped.names))
    assert first_mid == "/m/011k07" and shipped.names[first_mid] == "Tortoise"  # the first row is kept
    path = tmp_path / "c.csv"
    path.write_text("LabelName,DisplayName\r\n/m/011k07,Tortoise\r\n")
    assert ClassCatalog.from_file(path).names == {"/m/011k07": "Tortoise"}
    path.write_bytes(b"\xef\xbb\xbfLabelName,DisplayName\n/m/011k07,Tortoise\n")  # with a UTF-8 BOM
    assert ClassCatalog.from_file(path).names == {"/m/011k07": "Tortoise"}
    path.write_text("LabelName,DisplayName\nLabelName,DisplayName\n/m/011k07,Tortoise\n")
    with pytest.raises(DataFormatError, match=r":2: 'LabelName' is not an Open Images MID"):
        ClassCatalog.from_file(path)
