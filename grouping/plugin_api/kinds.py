"""The one table of plugin kinds. The registry, the config sections and ``list-plugins`` read it.

A new kind is a base class in :mod:`grouping.plugin_api.interfaces`, its ``register_*`` hook in
:mod:`grouping.plugin_api.hookspecs` and one row here; the config gains a section of that name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import get_args

from grouping.plugin_api.interfaces import (
    Dataset,
    Likelihood,
    Network,
    Noise,
    Plugin,
    PluginKind,
    Updater,
)


@dataclass(frozen=True)
class Kind:
    """One plugin kind: its name (also its config section), base class and registration hook."""

    name: PluginKind
    base: type[Plugin]
    hook: str


#: Every plugin kind, in the order a config resolves them (the data set decides the likelihood,
#: the likelihood the noise).
KINDS: dict[PluginKind, Kind] = {
    kind.name: kind
    for kind in (
        Kind("dataset", Dataset, "register_datasets"),
        Kind("likelihood", Likelihood, "register_likelihoods"),
        Kind("network", Network, "register_networks"),
        Kind("updater", Updater, "register_updaters"),
        Kind("noise", Noise, "register_noises"),
    )
}

if set(KINDS) != set(get_args(PluginKind)):  # pragma: no cover - a developer's slip
    raise AssertionError("grouping.plugin_api.kinds.KINDS must list every PluginKind")
