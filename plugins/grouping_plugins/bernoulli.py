"""Bernoulli pixels for binary images (spec 2.3, 3.1)."""

from __future__ import annotations

from typing import ClassVar

import torch
from pydantic import Field
from torch import Tensor

from grouping.plugins import Likelihood, PluginConfig, hookimpl

#: psi is clipped to [CLIP, 1 - CLIP] inside logs, and KL ratios to [CLIP, 1 / CLIP], as the original
#: code does: without it the inter-cluster term with prior 0 diverges as psi -> 1 (pitfall 3).
CLIP = 1e-6


class BernoulliLikelihood(Likelihood):
    """P(x | psi) = psi^x (1 - psi)^(1 - x); sigmoid outputs; prior "predict black" outside a cluster."""

    name = "bernoulli"
    description = "Bernoulli pixels (binary images): BCE inside a cluster, KL to a prior outside"
    default_noise: ClassVar[str] = "bitflip"
    canonical_link: ClassVar[bool] = True  # sigmoid: d log P / d logit = x - psi
    support: ClassVar[tuple[float, float]] = (0.0, 1.0)  # a pixel is a probability of "on"

    class Config(PluginConfig):
        prior: float = Field(
            default=0.0, ge=0.0, le=1.0, description="pixel prior p of the inter-cluster KL"
        )
        sharpness: float = Field(
            default=1.0,
            gt=0.0,
            le=16.0,
            description="E-step exponent: gamma ~ P(x | psi)^sharpness (the paper's is 1)",
        )

    config: Config

    def activation(self, raw: Tensor) -> Tensor:
        return torch.sigmoid(raw)

    def pixel_prob(self, x: Tensor, psi: Tensor) -> Tensor:
        # x psi + (1 - x)(1 - psi) as one pass over the K-times larger psi: x is (B, 1, ...) in the
        # engine, so (1 - x) and (2x - 1) are cheap.
        p = torch.addcmul(1.0 - x, psi, 2.0 * x - 1.0)
        # A sharper E-step (not the paper's) feeds each component a more decisive mask.
        return p if self.config.sharpness == 1.0 else p.pow(self.config.sharpness)

    def intra(self, x: Tensor, psi: Tensor) -> Tensor:
        p = psi.clamp(CLIP, 1.0 - CLIP)
        return -(x * torch.log(p) + (1.0 - x) * torch.log1p(-p))

    def inter(self, psi: Tensor) -> Tensor:
        prior = self.config.prior
        q = psi.clamp(CLIP, 1.0 / CLIP)
        not_q = (1.0 - psi).clamp(CLIP, 1.0 / CLIP)
        out = (1.0 - prior) * torch.log(((1.0 - prior) / not_q).clamp(CLIP, 1.0 / CLIP))
        if prior > 0.0:
            out = out + prior * torch.log((prior / q).clamp(CLIP, 1.0 / CLIP))
        return out


@hookimpl
def register_likelihoods(register):  # type: ignore[no-untyped-def]
    register(BernoulliLikelihood)
