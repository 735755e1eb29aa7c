"""``grouping segment``: a trained model on your own images, videos and arrays, written as masks.

For each picture ``NAME`` it writes ``NAME.labels.png`` (8 bits, the model's image size, the argmax
component 1..K at the last EM step), ``NAME.overlay.png`` (each pixel in its component's colour, as
bright as the input, enlarged to at least :data:`OVERLAY_MIN_PX` pixels) and ``NAME.npz`` (gamma
(T, K, H, W) and psi (T, K, H, W, C)); a video writes ``NAME-000.labels.png``... per frame,
``NAME.gif`` and one ``NAME.npz``.

Choices, so that a result can be compared with ``grouping evaluate``:

* A static image is repeated for T + 1 frames, as the data sets' images are
  (:func:`grouping.data.batches.frames_for`). A video of F frames is preceded by its first frame, so
  EM step t groups frame t and every frame gets labels; ``steps`` takes its first T frames.
* The inputs are corrupted by the run's own noise plugin, as in training and evaluation (the model
  never saw clean inputs); ``noise=False`` feeds them clean. Noise and gamma^(0) come from a
  generator seeded with the run's seed + 1, as ``grouping evaluate`` draws them, fresh for each
  input; the pictures of one input (a folder, an ``.npz``) go through in batches of
  ``eval.batch_size`` in order. An ``.npz`` of a split's first N images therefore gets exactly the
  groupings ``grouping evaluate`` scores.
* A binary (Bernoulli) model given grey values thresholds them at 0.5, and says so in ``notes``.

``pretrained:NAME`` names a model shipped in the package (:mod:`grouping.rundir.pretrained`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from grouping.accel.device import make_generator
from grouping.data.batches import frames_for
from grouping.data.values import is_binary
from grouping.errors import ConfigError, RunDirError
from grouping.figures.images import (
    Item,
    SegmentInputError,
    fit_size,
    read_items,
    upscale,
    write_gif,
    write_png,
)
from grouping.plugins.guard import apply_noise
from grouping.rundir.loading import CHECKPOINTS, Checkpoint, LoadedRun, load_trained

#: Overlays are enlarged (square pixels) until their longer side is at least this many pixels.
OVERLAY_MIN_PX = 112
#: Brightness of a dark input pixel's colour in an overlay (a bright pixel takes the full colour).
OVERLAY_DARK = 0.25
#: Labels are stored in 8 bits.
MAX_COMPONENTS = 255
BINARY_NOTE = "the model is binary (bernoulli): grey values were thresholded at 0.5"


class SegmentFailed(SegmentInputError):
    """Some inputs could not be segmented; the others were written (``records``)."""

    def __init__(self, failures: list[str], records: list[dict[str, Any]]) -> None:
        super().__init__("; ".join(failures))
        self.failures = failures
        self.records = records


def _overrides(components: int | None, steps: int | None) -> dict[str, Any]:
    model = {k: v for k, v in (("components", components), ("steps", steps)) if v is not None}
    return {"model": model} if model else {}


class Segmenter:
    """A loaded run and the options of one ``grouping segment`` call."""

    def __init__(self, run: LoadedRun, *, steps: int | None, resize: bool, noise: bool) -> None:
        self.run = run
        self.model = run.model
        self.steps = steps
        self.resize = resize
        self.noise = noise
        self.device = next(run.model.parameters()).device
        self.shape = run.dataset.image_shape
        if self.model.components > MAX_COMPONENTS:
            raise ConfigError(f"labels are 8-bit: at most {MAX_COMPONENTS} components")

    def prepare(self, item: Item) -> list[str]:
        """Fit an item's frames to the model (size, channels, binary values); the notes to tell."""
        item.frames = fit_size(item.frames, self.shape, self.resize, item.source)
        if self.run.dataset.binary and not is_binary(item.frames):
            item.frames = (item.frames >= 0.5).astype(np.float32)
            return [BINARY_NOTE]
        return []

    @torch.no_grad()
    def groupings(
        self, frames: np.ndarray, generator: torch.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """gamma (B, T, K, H, W) and psi (B, T, K, H, W, C) of samples (B, F, H, W, C)."""
        x = torch.from_numpy(np.ascontiguousarray(frames)).to(self.device)
        f = x.shape[1]
        if f == 1:
            steps = self.steps or self.model.steps
        else:
            steps = self.steps or f
            if steps > f:
                raise SegmentInputError(f"the video has {f} frames: at most {f} steps, not {steps}")
            x = torch.cat([x[:, :1], x[:, :steps]], dim=1)  # step t groups frame t
        groups = torch.zeros(x.shape[:4], dtype=torch.long, device=self.device)
        features, _ = frames_for(x, groups, steps + 1)
        inputs = apply_noise(self.run.noise, features, generator) if self.noise else features
        weights = [0.0] * (steps - 1) + [1.0]
        out = self.model(inputs, features, generator, steps=steps, weights=weights)
        gamma = out.gamma[:, 1:, ..., 0].float().cpu().numpy()
        return gamma, out.psi.float().cpu().numpy()


def _batches(items: list[Item], size: int) -> Iterator[list[Item]]:
    """Consecutive items of one frame shape, at most ``size`` at a time, in order."""
    batch: list[Item] = []
    for item in items:
        if batch and (len(batch) == size or batch[0].frames.shape != item.frames.shape):
            yield batch
            batch = []
        batch.append(item)
    if batch:
        yield batch


def overlay(frame: np.ndarray, labels: np.ndarray, colours: np.ndarray) -> np.ndarray:
    """The frame (H, W, C) with each pixel in its component's colour, as bright as the input (dark
    pixels at :data:`OVERLAY_DARK`, so the background's grouping still shows), enlarged."""
    from grouping.figures.drawing import image_rgb

    brightness = image_rgb(frame).mean(axis=-1, keepdims=True)
    rgb = colours[labels - 1] * (OVERLAY_DARK + (1 - OVERLAY_DARK) * brightness)
    return upscale(rgb, max(1, -(-OVERLAY_MIN_PX // max(labels.shape))))


def write_item(
    item: Item, gamma: np.ndarray, psi: np.ndarray, out: Path, notes: list[str]
) -> dict[str, Any]:
    """An item's labels, overlays, arrays (and GIF for a video); its JSON record."""
    from grouping.figures.drawing import component_colours

    t, k = gamma.shape[:2]
    labels = (gamma.argmax(axis=1) + 1).astype(np.uint8)  # (T, H, W), 1..K
    colours = component_colours(k)
    outputs: list[Path] = []
    if item.video:
        shown = item.frames[:t]
        overlays = [overlay(f, lab, colours) for f, lab in zip(shown, labels)]
        for i, (lab, ov) in enumerate(zip(labels, overlays)):
            outputs.append(write_png(lab, out / f"{item.name}-{i:03d}.labels.png"))
            outputs.append(write_png(ov, out / f"{item.name}-{i:03d}.overlay.png"))
        outputs.append(write_gif(overlays, out / f"{item.name}.gif"))
        counted = labels
    else:
        outputs.append(write_png(labels[-1], out / f"{item.name}.labels.png"))
        tinted = overlay(item.frames[0], labels[-1], colours)
        outputs.append(write_png(tinted, out / f"{item.name}.overlay.png"))
        counted = labels[-1:]
    arrays = out / f"{item.name}.npz"
    np.savez_compressed(arrays, gamma=gamma.astype(np.float32), psi=psi.astype(np.float32))
    outputs.append(arrays)
    shares = np.bincount(counted.ravel(), minlength=k + 1)[1:] / counted.size
    return {
        "input": str(item.source),
        "name": item.name,
        "video": item.video,
        "steps": int(t),
        "outputs": [str(p) for p in outputs],
        "shares": [round(float(s), 6) for s in shares],
        "notes": notes,
    }


def segment_input(seg: Segmenter, path: Path, out: Path, sequence: bool) -> list[dict[str, Any]]:
    """Every item of one command-line input, segmented and written; their records."""
    items = read_items(path, seg.shape[-1], sequence)
    notes = [seg.prepare(item) for item in items]
    generator = make_generator(seg.device, seg.run.config.seed + 1)
    records = []
    start = 0
    for batch in _batches(items, seg.run.config.eval.batch_size):
        gamma, psi = seg.groupings(np.stack([i.frames for i in batch]), generator)
        for j, item in enumerate(batch):
            records.append(write_item(item, gamma[j], psi[j], out, notes[start + j]))
        start += len(batch)
    return records


def segment(
    run_dir: Path | str,
    inputs: Sequence[Path | str],
    out: Path | str,
    *,
    steps: int | None = None,
    components: int | None = None,
    checkpoint: Checkpoint = "auto",
    resize: bool = False,
    sequence: bool = False,
    noise: bool = True,
    device: str | None = "cpu",
    on_record: Callable[[dict[str, Any]], None] | None = None,
    on_error: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """Segment pictures, videos and ``.npz`` arrays with a trained run (or ``pretrained:NAME``);
    the Python API of ``grouping segment``. Returns one record per picture or video.

    An input that cannot be used is passed to ``on_error`` as one line and the others are still
    written; without ``on_error``, :class:`SegmentFailed` is raised at the end, holding the records.
    """
    if checkpoint not in (*CHECKPOINTS, "auto"):
        raise RunDirError(f"unknown checkpoint {checkpoint!r}; valid: {', '.join(CHECKPOINTS)}")
    for name, value in (("steps", steps), ("components", components)):
        if value is not None and value < 1:
            raise ConfigError(f"{name} must be at least 1, got {value}")
    if not inputs:
        raise ConfigError("nothing to segment: give at least one image, folder, GIF or .npz")
    run = load_trained(run_dir, checkpoint, device, _overrides(components, steps))
    seg = Segmenter(run, steps=steps, resize=resize, noise=noise)
    target = Path(out)
    target.mkdir(parents=True, exist_ok=True)
    records: list[dict[str, Any]] = []
    failures: list[str] = []
    for given in inputs:
        try:
            done = segment_input(seg, Path(given), target, sequence)
        except SegmentInputError as exc:
            failures.append(str(exc))
            if on_error is not None:
                on_error(str(exc))
            continue
        for record in done:
            records.append(record)
            if on_record is not None:
                on_record(record)
    if failures and on_error is None:
        raise SegmentFailed(failures, records)
    return records
