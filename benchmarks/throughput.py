"""Training throughput of the project's default path against a plain eager path, per network family.

    python benchmarks/throughput.py [--quick] [--json FILE] [--device auto|cpu|cuda] [--threads N]
                                    [--families fc-static,conv-shapes,conv-mnist] [--compile]

For each family it trains (noise, forward, backward, Adam step) on in-memory random data through the
same loop the trainer runs (``grouping.loader.Prefetcher`` over ``grouping.evaluate.iterate_batches``
feeding ``grouping.step.TrainStep``) and reports the median images/s over repeats, after warm-up:

* ``eager``: fp32, no prefetching, no compile: the plain PyTorch path;
* ``fast``: the project default, i.e. ``train.precision = auto`` (bf16 matmuls with fp32 elementwise
  work where the device multiplies bf16 natively), ``train.prefetch = 2`` and ``train.compile`` off
  (on with ``--compile``).

The two paths run interleaved, repeat by repeat, on two models with the same initial weights, and the
speed-up is the median of the per-repeat ratios: on a machine shared with other work the absolute
figures wander, the ratio much less.

FLOPs are those of the matmuls and convolutions of one training image, forward and backward, counted
by ``torch.utils.flop_counter.FlopCounterMode`` on a real training step (2 per multiply-add). The peak
is the machine's own dense matmul rate measured in the same run, in the precision the path uses: the
best of a 1024^3 product and the family's largest matmul shape. Peak memory is the CUDA allocator's
high-water mark on CUDA; on the CPU it is parameters, gradients and Adam state, the batch, and the
tensors autograd saved for backward in one step (counted with saved-tensor hooks), since the CPU
allocator keeps no statistics.

Family ``conv-mnist`` needs a Gaussian likelihood and masked-uniform noise; when no plugin of that
name is installed, the benchmark uses the stand-ins defined below (same elementwise work as spec 2.3,
3.1) and says so in its output.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import statistics
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor
from torch.utils.flop_counter import FlopCounterMode

from grouping.device import resolve_device
from grouping.em import NeuralEM
from grouping.evaluate import iterate_batches
from grouping.interfaces import ArraySplit, Likelihood, NetworkSpec, Noise
from grouping.loader import Prefetcher
from grouping.precision import Precision, resolve_precision
from grouping.registry import get_registry
from grouping.step import TrainStep

# --------------------------------------------------------------------------------------------------
# stand-ins for plugins that may not be installed


class StandInGaussian(Likelihood):
    """Gaussian pixels as the original code computes them (spec 2.3, 3.1): E-step density with
    sigma = 0.25, intra 1/2 (psi - x)^2, inter 1/2 psi^2. Benchmark-local."""

    name = "gaussian"
    description = "benchmark stand-in"
    SIGMA: ClassVar[float] = 0.25

    def activation(self, raw: Tensor) -> Tensor:
        return raw

    def pixel_prob(self, x: Tensor, psi: Tensor) -> Tensor:
        z = (x - psi) / self.SIGMA
        return torch.exp(-0.5 * z * z) / (self.SIGMA * math.sqrt(2 * math.pi))

    def intra(self, x: Tensor, psi: Tensor) -> Tensor:
        return 0.5 * (psi - x) ** 2

    def inter(self, psi: Tensor) -> Tensor:
        return 0.5 * psi**2


class StandInMaskedUniform(Noise):
    """Replace each pixel by U(0, 1) with probability 0.2 (spec 4.1). Benchmark-local."""

    name = "masked-uniform"
    description = "benchmark stand-in"

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        mask = torch.rand(x.shape, generator=generator, device=x.device) < 0.2
        return torch.where(mask, torch.rand(x.shape, generator=generator, device=x.device), x)


# --------------------------------------------------------------------------------------------------
# families


@dataclass
class Family:
    name: str
    what: str
    network: str
    network_options: dict[str, Any]
    likelihood: str
    noise: str
    image: tuple[int, int, int]
    components: int
    steps: int
    static: bool
    step_weights: str  # "last" or "all"
    gradient_gamma: bool
    inter_weight: float
    notes: list[str] = field(default_factory=list)


FAMILIES = [
    Family(
        "fc-static", "static shapes, fc RNN-EM (spec 5.2)", "fc", {"hidden": 250},
        "bernoulli", "bitflip", (28, 28, 1), 3, 15, True, "last", True, 1.0,
    ),
    Family(
        "conv-shapes", "flying shapes, conv (spec 5.3)", "conv", {},
        "bernoulli", "bitflip", (28, 28, 1), 3, 20, False, "all", False, 1.0,
    ),
    Family(
        "conv-mnist", "flying MNIST, conv (spec 5.4)", "conv",
        {"encoder_channels": [32, 64, 128], "hidden": 250, "input_norm": True},
        "gaussian", "masked-uniform", (24, 24, 1), 2, 20, False, "all", False, 0.2,
    ),
]  # fmt: skip


def _plugin(kind: str, name: str, fallback: type, notes: list[str]) -> Any:
    registry = get_registry()
    try:
        cls = registry.get(kind, name).cls  # type: ignore[arg-type]
    except Exception:
        note = f"{kind} {name!r} is not installed: a benchmark-local stand-in is used"
        if note not in notes:
            notes.append(note)
        cls = fallback
    return cls


def build(family: Family, seed: int) -> tuple[NeuralEM, Noise]:
    """The family's model (fixed seed) and noise, through the registry where possible."""
    registry = get_registry()
    like_cls = _plugin("likelihood", family.likelihood, StandInGaussian, family.notes)
    noise_cls = _plugin("noise", family.noise, StandInMaskedUniform, family.notes)
    likelihood = like_cls(like_cls.Config())
    noise = noise_cls(noise_cls.Config())
    net_cls = registry.get("network", family.network).cls
    updater_cls = registry.get("updater", "rnn-em").cls
    torch.manual_seed(seed)
    network = net_cls(
        net_cls.Config.model_validate(family.network_options), NetworkSpec(family.image, True)
    )
    updater = updater_cls(updater_cls.Config(), network, likelihood)
    weights = [0.0] * (family.steps - 1) + [1.0] if family.step_weights == "last" else None
    model = NeuralEM(
        updater,
        likelihood,
        components=family.components,
        steps=family.steps,
        step_weights=weights or [1.0] * family.steps,
        gradient_gamma=family.gradient_gamma,
        inter_weight=family.inter_weight,
    )
    return model, noise


