"""Fuzzing the config model and the ``--set`` parser: any input is a RunConfig or one clean line."""

from __future__ import annotations

import sys
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from grouping.config.loading import assignments_to_dict, build_config, parse_value
from grouping.config.schema import PLUGIN_SECTIONS, RunConfig, validate
from grouping.engine.assembly import resolve
from grouping.errors import GroupingError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

SECTIONS = ["model", "train", "eval", *PLUGIN_SECTIONS]
FIELDS = sorted(
    {
        name
        for s in ("model", "train", "eval")
        for name in RunConfig.model_fields[s].annotation.model_fields
    }  # type: ignore[union-attr]
    | {"name", "train_size", "valid_size", "test_size", "probability", "hidden", "objects", "size"}
)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3), max_leaves=6)
keys = st.sampled_from(FIELDS) | st.text(min_size=1, max_size=8)
sections = st.dictionaries(keys, values, max_size=4)
configs = st.dictionaries(
    st.sampled_from(SECTIONS) | st.text(max_size=6),
    sections | values,
    max_size=4,
)


def assert_one_line(exc: BaseException) -> None:
    text = str(exc)
    assert text and "\n" not in text and "\r" not in text, repr(text)
    assert len(text) < 2000


@FAST
@given(configs)
def test_the_config_model_accepts_or_gives_one_line(data: dict[str, Any]) -> None:
    try:
        config = validate(data)
    except GroupingError as exc:
        assert_one_line(exc)
        assert str(exc).startswith("invalid config: ")
        return
    assert isinstance(config, RunConfig)
    if not holds_none(data):  # TOML has no null: a None can only come from the Python API
        assert validate(tomllib.loads(config.to_toml())) == config


def holds_none(value: Any) -> bool:
    if isinstance(value, dict):
        return any(holds_none(v) for v in value.values())
    if isinstance(value, list):
        return any(holds_none(v) for v in value)
    return value is None


@FAST
@given(st.lists(st.text(max_size=30), max_size=4))
def test_set_items_parse_or_give_one_line(items: list[str]) -> None:
    try:
        assignments_to_dict(items)
        build_config("quickstart", assignments=items)
    except GroupingError as exc:
        assert_one_line(exc)


set_items = st.builds(
    lambda key, value: f"{key}={value}",
    st.lists(st.sampled_from(SECTIONS) | st.sampled_from(FIELDS), min_size=1, max_size=3).map(".".join),
    st.sampled_from(["0", "-1", "1", "3", "1e9", "nan", "inf", "-inf", "true", '"x"', "[1, 2]",
                     "[]", "{}", "fc", "rnn-em", "none", "0.5", "2", '"', "=", "", "1_000"]),
)  # fmt: skip


@FAST
@given(st.lists(set_items, min_size=1, max_size=5))
def test_well_formed_set_items_build_a_resolved_config_or_one_line(items: list[str]) -> None:
    try:
        resolve(build_config("quickstart", assignments=items))
    except GroupingError as exc:
        assert_one_line(exc)


literals = (
    st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False)
    | st.booleans()
    | st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=10)
)


@FAST
@given(literals)
def test_a_toml_literal_parses_back_to_its_value(value: Any) -> None:
    import tomli_w

    text = tomli_w.dumps({"v": value})[len("v = ") :].strip()
    assert parse_value(text) == value
