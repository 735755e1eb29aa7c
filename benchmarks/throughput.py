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
name is installed, the benchmark uses the stand-ins defined below (same elementwise work as spec 2.3,
3.1) and says so in its output.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from grouping.accel.cpu_linear import onednn_linear_works, onednn_product, use_cpu_matmul
from grouping.accel.device import resolve_device
from grouping.accel.optim import make_adam
from grouping.accel.precision import Precision, install_fp32_outputs, resolve_precision
from grouping.data.batches import Prefetcher, iterate_batches
from grouping.engine.em import NeuralEM
from grouping.plugin_api.interfaces import ArraySplit, Likelihood, NetworkSpec, Noise
from grouping.plugin_api.registry import get_registry
from grouping.training.batch_step import TrainStep
from grouping.training.setup import compiled

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling module below, when imported
from step_counts import count_launches, count_step, profile_compiled_kernels
from step_profile import (
    ceilings,
    first_step_seconds,
    print_breakdown,
    print_ceilings,
    profile_breakdown,
)

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
        net_cls.Config.model_validate(family.network_options), NetworkSpec(family.image)
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

#: ``--quick`` trains the conv families at this batch size unless ``--batch`` is given (a conv step
#: at batch 64 takes about a second on two cores); otherwise every family trains at batch 64.
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


@dataclass(frozen=True)
class Product:
    """One matrix product of a training step as a dense GEMM: ``count`` x (m, k) @ (k, n) in dtype."""

    m: int
    k: int
    n: int
    count: int
    dtype: torch.dtype

    @property
    def flops(self) -> int:
        return 2 * self.count * self.m * self.k * self.n


def _conv_products(
    x: Tensor, weight: Tensor, spatial_out: tuple[int, ...], groups: int, mask: tuple[bool, ...]
) -> list[Product]:
    """The GEMMs of a convolution (im2col view): forward, grad of the input, grad of the weight,
    as selected by ``mask``. x (N, C_in, ...), weight (C_out, C_in / groups, *kernel)."""
    rows = x.shape[0] * math.prod(spatial_out)  # one row per output position
    taps = math.prod(weight.shape[1:])  # C_in / groups * kernel volume
    out = weight.shape[0] // groups
    shapes = [(rows, taps, out), (rows, out, taps), (out, rows, taps)]
    return [Product(*mkn, groups, x.dtype) for mkn, on in zip(shapes, mask, strict=True) if on]


class ProductRecorder(TorchDispatchMode):
    """Records every matmul and convolution that runs while active, as ``Product`` GEMMs."""

    def __init__(self) -> None:
        super().__init__()
        self.products: list[Product] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        out = func(*args, **(kwargs or {}))
        aten = torch.ops.aten
        packet = func.overloadpacket
        if packet is aten.mm:
            a, b = args[0], args[1]
            self.products.append(Product(a.shape[0], a.shape[1], b.shape[1], 1, a.dtype))
        elif packet is aten.addmm:
            a, b = args[1], args[2]
            self.products.append(Product(a.shape[0], a.shape[1], b.shape[1], 1, a.dtype))
        elif packet is getattr(torch.ops.mkldnn, "_linear_pointwise", None):  # grouping.cpu_linear
            a, w = args[0], args[1]
            self.products.append(Product(a.shape[0], a.shape[1], w.shape[0], 1, a.dtype))
        elif packet is aten.bmm:
            a, b = args[0], args[1]
            self.products.append(Product(a.shape[1], a.shape[2], b.shape[2], a.shape[0], a.dtype))
        elif packet is aten.convolution:
            x, weight, transposed, groups = args[0], args[1], args[6], args[8]
            spatial = tuple((x if transposed else out).shape[2:])
            self.products += _conv_products(x, weight, spatial, groups, (True, False, False))
        elif packet is aten.convolution_backward:
            grad_out, x, weight, transposed, groups = args[0], args[1], args[2], args[7], args[9]
            spatial = tuple((x if transposed else grad_out).shape[2:])
            mask = (False, *args[10][:2])
            self.products += _conv_products(x, weight, spatial, groups, mask)
        return out


def record_products(
    path: Path_, split: ArraySplit, family: Family, batch: int, device: torch.device
) -> tuple[float, list[Product]]:
    """Matmul/conv FLOPs of one training image (forward + backward) and every product of the step."""
    features, _ = next(
        iter(iterate_batches(split, np.arange(batch), batch, family.steps + 1, device))
    )
    with FlopCounterMode(display=False) as counter, ProductRecorder() as recorder:
        path.step(features, path.generator)
    return counter.get_total_flops() / batch, recorder.products