def make_split(family: Family, samples: int, seed: int) -> ArraySplit:
    """Random data of the family's shape: binary for Bernoulli, uniform in [0, 1] otherwise."""
    g = torch.Generator().manual_seed(seed)
    frames = 1 if family.static else family.steps + 1
    shape = (samples, frames, *family.image)
    x = torch.rand(shape, generator=g)
    if family.likelihood == "bernoulli":
        x = (x < 0.25).float()
    groups = torch.randint(0, 4, shape[:4], generator=g, dtype=torch.uint8)
    return ArraySplit(x, groups)


# --------------------------------------------------------------------------------------------------
# measurement

#: ``--quick`` trains the conv families at this batch size (a conv step at batch 64 takes seconds
#: on two cores); the full run uses ``--batch`` (64) for every family.
QUICK_CONV_BATCH = 16


@dataclass
class Path_:
    label: str
    step: TrainStep
    prefetch: int
    generator: torch.Generator
    rates: list[float] = field(default_factory=list)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


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


def count_flops(
    path: Path_, split: ArraySplit, family: Family, batch: int, device: torch.device
) -> tuple[float, tuple[int, int, int]]:
    """Matmul/conv FLOPs of one training image (forward + backward), and the largest mm shape."""
    features, _ = next(
        iter(iterate_batches(split, np.arange(batch), batch, family.steps + 1, device))
    )
    shapes: list[tuple[int, int, int]] = []
    with FlopCounterMode(display=False) as counter, _record_mm_shapes(path.step.model, shapes):
        path.step(features, path.generator)
    flops = counter.get_total_flops()
    largest = max(shapes, key=lambda s: s[0] * s[1] * s[2]) if shapes else (1024, 1024, 1024)
    return flops / batch, largest


