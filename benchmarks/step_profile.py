"""Where a training step's time goes, and what ``train.compile`` costs: helpers of throughput.py.

**Breakdown.** ``profile_breakdown`` runs a few real training steps (the trainer's loader and
``TrainStep``) under ``torch.profiler`` with named ranges around the phases of the step: gathering
the batch, the noise, the EM forward, and inside it each M-step call of the updater (its network
and its own layers, on the K components of a batch at once);
torch's optimizers record their own ``Optimizer.step#Adam.step`` and ``Optimizer.zero_grad`` ranges.
Each profiled event's own time (its time minus its children's) goes to the phase it runs in:

* ``matmul_conv``, ``norm``, ``elementwise``: the network's forward and backward, split by op name
  into matrix products and convolutions (with the bias copies and bf16 casts inside them), group /
  layer / batch norms, and everything else (activations, casts, views, the conv network's manual
  ``input_norm``, the network's Python);
* ``em``: the rest of the EM forward and its backward: the E-step, the loss, ``gamma * (x~ - psi)``
  and gamma^(0);
* ``optimizer``: Adam's ``zero_grad`` and ``step``;
* ``data_noise``: the batch gathered from the split (and moved to the device) and the noise;
* ``other``: what runs outside these phases: the step's Python between them, ``loss.backward()``'s
  entry, the finite check of the loss and gradients.

A backward op belongs to the phase of the forward op that recorded its autograd node: the profiler
gives both the same sequence number. On the CPU the shares are of the steps' wall time on the main
thread (backward runs there), profiler overhead included, which inflates small ops a little; on
CUDA they are shares of kernel time (each kernel counted under the op that launched it).

**Ceilings.** ``ceilings`` turns one family's measured row into what its step could reach if
the products ran at their shapes' dense rate (the peak's own kernels) and everything else took the
time the profile measured: the fraction of peak and the speed-up over eager fp32 at that point, the
speed-up if the products took no time at all, and the share of today's step that the rest would
have to shrink to for 50% of peak and for 2x eager. Where a ceiling is under a target, the target
needs the non-product work to shrink, whatever the kernels for the products.

**Compile.** ``first_step_seconds`` times the first call of a fresh ``torch.compile``d step: the
cold start a user waits for before the first compiled step has trained.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile, record_function

from grouping.data.batches import Prefetcher, iterate_batches
from grouping.plugin_api.interfaces import Noise, Split
from grouping.training.batch_step import TrainStep

#: The breakdown's keys, in table order, and what each holds.
CATEGORIES: dict[str, str] = {
    "matmul_conv": "matmuls and convolutions of the network, forward and backward",
    "norm": "group and layer norms of the network, forward and backward",
    "elementwise": "the network's other work: activations, casts, views, its Python",
    "em": "the E-step, the loss and the EM loop's own arithmetic, forward and backward",
    "optimizer": "Adam: zero_grad and step",
    "data_noise": "gathering the batch, and the noise",
    "other": "outside these: Python between phases, the finite check",
}

STEP, DATA, NOISE = "bench::step", "bench::data", "bench::noise"
FORWARD, NETWORK = "bench::em_forward", "bench::network"
BACKWARD = "autograd::engine::evaluate_function: "
OPTIMIZER = "Optimizer."
_NORM = re.compile(r"(layer|group|batch|instance|rms)_norm")
_PRODUCTS = {"mm", "addmm", "bmm", "baddbmm", "addbmm", "matmul", "linear", "_linear_pointwise"}


# -- instrumenting a step ----------------------------------------------------------------------


class _RangedNoise(Noise):
    """The step's noise plugin, called inside the ``NOISE`` range (same name in error messages)."""

    description = "the benchmark's profiled noise"

    def __init__(self, inner: Noise) -> None:
        super().__init__(inner.config)
        self.inner = inner
        self.name = inner.name  # type: ignore[misc]

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        with record_function(NOISE):
            return self.inner(x, generator)


