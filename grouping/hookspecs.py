"""The hooks a plugin implements, one per plugin kind, in the register-callback style of simonw/llm.

A plugin module implements any of them and calls ``register`` once per class it provides::

    from grouping import hookimpl

    @hookimpl
    def register_likelihoods(register):
        register(LaplaceLikelihood)

The signature stays the same as features grow: a new plugin needs no new hook, only a new kind does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

PROJECT = "grouping"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

Register = Callable[[type[Any]], None]


@hookspec
def register_likelihoods(register: Register) -> None:
    """Register :class:`grouping.interfaces.Likelihood` subclasses: per-pixel distributions."""


@hookspec
def register_networks(register: Register) -> None:
    """Register :class:`grouping.interfaces.Network` subclasses: the component networks f_phi."""


@hookspec
def register_updaters(register: Register) -> None:
    """Register :class:`grouping.interfaces.Updater` subclasses: M-steps (RNN-EM, N-EM, ...)."""


@hookspec
def register_datasets(register: Register) -> None:
    """Register :class:`grouping.interfaces.Dataset` subclasses: sources of (features, groups)."""


@hookspec
def register_noises(register: Register) -> None:
    """Register :class:`grouping.interfaces.Noise` subclasses: corruptions of the network input."""
