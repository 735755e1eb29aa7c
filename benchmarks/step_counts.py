"""Operators and host syncs per training step, counted on real steps.

An operator costs a few microseconds of host time on a GPU whatever its size, so at this project's
sizes the count, not the FLOPs, sets the eager speed there; a host sync (``.item()``, ``float()``,
``bool()`` of a device tensor, ``aten._local_scalar_dense``) stalls the launch queue until the
device catches up. Counted with a ``TorchDispatchMode`` over the step the trainer runs:

* ``ops_per_step``: non-view aten operators of one step after a warm-up step (forward, backward,
  the non-finite check and Adam);
* ``syncs_per_step``: ``aten._local_scalar_dense`` calls, averaged over :data:`SYNC_STEPS` steps.

The trainer reads the losses every 16 batches (``grouping.training.books``), outside the step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torch.utils._python_dispatch import TorchDispatchMode

#: Steps over which the syncs are averaged.
SYNC_STEPS = 16


class StepCounter(TorchDispatchMode):
    """Counts non-view aten operators and host syncs."""

    def __init__(self) -> None:
        super().__init__()
        self.ops = 0
        self.syncs = 0

    def __torch_dispatch__(
        self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: Any = None
    ) -> Any:
        if not func.is_view:
            self.ops += 1
        if func is torch.ops.aten._local_scalar_dense.default:
            self.syncs += 1
        return func(*args, **(kwargs or {}))


def count_step(
    step: Callable[[Tensor, torch.Generator], Any],
    batches: Callable[[], Tensor],
    generator: torch.Generator,
) -> dict[str, float]:
    """``ops_per_step`` and ``syncs_per_step`` of ``step`` on batches from ``batches()``."""
    step(batches(), generator)  # warm-up: Adam's lazy state, the step's parameter list
    features = batches()
    with StepCounter() as one:
        step(features, generator)
    many = StepCounter()
    inputs = [batches() for _ in range(SYNC_STEPS)]
    with many:
        for features in inputs:
            step(features, generator)
    return {"ops_per_step": float(one.ops), "syncs_per_step": many.syncs / SYNC_STEPS}