@dataclass
class Rate:
    """Dense GFLOP/s of one product shape: with ``torch.mm``/``torch.bmm`` alone (``mm``), and with
    the fastest kernel torch offers for it (``best``: on the CPU in fp32, the better of the BLAS
    and oneDNN, which differ twofold on AMD CPUs with AVX-512)."""

    mm: float = 0.0
    best: float = 0.0

    def keep_best(self, other: Rate) -> None:
        self.mm, self.best = max(self.mm, other.mm), max(self.best, other.best)


def dense_rate(shape: Product, device: torch.device, seconds: float) -> Rate:
    """Dense rates of ``shape.count`` x (m, k) @ (k, n) in ``shape.dtype`` (see ``Rate``)."""
    m, k, n, count = shape.m, shape.k, shape.n, shape.count
    a = torch.randn(count, m, k, device=device).to(shape.dtype)
    b = torch.randn(count, k, n, device=device).to(shape.dtype)
    if count > 1:
        mm = _timed_rate(lambda: torch.bmm(a, b), shape.flops, device, seconds)
        return Rate(mm, mm)
    mm = _timed_rate(lambda: torch.mm(a[0], b[0]), shape.flops, device, seconds)
    best = mm
    if device.type == "cpu" and shape.dtype == torch.float32 and onednn_linear_works():
        w = b[0].t()
        onednn = _timed_rate(lambda: onednn_product(a[0], w, None), shape.flops, device, seconds)
        best = max(best, onednn)
    return Rate(mm, best)


