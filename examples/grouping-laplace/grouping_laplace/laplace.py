"""Laplace pixels: P(x | psi) = exp(-|x - psi| / b) / (2 b), a heavier-tailed Gaussian.

The component's prediction psi is the Laplace location; the scale b is fixed (a temperature of the
E-step, as the Gaussian's sigma is in the paper). For RGB images the engine multiplies the three
per-channel densities, so a pixel belongs to the component that predicts all its channels.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from pydantic import Field
from torch import Tensor

from grouping import hookimpl
from grouping.plugins import Likelihood, PluginConfig


class LaplaceLikelihood(Likelihood):
    """Laplace(psi, b) per pixel and channel, with sigmoid outputs so that psi lies in (0, 1)."""

    name = "laplace"
    description = "Laplace pixels (real-valued images): L1 loss inside a cluster, KL to a prior"
    default_noise: ClassVar[str] = "none"

    class Config(PluginConfig):
        scale: float = Field(default=0.25, gt=0.0, le=10.0, description="Laplace scale b")
        prior: float = Field(
            default=0.0, ge=0.0, le=1.0, description="location of the inter-cluster prior"
        )

    config: Config

    def activation(self, raw: Tensor) -> Tensor:
        return torch.sigmoid(raw)

    def pixel_prob(self, x: Tensor, psi: Tensor) -> Tensor:
        b = self.config.scale
        return torch.exp(-(x - psi).abs() / b) / (2.0 * b)

    def intra(self, x: Tensor, psi: Tensor) -> Tensor:
        """-log P(x | psi) = |x - psi| / b + log 2b, exactly."""
        b = self.config.scale
        return (x - psi).abs() / b + math.log(2.0 * b)

    def inter(self, psi: Tensor) -> Tensor:
        """KL(Laplace(prior, b) || Laplace(psi, b)) = d / b + exp(-d / b) - 1 with d = |psi - prior|."""
        b = self.config.scale
        d = (psi - self.config.prior).abs() / b
        return d + torch.exp(-d) - 1.0


@hookimpl
def register_likelihoods(register):  # type: ignore[no-untyped-def]
    register(LaplaceLikelihood)
