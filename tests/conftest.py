"""Shared fixtures: small configs, ad-hoc plugin registration, a quiet thread count."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from grouping.config.loading import build_config
from grouping.config.schema import RunConfig
from grouping.plugin_api.registry import get_registry

torch.set_num_threads(min(2, torch.get_num_threads()))

TINY = [
    "dataset.train_size=128",
    "dataset.valid_size=32",
    "dataset.test_size=32",
    "train.batch_size=32",
    "train.epochs=1",
    "train.valid_samples=32",
    "eval.batch_size=32",
    "model.steps=3",
    "network.hidden=16",
    "train.max_minutes=null",  # never a wall-clock limit in tests
    "train.lr_schedule=constant",  # the quickstart's cosine would decay to 0 in these few batches
]


@pytest.fixture
def tiny_config() -> Callable[..., RunConfig]:
    """A config that trains in well under a second, with extra ``--set`` style overrides."""

    def make(*assignments: str, preset: str = "quickstart") -> RunConfig:
        return build_config(preset, assignments=[*TINY, *assignments])

    return make


@pytest.fixture
def register_plugin() -> Iterator[Callable[[Any, str], None]]:
    """Register plugin objects in the process-wide registry; unregister them afterwards."""
    registry = get_registry()
    added: list[str] = []

    def add(plugin: Any, name: str) -> None:
        registry.add(plugin, name)
        added.append(name)

    try:
        yield add
    finally:
        for name in added:
            registry.remove(name)


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return tmp_path / "run"
