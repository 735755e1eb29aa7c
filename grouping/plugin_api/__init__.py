"""The code behind the plugin API. Plugins import it from :mod:`grouping.plugins`; the core imports
these modules directly.

* :mod:`~grouping.plugin_api.interfaces`: the abstract base classes of the five plugin kinds;
* :mod:`~grouping.plugin_api.kinds`: the one table of plugin kinds (base class, hook, section);
* :mod:`~grouping.plugin_api.hookspecs`: the ``register_*`` hooks, one per kind;
* :mod:`~grouping.plugin_api.registry`: the plugin manager that loads the ``grouping`` entry points;
* :mod:`~grouping.plugin_api.splits`: how a data set's splits are cached and sized;
* :mod:`~grouping.plugin_api.guard`: the checks where a plugin's data enters the core.
"""
