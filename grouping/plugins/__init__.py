"""The plugin API: what a likelihood, network, updater, data set or noise plugin is written against.

Everything a plugin author needs is importable from here::

    from grouping.plugins import Likelihood, PluginConfig, Register, hookimpl

* :mod:`grouping.plugins.interfaces`: the abstract base classes of the five plugin kinds;
* :mod:`grouping.plugins.kinds`: the one table of plugin kinds (base class, hook, config section);
* :mod:`grouping.plugins.hookspecs`: the ``register_*`` hooks, one per kind;
* :mod:`grouping.plugins.registry`: the plugin manager that loads the ``grouping`` entry points;
* :mod:`grouping.plugins.guard`: the checks where a plugin's output enters the core.
"""

from grouping.plugins.hookspecs import (
    Register,
    RegisterDataset,
    RegisterLikelihood,
    RegisterNetwork,
    RegisterNoise,
    RegisterUpdater,
    hookimpl,
)
from grouping.plugins.interfaces import (
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
from grouping.plugins.registry import PluginInfo, get_registry

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
