"""The step-level sections of ``benchmarks/gpu_check.py``: correctness, eager, sweep, compile.

Each section takes the run's :class:`Check` and a dict it fills as it goes (so a section cut by its
time limit still reports what it measured) and returns nothing. Models, noise and the random data
are those of ``benchmarks/throughput.py``'s families; a step is the trainer's ``TrainStep``.
"""

from __future__ import annotations

import copy
import dataclasses
import time
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import throughput as tp
import torch
from step_counts import StepCounter
from torch import Tensor
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile

from grouping.accel.device import set_deterministic
from grouping.accel.precision import Precision, apply_matmul_precision, install_fp32_outputs
from grouping.training.batch_step import TrainStep
from grouping.training.setup import compiled


@dataclass
class Check:
    """What every section needs: the device, the sizes (tiny with ``--dry-run``) and the end of its
    time limit (``perf_counter`` seconds), which loops check so that they stop in time."""

    device: torch.device
    dry: bool
    deadline: float = float("inf")

    @property
    def batch(self) -> int:
        return 2 if self.dry else 64

    def left(self) -> float:
        return self.deadline - time.perf_counter()

    def family(self, name: str) -> tp.Family:
        fam = next(f for f in tp.FAMILIES if f.name == name)
        if self.dry:  # two EM steps: the same code, a fraction of the time
            fam = dataclasses.replace(fam, steps=2, notes=[])
        return dataclasses.replace(fam, notes=[])


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def batch_of(fam: tp.Family, batch: int, device: torch.device, seed: int = 1) -> Tensor:
    """Clean frames (batch, T+1, H, W, C) of the family's random data, on ``device``."""
    split = tp.make_split(fam, batch, seed)
    features, _ = split.get(np.arange(batch))
    if features.shape[1] == 1:
        features = features.expand(batch, fam.steps + 1, *fam.image)
    return features.contiguous().to(device)


def make_step(
    fam: tp.Family, check: Check, precision: Precision, mode: str = "off", model: Any = None
) -> TrainStep:
    """The trainer's step for ``fam`` on the check's device (fixed initial weights)."""
    built, noise = tp.build(fam, seed=0)
    model = (model if model is not None else built).to(check.device)
    apply_matmul_precision(check.device, precision)
    if precision == "bf16":
        install_fp32_outputs(model)
    on = mode != "off"
    cuda = check.device.type == "cuda"
    adam = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True, capturable=on and cuda)
    return TrainStep(
        model, adam, noise, check.device, precision=precision, forward=compiled(model, mode)
    )


def ms_per_step(step: TrainStep, features: Tensor, n: int, device: torch.device) -> float:
    """Milliseconds per step over ``n`` steps (CUDA events on a GPU, the wall clock elsewhere)."""
    g = torch.Generator(device=device).manual_seed(0)
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(n):
            step(features, g)
        end.record()
        end.synchronize()
        return float(start.elapsed_time(end)) / n
    t0 = time.perf_counter()
    for _ in range(n):
        step(features, g)
    return (time.perf_counter() - t0) * 1e3 / n


def busy_profile(step: TrainStep, features: Tensor, n: int, device: torch.device) -> dict[str, Any]:
    """GPU busy share (kernel time's union over the wall time) and kernels per step, from a
    profile of ``n`` steps. On the CPU: aten operators per step, and no busy share."""
    g = torch.Generator(device=device).manual_seed(0)
    cuda = device.type == "cuda"
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    sync(device)
    with profile(activities=acts) as prof:
        t0 = time.perf_counter()
        for _ in range(n):
            step(features, g)
        sync(device)
        wall_us = (time.perf_counter() - t0) * 1e6
    events = list(prof.events())
    if not cuda:
        ops = [e for e in events if e.name.startswith("aten::") and e.cpu_parent is None]
        return {"busy_share": None, "kernels_per_step": len(ops) / n}
    spans = sorted(
        (e.time_range.start, e.time_range.end) for e in events if e.device_type == DeviceType.CUDA
    )
    busy, end = 0.0, -1.0
    for a, b in spans:
        busy += max(0.0, b - max(a, end))
        end = max(end, b)
    return {"busy_share": busy / wall_us, "kernels_per_step": len(spans) / n}