def _timed_rate(product: Any, flops: int, device: torch.device, seconds: float) -> float:
    """GFLOP/s of ``product()``: the median of the faster half of repeated timings over about
    ``seconds`` (at least 3 timings)."""
    for _ in range(2):
        product()
    sync(device)
    samples: list[float] = []
    start = time.perf_counter()
    while len(samples) < 3 or time.perf_counter() - start < seconds:
        t = time.perf_counter()
        product()
        sync(device)
        samples.append(flops / (time.perf_counter() - t))
    return statistics.median(sorted(samples)[len(samples) // 2 :]) / 1e9


def workload_peak(
    products: list[Product], device: torch.device, seconds: float, rates: dict[Product, Rate]
) -> Rate:
    """GFLOP/s of the step's products run alone as dense GEMMs: their FLOPs over their time, with
    ``torch.mm`` alone and with the fastest kernel.

    ``rates`` (shape -> Rate) keeps the best rates seen per distinct shape, so calling this again
    (after the timed steps) can only raise a rate that a busy machine had lowered.
    """
    distinct = list(dict.fromkeys(products))
    for shape in distinct:
        rates.setdefault(shape, Rate()).keep_best(
            dense_rate(shape, device, seconds / len(distinct))
        )
    flops = sum(p.flops for p in products) / 1e9
    return Rate(
        mm=flops / sum(p.flops / 1e9 / rates[p].mm for p in products),
        best=flops / sum(p.flops / 1e9 / rates[p].best for p in products),
    )


def square_peak(dtype: torch.dtype, device: torch.device, seconds: float) -> float:
    """Dense GFLOP/s of a 1024^3 product in ``dtype``, with the fastest kernel."""
    return dense_rate(Product(1024, 1024, 1024, 1, dtype), device, seconds).best


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


def make_paths(
    family: Family, args: argparse.Namespace, device: torch.device, precision: Precision
) -> tuple[list[Path_], bool]:
    """The ``eager`` and ``fast`` paths (and ``compile`` with ``--compile``) on models with the same
    initial weights; and whether the fast path's fp32 linears go through oneDNN."""
    prefetch = 2 if device.type == "cuda" else 0
    settings = [("eager", "fp32", 0, False, "blas"), ("fast", precision, prefetch, False, None)]
    if args.compile:
        settings.append(("compile", precision, prefetch, True, None))
    paths, onednn = [], False
    for label, prec, depth, compile_, cpu_matmul in settings:
        model, noise = build(family, seed=0)
        model = model.to(device)
        fast_linears = use_cpu_matmul(model, cpu_matmul or args.cpu_matmul, device)
        if prec == "bf16":
            install_fp32_outputs(model)  # as grouping.training.setup.prepare_model does
        onednn = onednn or (label == "fast" and fast_linears)
        # eager: torch's default Adam loop; the trainer's paths: its fused Adam where torch has one
        params = list(model.parameters())
        adam = torch.optim.Adam(params, lr=1e-3) if label == "eager" else make_adam(params, 1e-3)
        step = TrainStep(
            model, adam, noise, device,
            precision=prec, forward=compiled(model, compile_),  # type: ignore[arg-type]
        )  # fmt: skip
        g = torch.Generator(device=device).manual_seed(0)
        paths.append(Path_(label, step, depth, g))
    return paths, onednn


def batch_maker(
    split: ArraySplit, family: Family, batch: int, device: torch.device
) -> Callable[[], Tensor]:
    """A function that returns the split's first batch, for counting one step."""
    order = np.arange(batch) % len(split)

    def one_batch() -> Tensor:
        features, _ = next(iter(iterate_batches(split, order, batch, family.steps + 1, device)))
        return features

    return one_batch


def bench_family(family: Family, args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    quick_conv = args.quick and not family.static
    batch = args.batch or (QUICK_CONV_BATCH if quick_conv else 64)
    split = make_split(family, batch * 4, seed=1)
    precision: Precision = resolve_precision(args.precision, device)
    paths, onednn = make_paths(family, args, device, precision)
    eager, fast = paths[:2]
    compiled = paths[2] if len(paths) > 2 else None
    frames = family.steps + 1
    compile_s = launches = None
    if compiled is not None:  # first, so that nothing else has compiled anything for it
        profile_compiled_kernels()
        compile_s = first_step_seconds(compiled.step, split, frames, batch, compiled.generator)
        one_batch = batch_maker(split, family, batch, device)
        launches = count_launches(compiled.step, one_batch, compiled.generator)
    flops, eager_products = record_products(eager, split, family, batch, device)
    _, fast_products = record_products(fast, split, family, batch, device)
    # The dense rates are measured before and after the timed steps and each shape's best is kept:
    # a machine shared with other work can only slow a measurement down.
    rates: dict[Product, Rate] = {}
    for products in (fast_products, eager_products):
        workload_peak(products, device, args.peak_seconds, rates)
    t0 = time.perf_counter()
    for p in paths:  # warm-up (and any recompilation)
        run_steps(p, split, family, batch, args.warmup, device)
    warm_s = time.perf_counter() - t0
    ratios = []
    for _ in range(args.repeats):
        for p in paths:
            p.rates.append(run_steps(p, split, family, batch, args.steps, device))
        ratios.append(fast.rates[-1] / eager.rates[-1])
    counts = count_step(fast.step, batch_maker(split, family, batch, device), fast.generator)
    shares = None
    if args.profile_steps:
        shares = profile_breakdown(
            fast.step, split, frames, batch, args.profile_steps, fast.prefetch, fast.generator
        )
    peak = workload_peak(fast_products, device, args.peak_seconds, rates)
    fp32_peak = workload_peak(eager_products, device, args.peak_seconds, rates)
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    square = square_peak(dtype, device, args.peak_seconds / 4)
    square_fp32 = square if dtype == torch.float32 else square_peak(torch.float32, device, 0.5)
    rate = statistics.median(fast.rates)
    eager_rate = statistics.median(eager.rates)
    speedup = statistics.median(ratios)
    gflops = rate * flops / 1e9
    fraction = gflops / peak.best
    eager_gflops = eager_rate * flops / 1e9
    recorded = sum(p.flops for p in eager_products) / batch
    if abs(recorded - flops) > 0.01 * flops:
        family.notes.append(
            f"the recorded products hold {recorded / 1e9:.3f} GFLOP/image against the counter's "
            f"{flops / 1e9:.3f}: the peak weights only the recorded ones"
        )
    return {
        "family": family.name,
        "images_per_s": rate,
        "gflops_per_s": gflops,
        "peak_gflops_per_s": peak.best,
        "fraction_of_peak": fraction,
        "speedup_vs_eager": speedup,
        **counts,
        "peak_memory_mb": peak_memory_mb(fast, split, family, batch, device),
        "compile_images_per_s": statistics.median(compiled.rates) if compiled else None,
        "compile_seconds": compile_s,
        "compile_launches_per_step": launches,
        "breakdown": shares,
        "ceilings": ceilings(fraction, speedup, shares["matmul_conv"]) if shares else None,
        # context
        "what": family.what,
        "components": family.components,
        "steps": family.steps,
        "batch": batch,
        "precision": precision,
        "cpu_matmul": "onednn" if onednn else "blas",
        "compile": bool(args.compile),
        "compile_rates": compiled.rates if compiled else None,
        "profile_steps": args.profile_steps,
        "mm_peak_gflops_per_s": peak.mm,
        "fraction_of_mm_peak": gflops / peak.mm,
        "square_peak_gflops_per_s": square,
        "fraction_of_square_peak": gflops / square,
        "eager_images_per_s": eager_rate,
        "eager_gflops_per_s": eager_gflops,
        "fp32_peak_gflops_per_s": fp32_peak.best,
        "eager_fraction_of_fp32_peak": eager_gflops / fp32_peak.best,
        "fp32_mm_peak_gflops_per_s": fp32_peak.mm,
        "eager_fraction_of_fp32_mm_peak": eager_gflops / fp32_peak.mm,
        "fp32_square_peak_gflops_per_s": square_fp32,
        "gflop_per_image": flops / 1e9,
        "distinct_product_shapes": len(dict.fromkeys(fast_products)),
        "fast_rates": fast.rates,
        "eager_rates": eager.rates,
        "warmup_s": warm_s,
        "notes": family.notes,
    }


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
