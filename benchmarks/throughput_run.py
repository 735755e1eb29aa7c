"""One family's run for ``throughput.py``: its setup, its measurements in the order they must be
taken (the compiled path's cold start first, the dense rates before and after the timed steps), and
the JSON row made of them. Its own module so that the script keeps to its options and its table.
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from step_counts import count_launches, count_step, profile_compiled_kernels
from step_profile import ceilings, first_step_seconds, profile_breakdown
from throughput_families import Family, Path_, batch_maker, make_paths, make_split
from throughput_peaks import (
    Product,
    Rate,
    peak_memory_mb,
    record_products,
    square_peak,
    sync,
    workload_peak,
)

from grouping.accel.precision import Precision, resolve_precision
from grouping.data.batches import Prefetcher, iterate_batches
from grouping.plugin_api.interfaces import ArraySplit

#: ``--quick`` trains the conv families at this batch size unless ``--batch`` is given (a conv step
#: at batch 64 takes about a second on two cores); otherwise every family trains at batch 64.
QUICK_CONV_BATCH = 16


def run_steps(
    path: Path_, split: ArraySplit, family: Family, batch: int, n: int, device: torch.device
) -> float:
    """Images/s of ``n`` training steps of ``path`` through the trainer's loader."""
    order = np.arange(n * batch) % len(split)
    batches = iterate_batches(split, order, batch, family.steps + 1, device)
    sync(device)
    start = time.perf_counter()
    for features, _ in Prefetcher(batches, path.prefetch):
        path.step(features, path.generator)
    sync(device)
    return n * batch / (time.perf_counter() - start)


# --------------------------------------------------------------------------------------------------
# one family


@dataclass
class Run:
    """One family's run: what ``setup`` chooses, then what ``measure`` fills in."""

    family: Family
    args: argparse.Namespace
    device: torch.device
    batch: int
    split: ArraySplit
    precision: Precision
    paths: list[Path_]  # eager, fast and, with --compile, compile
    onednn: bool  # the fast path's fp32 linears go through oneDNN
    compile_s: float | None = None
    launches: float | None = None
    flops: float = 0.0  # matmul/conv FLOPs of one training image, forward and backward
    eager_products: list[Product] = field(default_factory=list)
    fast_products: list[Product] = field(default_factory=list)
    warm_s: float = 0.0
    ratios: list[float] = field(default_factory=list)  # fast over eager, per repeat
    counts: dict[str, float] = field(default_factory=dict)
    shares: dict[str, float] | None = None
    peak: Rate = field(default_factory=Rate)
    fp32_peak: Rate = field(default_factory=Rate)
    square: float = 0.0
    square_fp32: float = 0.0
    memory_mb: float = 0.0

    @property
    def eager(self) -> Path_:
        return self.paths[0]

    @property
    def fast(self) -> Path_:
        return self.paths[1]

    @property
    def compiled(self) -> Path_ | None:
        return self.paths[2] if len(self.paths) > 2 else None


def setup(family: Family, args: argparse.Namespace, device: torch.device) -> Run:
    """The family's batch size, random data, precision and paths."""
    quick_conv = args.quick and not family.static
    batch = args.batch or (QUICK_CONV_BATCH if quick_conv else 64)
    split = make_split(family, batch * 4, seed=1)
    precision: Precision = resolve_precision(args.precision, device)
    paths, onednn = make_paths(family, args, device, precision)
    return Run(family, args, device, batch, split, precision, paths, onednn)


def measure(run: Run) -> None:
    """Everything ``bench_family`` reports, measured in this order."""
    family, split, batch, device, args = run.family, run.split, run.batch, run.device, run.args
    compiled, fast = run.compiled, run.fast
    if compiled is not None:  # first, so that nothing else has compiled anything for it
        profile_compiled_kernels()
        run.compile_s = first_step_seconds(
            compiled.step, split, family.steps + 1, batch, compiled.generator
        )
        one_batch = batch_maker(split, family, batch, device)
        run.launches = count_launches(compiled.step, one_batch, compiled.generator)
    run.flops, run.eager_products = record_products(run.eager, split, family, batch, device)
    _, run.fast_products = record_products(fast, split, family, batch, device)
    # The dense rates are measured before and after the timed steps and each shape's best is kept:
    # a machine shared with other work can only slow a measurement down.
    rates: dict[Product, Rate] = {}
    for products in (run.fast_products, run.eager_products):
        workload_peak(products, device, args.peak_seconds, rates)
    time_paths(run)
    run.counts = count_step(fast.step, batch_maker(split, family, batch, device), fast.generator)
    if args.profile_steps:
        run.shares = profile_breakdown(
            fast.step, split, family.steps + 1, batch, args.profile_steps, fast.prefetch,
            fast.generator,
        )  # fmt: skip
    measure_peaks(run, rates)
    run.memory_mb = peak_memory_mb(fast, split, family, batch, device)