def _ranged(name: str, call: Callable[..., Any]) -> Callable[..., Any]:
    def inside(*args: Any, **kwargs: Any) -> Any:
        with record_function(name):
            return call(*args, **kwargs)

    return inside


def _ranged_batches(batches: Iterable[Any]) -> Iterator[Any]:
    """``batches``, each one gathered inside the ``DATA`` range (on whichever thread pulls it)."""
    source = iter(batches)
    while True:
        with record_function(DATA):
            item = next(source, None)
        if item is None:
            return
        yield item


@contextmanager
def instrumented(step: TrainStep) -> Iterator[None]:
    """``step`` with its noise, its EM forward and the updater's M-step calls in named ranges."""
    updater, noise, forward = step.model.updater, step.noise, step.forward
    step.noise = _RangedNoise(noise)
    step.forward = _ranged(FORWARD, forward)
    # an instance attribute shadows the class's forward, which nn.Module.__call__ looks up
    updater.forward = _ranged(NETWORK, updater.forward)  # type: ignore[method-assign]
    try:
        yield
    finally:
        step.noise, step.forward = noise, forward
        del updater.forward


# -- classifying the profile -------------------------------------------------------------------


def _chain(event: Any) -> list[Any]:
    """The event and its ancestors on its thread, innermost first."""
    chain = [event]
    while chain[-1].cpu_parent is not None:
        chain.append(chain[-1].cpu_parent)
    return chain


def _phase(chain: list[Any], forward_phase: dict[tuple[int, int], str]) -> str | None:
    for e in chain:
        if e.name in (DATA, NOISE):
            return "data_noise"
        if e.name.startswith(OPTIMIZER):
            return "optimizer"
        if e.name == NETWORK:
            return "network"
        if e.name == FORWARD:
            return "em"
        if e.name.startswith(BACKWARD):
            return forward_phase.get((e.fwd_thread, e.sequence_nr), "network")
    return None


def _forward_phases(events: list[Any]) -> dict[tuple[int, int], str]:
    """(thread, sequence number) of every forward op that recorded an autograd node -> its phase."""
    phases: dict[tuple[int, int], str] = {}
    for e in events:
        if e.sequence_nr >= 0 and not e.name.startswith(BACKWARD):
            chain = _chain(e)
            if not any(c.name.startswith(BACKWARD) for c in chain):
                phase = _phase(chain, {})
                if phase is not None:
                    phases.setdefault((e.thread, e.sequence_nr), phase)
    return phases


def _network_kind(chain: list[Any]) -> str:
    """matmul_conv, norm or elementwise: the innermost op of the chain that names one."""
    for e in chain:
        base = e.name.rsplit("::", 1)[-1]
        if base in _PRODUCTS or "conv" in base:
            return "matmul_conv"
        if _NORM.search(base):
            return "norm"
        if e.name == NETWORK or e.name.startswith(BACKWARD):
            break
    return "elementwise"


def category(event: Any, forward_phase: dict[tuple[int, int], str]) -> str:
    """The ``CATEGORIES`` key of one profiled event (see the module docstring)."""
    chain = _chain(event)
    phase = _phase(chain, forward_phase)
    if phase is None:
        return "other"
    return _network_kind(chain) if phase == "network" else phase


def breakdown(events: list[Any], device_time: bool) -> dict[str, float]:
    """Shares of the profiled time per ``CATEGORIES`` key: >= 0, summing to 1.

    On the CPU only the events inside the ``STEP`` ranges count (their own times add up to the
    steps' wall time); with ``device_time`` every op's own kernel time counts."""
    forward_phase = _forward_phases(events)
    times = dict.fromkeys(CATEGORIES, 0.0)
    for e in events:
        if e.device_type != DeviceType.CPU:
            continue
        if device_time:
            spent = e.self_device_time_total
        elif _chain(e)[-1].name == STEP:
            spent = e.self_cpu_time_total
        else:
            continue
        times[category(e, forward_phase)] += max(float(spent), 0.0)
    total = sum(times.values())
    if total <= 0.0:
        return {key: float(key == "other") for key in times}
    return {key: t / total for key, t in times.items()}


