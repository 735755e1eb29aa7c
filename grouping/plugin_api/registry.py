"""The plugin manager: loads the ``grouping`` entry points and collects the plugin classes they register.

Built-ins and third-party packages come in the same way, through the ``grouping`` entry-point group.
A broken plugin (one that fails to import, has a misspelt hook, raises in its hook, registers a
class that is not a plugin, or takes a name another plugin has) never blocks the others: it is
recorded in :attr:`Registry.failures`, listed by ``grouping list-plugins`` with its error, and a
command refuses only when it asks for a name the broken plugin is involved in.

``GROUPING_PLUGINS`` chooses which third-party entry points load, and keeps the built-ins:

* ``GROUPING_PLUGINS=a,b``: the built-ins plus the entry points ``a`` and ``b`` (empty: none);
* ``-name`` excludes an entry point (``GROUPING_PLUGINS=-broken`` loads everything else);
* ``-builtins`` drops the built-ins too, for a test or a bug report that needs exactly the names
  listed (``GROUPING_PLUGINS=-builtins,rnn-em,shapes``).

``GROUPING_TRACE_PLUGINS=1`` prints every hook call and plugin lookup on stderr.
"""

from __future__ import annotations

import importlib.metadata
import inspect
import os
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pluggy

from grouping.errors import PluginError
from grouping.plugin_api import hookspecs
from grouping.plugin_api.interfaces import PluginKind
from grouping.plugin_api.kinds import KINDS

ENV_SELECT = "GROUPING_PLUGINS"
ENV_TRACE = "GROUPING_TRACE_PLUGINS"
#: The distribution whose entry points are the built-ins.
BUILTIN_PACKAGE = "grouping"


class PluginWarning(UserWarning):
    """Something in a plugin module that is probably a mistake but does not break it."""


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

    def as_dict(self) -> dict[str, Any]:
        return {"package": self.package, "version": self.version, "plugin": self.plugin}


@dataclass(frozen=True)
class PluginInfo:
    """One registered plugin class (``cls``) and where it came from."""

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
            **self.provider.as_dict(),
            "class": f"{self.cls.__module__}.{self.cls.__qualname__}",
        }


@dataclass
class Registry:
    """One pluggy manager plus the plugin classes its hooks registered, looked up by kind and name."""

    manager: pluggy.PluginManager
    providers: dict[str, Provider] = field(default_factory=dict)
    #: plugin (entry point) name -> why it is broken
    failures: dict[str, str] = field(default_factory=dict)
    #: (kind, name) registered by two plugins -> the message a lookup of it raises
    conflicts: dict[tuple[PluginKind, str], str] = field(default_factory=dict)
    _plugins: dict[tuple[PluginKind, str], PluginInfo] | None = None

    # -- loading -----------------------------------------------------------------------------------

    def load_entry_points(self, group: str = hookspecs.PROJECT) -> None:
        """Load the selected entry points of the group; one that fails is recorded, not fatal."""
        select = Selection.from_env()
        points = importlib.metadata.entry_points(group=group)
        self._unknown_selected(select, sorted(ep.name for ep in points))
        for ep in points:
            dist = getattr(ep, "dist", None)
            provider = Provider(
                ep.name, dist.metadata["Name"] if dist else None, dist.version if dist else None
            )
            if not select.allows(ep.name, provider.package == BUILTIN_PACKAGE):
                continue
            if self.manager.has_plugin(ep.name):
                continue
            trace(f"loading entry point {ep.name} = {ep.value} from {provider}")
            self.providers[ep.name] = provider
            try:
                module = ep.load()
                self.add(module, ep.name, provider)
            except PluginError as exc:
                self.failures[ep.name] = str(exc)
            except Exception as exc:  # a broken plugin must not take the others down
                self.failures[ep.name] = f"{type(exc).__name__}: {exc}"

    def _unknown_selected(self, select: Selection, installed: list[str]) -> None:
        """A name in ``GROUPING_PLUGINS`` that no entry point has (a typo): one line on stderr, and
        recorded as a failure so that a lookup that misses it says why."""
        named = (select.chosen or frozenset()) | select.excluded
        for name in sorted(named - set(installed)):
            why = (
                f"{ENV_SELECT} names {name!r}, but no installed plugin has that name "
                f"(installed: {', '.join(installed) or 'none'})"
            )
            self.failures[name] = why
            print(f"warning: {why}", file=sys.stderr)

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
        warn_unmarked_hooks(plugin, name)
        self.providers[name] = provider or Provider(name)
        self._plugins = None

    def remove(self, name: str) -> None:
        """Unregister a plugin object added under ``name`` (tests use this in ``finally``)."""
        self.manager.unregister(name=name)
        self.providers.pop(name, None)
        self.failures.pop(name, None)
        self._plugins = None

    # -- lookup ------------------------------------------------------------------------------------

    def plugins(self) -> dict[tuple[PluginKind, str], PluginInfo]:
        """Every registered plugin class, collected once from the hooks."""
        if self._plugins is None:
            self.conflicts = {}
            self._plugins = {}
            for kind in KINDS.values():
                caller = getattr(self.manager.hook, kind.hook)
                for impl in caller.get_hookimpls():  # registration order
                    self._call_hook(kind.name, impl)
        return self._plugins

    def _call_hook(self, kind: PluginKind, impl: Any) -> None:
        """Run one plugin's ``register_*`` hook; whatever goes wrong is recorded against it."""
        provider = self.providers.get(impl.plugin_name, Provider(impl.plugin_name))
        found: list[type[Any]] = []
        trace(f"calling {KINDS[kind].hook}(register) of {provider}")
        try:
            impl.function(register=found.append)
            for cls in found:
                check_plugin_class(cls, kind, provider)
        except Exception as exc:
            why = str(exc) if isinstance(exc, PluginError) else f"{type(exc).__name__}: {exc}"
            self.failures[impl.plugin_name] = f"failed in {KINDS[kind].hook}: {why}"
            return
        assert self._plugins is not None
        for cls in found:
            key = (kind, cls.name)
            if key in self._plugins:
                first = self._plugins[key].provider
                self.conflicts[key] = (
                    f"{kind} {cls.name!r} is registered twice: by {first} and by {provider}; "
                    f"exclude one with {ENV_SELECT}=-{provider.plugin}"
                )
                continue
            self._plugins[key] = PluginInfo(kind, cls.name, cls, provider)
            trace(f"  registered {kind} {cls.name!r}: {cls.__module__}.{cls.__qualname__}")

    def names(self, kind: PluginKind) -> list[str]:
        return sorted(name for (k, name) in self.plugins() if k == kind)

    def get(self, kind: PluginKind, name: str) -> PluginInfo:
        """The plugin of that kind and name (``.cls`` is its class), or an error listing the valid
        names and the plugins that failed to load."""
        info = self.plugins().get((kind, name))
        trace(f"get {kind} {name!r} -> {info.as_dict()['class'] if info else 'missing'}")
        if (kind, name) in self.conflicts:
            raise PluginError(self.conflicts[(kind, name)])
        if info is None:
            valid = ", ".join(self.names(kind)) or "none installed"
            raise PluginError(f"unknown {kind} {name!r}; valid: {valid}{self._why_missing(name)}")
        return info

    def _why_missing(self, name: str) -> str:
        if name in self.failures:
            return f" (plugin {name!r} failed to load: {self.failures[name]})"
        if self.failures:
            return f" (plugins that failed to load: {', '.join(sorted(self.failures))})"
        if Selection.from_env().restricted:
            return f" ({ENV_SELECT}={os.environ.get(ENV_SELECT)!r} chooses which plugins load)"
        return ""

    def __iter__(self) -> Iterator[PluginInfo]:
        return iter(sorted(self.plugins().values(), key=lambda p: (p.kind, p.name)))

    def rows(self) -> list[dict[str, Any]]:
        """What ``list-plugins --json`` prints: every plugin, then every broken one with its
        ``error``; a name registered twice carries the conflict as its ``error``."""
        rows = []
        for info in self:
            row = info.as_dict()
            if (info.kind, info.name) in self.conflicts:
                row["error"] = self.conflicts[(info.kind, info.name)]
            rows.append(row)
        for plugin, error in sorted(self.failures.items()):
            provider = self.providers.get(plugin, Provider(plugin))
            row = {"kind": None, "name": plugin, "description": "", **provider.as_dict()}
            rows.append({**row, "class": None, "error": error})
        return rows


