"""What ``throughput.py`` trains: the network families, their models and random data, and the
``eager``/``fast``/``compile`` paths through the trainer's step. A module of its own because the
measuring (``throughput_peaks.py``, ``throughput_run.py``) and ``gpu_sections.py`` use them too.

Where the Gaussian likelihood or the masked-uniform noise of ``conv-mnist`` is not installed as a
plugin, the stand-ins below take its place (same elementwise work as spec 2.3, 3.1).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from grouping.accel.cpu_linear import use_cpu_matmul
from grouping.accel.optim import make_adam
from grouping.accel.precision import Precision, install_fp32_outputs
from grouping.data.batches import iterate_batches
from grouping.engine.em import NeuralEM
from grouping.plugin_api.interfaces import ArraySplit, Likelihood, NetworkSpec, Noise
from grouping.plugin_api.registry import get_registry
from grouping.training.batch_step import TrainStep
from grouping.training.setup import compiled

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
# the paths through the trainer's step


@dataclass
class Path_:
    """One way of training a family: its step, its loader's prefetch depth and its noise generator;
    ``rates`` collects its images/s, one per timed repeat."""

    label: str
    step: TrainStep
    prefetch: int
    generator: torch.Generator
    rates: list[float] = field(default_factory=list)


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
