"""Config: precedence, --set parsing, plugin option handling and one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from grouping.config.loading import (
    assignments_to_dict,
    build_config,
    load_config_file,
    parse_value,
    preset_names,
)
from grouping.config.schema import RunConfig
from grouping.engine.assembly import resolve
from grouping.errors import ConfigError, PluginError


def test_shipped_presets_validate() -> None:
    assert {"quickstart", "static-shapes-rnn-em"} <= set(preset_names())
    for name in preset_names():
        resolve(build_config(name))


def test_paper_preset_is_the_paper_protocol() -> None:
    c = build_config("static-shapes-rnn-em")
    assert (c.dataset.train_size, c.dataset.valid_size, c.dataset.test_size) == (
        50000,
        10000,
        10000,
    )
    assert (c.model.components, c.model.steps) == (3, 15)
    assert c.noise.options() == {"probability": 0.1}
    assert (c.train.patience, c.train.epochs, c.train.batch_size, c.train.lr) == (10, 500, 64, 1e-3)


def test_precedence_defaults_preset_options_set() -> None:
    c = build_config(
        "quickstart",
        options={"model": {"components": 4}, "train": {"lr": 0.01}},
        assignments=["model.components=5"],
    )
    assert c.model.components == 5  # --set beats options
    assert c.train.lr == 0.01  # options beat the preset
    assert c.train.epochs == 6  # the preset beats the default (500)
    assert c.eval.batch_size == 100  # the default


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("5", 5),
        ("0.1", 0.1),
        ("true", True),
        ("[1, 2]", [1, 2]),
        ('"x"', "x"),
        ("/a/b.h5", "/a/b.h5"),
        ("null", None),
        ("none", "none"),
    ],
)
def test_parse_value(text: str, value: object) -> None:
    assert parse_value(text) == value


def test_assignments_nest() -> None:
    assert assignments_to_dict(["a.b=1", "a.c=x", "d=2"]) == {"a": {"b": 1, "c": "x"}, "d": 2}
    with pytest.raises(ConfigError, match="dotted.key=value"):
        assignments_to_dict(["novalue"])


def test_plugin_options_are_validated_by_the_plugin() -> None:
    c = resolve(build_config(assignments=["noise.probability=0.3", "dataset.objects=2"]))
    assert c.noise.options() == {"probability": 0.3}
    assert c.dataset.options()["objects"] == 2
    with pytest.raises(ConfigError, match=r"noise\.probability.*less than or equal to 1"):
        resolve(build_config(assignments=["noise.probability=3"]))
    with pytest.raises(ConfigError, match=r"noise\.colour: unknown key.*options: probability"):
        resolve(build_config(assignments=["noise.colour=1"]))


def test_changing_a_plugin_drops_the_old_plugins_options() -> None:
    c = build_config("quickstart", options={"noise": {"name": "none"}})
    assert c.noise.name == "none"
    assert c.noise.options() == {}  # bitflip's probability does not follow


def test_auto_names_resolve_from_the_data_set_and_likelihood() -> None:
    c = resolve(build_config(assignments=["likelihood.name=auto", "noise.name=auto"]))
    assert c.likelihood.name == "bernoulli"
    assert c.noise.name == "bitflip"


@pytest.mark.parametrize(
    ("assignment", "message"),
    [
        ("model.components=0", "model.components"),
        ("model.steps=-1", "model.steps"),
        ("dataset.train_size=-5", "dataset.train_size"),
        ("train.lr=nan", "train.lr"),
        ("train.batch_size=100000", "larger than dataset.train_size"),
        ("train.device=gpu7", "device must be"),
        ("model.loss_step_weights=[1.0]", "one weight per step"),
        ("bogus=1", "bogus: unknown key"),
    ],
)
def test_bad_values_name_the_key(assignment: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        build_config(assignments=[assignment])
    assert "\n" not in str(info.value)


def test_unknown_plugin_lists_the_valid_names() -> None:
    with pytest.raises(PluginError, match=r"unknown updater 'nope'; valid: .*rnn-em"):
        resolve(build_config(options={"updater": {"name": "nope"}}))


def test_unknown_preset_and_bad_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown preset 'nope'; valid: .*quickstart"):
        build_config("nope")
    with pytest.raises(ConfigError, match="not found"):
        build_config(str(tmp_path / "missing.toml"))
    bad = tmp_path / "bad.toml"
    bad.write_text("[model\ncomponents = 3")
    with pytest.raises(ConfigError, match="not valid TOML"):
        build_config(str(bad))


def test_saved_config_round_trips(tmp_path: Path) -> None:
    c = resolve(build_config(assignments=["seed=7", "noise.probability=0.25"]))
    path = tmp_path / "config.toml"
    path.write_text(c.to_toml())
    again = load_config_file(path)
    assert again == c
    assert again.digest() == c.digest()
    assert isinstance(again, RunConfig)
    # a saved config is itself a preset: replaying it gives the same config
    assert resolve(build_config(str(path))).model_dump() == c.model_dump()


def test_a_likelihood_chosen_on_the_command_line_brings_its_default_noise() -> None:
    c = resolve(build_config("quickstart", options={"likelihood": {"name": "gaussian"}}))
    assert c.noise.name == "masked-uniform"  # not the preset's bitflip, which fits bernoulli
    kept = build_config(
        "quickstart", options={"likelihood": {"name": "gaussian"}}, assignments=["noise.name=none"]
    )
    assert kept.noise.name == "none"
    same = build_config("quickstart", options={"likelihood": {"name": "bernoulli"}})
    assert same.noise.name == "bitflip" and same.noise.options() == {"probability": 0.1}