# -- measuring ---------------------------------------------------------------------------------


def profile_breakdown(
    step: TrainStep,
    split: Split,
    frames: int,
    batch: int,
    n: int,
    prefetch: int,
    generator: torch.Generator,
) -> dict[str, float]:
    """The breakdown of ``n`` training steps of ``step`` fed as the trainer feeds it."""
    device = step.device
    cuda = device.type == "cuda"
    order = np.arange(n * batch) % len(split)
    batches = _ranged_batches(iterate_batches(split, order, batch, frames, device))
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with instrumented(step), profile(activities=activities) as prof:
        source = iter(Prefetcher(batches, prefetch))
        for _ in range(n):
            with record_function(STEP):
                features, _ = next(source)
                step(features, generator)
        if cuda:
            torch.cuda.synchronize(device)
    return breakdown(list(prof.events()), device_time=cuda)


def first_step_seconds(
    step: TrainStep, split: Split, frames: int, batch: int, generator: torch.Generator
) -> float:
    """Seconds from the first call of a fresh (compiled) step until that step has finished."""
    features, _ = next(iter(iterate_batches(split, np.arange(batch), batch, frames, step.device)))
    start = time.perf_counter()
    step(features, generator)
    if step.device.type == "cuda":
        torch.cuda.synchronize(step.device)
    return time.perf_counter() - start


def print_breakdown(rows: list[dict[str, Any]]) -> None:
    """One line per family: the share of each ``CATEGORIES`` key, in percent."""
    rows = [r for r in rows if r.get("breakdown")]
    if not rows:
        return
    print("\nwhere a step's time goes (torch.profiler over real steps of the default path):")
    for key, what in CATEGORIES.items():
        print(f"  {key:<12} {what}")
    head = f"{'family':<12} " + " ".join(f"{key:>11}" for key in CATEGORIES)
    print(head)
    print("-" * len(head))
    for r in rows:
        shares = " ".join(f"{r['breakdown'][key]:11.1%}" for key in CATEGORIES)
        print(f"{r['family']:<12} {shares}")


def ceilings(fraction_of_peak: float, speedup: float, products_share: float) -> dict[str, float]:
    """What the step could reach with its products at their dense rate (see the module docstring).

    In units of today's step time t: dense products take ``fraction_of_peak`` (that is what the
    fraction means), the rest takes ``1 - products_share``. With ``r`` the rest: of peak
    f / (f + r) and speed-up S / (f + r); 50% of peak needs r <= f, 2x eager needs r <= S / 2 - f.
    """
    f, s, rest = fraction_of_peak, speedup, 1.0 - products_share
    return {
        "products_vs_dense": f / products_share if products_share > 0 else math.inf,
        "of_peak_dense_products": f / (f + rest),
        "speedup_dense_products": s / (f + rest),
        "speedup_free_products": s / rest if rest > 0 else math.inf,
        "rest_share": rest,
        "rest_for_half_peak": f,
        "rest_for_2x": max(s / 2.0 - f, 0.0),
    }


def print_ceilings(rows: list[dict[str, Any]]) -> None:
    """One line per profiled family: its ceilings with dense products, and what the rest must be."""
    rows = [r for r in rows if r.get("ceilings")]
    if not rows:
        return
    print(
        "\nceilings (products at their shapes' dense rate, the rest as profiled; shares of "
        "today's step):"
    )
    for r in rows:
        c = r["ceilings"]
        print(
            f"{r['family']:<12} products at {c['products_vs_dense']:.0%} of dense; dense: "
            f"{c['of_peak_dense_products']:.1%} of peak, {c['speedup_dense_products']:.2f}x eager; "
            f"free: {c['speedup_free_products']:.2f}x; the rest {c['rest_share']:.0%} of the step "
            f"would have to be {c['rest_for_half_peak']:.0%} for 50% of peak, "
            f"{c['rest_for_2x']:.0%} for 2x"
        )
