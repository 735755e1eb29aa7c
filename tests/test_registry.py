"""The plugin manager: entry points, duplicates, broken plugins, misspelt hooks, restriction."""

from __future__ import annotations

import importlib.metadata
import types
from typing import Any

import pytest
from torch import Tensor

from grouping import hookimpl
from grouping.errors import PluginError
from grouping.interfaces import Likelihood
from grouping.registry import new_registry


class FakeLikelihood(Likelihood):
    name = "bernoulli"
    description = "a second bernoulli"

    def activation(self, raw: Tensor) -> Tensor:
        return raw

    def pixel_prob(self, x: Tensor, psi: Tensor) -> Tensor:
        return psi

    def intra(self, x: Tensor, psi: Tensor) -> Tensor:
        return psi

    def inter(self, psi: Tensor) -> Tensor:
        return psi


def _module(**hooks: Any) -> types.ModuleType:
    mod = types.ModuleType("adhoc")
    for name, fn in hooks.items():
        setattr(mod, name, hookimpl(fn))
    return mod


def test_builtins_come_through_the_entry_point_group() -> None:
    eps = {ep.name: ep.value for ep in importlib.metadata.entry_points(group="grouping")}
    assert eps["rnn-em"] == "grouping_plugins.rnn_em"
    registry = new_registry()
    info = registry.get("updater", "rnn-em")
    assert info.provider.package == "grouping"
    assert info.provider.version == importlib.metadata.version("grouping")
    assert {"rnn-em"} <= set(registry.names("updater"))
    assert {"bernoulli"} <= set(registry.names("likelihood"))
    assert {"shapes"} <= set(registry.names("dataset"))
    assert {"fc"} <= set(registry.names("network"))
    assert {"bitflip", "none"} <= set(registry.names("noise"))


def test_registering_a_name_twice_names_both_providers() -> None:
    registry = new_registry()
    registry.add(_module(register_likelihoods=lambda register: register(FakeLikelihood)), "dupe")
    with pytest.raises(
        PluginError,
        match=r"likelihood 'bernoulli' is registered twice: by .*bernoulli.* and by dupe",
    ):
        registry.plugins()


def test_a_misspelt_hook_is_caught() -> None:
    registry = new_registry(load=False)

    def register_likelyhoods(register: Any) -> None:  # sic
        pass

    with pytest.raises(PluginError, match="register_likelyhoods"):
        registry.add(_module(register_likelyhoods=register_likelyhoods), "typo")
    assert not registry.manager.has_plugin("typo")


def test_a_plugin_that_fails_to_import_is_reported_and_the_others_load(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = importlib.metadata.entry_points

    def entry_points(**kw: Any) -> Any:
        found = list(real(**kw))
        broken = importlib.metadata.EntryPoint("broken", "grouping_no_such_module", "grouping")
        return [*found, broken]

    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)
    registry = new_registry()
    assert "broken" in registry.failures
    assert "ModuleNotFoundError" in registry.failures["broken"]
    assert "rnn-em" in registry.names("updater")


def test_registering_a_non_plugin_class_is_refused() -> None:
    registry = new_registry(load=False)
    registry.add(_module(register_updaters=lambda register: register(int)), "bad")
    with pytest.raises(PluginError, match="not a subclass of grouping.interfaces.Updater"):
        registry.plugins()


def test_a_hook_that_raises_is_named() -> None:
    registry = new_registry(load=False)

    def boom(register: Any) -> None:
        raise RuntimeError("kaboom")

    registry.add(_module(register_datasets=boom), "exploding")
    with pytest.raises(
        PluginError, match="plugin exploding failed in register_datasets: RuntimeError: kaboom"
    ):
        registry.plugins()


def test_environment_restricts_the_loaded_plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GROUPING_PLUGINS", "rnn-em,shapes")
    registry = new_registry()
    assert registry.names("updater") == ["rnn-em"]
    assert registry.names("likelihood") == []
    with pytest.raises(PluginError, match="unknown likelihood 'bernoulli'; valid: none installed"):
        registry.get("likelihood", "bernoulli")
