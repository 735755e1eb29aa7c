"""Your own pictures in and out: image files, folders, animated GIFs and ``.npz`` arrays read as
frames a trained model can take, and PNGs and GIFs written back (Pillow).

Every reader returns float32 frames (F, H, W, C) in [0, 1] with C the model's channels: grey or
colour files are converted by Pillow (``L`` for one channel, ``RGB`` for three). A file that cannot
be read is one line (:class:`SegmentInputError`), so the caller can go on with the other inputs.
"""

from __future__ import annotations

import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from grouping.data.values import to_unit
from grouping.errors import DataError

#: Suffixes read as pictures (a folder's other files are ignored).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif")
#: Pillow's mode for a model with that many channels.
MODES = {1: "L", 3: "RGB"}
#: Milliseconds per frame of the GIFs written.
GIF_FRAME_MS = 250


class SegmentInputError(DataError):
    """One input (a file or folder) cannot be used; the other inputs still are."""


@dataclass
class Item:
    """One thing to segment: a static image (F = 1) or a video (F > 1), as frames (F, H, W, C)."""

    source: Path
    name: str
    frames: np.ndarray
    video: bool


def read_picture(path: Path, channels: int) -> np.ndarray:
    """An image file as frames (F, H, W, C): one frame, or every frame of an animated GIF."""
    from PIL import Image, ImageSequence, UnidentifiedImageError

    mode = MODES.get(channels)
    if mode is None:
        raise SegmentInputError(
            f"{path}: the model takes {channels} channels; pictures convert to 1 (grey) or 3 (RGB)"
        )
    try:
        with Image.open(path) as image:
            frames = [np.asarray(f.convert(mode)) for f in ImageSequence.Iterator(image)]
    except FileNotFoundError:
        raise SegmentInputError(f"{path}: no such file") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise SegmentInputError(f"{path}: not a readable image ({reason})") from None
    stack = np.stack(frames).astype(np.float32) / np.float32(255.0)
    return stack[..., None] if stack.ndim == 3 else stack


def read_npz(path: Path) -> np.ndarray:
    """``features`` of an ``arrays``-layout file as samples (N, F, H, W, C).

    (N, H, W) and (N, H, W, C) are images, (N, T, H, W) and (N, T, H, W, C) sequences; a
    four-axis array is (N, H, W, C) when its last axis is 1 or 3, unless a ``groups`` array of
    rank 4 says it holds sequences.
    """
    try:
        with np.load(path, allow_pickle=False) as npz:
            if "features" not in npz.files:
                found = ", ".join(npz.files) or "nothing"
                raise SegmentInputError(f"{path}: no array 'features' (found {found})")
            features = npz["features"]
            groups_rank = npz["groups"].ndim if "groups" in npz.files else None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise SegmentInputError(f"{path}: not a readable .npz file ({exc})") from None
    if features.dtype.kind not in "biuf" or features.ndim not in (3, 4, 5) or features.size == 0:
        raise SegmentInputError(
            f"{path}: features {features.shape} {features.dtype}; expected numbers shaped "
            "(N, H, W[, C]) or (N, T, H, W[, C])"
        )
    sequences = features.ndim == 5 or (
        features.ndim == 4 and (groups_rank == 4 or features.shape[-1] not in (1, 3))
    )
    if features.ndim == 3 or (features.ndim == 4 and sequences):
        features = features[..., None]
    if not sequences:
        features = features[:, None]
    return np.clip(to_unit(features), 0.0, 1.0)


