"""``grouping segment``: a trained model on your own images, videos and arrays, written as masks.

For each picture ``NAME`` it writes ``NAME.labels.png`` (8-bit palette PNG, the model's image size,
the argmax component 1..K at the last EM step, shown in the overlay's colours), ``NAME.overlay.png`` (each pixel in its component's colour, as
bright as the input, enlarged to at least :data:`OVERLAY_MIN_PX` pixels) and ``NAME.npz`` (gamma
(T, K, H, W) and psi (T, K, H, W, C)); a video writes ``NAME-000.labels.png``... per frame,
``NAME.gif`` and one ``NAME.npz``.

Choices, so that a result can be compared with ``grouping evaluate``:

* A static image is repeated for T + 1 frames, as the data sets' images are
  (:func:`grouping.data.batches.frames_for`). A video of F frames is preceded by its first frame, so
  EM step t groups frame t and every frame gets labels; ``steps`` takes its first T frames.
* Your pictures are fed clean: noise drawn on them would make one picture segment differently
  alone and in a folder. ``noise=True`` (``--noise``) corrupts them with the run's own noise
  plugin, as training and evaluation do. Noise and gamma^(0) are drawn per sample, as ``grouping
  evaluate`` draws them (from the run's seed + 1 and the sample's index in its file), so a picture
  gets the same draws alone or in a folder, and in any batch.
  An ``.npz`` of a split's first N images with ``noise=True`` therefore gets exactly the groupings
  ``grouping evaluate`` scores.
* A binary (Bernoulli) model is given the pixels that differ from the picture's background colour
  as on, the rest off (:mod:`grouping.figures.segment_fit`), and ``notes`` say so; a note also
  says when a picture's statistics are far from the training data's.
* A file that cannot be read is skipped with one line, and no output overwrites an input or
  another output (:mod:`grouping.figures.segment_inputs`).

``pretrained:NAME`` names a model shipped in the package (:mod:`grouping.rundir.pretrained`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from grouping.accel.device import make_generator
from grouping.accel.precision import matmul_context
from grouping.data.batches import frames_for
from grouping.errors import ConfigError, GroupingError, RunDirError
from grouping.evaluation.scoring import per_sample_draws, sample_base
from grouping.figures.images import (
    Item,
    SegmentInputError,
    fit_size,
    upscale,
    write_gif,
    write_labels,
    write_png,
)
from grouping.figures.segment_fit import (
    BINARY_NOTE,
    REFERENCE_SAMPLES,
    PictureStats,
    far_note,
    to_binary,
)
from grouping.figures.segment_inputs import (
    OutputNames,
    expand,
    input_files,
    prepare_out,
    read_input,
)
from grouping.rundir.loading import CHECKPOINTS, Checkpoint, LoadedRun, load_trained

#: Overlays are enlarged (square pixels) until their longer side is at least this many pixels.
OVERLAY_MIN_PX = 112
#: Brightness of a dark input pixel's colour in an overlay (a bright pixel takes the full colour).
OVERLAY_DARK = 0.25
#: Labels are stored in 8 bits.
MAX_COMPONENTS = 255
__all__ = ["BINARY_NOTE", "SegmentFailed", "segment"]


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
        self.binary = bool(run.dataset.binary)
        #: pictures are read in colour for a binary model: its conversion needs the colours
        self.channels = 3 if self.binary and self.shape[-1] == 1 else self.shape[-1]
        self.reference = reference_stats(run)

    def prepare(self, item: Item) -> list[str]:
        """Fit an item's frames to the model (size, channels, binary values); the notes to tell."""
        h, w, c = self.shape
        notes: list[str] = []
        if self.binary:
            kept = (h, w, item.frames.shape[-1])  # the size now, the channels after the conversion
            frames, notes = to_binary(
                fit_size(item.frames, kept, self.resize, item.source), item.name
            )
            item.frames = np.repeat(frames, c, axis=-1) if c > 1 else frames
        else:
            item.frames = fit_size(item.frames, self.shape, self.resize, item.source)
        far = far_note(item.name, PictureStats.of(item.frames[:1]), self.reference)
        return [*notes, far] if far else notes

    @torch.no_grad()
    def groupings(self, frames: np.ndarray, base: int, start: int) -> tuple[np.ndarray, np.ndarray]:
        """gamma (B, T, K, H, W) and psi (B, T, K, H, W, C) of samples (B, F, H, W, C), the
        ``start``-th of their file first: noise and gamma^(0) drawn per sample, as evaluation does
        (:func:`grouping.evaluation.scoring.per_sample_draws`)."""
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
        noise = self.run.noise if self.noise else None
        inputs, gamma0 = per_sample_draws(self.model, noise, features, base, start)
        weights = [0.0] * (steps - 1) + [1.0]
        with matmul_context(self.device, self.run.precision):  # as evaluation scores
            out = self.model(inputs, features, steps=steps, weights=weights, gamma=gamma0)
        gamma = out.gamma[:, 1:, ..., 0].float().cpu().numpy()
        return gamma, out.psi.float().cpu().numpy()


