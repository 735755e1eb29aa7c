"""The three binary sprites of the shapes data set and a vectorised renderer (spec 6.3).

Shared by the static ``shapes`` and the sequential ``flying-shapes`` data sets (whose common plugin
base, ``SpriteDataset``, lives in :mod:`grouping_plugins.shapes`): both draw sprites at integer
positions, OR them into the image and label every pixel with the index of the sprite that
covers it, 0 for background and for pixels that two or more sprites cover.
"""

from __future__ import annotations

import numpy as np


def _bitmap(rows: list[str]) -> np.ndarray:
    return np.array([[c == "#" for c in row] for row in rows], dtype=bool)


SQUARE = _bitmap(
    ["#######", "#######", "##...##", "##...##", "##...##", "#######", "#######"],
)
TRIANGLE = _bitmap(
    [
        ".....##.....",
        "....####....",
        "...######...",
        "..###..###..",
        ".###....###.",
        "############",
        "############",
    ],
)
INVERTED_TRIANGLE = TRIANGLE[::-1].copy()

#: The sprite set, in a fixed order so that a seed always means the same data.
SPRITES: tuple[np.ndarray, ...] = (SQUARE, TRIANGLE, INVERTED_TRIANGLE)
#: Height and width of the bounding box every sprite fits in.
BOX = (max(s.shape[0] for s in SPRITES), max(s.shape[1] for s in SPRITES))


def _padded_sprites() -> np.ndarray:
    """All sprites padded to the common box (S, BOX_H, BOX_W), anchored top-left."""
    out = np.zeros((len(SPRITES), *BOX), dtype=bool)
    for i, s in enumerate(SPRITES):
        out[i, : s.shape[0], : s.shape[1]] = s
    return out


PADDED = _padded_sprites()
SIZES = np.array([s.shape for s in SPRITES], dtype=np.int64)  # (S, 2) heights and widths


def render(
    kinds: np.ndarray, top: np.ndarray, left: np.ndarray, size: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Draw sprites into images.

    kinds, top, left: (N, O) sprite index and top-left corner of O sprites in N images; every sprite
    must lie fully inside the canvas. Returns images (N, H, W) float32 in {0, 1} and groups (N, H, W)
    uint8 where sprite j (drawing order) is label j + 1 and overlap and background are 0.
    """
    n, objects = kinds.shape
    h, w = size
    cover = np.zeros((n, objects, h + BOX[0], w + BOX[1]), dtype=bool)
    rows = top[..., None, None] + np.arange(BOX[0])[:, None]  # (N, O, BOX_H, 1)
    cols = left[..., None, None] + np.arange(BOX[1])[None, :]  # (N, O, 1, BOX_W)
    img_idx = np.arange(n)[:, None, None, None]
    obj_idx = np.arange(objects)[None, :, None, None]
    cover[img_idx, obj_idx, rows, cols] = PADDED[kinds][:, :, :, :]
    cover = cover[:, :, :h, :w]
    count = cover.sum(axis=1)
    labels = (np.argmax(cover, axis=1) + 1).astype(np.uint8)
    groups = np.where(count == 1, labels, 0).astype(np.uint8)
    images = (count > 0).astype(np.float32)
    return images, groups


def static_shapes(
    n: int, rng: np.random.Generator, size: tuple[int, int] = (28, 28), objects: int = 3
) -> tuple[np.ndarray, np.ndarray]:
    """The static shapes set: ``objects`` sprites per image, kind uniform with replacement, top-left
    corner uniform over all positions that keep the sprite inside. Returns (N, H, W) images, groups.
    """
    kinds = rng.integers(0, len(SPRITES), size=(n, objects))
    heights, widths = SIZES[kinds, 0], SIZES[kinds, 1]
    top = np.floor(rng.random((n, objects)) * (size[0] - heights + 1)).astype(np.int64)
    left = np.floor(rng.random((n, objects)) * (size[1] - widths + 1)).astype(np.int64)
    return render(kinds, top, left, size)
