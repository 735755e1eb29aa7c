"""Training throughput of the project's default path against a plain eager path, per network family.

    python benchmarks/throughput.py [--quick] [--json FILE] [--device auto|cpu|cuda] [--threads N]
                                    [--family NAME ...] [--compile] [--profile-steps N]
                                    [--precision auto|fp32|bf16] [--cpu-matmul auto|blas|onednn]

Families (``--family`` repeatable, or ``--families a,b``; default all): ``fc-static``,
``conv-shapes``, ``conv-mnist``.

For each family it trains (noise, forward, backward, Adam step) on in-memory random data through the
same loop the trainer runs (``grouping.data.batches.Prefetcher`` over ``grouping.data.batches.iterate_batches``
feeding ``grouping.training.batch_step.TrainStep``) and reports the median images/s over repeats, after warm-up:

* ``eager``: fp32, PyTorch's own kernels, no prefetching, no compile: the plain PyTorch path;
* ``fast``: the project default, i.e. ``train.precision = auto`` (bf16 matmuls with fp32 elementwise
  work where the device multiplies bf16 natively), ``train.cpu_matmul = auto`` (fp32 linear layers
  through oneDNN where MKL would run its AVX2 kernels, ``grouping.cpu_linear``), ``train.prefetch``
  by device (2 on CUDA, off on the CPU) and ``train.compile`` off;
* ``compile`` (only with ``--compile``: its cold start takes 20-150 s per family on a small CPU):
  the ``fast`` path with ``train.compile`` on. Its images/s are timed with the others, after
  warm-up; ``compile_seconds`` is the cold start, from the first call of a fresh compiled step
  until that step has finished; ``compile_launches_per_step`` the operators and generated kernels
  one compiled step launches (``step_counts.count_launches``), beside the eager ``ops_per_step``.

Where the time goes: a profile of ``--profile-steps`` real steps of the ``fast`` path (after the
warm-up), split into matmuls and convolutions, norms, the network's other work, the E-step and loss,
Adam, data and noise, and the rest (``benchmarks/step_profile.py`` says how each op is assigned);
the shares sum to 1. On the CPU they are shares of wall time, profiler overhead included.

The two paths run interleaved, repeat by repeat, on two models with the same initial weights, and the
speed-up is the median of the per-repeat ratios: on a machine shared with other work the absolute
figures wander, the ratio much less.

FLOPs are those of the matmuls and convolutions of one training image, forward and backward, counted
by ``torch.utils.flop_counter.FlopCounterMode`` on a real training step (2 per multiply-add).

The peak is the machine's own dense matmul rate at this workload's shapes, measured in the same run:
every product of a real training step (matmuls, and convolutions as the GEMMs they amount to,
forward and backward) is recorded with its shape and the dtype it multiplied in, each distinct
shape is timed alone as a dense ``mm``/``bmm`` with the fastest kernel torch offers for it (on the
CPU in fp32 the better of MKL and oneDNN, which differ twofold on AMD CPUs with AVX-512), and the
peak is the step's FLOPs divided by the time those dense products take. The fraction of peak is the
share of the step that a perfect implementation would spend multiplying; the rest is lost to
elementwise work, memory traffic, Python, and kernels slower than a dense GEMM of the same shape.
Beside it: the same peak with ``torch.mm`` alone ("mm", the BLAS), and a 1024^3 product ("square").

Peak memory is the CUDA allocator's high-water mark on CUDA; on the CPU it is parameters, gradients
and Adam state, the batch, and the tensors autograd saved for backward in one step (counted with
saved-tensor hooks), since the CPU allocator keeps no statistics.

Family ``conv-mnist`` needs a Gaussian likelihood and masked-uniform noise; when no plugin of that
name is installed, the benchmark uses the stand-ins of ``throughput_families.py`` (same elementwise
work as spec 2.3, 3.1) and says so in its output.

The script keeps the options and the table; its parts are siblings: ``throughput_families.py`` (the
families, their models and data, the paths), ``throughput_peaks.py`` (the products, the peaks, the
memory) and ``throughput_run.py`` (one family's measurements, in order, and its JSON row).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

from grouping.accel.device import resolve_device
from grouping.training.batch_step import TrainStep

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling modules below, when imported
from step_profile import print_breakdown, print_ceilings, profile_breakdown
from throughput_families import (
    FAMILIES,
    Family,
    Path_,
    StandInGaussian,
    StandInMaskedUniform,
    build,
    make_split,
)
from throughput_peaks import (
    Product,
    ProductRecorder,
    Rate,
    dense_rate,
    record_products,
    square_peak,
    workload_peak,
)
from throughput_run import context, headline, measure, note_unrecorded, setup

# what tests/ and gpu_sections.py use through this module, the siblings' names among them
__all__ = [
    "FAMILIES",
    "Family",
    "Path_",
    "Product",
    "ProductRecorder",
    "Rate",
    "StandInGaussian",
    "StandInMaskedUniform",
    "TrainStep",
    "bench_family",
    "build",
    "dense_rate",
    "main",
    "make_split",
    "parse",
    "profile_breakdown",
    "record_products",
    "square_peak",
    "workload_peak",
]


def bench_family(family: Family, args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    """One family's JSON row: its paths set up, measured, and their figures."""
    run = setup(family, args, device)
    measure(run)
    note_unrecorded(run)
    return {**headline(run), **context(run)}


