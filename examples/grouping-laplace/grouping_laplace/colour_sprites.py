"""Coloured sprites: RGB images of squares, discs and diamonds on black, with per-pixel ground truth.

Each image holds ``objects`` sprites of distinct colours at random positions. Where sprites overlap
the later one is drawn on top, but the ground truth marks the overlap 0 (as the shapes data set
does), like the background, so that scores count only pixels that belong to one object.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch
from pydantic import Field

from grouping import hookimpl
from grouping.plugins import (
    SPLITS,
    ArraySplit,
    Dataset,
    PluginConfig,
    Split,
    SplitName,
    cached_split,
)

#: Sprite masks, each SPRITE x SPRITE pixels.
SPRITE = 7
_r = np.arange(SPRITE) - SPRITE // 2
_dist_sq = _r[:, None] ** 2 + _r[None, :] ** 2
SHAPES: tuple[np.ndarray, ...] = (
    np.ones((SPRITE, SPRITE), dtype=bool),  # square
    _dist_sq <= (SPRITE // 2) ** 2 + 1,  # disc
    (np.abs(_r)[:, None] + np.abs(_r)[None, :]) <= SPRITE // 2,  # diamond
)
#: Saturated colours; an image's sprites take distinct ones.
PALETTE = np.array(
    [
        [1.0, 0.2, 0.2],
        [0.2, 1.0, 0.2],
        [0.3, 0.4, 1.0],
        [1.0, 1.0, 0.2],
        [1.0, 0.3, 1.0],
        [0.2, 1.0, 1.0],
    ],
    dtype=np.float32,
)


def render(
    n: int, size: int, objects: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """n images (n, size, size, 3) float32 in [0, 1] and their groups (n, size, size) int64."""
    images = np.zeros((n, size, size, 3), dtype=np.float32)
    groups = np.zeros((n, size, size), dtype=np.int64)
    for i in range(n):
        cover = np.zeros((size, size), dtype=np.int64)  # sprites covering each pixel
        colours = rng.choice(len(PALETTE), size=objects, replace=False)
        for obj in range(objects):
            mask = SHAPES[rng.integers(len(SHAPES))]
            top, left = rng.integers(0, size - SPRITE + 1, size=2)
            window = (slice(top, top + SPRITE), slice(left, left + SPRITE))
            images[i][window][mask] = PALETTE[colours[obj]]
            groups[i][window][mask] = obj + 1
            cover[window] += mask
        groups[i][cover > 1] = 0
    return images, groups


class ColourSpritesDataset(Dataset):
    """Static RGB sprite images; each split generated once from its own stream of the seed."""

    name = "colour-sprites"
    description = "static RGB images of coloured squares, discs and diamonds (example plugin)"
    default_likelihood = "laplace"
    #: static images train on the last step's loss (spec 3.2), even when a user switches to this
    #: data set from a preset made for sequences (``--preset flying-shapes-3 --dataset ...``)
    run_defaults: ClassVar[dict[str, dict[str, object]]] = {"model": {"loss_step_weights": "last"}}

    class Config(PluginConfig):
        objects: int = Field(default=3, ge=1, le=len(PALETTE), description="sprites per image")
        size: int = Field(default=24, ge=SPRITE, le=128, description="image height and width")

    config: Config

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (self.config.size, self.config.size, 3)

    @property
    def binary(self) -> bool:
        return False

    @cached_split
    def split(self, name: SplitName) -> Split:
        rng = np.random.default_rng([self.seed, SPLITS.index(name)])
        images, groups = render(self.sizes[name], self.config.size, self.config.objects, rng)
        features = torch.from_numpy(images)[:, None]  # (N, 1, H, W, 3): one static frame
        return ArraySplit(features, torch.from_numpy(groups)[:, None])


@hookimpl
def register_datasets(register):  # type: ignore[no-untyped-def]
    register(ColourSpritesDataset)
