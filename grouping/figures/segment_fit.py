"""Your pictures made fit for a trained model, and a word when they are far from its training data.

A binary (Bernoulli) model knows on pixels on an off background. A picture is made binary by its
difference from the background colour (the median of its border), not by its grey level: a red or
blue shape on black, or a black shape on white, stays an object, where a grey threshold at 0.5
would lose the first and invert the second. Pixels that differ only faintly are set off and
counted in a note.

The statistics compared with the training data are the share of lit pixels (above 0.5) and the
share of those inside a filled area (all four neighbours lit): the shipped model knows hollow
sprites on 28x28 pictures, and cuts filled shapes in half; photos come back as blobs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from grouping.data.values import is_binary

#: A pixel differing from the background by more than this (in [0, 1], any channel) is on.
BINARY_CUT = 0.25
#: A pixel differing by more than this but not by BINARY_CUT is counted as set off in a note.
FAINT = 0.1
BINARY_NOTE = (
    "the model is binary (bernoulli): pixels that differ from the background colour (the median of "
    f"the picture's border) by more than {BINARY_CUT} were set on, the others off"
)
#: The lit share may differ from the training data's by this factor, the filled share by this
#: much, before a note says the picture is far from what the model learned.
LIT_FACTOR = 3.0
FILLED_GAP = 0.3
#: Training samples looked at for their statistics.
REFERENCE_SAMPLES = 64


def background(frame: np.ndarray) -> np.ndarray:
    """The background colour of a frame (H, W, C): the median of its border pixels."""
    border = np.concatenate([frame[0], frame[-1], frame[1:-1, 0], frame[1:-1, -1]])
    return np.asarray(np.median(border, axis=0), dtype=np.float32)


def to_binary(frames: np.ndarray, name: str) -> tuple[np.ndarray, list[str]]:
    """Frames (F, H, W, C) as one binary channel (F, H, W, 1), and the notes to tell."""
    bg = background(frames[0])
    same = frames.shape[-1] == 1 or bool(np.all(frames == frames[..., :1]))
    if same and is_binary(frames) and not bg.any():
        return frames[..., :1].astype(np.float32), []  # on pixels on an off background already
    diff = np.abs(frames - bg).max(axis=-1, keepdims=True)
    on = diff > BINARY_CUT
    notes = [BINARY_NOTE]
    faint = int(((diff > FAINT) & ~on).sum())
    if faint:
        notes.append(
            f"{name}: {faint} pixels differ from the background by less than {BINARY_CUT} and "
            "were set off"
        )
    return on.astype(np.float32), notes


@dataclass(frozen=True)
class PictureStats:
    """The share of lit pixels, and of those the share inside a filled area."""

    lit: float
    filled: float

    @classmethod
    def of(cls, frames: np.ndarray) -> PictureStats:
        """Statistics of frames (N, H, W, C) in [0, 1]."""
        lit = frames.max(axis=-1) > 0.5
        inner = np.zeros_like(lit)
        inner[:, 1:-1, 1:-1] = (
            lit[:, 1:-1, 1:-1]
            & lit[:, :-2, 1:-1]
            & lit[:, 2:, 1:-1]
            & lit[:, 1:-1, :-2]
            & lit[:, 1:-1, 2:]
        )
        count = int(lit.sum())
        return cls(count / max(lit.size, 1), int(inner.sum()) / count if count else 0.0)


def far_note(name: str, stats: PictureStats, reference: PictureStats | None) -> str | None:
    """One line when a picture's statistics are far from the training data's, else None."""
    if reference is None:
        return None
    ratio = (stats.lit + 1e-3) / (reference.lit + 1e-3)
    far = ratio > LIT_FACTOR or ratio < 1 / LIT_FACTOR
    if not far and abs(stats.filled - reference.filled) <= FILLED_GAP:
        return None
    return (
        f"{name}: {stats.lit:.0%} of its pixels are lit and {stats.filled:.0%} of those inside "
        f"filled areas; the training images have {reference.lit:.0%} and {reference.filled:.0%}: "
        "far from what the model learned, so expect objects split or merged"
    )
