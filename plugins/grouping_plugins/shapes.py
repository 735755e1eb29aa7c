"""Static shapes (spec 6.3): 28x28 binary images of three sprites, generated from the seed."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
from pydantic import Field

from grouping.plugins import (
    SPLITS,
    ArraySplit,
    Dataset,
    PluginConfig,
    Split,
    SplitName,
    cached_split,
    hookimpl,
)
from grouping_plugins.sources.sprites import BOX, static_shapes


class SpriteDataset(Dataset):
    """Base of the sprite data sets (``shapes``, ``flying-shapes``): a square binary canvas of
    ``config.size`` pixels, one channel, Bernoulli pixels by default."""

    default_likelihood: ClassVar[str | None] = "bernoulli"
    config: Any  # the subclass's Config, which has ``size``

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (self.config.size, self.config.size, 1)

    @property
    def binary(self) -> bool:
        return True


class ShapesDataset(SpriteDataset):
    """Squares and (inverted) triangles at random positions; overlap and background are label 0.

    Each split is generated once, on first use, from its own stream of the run's seed, so the test
    split does not change when the training size does.
    """

    name = "shapes"
    description = "static binary shapes, 28x28, 3 sprites (generated from the seed, spec 6.3)"
    #: the last step's loss, as the paper trains on static images (spec 3.2)
    run_defaults: ClassVar[dict[str, dict[str, object]]] = {"model": {"loss_step_weights": "last"}}

    class Config(PluginConfig):
        objects: int = Field(default=3, ge=1, le=20, description="sprites per image")
        size: int = Field(default=28, ge=max(BOX), le=256, description="image height and width")

    config: Config

    @cached_split
    def split(self, name: SplitName) -> Split:
        rng = np.random.default_rng([self.seed, SPLITS.index(name)])
        size = (self.config.size, self.config.size)
        images, groups = static_shapes(self.sizes[name], rng, size, self.config.objects)
        features = torch.from_numpy(images)[:, None, :, :, None]  # (N, 1, H, W, 1)
        return ArraySplit(features, torch.from_numpy(groups)[:, None])


@hookimpl
def register_datasets(register):  # type: ignore[no-untyped-def]
    register(ShapesDataset)
