"""What a training step is measured against: the matrix products it runs (``ProductRecorder``), the
machine's dense rate at their shapes (``workload_peak``: the peak), and the memory the step holds.
A module of its own so that ``throughput.py``, whose docstring says what each figure means, stays a
script that runs these and prints them.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from throughput_families import Family, Path_
from torch import Tensor
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from grouping.accel.cpu_linear import onednn_linear_works, onednn_product
from grouping.data.batches import iterate_batches
from grouping.plugin_api.interfaces import ArraySplit


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# --------------------------------------------------------------------------------------------------
# the products of a step


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


# --------------------------------------------------------------------------------------------------
# dense rates and peaks


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


# --------------------------------------------------------------------------------------------------
# memory


def peak_memory_mb(
    path: Path_, split: ArraySplit, family: Family, batch: int, device: torch.device
) -> float:
    """The CUDA high-water mark, or the CPU's accounted training memory (see throughput.py)."""
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
