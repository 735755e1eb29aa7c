"""The hooks a plugin implements, one per plugin kind, in the register-callback style of simonw/llm.

A plugin module implements any of them and calls ``register`` once per class it provides::

    from grouping.plugins import RegisterLikelihood, hookimpl

    @hookimpl
    def register_likelihoods(register: RegisterLikelihood) -> None:
        register(LaplaceLikelihood)

The signature stays the same as features grow: a new plugin needs no new hook, only a new kind does
(and a new kind is one row of :data:`grouping.plugin_api.kinds.KINDS` plus its hook here).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

from grouping.plugin_api.interfaces import Dataset, Likelihood, Network, Noise, Updater

PROJECT = "grouping"

hookspec = pluggy.HookspecMarker(PROJECT)
#: Marks a function of a plugin module as a hook implementation. A ``register_*`` function without
#: it is not called (the registry warns about it).
hookimpl = pluggy.HookimplMarker(PROJECT)

#: ``register(cls)`` for any kind; the per-kind aliases below say which base class is expected.
Register = Callable[[type[Any]], None]
RegisterLikelihood = Callable[[type[Likelihood]], None]
RegisterNetwork = Callable[[type[Network]], None]
RegisterUpdater = Callable[[type[Updater]], None]
RegisterDataset = Callable[[type[Dataset]], None]
RegisterNoise = Callable[[type[Noise]], None]


@hookspec
def register_likelihoods(register: RegisterLikelihood) -> None:
    """Register per-pixel distributions: :class:`~grouping.plugins.Likelihood` subclasses.

    :param register: call it once per class, ``register(MyLikelihood)``. The class's ``name`` is
        what ``--likelihood NAME`` selects; a name another plugin registered too is an error that
        names both providers.
    """


@hookspec
def register_networks(register: RegisterNetwork) -> None:
    """Register component networks f_phi: :class:`~grouping.plugins.Network` subclasses.

    :param register: call it once per class, ``register(MyNetwork)``; ``--network NAME`` or
        ``--set network.name=NAME`` selects it.
    """


@hookspec
def register_updaters(register: RegisterUpdater) -> None:
    """Register M-steps (RNN-EM, N-EM, ...): :class:`~grouping.plugins.Updater` subclasses.

    :param register: call it once per class, ``register(MyUpdater)``; ``--updater NAME`` selects it.
    """


@hookspec
def register_datasets(register: RegisterDataset) -> None:
    """Register sources of (features, groups): :class:`~grouping.plugins.Dataset` subclasses.

    :param register: call it once per class, ``register(MyDataset)``; ``--dataset NAME`` selects
        it. Its features are checked where they enter the core: finite, in [0, 1], and within the
        likelihood's support; its groups integral and >= 0.
    """


@hookspec
def register_noises(register: RegisterNoise) -> None:
    """Register corruptions of the network input: :class:`~grouping.plugins.Noise` subclasses.

    :param register: call it once per class, ``register(MyNoise)``; ``--set noise.name=NAME``
        selects it. Noise touches the network input only; the E-step and the loss see clean data.
    """
