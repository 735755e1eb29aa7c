"""The plugin API: what a likelihood, network, updater, data set or noise plugin is written against.

Everything a plugin author needs is importable from here, and only from here::

    from grouping.plugins import Likelihood, PluginConfig, Register, hookimpl

The built-in plugins (``plugins/grouping_plugins``) import it the same way. The code behind it
lives in :mod:`grouping.plugin_api`; its module paths of before (``grouping.plugins.interfaces``,
``grouping.plugins.hookspecs``, ...) still import, so plugins written against them keep working.
"""

import sys

from grouping.plugin_api import guard, hookspecs, interfaces, kinds, registry, splits
from grouping.plugin_api.hookspecs import (
    Register,
    RegisterDataset,
    RegisterLikelihood,
    RegisterNetwork,
    RegisterNoise,
    RegisterUpdater,
    hookimpl,
)
from grouping.plugin_api.interfaces import (
    SPLITS,
    ArraySplit,
    Dataset,
    Likelihood,
    Network,
    NetworkSpec,
    Noise,
    Plugin,
    PluginConfig,
    Split,
    SplitName,
    SplitSizes,
    Updater,
    cached_split,
)
from grouping.plugin_api.registry import PluginInfo, get_registry

# The submodule paths of before, when ``grouping/plugins/`` was a package.
for _module in (guard, hookspecs, interfaces, kinds, registry, splits):
    sys.modules[f"{__name__}.{_module.__name__.rsplit('.', 1)[1]}"] = _module

__all__ = [
    "SPLITS",
    "ArraySplit",
    "Dataset",
    "Likelihood",
    "Network",
    "NetworkSpec",
    "Noise",
    "Plugin",
    "PluginConfig",
    "PluginInfo",
    "Register",
    "RegisterDataset",
    "RegisterLikelihood",
    "RegisterNetwork",
    "RegisterNoise",
    "RegisterUpdater",
    "Split",
    "SplitName",
    "SplitSizes",
    "Updater",
    "cached_split",
    "get_registry",
    "hookimpl",
]
