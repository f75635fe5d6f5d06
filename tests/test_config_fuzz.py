"""Config validation, fuzzed: every config either passes the schema and the plan, or fails with a clear, specific
error (a schema violation or an OidyoloError). Nothing else may escape."""

from __future__ import annotations

import copy

import pytest
import yaml
from conftest import ROOT
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from oidyolo.errors import OidyoloError
from oidyolo.workflow import Plan

SCHEMA = str(ROOT / "schemas" / "config.schema.yaml")
BASE = yaml.safe_load((ROOT / "config.yaml").read_text())

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 10**6), st.floats(allow_nan=True), st.text(max_size=12),
    st.sampled_from(["Apple", "apple", "Appel", "Fruit", "train", "validation", "v6", "v9", "", " ", "../x"]),
)  # fmt: skip
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)
KEYS = [
    "source", "version", "classes", "expand_hierarchy", "train_split", "val_split", "val_fraction", "limit", "seed",
    "filters", "strict_csv", "download", "yolo", "sources", "demo", "train", "evaluate", "colour",
]  # fmt: skip
NESTED = {
    "download": ["workers", "retries", "max_missing_fraction", "timeout"],
    "train": ["variant", "input_size", "epochs", "batch_size", "learning_rate", "freeze", "max_boxes", "anchors"],
    "filters": ["IsOccluded", "IsGroupOf", "IsBogus"],
    "demo": ["train_images", "validation_images", "seed"],
}


def check(config: dict) -> None:
    try:
        validate(config, SCHEMA)
    except WorkflowError as err:
        assert str(err).strip(), "a schema error must say what is wrong"
        return
    try:
        Plan.from_config(config)
    except OidyoloError as err:
        assert str(err).strip()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(key=st.sampled_from(KEYS), value=values)
def test_any_top_level_value_is_accepted_or_refused_clearly(key, value):
    config = copy.deepcopy(BASE)
    config[key] = value
    check(config)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(section=st.sampled_from(sorted(NESTED)), data=st.data(), value=values)
def test_any_nested_value_is_accepted_or_refused_clearly(section, data, value):
    config = copy.deepcopy(BASE)
    key = data.draw(st.sampled_from(NESTED[section]))
    config.setdefault(section, {})
    if not isinstance(config[section], dict):
        config[section] = {}
    config[section][key] = value
    check(config)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ({"classes": []}, "should be non-empty"),
        ({"classes": ["Apple", "Apple"]}, "has non-unique elements"),
        ({"limit": 0}, "limit"),
        ({"limit": {"train": -1}}, "limit"),
        ({"seed": -1}, "seed"),
        ({"train_split": "val"}, "train_split"),
        ({"download": {"workers": 0}}, "workers"),
        ({"filters": {"IsOccluded": [2]}}, "IsOccluded"),
        ({"train": {"input_size": 100}}, "input_size"),
        ({"nonsense": 1}, "Additional properties are not allowed"),
    ],
)
def test_schema_names_the_offending_key(edit, message):
    config = {**copy.deepcopy(BASE), **edit}
    with pytest.raises(WorkflowError, match=message):
        validate(config, SCHEMA)


def test_defaults_are_filled_in():
    config = {"classes": ["Apple"]}
    validate(config, SCHEMA)
    assert config["source"] == "demo" and config["download"]["workers"] == 32
    assert config["train"]["variant"] == "full" and config["train"]["epochs"] == [50, 50]
    Plan.from_config(config)
