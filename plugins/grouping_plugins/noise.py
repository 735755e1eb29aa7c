"""Input corruptions (spec 4.1): bit flips for binary data, masked uniform noise for grey-scale
data, and none."""

from __future__ import annotations

import torch
from pydantic import Field
from torch import Tensor

from grouping.plugins import Noise, PluginConfig, hookimpl


class BitflipNoise(Noise):
    """x XOR n with n ~ Bernoulli(p) per pixel, for binary images."""

    name = "bitflip"
    description = "flip each binary pixel with probability p"

    class Config(PluginConfig):
        probability: float = Field(
            default=0.2, ge=0.0, le=1.0, description="chance that each pixel is flipped"
        )

    config: Config

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        flip = (
            torch.rand(x.shape, generator=generator, device=x.device) < self.config.probability
        ).to(x.dtype)
        return x + flip - 2.0 * x * flip


class MaskedUniformNoise(Noise):
    """m * v + (1 - m) * x with m ~ Bernoulli(p) and v ~ U(0, 1) per pixel, for grey-scale images.

    U(0, 1) spans the data range: a replaced pixel carries no information about the one it hides.
    """

    name = "masked-uniform"
    description = "replace each pixel with probability p by a uniform value in [0, 1]"

    class Config(PluginConfig):
        probability: float = Field(
            default=0.2,
            ge=0.0,
            le=1.0,
            description="chance that each pixel is replaced by a uniform value",
        )

    config: Config

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        mask = torch.rand(x.shape, generator=generator, device=x.device) < self.config.probability
        value = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        return torch.where(mask, value, x)


class NoNoise(Noise):
    """The clean input."""

    name = "none"
    description = "no corruption: the network sees the clean input"

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        return x


@hookimpl
def register_noises(register):  # type: ignore[no-untyped-def]
    register(BitflipNoise)
    register(MaskedUniformNoise)
    register(NoNoise)
