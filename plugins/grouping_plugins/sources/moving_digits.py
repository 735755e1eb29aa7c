"""Digits moving across a canvas, for the flying MNIST data set (spec 6.5): the sequences' random
content (which digits, where they start, how fast they move), their positions frame by frame, the
digits' sprites and the frames drawn from them. The choices are documented in
:mod:`grouping_plugins.flying_mnist`; the motion rule in :mod:`grouping_plugins.sources.motion`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from grouping.errors import DataError
from grouping_plugins.sources.digit_images import MNIST_SIDE, DigitImages
from grouping_plugins.sources.motion import pixel_positions, sample_motion

#: MNIST digits are size-normalised into a 20x20 box centred in the 28x28 image; the fallback
#: digits are brought into the same frame.
MNIST_BOX = 20


@dataclass(frozen=True)
class Trajectories:
    """The random content of n sequences of D digits.

    digit (n, D) indices into the sprites; start (n, D, 2) top-left (row, col) in [0, room];
    velocity (n, D, 2) pixels per frame.
    """

    digit: np.ndarray
    start: np.ndarray
    velocity: np.ndarray

    def __len__(self) -> int:
        return int(self.digit.shape[0])

    def take(self, index: np.ndarray) -> Trajectories:
        return Trajectories(self.digit[index], self.start[index], self.velocity[index])


def distinct_choices(rng: np.random.Generator, n: int, total: int, k: int) -> np.ndarray:
    """(n, k) indices in [0, total), distinct within each row, uniform over such rows.

    Pick d draws from the total - d values not yet taken: step the draw past each earlier pick
    in ascending order. Vectorised over rows; loops only over the k (few) picks.
    """
    if k > total:
        raise DataError(f"{k} distinct digits per sequence need a pool of at least {k} digits")
    out = np.zeros((n, k), dtype=np.int64)
    for d in range(k):
        r = rng.integers(0, total - d, size=n)
        for taken in np.sort(out[:, :d], axis=1).T:  # ascending earlier picks
            r = r + (r >= taken)
        out[:, d] = r
    return out


def draw_trajectories(
    rng: np.random.Generator,
    n: int,
    digits: int,
    total: int,
    room: int,
    speed: tuple[float, float],
) -> Trajectories:
    """n sequences of ``digits`` distinct digits out of ``total``, in a canvas with ``room`` free
    pixels per axis (canvas minus sprite)."""
    digit = distinct_choices(rng, n, total, digits)
    span = np.full((n, digits, 2), float(room))
    start, velocity = sample_motion(rng, span, speed[0], speed[1])
    return Trajectories(digit, start, velocity)


def positions(traj: Trajectories, frames: int, room: int) -> np.ndarray:
    """Integer top-left corners (n, frames, D, 2) of every digit in every frame
    (:mod:`grouping_plugins.sources.motion`: straight lines that bounce off the walls)."""
    corners = pixel_positions(traj.start, traj.velocity, np.asarray(room), frames)  # (n, D, 2, F)
    return corners.transpose(0, 3, 1, 2)


def render(
    sprites: np.ndarray, digit: np.ndarray, corners: np.ndarray, size: int, threshold: float
) -> tuple[np.ndarray, np.ndarray]:
    """Draw digits into frames.

    sprites (P, S, S) float32; digit (n, D); corners (n, F, D, 2) top-left, sprites fully inside.
    Returns features (n, F, size, size) float32, the pixel-wise max of the digits, and groups
    (n, F, size, size) uint8: label d + 1 where only digit d reaches ``threshold``, else 0.
    """
    n, frames, d, _ = corners.shape
    s = sprites.shape[1]
    layers = np.zeros((n, frames, d, size, size), dtype=np.float32)
    span = np.arange(s)
    rows = corners[..., 0, None, None] + span[:, None]  # (n, F, D, S, 1)
    cols = corners[..., 1, None, None] + span[None, :]  # (n, F, D, 1, S)
    i = np.arange(n)[:, None, None, None, None]
    f = np.arange(frames)[None, :, None, None, None]
    k = np.arange(d)[None, None, :, None, None]
    layers[i, f, k, rows, cols] = sprites[digit][:, None]  # (n, 1, D, S, S) broadcast over F
    covered = layers >= threshold  # (n, F, D, H, W)
    count = covered.sum(axis=2)
    label = np.argmax(covered, axis=2) + 1
    groups = np.where(count == 1, label, 0).astype(np.uint8)
    return layers.max(axis=2), groups


def prepare_sprites(images: DigitImages, digit_size: int, crop: int = MNIST_SIDE) -> np.ndarray:
    """Digits (N, digit_size, digit_size) float32 in [0, 1], down-sampled by area averaging.

    28x28 MNIST images are used as they are; other sizes (the scikit-learn fallback) are taken to
    fill a 20x20 box and padded to 28x28 first, as MNIST's own digits are. ``crop`` < 28 cuts the
    centred crop x crop box out first (20: the box MNIST size-normalises its digits into), so a
    sprite carries less empty margin and the digits have more room to move apart.
    """
    x = torch.from_numpy(images.images)[:, None]  # (N, 1, h, w)
    if x.shape[-2:] != (MNIST_SIDE, MNIST_SIDE):
        x = F.interpolate(x, size=(MNIST_BOX, MNIST_BOX), mode="bilinear", antialias=True)
        margin = (MNIST_SIDE - MNIST_BOX) // 2
        x = F.pad(x, (margin, margin, margin, margin))
    if crop < MNIST_SIDE:
        lo = (MNIST_SIDE - crop) // 2
        x = x[..., lo : lo + crop, lo : lo + crop]
    if digit_size != x.shape[-1]:
        x = F.interpolate(x, size=(digit_size, digit_size), mode="area")
    return np.ascontiguousarray(x[:, 0].clamp(0.0, 1.0).numpy(), dtype=np.float32)
