"""Bouncing balls with mass (R-NEM, ICLR 2018): binary sequences of discs that collide elastically.

The original data (``balls4mass64``, ``balls678mass64``, ``balls3curtain64``) are HDF5 files made
by an unpublished generator; this set is generated from the run's seed instead. The physics is in
:mod:`grouping_plugins.sources.balls`: balls of one radius and their own masses move in the unit
square, bounce off the walls and off each other with momentum and kinetic energy conserved. Frames
are ``size`` x ``size`` (64 as in the paper, 32 for CPU runs); a pixel is lit when its centre lies
in a ball. Ball b is group b + 1; background and pixels that two balls cover are 0, in every frame.

Each split draws its sequences (ball count, masses, start, velocity, curtain) once from its own
stream of the seed and simulates them when first asked for; it keeps the trajectories (float32
centres, a few megabytes per thousand sequences), not pixels, and renders frames batch by batch.

**Curtain** (``curtain > 0``): an invisible square occluder of that side (a fraction of the frame),
at a uniform random position per sequence. As in the original's curtain set (read off its published
animations: a square of about 0.44 of the frame where no ball is ever lit), a pixel it covers is 0
in the frame; it is also 0 (background) in the groups, so no score asks for a hidden ball.

**Collisions, for the relational BCE.** The original stores a per-pixel ``collisions`` mask with the
frames, and at step t (input frame t, target frame t + 1) weights the loss by the mask of frame t
(``Relational-NEM/nem_model.py``, ``compute_outer_loss``); its generator, hence which pixels the
mask holds, is not published. Ours: a pixel of frame f is near a collision when it lies within
``collision_radius`` ball radii of the centre (at frame f) of a ball that hits another ball on a
transition t -> t + 1 with ``|t - f| <= collision_window``. ``split.collision_mask(index)`` returns
it as a (b, F, H, W) bool tensor, aligned with ``split.get(index)``; index it by the input frame, as
the original does: the relational BCE of step t is the BCE of frame t + 1 on ``mask[:, t]``.
"""

from __future__ import annotations

import math
from typing import ClassVar, Literal

import numpy as np
import torch
from pydantic import Field, model_validator
from torch import Tensor

from grouping.errors import DataError
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
from grouping_plugins.sources import balls as physics

#: Masses "random" draws from, uniformly per ball (ours: the original's masses are not published).
RANDOM_MASSES = (1.0, 2.0, 3.0)
#: Most of the frame the balls may cover together, so that they can always be placed apart.
MAX_COVER = 0.3