@contextlib.contextmanager
def _record_mm_shapes(model: torch.nn.Module, out: list[tuple[int, int, int]]) -> Iterator[None]:
    """Record (M, K, N) of every linear layer call of ``model`` (forward only) while active."""
    handles = []

    def hook(module: torch.nn.Module, args: tuple[Tensor, ...]) -> None:
        x = args[0]
        out.append((x.numel() // x.shape[-1], x.shape[-1], module.out_features))  # type: ignore[arg-type]

    for module in model.modules():
        if isinstance(module, torch.nn.Linear):
            handles.append(module.register_forward_pre_hook(hook))
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def matmul_peak(
    shape: tuple[int, int, int], dtype: torch.dtype, device: torch.device, seconds: float
) -> float:
    """Best dense matmul GFLOP/s of (M, K) @ (K, N) in ``dtype`` and of a 1024^3 product."""
    best = 0.0
    for m, k, n in dict.fromkeys((shape, (1024, 1024, 1024))):
        a = torch.randn(m, k, device=device).to(dtype)
        b = torch.randn(k, n, device=device).to(dtype)
        for _ in range(3):
            a @ b
        sync(device)
        reps, start = 0, time.perf_counter()
        samples = []
        while time.perf_counter() - start < seconds:
            t = time.perf_counter()
            for _ in range(5):
                a @ b
            sync(device)
            samples.append(5 * 2 * m * k * n / (time.perf_counter() - t))
            reps += 1
        best = max(best, statistics.median(sorted(samples)[len(samples) // 2 :]))  # upper half
    return best / 1e9


def peak_memory_mb(
    path: Path_, split: ArraySplit, family: Family, batch: int, device: torch.device
) -> float:
    """See the module docstring: CUDA high-water mark, or the CPU's accounted training memory."""
    features, _ = next(
        iter(iterate_batches(split, np.arange(batch), batch, family.steps + 1, device))
    )
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        path.step(features, path.generator)
        return torch.cuda.max_memory_allocated(device) / 2**20
    storages: dict[int, int] = {}

    def pack(t: Tensor) -> Tensor:
        s = t.untyped_storage()
        storages[s.data_ptr()] = s.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        path.step(features, path.generator)
    params = sum(p.numel() * p.element_size() for p in path.step.model.parameters())
    total = sum(storages.values()) + 4 * params + features.numel() * features.element_size()
    return total / 2**20


def bench_family(family: Family, args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    batch = args.batch if family.static or not args.quick else min(args.batch, QUICK_CONV_BATCH)
    split = make_split(family, batch * 4, seed=1)
    precision: Precision = resolve_precision(args.precision, device)
    paths = []
    for label, prec, prefetch, compile_ in (
        ("eager", "fp32", 0, False),
        ("fast", precision, 2, args.compile),
    ):
        model, noise = build(family, seed=0)
        model = model.to(device)
        step = TrainStep(
            model, torch.optim.Adam(model.parameters(), lr=1e-3), noise, device,
            precision=prec, compile=compile_,  # type: ignore[arg-type]
        )  # fmt: skip
        g = torch.Generator(device=device).manual_seed(0)
        paths.append(Path_(label, step, prefetch, g))
    eager, fast = paths
    peaks: dict[str, float] = {}
    for dtype_name in ("fp32", "bf16") if precision == "bf16" else ("fp32",):
        dtype = torch.float32 if dtype_name == "fp32" else torch.bfloat16
        peaks[dtype_name] = matmul_peak((1024, 1024, 1024), dtype, device, args.peak_seconds)
    flops, largest = count_flops(eager, split, family, batch, device)
    t0 = time.perf_counter()
    for p in paths:  # warm-up (and compilation, when asked)
        run_steps(p, split, family, batch, args.warmup, device)
    warm_s = time.perf_counter() - t0
    ratios = []
    for _ in range(args.repeats):
        for p in paths:
            p.rates.append(run_steps(p, split, family, batch, args.steps, device))
        ratios.append(fast.rates[-1] / eager.rates[-1])
    # the peak is the best of a measurement before and after the timed steps (shared machines)
    for dtype_name in ("fp32", "bf16") if precision == "bf16" else ("fp32",):
        dtype = torch.float32 if dtype_name == "fp32" else torch.bfloat16
        again = matmul_peak(largest, dtype, device, args.peak_seconds)
        peaks[dtype_name] = max(peaks.get(dtype_name, 0.0), again)
    rate = statistics.median(fast.rates)
    eager_rate = statistics.median(eager.rates)
    gflops = rate * flops / 1e9
    peak = peaks[precision]
    return {
        "family": family.name,
        "images_per_s": rate,
        "gflops_per_s": gflops,
        "peak_gflops_per_s": peak,
        "fraction_of_peak": gflops / peak,
        "speedup_vs_eager": statistics.median(ratios),
        "peak_memory_mb": peak_memory_mb(fast, split, family, batch, device),
        # context
        "what": family.what,
        "components": family.components,
        "steps": family.steps,
        "batch": batch,
        "precision": precision,
        "compile": bool(args.compile),
        "eager_images_per_s": eager_rate,
        "eager_gflops_per_s": eager_rate * flops / 1e9,
        "eager_fraction_of_fp32_peak": eager_rate * flops / 1e9 / peaks["fp32"],
        "fp32_peak_gflops_per_s": peaks["fp32"],
        "gflop_per_image": flops / 1e9,
        "largest_matmul_mkn": list(largest),
        "fast_rates": fast.rates,
        "eager_rates": eager.rates,
        "warmup_s": warm_s,
        "notes": family.notes,
    }


def print_table(rows: list[dict[str, Any]], device: torch.device, threads: int) -> None:
    print(
        f"\ndevice {device} ({_device_name(device)}), {threads} CPU threads, torch {torch.__version__}"
    )
    head = (
        f"{'family':<12} {'prec':>5} {'img/s':>8} {'eager':>8} {'speedup':>8} {'GFLOP/img':>10} "
        f"{'GFLOP/s':>8} {'peak':>7} {'of peak':>8} {'eager/fp32pk':>12} {'mem MB':>8}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        print(
            f"{r['family']:<12} {r['precision']:>5} {r['images_per_s']:8.1f} "
            f"{r['eager_images_per_s']:8.1f} {r['speedup_vs_eager']:7.2f}x {r['gflop_per_image']:10.3f} "
            f"{r['gflops_per_s']:8.1f} {r['peak_gflops_per_s']:7.0f} {r['fraction_of_peak']:8.1%} "
            f"{r['eager_fraction_of_fp32_peak']:12.1%} {r['peak_memory_mb']:8.1f}"
        )
    for r in rows:
        for note in r["notes"]:
            print(f"note ({r['family']}): {note}")


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return "CPU"


def parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--quick", action="store_true", help="few steps and repeats (< 2 min on 2 cores)"
    )
    ap.add_argument("--json", type=Path, help="write one object per family to this file")
    ap.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    ap.add_argument("--threads", type=int, help="CPU threads (default: torch's, all cores)")
    ap.add_argument("--families", default=",".join(f.name for f in FAMILIES))
    ap.add_argument(
        "--precision", default="auto", choices=["auto", "fp32", "bf16"], help="fast path"
    )
    ap.add_argument("--compile", action="store_true", help="torch.compile the fast path")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, help="training steps per timed repeat")
    ap.add_argument("--repeats", type=int, help="timed repeats per path (interleaved)")
    ap.add_argument("--warmup", type=int, help="untimed steps per path first")
    args = ap.parse_args(argv)
    quick = args.quick
    args.steps = args.steps or (2 if quick else 5)
    args.repeats = args.repeats or (3 if quick else 5)
    args.warmup = args.warmup if args.warmup is not None else (1 if quick else 3)
    args.peak_seconds = 0.5 if quick else 2.0
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    wanted = args.families.split(",")
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
