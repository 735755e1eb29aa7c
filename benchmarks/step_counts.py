"""Operators and host syncs per training step, counted on real steps.

An operator costs a few microseconds of host time on a GPU whatever its size, so at this project's
sizes the count, not the FLOPs, sets the eager speed there; a host sync (``.item()``, ``float()``,
``bool()`` of a device tensor, ``aten._local_scalar_dense``) stalls the launch queue until the
device catches up. Counted with a ``TorchDispatchMode`` over the step the trainer runs:

* ``ops_per_step``: non-view aten operators of one step after a warm-up step (forward, backward,
  the non-finite check and Adam);
* ``syncs_per_step``: ``aten._local_scalar_dense`` calls, averaged over :data:`SYNC_STEPS` steps.

A compiled step hides its operators from a dispatch mode (dynamo runs the step eagerly under one),
so :func:`count_launches` counts what a step launches with the profiler instead: the top-level
non-view aten operators and the kernels inductor generated (``cpp_fused_*`` on a CPU, ``triton_*``
on a GPU; their events need ``torch._inductor.config.cpp.enable_kernel_profile``, set by
:func:`profile_compiled_kernels` before anything compiles). On the eager step both counters agree
to a few operators (the profiler does not see the few ops autograd's engine runs unrecorded).

The trainer reads the losses every 16 batches (``grouping.training.books``), outside the step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torch.profiler import ProfilerActivity, profile
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


def profile_compiled_kernels() -> None:
    """Give inductor's CPU kernels profiler events, so :func:`count_launches` sees them; call it
    before the first compile (it changes the code inductor generates, not what it computes)."""
    import torch._inductor.config as inductor_config

    inductor_config.cpp.enable_kernel_profile = True


def _is_launch(name: str) -> bool:
    if "cpp_fused" in name or name.startswith("triton_"):
        return True
    if not name.startswith("aten::"):
        return False
    packet = getattr(torch.ops.aten, name.removeprefix("aten::"), None)
    overloads = [getattr(packet, o) for o in packet.overloads()] if packet is not None else []
    return not any(o.is_view for o in overloads)


def count_launches(
    step: Callable[[Tensor, torch.Generator], Any],
    batches: Callable[[], Tensor],
    generator: torch.Generator,
) -> float:
    """Operators and generated kernels one step of ``step`` launches (after a warm-up step)."""
    step(batches(), generator)
    features = batches()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step(features, generator)
    launches = 0
    for event in prof.events():
        if not _is_launch(event.name):
            continue
        parent = event.cpu_parent
        while parent is not None and not _is_launch(parent.name):
            parent = parent.cpu_parent
        launches += parent is None  # nested ones run inside a counted one
    return float(launches)
