"""The plugin manager: loads the ``grouping`` entry points and collects the plugin classes they register.

Built-ins and third-party packages come in the same way, through the ``grouping`` entry-point group.
``GROUPING_PLUGINS=name1,name2`` loads only those entry points (the empty string loads none), which
makes a test or a bug report reproducible whatever else is installed.
"""

from __future__ import annotations

import importlib.metadata
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pluggy

from grouping import hookspecs
from grouping.errors import PluginError
from grouping.interfaces import PLUGIN_KINDS, Plugin, PluginKind

ENV_RESTRICT = "GROUPING_PLUGINS"

_HOOK_OF_KIND: dict[PluginKind, str] = {
    "likelihood": "register_likelihoods",
    "network": "register_networks",
    "updater": "register_updaters",
    "dataset": "register_datasets",
    "noise": "register_noises",
}


@dataclass(frozen=True)
class Provider:
    """Who provides a plugin: the entry point (or ad-hoc registration) and its distribution."""

    plugin: str
    package: str | None = None
    version: str | None = None

    def __str__(self) -> str:
        if self.package:
            return f"{self.plugin} ({self.package} {self.version})"
        return self.plugin


@dataclass(frozen=True)
class PluginInfo:
    """One registered plugin class and where it came from."""

    kind: PluginKind
    name: str
    cls: type[Any]
    provider: Provider

    @property
    def description(self) -> str:
        return str(getattr(self.cls, "description", ""))

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "description": self.description,
            "package": self.provider.package,
            "version": self.provider.version,
            "plugin": self.provider.plugin,
            "class": f"{self.cls.__module__}.{self.cls.__qualname__}",
        }


@dataclass
class Registry:
    """One pluggy manager plus the plugin classes its hooks registered, looked up by kind and name."""

    manager: pluggy.PluginManager
    providers: dict[str, Provider] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)
    _plugins: dict[tuple[PluginKind, str], PluginInfo] | None = None

    # -- loading -----------------------------------------------------------------------------------

    def load_entry_points(self, group: str = hookspecs.PROJECT) -> None:
        """Load every entry point of the group; one that fails is recorded, not fatal."""
        allowed = _allowed_names()
        for ep in importlib.metadata.entry_points(group=group):
            if allowed is not None and ep.name not in allowed:
                continue
            if self.manager.has_plugin(ep.name):
                continue
            dist = getattr(ep, "dist", None)
            provider = Provider(
                ep.name, dist.metadata["Name"] if dist else None, dist.version if dist else None
            )
            try:
                module = ep.load()
            except Exception as exc:  # a broken plugin must not take the others down
                self.failures[ep.name] = f"{type(exc).__name__}: {exc}"
                continue
            self.add(module, ep.name, provider)

    def add(self, plugin: object, name: str, provider: Provider | None = None) -> None:
        """Register a plugin object (a module or any object with hookimpls) under ``name``."""
        if self.manager.has_plugin(name):
            raise PluginError(f"a plugin named {name!r} is already registered")
        try:
            self.manager.register(plugin, name=name)
            self.manager.check_pending()
        except pluggy.PluginValidationError as exc:
            if self.manager.has_plugin(name):
                self.manager.unregister(name=name)
            raise PluginError(f"plugin {name!r} is invalid: {exc}") from None
        self.providers[name] = provider or Provider(name)
        self._plugins = None

    def remove(self, name: str) -> None:
        """Unregister a plugin object added under ``name`` (tests use this in ``finally``)."""
        self.manager.unregister(name=name)
        self.providers.pop(name, None)
        self._plugins = None

    # -- lookup ------------------------------------------------------------------------------------

    def plugins(self) -> dict[tuple[PluginKind, str], PluginInfo]:
        """Every registered plugin class, collected once from the hooks."""
        if self._plugins is None:
            self._plugins = self._collect()
        return self._plugins

    def _collect(self) -> dict[tuple[PluginKind, str], PluginInfo]:
        found: dict[tuple[PluginKind, str], PluginInfo] = {}
        for kind in PLUGIN_KINDS:
            caller = getattr(self.manager.hook, _HOOK_OF_KIND[kind])
            for impl in caller.get_hookimpls():  # registration order
                provider = self.providers.get(impl.plugin_name, Provider(impl.plugin_name))

                def register(
                    cls: type[Any], kind: PluginKind = kind, provider: Provider = provider
                ) -> None:
                    _check_plugin_class(cls, kind, provider)
                    key = (kind, cls.name)
                    if key in found:
                        raise PluginError(
                            f"{kind} {cls.name!r} is registered twice: by {found[key].provider} "
                            f"and by {provider}"
                        )
                    found[key] = PluginInfo(kind, cls.name, cls, provider)

                try:
                    impl.function(register=register)
                except PluginError:
                    raise
                except Exception as exc:
                    raise PluginError(
                        f"plugin {provider} failed in {_HOOK_OF_KIND[kind]}: "
                        f"{type(exc).__name__}: {exc}"
                    ) from None
        return found

    def names(self, kind: PluginKind) -> list[str]:
        return sorted(name for (k, name) in self.plugins() if k == kind)

    def get(self, kind: PluginKind, name: str) -> PluginInfo:
        """The plugin of that kind and name, or an error listing the valid names."""
        info = self.plugins().get((kind, name))
        if info is None:
            valid = ", ".join(self.names(kind)) or "none installed"
            hint = ""
            broken = [n for n in self.failures if n == name]
            if broken:
                hint = f" (plugin {name!r} failed to load: {self.failures[name]})"
            raise PluginError(f"unknown {kind} {name!r}; valid: {valid}{hint}")
        return info

    def __iter__(self) -> Iterator[PluginInfo]:
        return iter(sorted(self.plugins().values(), key=lambda p: (p.kind, p.name)))


def _check_plugin_class(cls: Any, kind: PluginKind, provider: Provider) -> None:
    """A registered class must be a plugin of the hook's kind with a name and a description."""
    expected = _BASES[kind]
    if not (isinstance(cls, type) and issubclass(cls, expected)):
        raise PluginError(
            f"plugin {provider} registered {cls!r} as a {kind}, "
            f"but it is not a subclass of grouping.interfaces.{expected.__name__}"
        )
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name:
        raise PluginError(f"plugin {provider}: {cls.__qualname__} has no 'name' string")


def _bases() -> dict[PluginKind, type[Plugin]]:
    from grouping import interfaces

    return {
        "likelihood": interfaces.Likelihood,
        "network": interfaces.Network,
        "updater": interfaces.Updater,
        "dataset": interfaces.Dataset,
        "noise": interfaces.Noise,
    }


_BASES = _bases()


def _allowed_names() -> set[str] | None:
    raw = os.environ.get(ENV_RESTRICT)
    if raw is None:
        return None
    return {part.strip() for part in raw.split(",") if part.strip()}


_registry: Registry | None = None


def new_registry(load: bool = True) -> Registry:
    """A fresh registry; with ``load`` it holds every entry point of the ``grouping`` group."""
    manager = pluggy.PluginManager(hookspecs.PROJECT)
    manager.add_hookspecs(hookspecs)
    registry = Registry(manager)
    if load:
        registry.load_entry_points()
    return registry


def get_registry() -> Registry:
    """The process-wide registry, loaded on first use."""
    global _registry
    if _registry is None:
        _registry = new_registry()
    return _registry
