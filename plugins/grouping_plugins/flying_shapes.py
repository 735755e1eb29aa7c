"""Flying shapes (spec 6.4): 28x28 binary sequences of sprites that bounce off the walls.

The sprites and the labelling are those of the static ``shapes`` set (spec 6.3): squares,
triangles and inverted triangles, kind uniform with replacement; sprite j is label j + 1 and
background and overlap are 0, in every frame. The motion is documented in
:mod:`grouping_plugins.sources.motion`: a constant velocity (uniform direction, speed uniform in
``[min_speed, max_speed]`` px/frame), specular reflection at the walls, drawn at the nearest
integer position, so every sprite lies fully inside the canvas in every frame.

Nothing is stored: each split draws its sequences' parameters (kinds, start, velocity) once from its
own stream of the run's seed, and frames are rendered on demand, batch by batch. A sequence is
therefore the same whatever the batch, split sizes or number of frames asked for, and a split of
50,000 sequences of 21 frames takes a few megabytes instead of gigabytes.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch
from pydantic import Field, model_validator
from torch import Tensor

from grouping.plugins import (
    SPLITS,
    PluginConfig,
    Register,
    Split,
    SplitName,
    cached_split,
    hookimpl,
)
from grouping_plugins.shapes import SpriteDataset
from grouping_plugins.sources.motion import pixel_positions, sample_motion
from grouping_plugins.sources.sprites import BOX, SIZES, SPRITES, render


class FlyingSplit(Split):
    """Sequences given by sprite kinds (N, O), start (N, O, 2) and velocity (N, O, 2)."""

    def __init__(
        self,
        kinds: np.ndarray,
        start: np.ndarray,
        velocity: np.ndarray,
        size: tuple[int, int],
        frames: int,
    ) -> None:
        self.kinds = kinds
        self.start = start
        self.velocity = velocity
        self.size = size
        self._frames = frames
        self.span = np.array(size) - SIZES[kinds]  # (N, O, 2) highest top and left

    def __len__(self) -> int:
        return int(self.kinds.shape[0])

    @property
    def frames(self) -> int:
        return self._frames

    def positions(self, index: np.ndarray) -> np.ndarray:
        """Top-left corners (b, O, 2, F) of the sprites in every frame."""
        return pixel_positions(
            self.start[index], self.velocity[index], self.span[index], self._frames
        )

    def get(self, index: np.ndarray) -> tuple[Tensor, Tensor]:
        index = np.asarray(index, dtype=np.int64)
        b, objects, frames = len(index), self.kinds.shape[1], self._frames
        pos = self.positions(index)  # (b, O, 2, F)
        top = pos[:, :, 0].transpose(0, 2, 1).reshape(b * frames, objects)  # (b*F, O)
        left = pos[:, :, 1].transpose(0, 2, 1).reshape(b * frames, objects)
        kinds = np.repeat(self.kinds[index], frames, axis=0)  # (b*F, O)
        images, groups = render(kinds, top, left, self.size)  # (b*F, H, W) each
        h, w = self.size
        features = torch.from_numpy(images).reshape(b, frames, h, w, 1)
        return features, torch.from_numpy(groups).reshape(b, frames, h, w).to(torch.int64)


class FlyingShapesDataset(SpriteDataset):
    """Sequences of ``objects`` bouncing sprites; see the module docstring for the motion rule."""

    name = "flying-shapes"
    description = "binary sequences of bouncing shapes, 28x28 (generated from the seed, spec 6.4)"
    #: the loss of every step, as the paper trains on sequences (spec 3.2)
    run_defaults: ClassVar[dict[str, dict[str, object]]] = {"model": {"loss_step_weights": "all"}}

    class Config(PluginConfig):
        objects: int = Field(default=3, ge=1, le=20, description="sprites per sequence")
        size: int = Field(default=28, ge=max(BOX), le=256, description="image height and width")
        min_speed: float = Field(default=1.0, ge=0.0, le=8.0, description="px per frame")
        max_speed: float = Field(default=2.0, ge=0.0, le=8.0, description="px per frame")

        @model_validator(mode="after")
        def _speed_range(self) -> FlyingShapesDataset.Config:
            if self.min_speed > self.max_speed:
                raise ValueError(
                    f"min_speed ({self.min_speed}) must not exceed max_speed ({self.max_speed})"
                )
            return self

    config: Config

    @cached_split
    def split(self, name: SplitName) -> Split:
        cfg = self.config
        # split streams distinct from the static set's ([seed, i]) so the two never coincide
        rng = np.random.default_rng([self.seed, SPLITS.index(name), cfg.objects, 6])
        n = self.sizes[name]
        kinds = rng.integers(0, len(SPRITES), size=(n, cfg.objects))
        span = np.array([cfg.size, cfg.size]) - SIZES[kinds]  # (N, O, 2)
        start, velocity = sample_motion(rng, span, cfg.min_speed, cfg.max_speed)
        return FlyingSplit(kinds, start, velocity, (cfg.size, cfg.size), self.frames)

    def source(self) -> dict[str, object]:
        return {**super().source(), "objects": self.config.objects, "frames": self.frames}


@hookimpl
def register_datasets(register: Register) -> None:
    """Register the ``flying-shapes`` data set."""
    register(FlyingShapesDataset)