class BallsSplit(Split):
    """Simulated sequences: centres (N, F, B, 2) in the unit square and what the renderer needs."""

    def __init__(
        self,
        centres: np.ndarray,
        present: np.ndarray,
        hits: np.ndarray,
        curtain: np.ndarray | None,
        config: BouncingBallsDataset.Config,
    ) -> None:
        self.centres = centres
        self.present = present
        self.hits = hits  # (N, F, B): ball b hits another between frame t and t + 1
        self.curtain = curtain  # (N, 2) top-left corners in the unit square, or None
        self.config = config

    def __len__(self) -> int:
        return int(self.centres.shape[0])

    @property
    def frames(self) -> int:
        return int(self.centres.shape[1])

    def _pixels(self, index: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
        """Centres (b*F, B, 2) and presence (b*F, B) of the indexed sequences, in pixel units."""
        size, frames = self.config.size, self.frames
        centres = self.centres[index].reshape(-1, self.centres.shape[2], 2) * size
        present = np.repeat(self.present[index], frames, axis=0)
        return centres, present, size

    def curtain_mask(self, index: np.ndarray) -> Tensor:
        """(b, H, W) bool: the pixels the curtain hides (none without a curtain)."""
        index = np.asarray(index, dtype=np.int64)
        size = self.config.size
        if self.curtain is None:
            return torch.zeros((len(index), size, size), dtype=torch.bool)
        side = self.config.curtain * size
        return torch.from_numpy(physics.squares(self.curtain[index] * size, side, size))

    def get(self, index: np.ndarray) -> tuple[Tensor, Tensor]:
        index = np.asarray(index, dtype=np.int64)
        centres, present, size = self._pixels(index)
        images, groups = physics.render(centres, present, self.config.radius * size, size)
        features = torch.from_numpy(images).reshape(len(index), self.frames, size, size, 1)
        labels = torch.from_numpy(groups).to(torch.int64)
        labels = labels.reshape(len(index), self.frames, size, size)
        if self.curtain is not None:
            hidden = self.curtain_mask(index)[:, None]  # (b, 1, H, W)
            features = features.masked_fill(hidden[..., None], 0.0)
            labels = labels.masked_fill(hidden, 0)
        return features, labels

    def collision_mask(self, index: np.ndarray) -> Tensor:
        """(b, F, H, W) bool: the pixels near a collision (module docstring), frame by frame."""
        index = np.asarray(index, dtype=np.int64)
        cfg = self.config
        near = physics.near_collision(self.hits[index], cfg.collision_window)  # (b, F, B)
        centres, _, size = self._pixels(index)
        radius = cfg.collision_radius * cfg.radius * size
        mask = physics.neighbourhood(centres, near.reshape(-1, near.shape[2]), radius, size)
        return torch.from_numpy(mask).reshape(len(index), self.frames, size, size)


class BouncingBallsDataset(SpriteDataset):
    """Balls with mass bouncing in a box; see the module docstring for the physics and labels."""

    name = "bouncing-balls"
    description = (
        "binary sequences of balls with mass that collide elastically, 64x64 or smaller, with an "
        "optional occluding curtain (generated from the seed; R-NEM, ICLR 2018)"
    )
    #: the loss of every step, as R-NEM trains on sequences
    run_defaults: ClassVar[dict[str, dict[str, object]]] = {"model": {"loss_step_weights": "all"}}

    class Config(PluginConfig):
        balls: int = Field(
            default=4, ge=1, le=16, description="balls per sequence (the fewest with max_balls)"
        )
        max_balls: int | None = Field(
            default=None,
            ge=1,
            le=16,
            description="the most balls: each sequence draws its count uniformly from balls to "
            "max_balls (6 to 8 for the extrapolation test); unset: exactly balls",
        )
        size: int = Field(
            default=64, ge=16, le=256, description="frame height and width (32 for CPU runs)"
        )
        radius: float = Field(
            default=0.08, gt=0.0, le=0.25, description="ball radius, a fraction of the frame side"
        )
        masses: Literal["equal", "random"] | tuple[float, ...] = Field(
            default="random",
            description='"equal" (all 1), "random" (1, 2 or 3, uniformly per ball) or a list '
            "with one mass per ball",
        )
        speed: float = Field(
            default=0.02, gt=0.0, le=0.2, description="start speed of every ball, frame sides/frame"
        )
        curtain: float = Field(
            default=0.0,
            ge=0.0,
            le=0.8,
            description="side of an invisible occluding square, a fraction of the frame (0: none)",
        )
        collision_window: int = Field(
            default=2, ge=0, le=10, description="frames either side of a collision that are near it"
        )
        collision_radius: float = Field(
            default=2.0,
            ge=1.0,
            le=10.0,
            description="near-collision pixels: ball radii from a centre",
        )

        @property
        def most(self) -> int:
            """The largest ball count a sequence can have."""
            return self.max_balls if self.max_balls is not None else self.balls

        @model_validator(mode="after")
        def _consistent(self) -> BouncingBallsDataset.Config:
            if self.max_balls is not None and self.max_balls < self.balls:
                raise ValueError(
                    f"max_balls ({self.max_balls}) must be at least balls ({self.balls})"
                )
            listed = self.masses if isinstance(self.masses, tuple) else None
            if listed is not None and (len(listed) < self.most or min(listed) <= 0):
                raise ValueError(f"masses needs {self.most} positive values, got {list(listed)}")
            if self.most * math.pi * self.radius**2 > MAX_COVER:
                raise ValueError(
                    f"{self.most} balls of radius {self.radius} cover more than {MAX_COVER:.0%} of "
                    "the frame: use fewer or smaller balls"
                )
            return self

        def mass_ratio(self) -> float:
            """Heaviest over lightest possible mass."""
            if self.masses == "equal":
                return 1.0
            values = RANDOM_MASSES if self.masses == "random" else self.masses[: self.most]
            return max(values) / min(values)

    config: Config

    def _start(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, ...]:
        """Presence, masses, centres and velocities of n sequences at frame 0."""
        cfg = self.config
        count = rng.integers(cfg.balls, cfg.most + 1, size=n)
        present = np.arange(cfg.most)[None, :] < count[:, None]  # (n, B)
        if cfg.masses == "equal":
            mass = np.ones((n, cfg.most))
        elif cfg.masses == "random":
            mass = rng.choice(np.array(RANDOM_MASSES), size=(n, cfg.most))
        else:
            mass = np.broadcast_to(np.array(cfg.masses[: cfg.most]), (n, cfg.most)).copy()
        try:
            pos = physics.place(rng, present, cfg.radius)
        except ValueError as exc:
            raise DataError(f"bouncing-balls: {exc}; use fewer or smaller balls") from exc
        vel = physics.sample_velocity(rng, (n, cfg.most), cfg.speed)
        return present, mass, pos, vel

    @cached_split
    def split(self, name: SplitName) -> Split:
        cfg = self.config
        stream = [self.seed, SPLITS.index(name), 38]
        rng = np.random.default_rng(stream)
        present, mass, pos, vel = self._start(rng, self.sizes[name])
        substeps = physics.substeps_for(cfg.speed, cfg.radius, cfg.most, cfg.mass_ratio())
        centres, hits = physics.simulate(pos, vel, mass, present, cfg.radius, self.frames, substeps)
        curtain = None
        if cfg.curtain > 0:  # its own stream: the balls move the same with or without it
            corner = np.random.default_rng([*stream, 1]).random((self.sizes[name], 2))
            curtain = corner * (1.0 - cfg.curtain)
        return BallsSplit(centres, present, hits, curtain, cfg)

    def simulated(self, name: SplitName) -> BallsSplit:
        """The named split, typed as what it is: with its centres, collisions and masks."""
        split = self.split(name)
        assert isinstance(split, BallsSplit)
        return split

    def source(self) -> dict[str, object]:
        cfg = self.config
        return {**super().source(), "balls": [cfg.balls, cfg.most], "frames": self.frames}


@hookimpl
def register_datasets(register: Register) -> None:
    """Register the ``bouncing-balls`` data set."""
    register(BouncingBallsDataset)