def print_table(rows: list[dict[str, Any]], device: torch.device, threads: int) -> None:
    print(
        f"\ndevice {device} ({_device_name(device)}), {threads} CPU threads, torch {torch.__version__}"
    )
    print(
        "peak: dense GFLOP/s of the step's own product shapes with the fastest kernel; mm: with "
        "torch.mm alone; sq.: a 1024^3 product; eager columns: the plain fp32 path, fp32 peaks"
    )
    head = (
        f"{'family':<12} {'prec':>5} {'img/s':>7} {'eager':>7} {'speedup':>7} {'GFLOP/img':>9} "
        f"{'GFLOP/s':>7} {'peak':>5} {'of peak':>7} {'mm pk':>5} {'of mm':>6} {'of sq.':>6} "
        f"{'eager/pk':>8} {'eager/mm':>8} {'mem MB':>6}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        print(
            f"{r['family']:<12} {r['precision']:>5} {r['images_per_s']:7.1f} "
            f"{r['eager_images_per_s']:7.1f} {r['speedup_vs_eager']:6.2f}x "
            f"{r['gflop_per_image']:9.3f} {r['gflops_per_s']:7.1f} {r['peak_gflops_per_s']:5.0f} "
            f"{r['fraction_of_peak']:7.1%} {r['mm_peak_gflops_per_s']:5.0f} "
            f"{r['fraction_of_mm_peak']:6.1%} {r['fraction_of_square_peak']:6.1%} "
            f"{r['eager_fraction_of_fp32_peak']:8.1%} {r['eager_fraction_of_fp32_mm_peak']:8.1%} "
            f"{r['peak_memory_mb']:6.1f}"
        )
    for r in rows:
        if r["compile_images_per_s"] is not None:
            print(
                f"compile ({r['family']}): {r['compile_images_per_s']:.1f} images/s "
                f"({r['compile_images_per_s'] / r['images_per_s']:.2f}x the default path), "
                f"first step after {r['compile_seconds']:.1f} s, "
                f"{r['compile_launches_per_step']:.0f} launches per step"
            )
    for r in rows:
        print(
            f"{r['family']}: {r['ops_per_step']:.0f} operators and "
            f"{r['syncs_per_step']:.2f} host syncs per training step"
        )
    print_breakdown(rows)
    print_ceilings(rows)
    for r in rows:
        for note in r["notes"]:
            print(f"note ({r['family']}): {note}")


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    # AVX2 or AVX512: the same step runs several times faster with AVX-512 BF16 (README, "Speed")
    return f"CPU, {torch.backends.cpu.get_cpu_capability()}"


def parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--quick", action="store_true", help="few steps and repeats (< 2 min on 2 cores)"
    )
    ap.add_argument("--json", type=Path, help="write one object per family to this file")
    ap.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    ap.add_argument("--threads", type=int, help="CPU threads (default: torch's, all cores)")
    names = [f.name for f in FAMILIES]
    ap.add_argument(
        "--family", action="append", choices=names, help="run only this family (repeatable)"
    )
    ap.add_argument("--families", help="comma-separated families (default: all)")
    ap.add_argument(
        "--precision", default="auto", choices=["auto", "fp32", "bf16"], help="fast path"
    )
    ap.add_argument(
        "--compile", action="store_true",
        help="also time the fast path with train.compile on, and its cold start (slow: 20-150 s)",
    )  # fmt: skip
    ap.add_argument(
        "--profile-steps", type=int,
        help="fast-path steps profiled for the time breakdown (3; 2 with --quick; 0: none)",
    )  # fmt: skip
    ap.add_argument(
        "--cpu-matmul", default="auto", choices=["auto", "blas", "onednn"],
        help="fp32 linear kernel of the fast path on the CPU (train.cpu_matmul)",
    )  # fmt: skip
    ap.add_argument(
        "--batch",
        type=int,
        help="batch size of every family (default 64; 16 for conv with --quick)",
    )
    ap.add_argument("--steps", type=int, help="training steps per timed repeat")
    ap.add_argument("--repeats", type=int, help="timed repeats per path (interleaved)")
    ap.add_argument("--warmup", type=int, help="untimed steps per path first")
    args = ap.parse_args(argv)
    quick = args.quick
    args.steps = args.steps or (2 if quick else 5)
    args.repeats = args.repeats or (3 if quick else 5)
    args.warmup = args.warmup if args.warmup is not None else (1 if quick else 3)
    args.peak_seconds = 2.0 if quick else 8.0  # per workload peak, over its distinct shapes
    if args.profile_steps is None:
        args.profile_steps = 2 if quick else 3
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    wanted = [*(args.family or []), *(args.families.split(",") if args.families else [])]
    wanted = wanted or [f.name for f in FAMILIES]
    unknown = set(wanted) - {f.name for f in FAMILIES}
    if unknown:
        print(
            f"error: unknown families {sorted(unknown)}; valid: {[f.name for f in FAMILIES]}",
            file=sys.stderr,
        )
        return 2
    rows = []
    for family in FAMILIES:
        if family.name in wanted:
            t = time.perf_counter()
            rows.append(bench_family(family, args, device))
            print(f"{family.name}: {time.perf_counter() - t:.0f} s", file=sys.stderr, flush=True)
    print_table(rows, device, torch.get_num_threads())
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
