"""Gaussian pixels for grey-scale images (spec 2.3, 3.1, 10).

The E-step and the outer loss use different standard deviations, as the original code does:

* E-step: the density N(x; psi, ``sigma``) with ``sigma`` = 0.25 a standard deviation (variance
  0.0625), not the variance the paper's text names. It acts as a temperature on gamma: a smaller
  sigma gives harder assignments.
* Loss: intra = (psi - x)^2 / (2 s^2) + log s and inter = KL(N(psi, s) || N(prior_mean, s))
  = (psi - prior_mean)^2 / (2 s^2) with s = ``loss_sigma`` = 1, i.e. 1/2 (psi - x)^2 and
  1/2 psi^2 with the defaults. The original's configured prior sigma (0.25) never enters.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from pydantic import Field
from torch import Tensor

from grouping.plugins import Likelihood, PluginConfig, Register, hookimpl


class GaussianLikelihood(Likelihood):
    """P(x | psi) = N(x; psi, sigma^2); identity outputs; prior "predict the mean" outside a cluster."""

    name = "gaussian"
    description = "Gaussian pixels (grey-scale images): squared error inside a cluster, KL outside"
    default_noise: ClassVar[str] = "masked-uniform"
    #: identity: d log N(x; psi, sigma) / d psi = (x - psi) / sigma^2, so n-em applies (spec 2.5)
    canonical_link: ClassVar[bool] = True
    #: Chosen by ``--likelihood gaussian`` when no data set and no preset are named: a few minutes of
    #: flying MNIST, from whatever digit source is available (see ``config.implied_preset``).
    default_preset: ClassVar[str | None] = "quickstart-flying-mnist"

    class Config(PluginConfig):
        sigma: float = Field(
            default=0.25,
            gt=0.0,
            le=1e6,
            description="E-step standard deviation, a temperature on gamma (spec 2.3)",
        )
        loss_sigma: float = Field(
            default=1.0,
            gt=0.0,
            le=1e6,
            description="standard deviation of the outer loss (spec 3.1)",
        )
        prior_mean: float = Field(
            default=0.0, allow_inf_nan=False, description="pixel prior mean of the inter-cluster KL"
        )

    config: Config

    def activation(self, raw: Tensor) -> Tensor:
        return raw

    def pixel_prob(self, x: Tensor, psi: Tensor) -> Tensor:
        """The density exp(-(x - psi)^2 / (2 sigma^2)) / (sigma sqrt(2 pi)), in linear space."""
        sigma = self.config.sigma
        norm = 1.0 / (sigma * math.sqrt(2.0 * math.pi))
        return norm * torch.exp(-((x - psi) ** 2) / (2.0 * sigma**2))

    def intra(self, x: Tensor, psi: Tensor) -> Tensor:
        s = self.config.loss_sigma
        return (psi - x) ** 2 / (2.0 * s**2) + math.log(s)

    def inter(self, psi: Tensor) -> Tensor:
        s = self.config.loss_sigma
        return (psi - self.config.prior_mean) ** 2 / (2.0 * s**2)


@hookimpl
def register_likelihoods(register: Register) -> None:
    register(GaussianLikelihood)