def correctness(check: Check, out: dict[str, Any]) -> None:
    """One step on the CPU and on the device from the same weights, inputs and gamma^(0), fp32 with
    TF32 off; the bf16 loss gap over 20 steps; the host syncs of a step."""
    for name in ("conv-shapes", "fc-static"):
        out[f"{name}_cpu_vs_device"] = _one_step_gap(check, check.family(name))
    out["bf16_loss_gap"] = _bf16_gap(check, check.family("conv-shapes"), 2 if check.dry else 20)
    out["syncs"] = _syncs(check, check.family("conv-shapes"))


def _loss_and_grads(model: Any, x: Tensor, inputs: Tensor, gamma: Tensor) -> list[Tensor]:
    loss = model(inputs, x, keep=False, gamma=gamma).loss
    loss.backward()
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in model.parameters()]
    return [loss.detach().cpu()] + [g.detach().cpu() for g in grads]


def _one_step_gap(check: Check, fam: tp.Family) -> dict[str, Any]:
    """Relative gaps (norm of the difference over the CPU's norm) of the loss and the gradients."""
    cpu = torch.device("cpu")
    model, noise = tp.build(fam, seed=0)
    other = copy.deepcopy(model).to(check.device)
    apply_matmul_precision(check.device, "fp32")
    x = batch_of(fam, 4 if check.dry else 16, cpu)
    g = torch.Generator().manual_seed(3)
    inputs = noise(x, g)
    gamma = model.initial_gamma((x.shape[0], fam.components, *fam.image[:2], 1), g, cpu)
    want = _loss_and_grads(model, x, inputs, gamma)
    dev = check.device
    got = _loss_and_grads(other, x.to(dev), inputs.to(dev), gamma.to(dev))
    gaps = [float((a - b).norm() / b.norm().clamp_min(1e-30)) for a, b in zip(got, want)]
    return {"loss_rel": gaps[0], "grad_rel_max": max(gaps[1:]), "ok": max(gaps) <= 1e-4}


def _bf16_gap(check: Check, fam: tp.Family, steps: int) -> dict[str, Any]:
    """fp32 (TF32 on) and bf16 trained side by side on the same batches and draws."""
    x = batch_of(fam, check.batch, check.device)
    losses: dict[str, list[float]] = {}
    for precision in ("tf32", "bf16"):
        step = make_step(fam, check, precision)
        g = torch.Generator(device=check.device).manual_seed(0)
        losses[precision] = torch.stack([step(x, g)[0] for _ in range(steps)]).tolist()
    gaps = [abs(a - b) / abs(a) for a, b in zip(losses["tf32"], losses["bf16"])]
    return {"steps": steps, "max_rel": max(gaps), "last_rel": gaps[-1], **losses}


def _syncs(check: Check, fam: tp.Family) -> dict[str, Any]:
    """Host syncs in one warm step: CUDA's sync debug warnings (where they came from) and the
    ``_local_scalar_dense`` calls counted at dispatch."""
    step = make_step(fam, check, "tf32")
    x = batch_of(fam, check.batch, check.device)
    g = torch.Generator(device=check.device).manual_seed(0)
    step(x, g)
    sync(check.device)
    places: list[str] = []
    with warnings.catch_warnings(record=True) as caught, StepCounter() as counter:
        warnings.simplefilter("always")
        if check.device.type == "cuda":
            torch.cuda.set_sync_debug_mode("warn")
        try:
            step(x, g)
        finally:
            if check.device.type == "cuda":
                torch.cuda.set_sync_debug_mode("default")
    for w in caught:
        if "synchroniz" in str(w.message):
            places.append(f"{w.filename}:{w.lineno}")
    return {"sync_warnings": len(places), "where": sorted(set(places)), "counted": counter.syncs}