def time_paths(run: Run) -> None:
    """Warm-up steps of every path, then the timed repeats, the paths interleaved."""
    t0 = time.perf_counter()
    for p in run.paths:  # warm-up (and any recompilation)
        run_steps(p, run.split, run.family, run.batch, run.args.warmup, run.device)
    run.warm_s = time.perf_counter() - t0
    for _ in range(run.args.repeats):
        for p in run.paths:
            p.rates.append(
                run_steps(p, run.split, run.family, run.batch, run.args.steps, run.device)
            )
        run.ratios.append(run.fast.rates[-1] / run.eager.rates[-1])


def measure_peaks(run: Run, rates: dict[Product, Rate]) -> None:
    """The workload peaks after the timed steps (raising any rate ``rates`` holds), and the square
    ones."""
    device, seconds = run.device, run.args.peak_seconds
    run.peak = workload_peak(run.fast_products, device, seconds, rates)
    run.fp32_peak = workload_peak(run.eager_products, device, seconds, rates)
    dtype = torch.bfloat16 if run.precision == "bf16" else torch.float32
    run.square = square_peak(dtype, device, seconds / 4)
    run.square_fp32 = (
        run.square if dtype == torch.float32 else square_peak(torch.float32, device, 0.5)
    )


def note_unrecorded(run: Run) -> None:
    """A note where the recorded products miss FLOPs that the counter counted."""
    flops = run.flops
    recorded = sum(p.flops for p in run.eager_products) / run.batch
    note = (
        f"the recorded products hold {recorded / 1e9:.3f} GFLOP/image against the counter's "
        f"{flops / 1e9:.3f}: the peak weights only the recorded ones"
    )
    if abs(recorded - flops) > 0.01 * flops and note not in run.family.notes:
        run.family.notes.append(note)  # once, however often the family is benchmarked


def headline(run: Run) -> dict[str, Any]:
    """The row's figures that the issue asked for, in the order of the JSON."""
    rate = statistics.median(run.fast.rates)
    speedup = statistics.median(run.ratios)
    gflops = rate * run.flops / 1e9
    fraction = gflops / run.peak.best
    compiled, shares = run.compiled, run.shares
    return {
        "family": run.family.name,
        "images_per_s": rate,
        "gflops_per_s": gflops,
        "peak_gflops_per_s": run.peak.best,
        "fraction_of_peak": fraction,
        "speedup_vs_eager": speedup,
        **run.counts,
        "peak_memory_mb": run.memory_mb,
        "compile_images_per_s": statistics.median(compiled.rates) if compiled else None,
        "compile_seconds": run.compile_s,
        "compile_launches_per_step": run.launches,
        "breakdown": shares,
        "ceilings": ceilings(fraction, speedup, shares["matmul_conv"]) if shares else None,
    }


def context(run: Run) -> dict[str, Any]:
    """The rest of the row: the settings, the other peaks and the eager path's figures."""
    family, compiled, peak, fp32_peak = run.family, run.compiled, run.peak, run.fp32_peak
    gflops = statistics.median(run.fast.rates) * run.flops / 1e9
    eager_rate = statistics.median(run.eager.rates)
    eager_gflops = eager_rate * run.flops / 1e9
    return {
        "what": family.what,
        "components": family.components,
        "steps": family.steps,
        "batch": run.batch,
        "precision": run.precision,
        "cpu_matmul": "onednn" if run.onednn else "blas",
        "compile": bool(run.args.compile),
        "compile_rates": compiled.rates if compiled else None,
        "profile_steps": run.args.profile_steps,
        "mm_peak_gflops_per_s": peak.mm,
        "fraction_of_mm_peak": gflops / peak.mm,
        "square_peak_gflops_per_s": run.square,
        "fraction_of_square_peak": gflops / run.square,
        "eager_images_per_s": eager_rate,
        "eager_gflops_per_s": eager_gflops,
        "fp32_peak_gflops_per_s": fp32_peak.best,
        "eager_fraction_of_fp32_peak": eager_gflops / fp32_peak.best,
        "fp32_mm_peak_gflops_per_s": fp32_peak.mm,
        "eager_fraction_of_fp32_mm_peak": eager_gflops / fp32_peak.mm,
        "fp32_square_peak_gflops_per_s": run.square_fp32,
        "gflop_per_image": run.flops / 1e9,
        "distinct_product_shapes": len(dict.fromkeys(run.fast_products)),
        "fast_rates": run.fast.rates,
        "eager_rates": run.eager.rates,
        "warmup_s": run.warm_s,
        "notes": family.notes,
    }
