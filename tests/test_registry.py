"""The plugin manager: entry points, duplicates, broken plugins, misspelt hooks, restriction."""

from __future__ import annotations

import importlib.metadata
import types
from typing import Any

import pytest
from torch import Tensor

from grouping import hookimpl
from grouping.errors import PluginError
from grouping.plugin_api.interfaces import Likelihood
from grouping.plugin_api.registry import PluginWarning, new_registry


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
    registry.plugins()  # a conflict never blocks the listing ...
    with pytest.raises(  # ... only the use of the name
        PluginError,
        match=r"likelihood 'bernoulli' is registered twice: by .*bernoulli.* and by dupe; "
        r"exclude one with GROUPING_PLUGINS=-dupe",
    ):
        registry.get("likelihood", "bernoulli")
    assert registry.get("updater", "rnn-em").name == "rnn-em"


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
    registry.plugins()
    assert "not a subclass of grouping.plugins.Updater" in registry.failures["bad"]


def test_a_hook_that_raises_is_named() -> None:
    registry = new_registry(load=False)

    def boom(register: Any) -> None:
        raise RuntimeError("kaboom")

    registry.add(_module(register_datasets=boom), "exploding")
    registry.plugins()
    assert registry.failures["exploding"] == "failed in register_datasets: RuntimeError: kaboom"
    with pytest.raises(PluginError, match=r"plugins that failed to load: exploding"):
        registry.get("dataset", "rings")


def test_environment_restricts_the_loaded_plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GROUPING_PLUGINS", "-builtins,rnn-em,shapes")
    registry = new_registry()
    assert registry.names("updater") == ["rnn-em"]
    assert registry.names("likelihood") == []
    with pytest.raises(
        PluginError,
        match="unknown likelihood 'bernoulli'; valid: none installed "
        r"\(GROUPING_PLUGINS='-builtins,rnn-em,shapes' chooses which plugins load\)",
    ):
        registry.get("likelihood", "bernoulli")


def test_naming_a_plugin_keeps_the_builtins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GROUPING_PLUGINS", "rings")  # a third-party plugin that is not installed
    registry = new_registry()
    assert {"rnn-em", "n-em"} <= set(registry.names("updater"))
    assert "laplace" not in registry.names("likelihood")  # other third-party plugins stay out


def test_a_minus_excludes_one_entry_point(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GROUPING_PLUGINS", "-n-em")
    registry = new_registry()
    assert "n-em" not in registry.names("updater")
    assert "rnn-em" in registry.names("updater")


def test_a_hook_without_hookimpl_is_a_warning() -> None:
    registry = new_registry(load=False)
    mod = types.ModuleType("unmarked")

    def register_updaters(register: Any) -> None:
        pass

    mod.register_updaters = register_updaters  # type: ignore[attr-defined]
    with pytest.warns(PluginWarning, match="register_updaters has no @hookimpl"):
        registry.add(mod, "unmarked")


def test_the_plugin_api_has_one_public_face_and_keeps_its_old_paths() -> None:
    """``grouping.plugins`` is the plugin API; the code behind it moved to ``grouping.plugin_api``
    (the folder's name clashed with the built-ins' ``plugins/``), and plugins written against the
    old submodule paths still import the same objects."""
    import importlib

    import grouping.plugins as api
    from grouping.plugin_api import hookspecs, interfaces, registry

    assert all(hasattr(api, name) for name in api.__all__)
    assert importlib.import_module("grouping.plugins.interfaces") is interfaces
    assert importlib.import_module("grouping.plugins.hookspecs").hookimpl is hookspecs.hookimpl
    from grouping.plugins.registry import get_registry as old

    assert old is registry.get_registry is api.get_registry