def eager(check: Check, out: dict[str, Any]) -> None:
    """Per family at batch 64, TF32 against bf16: ms per step, GPU busy share, kernels per step;
    and for flying shapes the cost of ``train.deterministic``."""
    n = 2 if check.dry else 10
    for name in ("conv-shapes", "fc-static", "conv-mnist"):
        fam = check.family(name)
        x = batch_of(fam, check.batch, check.device)
        for precision in ("tf32", "bf16"):
            step = make_step(fam, check, precision)
            ms_per_step(step, x, 1 if check.dry else 3, check.device)  # warm-up
            row = {"ms_per_step": ms_per_step(step, x, n, check.device)}
            row.update(busy_profile(step, x, 2 if check.dry else 3, check.device))
            out[f"{name}_{precision}"] = row
        if name == "conv-shapes":
            set_deterministic(True, check.device)
            try:
                step = make_step(fam, check, "tf32")
                ms_per_step(step, x, 1, check.device)
                out["conv-shapes_tf32_deterministic_ms"] = ms_per_step(step, x, n, check.device)
            finally:
                set_deterministic(False, check.device)


def sweep(check: Check, out: dict[str, Any]) -> None:
    """Flying shapes at batch 64, 256 and 1024, TF32 and bf16: ms per step, sequences/s, peak
    memory (the CUDA allocator's high-water mark; None on the CPU)."""
    fam = check.family("conv-shapes")
    cuda = check.device.type == "cuda"
    for batch in (2, 4, 8) if check.dry else (64, 256, 1024):
        x = batch_of(fam, batch, check.device)
        for precision in ("tf32", "bf16"):
            if cuda:
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats(check.device)
            try:
                step = make_step(fam, check, precision)
                ms_per_step(step, x, 1, check.device)
                ms = ms_per_step(step, x, 2 if check.dry else 5, check.device)
            except torch.OutOfMemoryError:
                out[f"{batch}_{precision}"] = {"error": "out of memory"}
                continue
            peak = torch.cuda.max_memory_allocated(check.device) / 2**20 if cuda else None
            row = {"ms_per_step": ms, "sequences_per_s": batch * 1e3 / ms, "peak_memory_mb": peak}
            out[f"{batch}_{precision}"] = row
            del step


def compile_section(check: Check, out: dict[str, Any]) -> None:
    """``train.compile`` default and reduce-overhead at batch 64 (fc, then flying shapes while
    time is left): compile time (first step, synced), ms per step, and the loss after a few steps
    against eager's from the same weights and draws."""
    n = 2 if check.dry else 10
    precision: Precision = "bf16" if check.device.type == "cuda" else "fp32"  # the policy's
    for name in ("fc-static",) if check.dry else ("fc-static", "conv-shapes"):
        fam = check.family(name)
        x = batch_of(fam, check.batch, check.device)
        eager_step = make_step(fam, check, precision)
        want = _losses(eager_step, x, 3)
        for mode in ("default", "reduce-overhead"):
            if check.left() < 20 and out:
                out[f"{name}_{mode}"] = {"skipped": "too little time left in the section"}
                continue
            torch._dynamo.reset()
            step = make_step(fam, check, precision, mode)
            t0 = time.perf_counter()
            g = torch.Generator(device=check.device).manual_seed(0)
            got = [float(step(x, g)[0])]
            sync(check.device)
            compile_s = time.perf_counter() - t0
            got += [float(step(x, g)[0]) for _ in range(2)]
            gap = max(abs(a - b) / abs(b) for a, b in zip(got, want))
            ms = ms_per_step(step, x, n, check.device)
            out[f"{name}_{mode}"] = {"compile_s": compile_s, "ms_per_step": ms, "loss_rel_gap": gap}


def _losses(step: TrainStep, x: Tensor, n: int) -> list[float]:
    g = torch.Generator(device=x.device).manual_seed(0)
    return [float(step(x, g)[0]) for _ in range(n)]