def fit_size(
    frames: np.ndarray, shape: tuple[int, int, int], resize: bool, where: Path
) -> np.ndarray:
    """Frames (F, H, W, C) at the model's (H, W, C): as they are, resized, or refused in one line."""
    h, w, c = shape
    if frames.shape[-1] != c:
        grey = frames.mean(axis=-1, keepdims=True)
        frames = grey if c == 1 else np.repeat(grey, c, axis=-1)
    if frames.shape[1:3] == (h, w):
        return frames
    if not resize:
        raise SegmentInputError(
            f"{where}: the image is {frames.shape[2]}x{frames.shape[1]} but the model takes "
            f"{w}x{h} (width x height); pass --resize to scale it"
        )
    from PIL import Image

    out = np.empty((frames.shape[0], h, w, c), dtype=np.float32)
    for i, frame in enumerate(frames):
        for j in range(c):
            band = Image.fromarray(np.ascontiguousarray(frame[..., j], dtype=np.float32))
            out[i, ..., j] = np.asarray(band.resize((w, h), Image.Resampling.BILINEAR))
    return np.clip(out, 0.0, 1.0)


def read_items(path: Path, channels: int, sequence: bool) -> list[Item]:
    """What one command-line input holds: a picture, an animated GIF (a video), an ``.npz`` (one
    item per sample) or a folder (its pictures sorted by name; with ``sequence``, one video)."""
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise SegmentInputError(f"{path}: the folder holds no {'/'.join(IMAGE_SUFFIXES)} files")
        if not sequence:
            return [i for f in files for i in read_items(f, channels, False)]
        pictures = [read_picture(f, channels) for f in files]
        if len({p.shape[1:] for p in pictures}) > 1:
            raise SegmentInputError(f"{path}: the frames of a sequence must share one size")
        return [Item(path, path.name, np.concatenate(pictures), True)]
    if not path.exists():
        raise SegmentInputError(f"{path}: no such file or folder")
    if path.suffix.lower() == ".npz":
        samples = read_npz(path)
        return [
            Item(path, f"{path.stem}-{i:03d}", s, s.shape[0] > 1) for i, s in enumerate(samples)
        ]
    frames = read_picture(path, channels)
    return [Item(path, path.stem, frames, frames.shape[0] > 1)]


def write_png(array: np.ndarray, path: Path) -> Path:
    """An (H, W) uint8 array, or (H, W, 3) RGB floats in [0, 1], as a PNG."""
    from PIL import Image

    if array.dtype != np.uint8:
        array = np.round(np.clip(array, 0.0, 1.0) * 255).astype(np.uint8)
    Image.fromarray(array).save(path, format="PNG")
    return path


def write_labels(labels: np.ndarray, colours: np.ndarray, path: Path) -> Path:
    """Labels (H, W) uint8, 1..K, as a palette PNG: a program reads the values 1..K, a viewer shows
    value k in ``colours[k - 1]`` (RGB in [0, 1], the overlay's), not as near-black greys."""
    from PIL import Image

    image = Image.fromarray(labels.astype(np.uint8))  # "L"; putpalette makes it "P"
    rgb = np.zeros((256, 3), dtype=np.uint8)  # 0 (no component) stays black
    rgb[1 : len(colours) + 1] = np.round(np.clip(colours, 0.0, 1.0) * 255).astype(np.uint8)
    image.putpalette(rgb.ravel().tolist())
    image.save(path, format="PNG")
    return path


def write_gif(frames: Sequence[np.ndarray], path: Path, frame_ms: int = GIF_FRAME_MS) -> Path:
    """RGB frames (H, W, 3) in [0, 1] as a looping animated GIF. Pillow folds a frame equal to the
    one before into it, so a GIF has fewer frames than given only where nothing moved."""
    from PIL import Image

    images = [
        Image.fromarray(np.round(np.clip(f, 0.0, 1.0) * 255).astype(np.uint8)) for f in frames
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    images[0].save(
        path, format="GIF", save_all=True, append_images=images[1:], duration=frame_ms, loop=0
    )
    return path


def upscale(rgb: np.ndarray, factor: int) -> np.ndarray:
    """An image (H, W, ...) enlarged ``factor`` times with square pixels (nearest neighbour)."""
    return np.repeat(np.repeat(rgb, factor, axis=0), factor, axis=1)
