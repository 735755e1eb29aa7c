"""Helpers shared by the reliability tests: a small resumable config and exact run comparison."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from grouping.rundir.checkpoint import load_checkpoint
from tests.conftest import TINY

#: Three epochs of four batches, one thread so that every process computes the same bits.
RESUMABLE = [*TINY, "train.epochs=3", "train.patience=5", "train.threads=1"]
SET_RESUMABLE = [arg for item in RESUMABLE for arg in ("--set", item)]
#: Metrics that measure time, not the model: they differ between any two runs.
TIMING = {"images_per_s", "epoch_s", "wall_s"}
TIMING_STATE = {"train_seconds", "epoch_seconds"}


@contextmanager
def torch_threads() -> Iterator[None]:
    """Restore torch's thread count after a run that sets ``train.threads``."""
    n = torch.get_num_threads()
    try:
        yield
    finally:
        torch.set_num_threads(n)


def metrics(run: Path) -> list[dict[str, Any]]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(x).items() if k not in TIMING} for x in lines]


def assert_equal_values(a: Any, b: Any, where: str = "") -> None:
    """Exact equality of nested checkpoints: tensors bit for bit, everything else with ==."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype, where
        assert torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), where
        for key in a:
            assert_equal_values(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_equal_values(x, y, f"{where}[{i}]")
    else:
        assert a == b, (where, a, b)


def checkpoint_values(path: Path) -> dict[str, Any]:
    """A checkpoint without its timings and digest (which covers the timings)."""
    payload = load_checkpoint(path)
    payload.pop("sha256")
    payload["train_state"] = {
        k: v for k, v in payload["train_state"].items() if k not in TIMING_STATE
    }
    return payload


def assert_same_run(a: Path, b: Path) -> None:
    """Two run folders hold the same weights, optimizer, RNG states, metrics and test scores."""
    for name in ("best.pt", "last.pt"):
        assert_equal_values(
            checkpoint_values(a / "checkpoints" / name),
            checkpoint_values(b / "checkpoints" / name),
            name,
        )
    assert metrics(a) == metrics(b)
    sa = json.loads((a / "summary.json").read_text())
    sb = json.loads((b / "summary.json").read_text())
    assert sa["test"] == sb["test"]
    assert (sa["epochs"], sa["best_epoch"]) == (sb["epochs"], sb["best_epoch"])