def reference_stats(run: LoadedRun) -> PictureStats | None:
    """The statistics of the first test samples of the run's data set (None where they cannot be
    read, e.g. a data file that is not on this machine)."""
    try:
        split = run.dataset.split("test")
        features, _ = split.get(np.arange(min(len(split), REFERENCE_SAMPLES)))
    except (GroupingError, OSError):
        return None
    return PictureStats.of(features[:, 0].float().cpu().numpy())


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
            outputs.append(write_labels(lab, colours, out / f"{item.name}-{i:03d}.labels.png"))
            outputs.append(write_png(ov, out / f"{item.name}-{i:03d}.overlay.png"))
        outputs.append(write_gif(overlays, out / f"{item.name}.gif"))
        counted = labels
    else:
        outputs.append(write_labels(labels[-1], colours, out / f"{item.name}.labels.png"))
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


def segment_input(
    seg: Segmenter, path: Path, names: OutputNames, sequence: bool
) -> list[dict[str, Any]]:
    """Every item of one input file (or ``--sequence`` folder), segmented and written under names
    that ``names`` hands out; their records."""
    items = read_input(path, seg.channels, sequence)
    notes = [seg.prepare(item) for item in items]
    base = sample_base(make_generator(seg.device, seg.run.config.seed + 1))
    records = []
    start = 0
    for batch in _batches(items, seg.run.config.eval.batch_size):
        gamma, psi = seg.groupings(np.stack([i.frames for i in batch]), base, start)
        for j, item in enumerate(batch):
            renamed = names.claim(item, gamma.shape[1])
            said = [*notes[start + j], renamed] if renamed else notes[start + j]
            try:
                records.append(write_item(item, gamma[j], psi[j], names.out, said))
            except OSError as exc:  # a full disk, a folder not writable: this input fails
                raise SegmentInputError(
                    f"{item.source}: cannot write its outputs: {exc.strerror or exc}"
                ) from None
        start += len(batch)
    return records


def _check_options(
    checkpoint: str, steps: int | None, components: int | None, inputs: Sequence[Path | str]
) -> None:
    """One line for an option ``segment`` cannot take, before the model is loaded."""
    if checkpoint not in (*CHECKPOINTS, "auto"):
        raise RunDirError(f"unknown checkpoint {checkpoint!r}; valid: {', '.join(CHECKPOINTS)}")
    for name, value in (("steps", steps), ("components", components)):
        if value is not None and value < 1:
            raise ConfigError(f"{name} must be at least 1, got {value}")
    if not inputs:
        raise ConfigError("nothing to segment: give at least one image, folder, GIF or .npz")


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
    noise: bool = False,
    device: str | None = "cpu",
    on_record: Callable[[dict[str, Any]], None] | None = None,
    on_error: Callable[[str], None] | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> list[dict[str, Any]]:
    """Segment pictures, videos and ``.npz`` arrays with a trained run (or ``pretrained:NAME``);
    the Python API of ``grouping segment``. Returns one record per picture or video.

    An input that cannot be used is passed to ``on_error`` as one line and the others are still
    written; without ``on_error``, :class:`SegmentFailed` is raised at the end, holding the records.
    ``on_progress(done, total)`` follows the inputs (a folder or a video is one).
    """
    _check_options(checkpoint, steps, components, inputs)
    run = load_trained(run_dir, checkpoint, device, _overrides(components, steps))
    seg = Segmenter(run, steps=steps, resize=resize, noise=noise)
    files = [f for given in inputs for f in expand(Path(given), sequence)]
    names = OutputNames(prepare_out(Path(out)), input_files(files))
    records: list[dict[str, Any]] = []
    failures: list[str] = []
    for i, path in enumerate(files):
        if on_progress is not None:
            on_progress(i, len(files))
        try:
            done = segment_input(seg, path, names, sequence)
        except SegmentInputError as exc:
            failures.append(str(exc))
            if on_error is not None:
                on_error(str(exc))
            continue
        for record in done:
            records.append(record)
            if on_record is not None:
                on_record(record)
    if on_progress is not None:
        on_progress(len(files), len(files))
    if failures and on_error is None:
        raise SegmentFailed(failures, records)
    return records