@dataclass(frozen=True)
class Selection:
    """Which entry points ``GROUPING_PLUGINS`` loads (see the module docstring)."""

    chosen: frozenset[str] | None  # third-party names to load; None: all of them
    excluded: frozenset[str] = frozenset()
    builtins: bool = True

    @property
    def restricted(self) -> bool:
        return self.chosen is not None or bool(self.excluded) or not self.builtins

    @classmethod
    def from_env(cls) -> Selection:
        raw = os.environ.get(ENV_SELECT)
        if raw is None:
            return cls(None)
        parts = [p.strip() for p in raw.split(",") if p.strip()]
        excluded = frozenset(p[1:] for p in parts if p.startswith("-"))
        chosen = frozenset(p for p in parts if not p.startswith("-"))
        only_exclusions = bool(parts) and not chosen
        return cls(
            None if only_exclusions else chosen, excluded - {"builtins"}, "builtins" not in excluded
        )

    def allows(self, name: str, builtin: bool) -> bool:
        if name in self.excluded:
            return False
        if self.chosen is not None and name in self.chosen:
            return True
        if builtin:
            return self.builtins
        return self.chosen is None


def check_plugin_class(cls: Any, kind: PluginKind, provider: Provider) -> None:
    """A registered class must be a plugin of the hook's kind with a name."""
    expected = KINDS[kind].base
    if not (isinstance(cls, type) and issubclass(cls, expected)):
        raise PluginError(
            f"plugin {provider} registered {cls!r} as a {kind}, "
            f"but it is not a subclass of grouping.plugins.{expected.__name__}"
        )
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name:
        raise PluginError(f"plugin {provider}: {cls.__qualname__} has no 'name' string")


def warn_unmarked_hooks(plugin: object, name: str) -> None:
    """A ``register_*`` function without ``@hookimpl`` is never called: say so."""
    hooks = {kind.hook for kind in KINDS.values()}
    for attr in hooks:
        fn = getattr(plugin, attr, None)
        if inspect.isfunction(fn) and not hasattr(fn, f"{hookspecs.PROJECT}_impl"):
            warnings.warn(
                f"plugin {name!r}: {attr} has no @hookimpl, so it is never called; decorate it "
                "with grouping.plugins.hookimpl",
                PluginWarning,
                stacklevel=2,
            )


def trace(text: str) -> None:
    """One line on stderr when ``GROUPING_TRACE_PLUGINS`` is set."""
    if os.environ.get(ENV_TRACE, "") not in ("", "0"):
        print(f"grouping plugins: {text}", file=sys.stderr)


_registry: Registry | None = None


def new_registry(load: bool = True) -> Registry:
    """A fresh registry; with ``load`` it holds the selected entry points of the ``grouping``
    group."""
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
