"""``grouping visualize``: a trained model's groupings on a split, drawn as the paper's figures
(inputs, per-component predictions, gamma and the ground truth), or animated with one GIF frame per
EM step (``gif``).

``grouping run`` writes ``figure.png`` into the run folder; ``visualize`` writes beside it,
``figure-visualize.png`` (or ``.gif``), so the run's own figure is never replaced; for a shipped
model (``pretrained:NAME``) it writes ``NAME-visualize.png`` in the current folder."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from grouping.data.batches import frames_for
from grouping.engine.em import NeuralEM
from grouping.errors import ConfigError, GroupingError
from grouping.figures.images import upscale, write_gif
from grouping.figures.resolution import DPI, MAX_STEP_COLUMNS, check_dpi
from grouping.plugin_api.interfaces import SPLITS, Noise, Split, SplitName
from grouping.rundir.loading import load_run
from grouping.rundir.pretrained import is_pretrained

#: The file ``grouping run`` writes its grouping figure to, inside the run folder.
FIGURE = "figure.png"
#: What ``grouping visualize`` writes by default, beside it (``.gif`` with ``gif``).
VISUALIZE_FIGURE = "figure-visualize"
#: A GIF panel is enlarged (square pixels) until its longer side is at least this many pixels.
GIF_CELL_PX = 64
#: White space between GIF panels, and the height of the strip that names the step.
GIF_GAP_PX, GIF_HEADER_PX = 2, 14


#: Samples drawn in that figure: a column each for images, a block of rows each for sequences.
RUN_FIGURE_SAMPLES = 4
SEQUENCE_FIGURE_SAMPLES = 2


@torch.no_grad()
def grouping_panels(
    model: NeuralEM,
    noise: Noise,
    split: Split,
    *,
    samples: int,
    steps: int | None = None,
    seed: int = 0,
    device: torch.device | None = None,
    title: str = "",
) -> Any:
    """Run the model on the first ``samples`` of a split, keeping every step, and collect what a
    grouping figure shows (a :class:`grouping.figures.drawing.GroupingPanels`)."""
    from grouping.figures.drawing import GroupingPanels

    device = device or next(model.parameters()).device
    steps = model.steps if steps is None else steps
    n = min(samples, len(split))
    if n < 1:
        raise GroupingError("the split is empty: there is nothing to draw")
    features, groups = split.get(np.arange(n))
    try:
        features, groups = frames_for(features.to(device), groups.to(device), steps + 1)
    except ValueError as exc:
        raise ConfigError(f"cannot draw {steps} EM steps: {exc}") from None
    generator = torch.Generator(device=device)
    generator.manual_seed(seed)
    was_training = model.training
    model.eval()
    try:
        weights = [0.0] * (steps - 1) + [1.0]
        out = model(noise(features, generator), features, generator, steps=steps, weights=weights)
    finally:
        model.train(was_training)
    return GroupingPanels(
        frames=features[:, 1:].float().cpu().numpy(),  # (N, T, H, W, C): frame t+1 scores step t
        psi=out.psi.float().cpu().numpy(),  # (N, T, K, H, W, C)
        gamma=out.gamma[:, 1:, ..., 0].float().cpu().numpy(),  # (N, T, K, H, W)
        groups=groups[:, 1:].cpu().numpy(),  # (N, T, H, W)
        title=title,
        step_numbers=list(range(1, steps + 1)),
    )


def default_samples(split: Split) -> int:
    """Samples a grouping figure shows unless told: fewer for sequences, whose blocks are tall."""
    return SEQUENCE_FIGURE_SAMPLES if split.frames > 1 else RUN_FIGURE_SAMPLES


def draw_groupings(
    model: NeuralEM,
    noise: Noise,
    split: Split,
    out: Path,
    *,
    samples: int | None = None,
    steps: int | None = None,
    seed: int = 0,
    title: str = "",
    dpi: int = DPI,
    columns: int | None = MAX_STEP_COLUMNS,
    on_stage: Callable[[int], None] | None = None,
) -> Path:
    """Write the grouping figure of a model on a split at ``dpi`` dots per inch: the static layout
    (paper Figure 3) when the split holds one frame per sample, the sequential layout (Figures 4
    and 7, at most ``columns`` evenly spaced steps; None: all) otherwise. ``samples`` None is
    :func:`default_samples`; ``on_stage(1)`` and ``on_stage(2)`` follow the model run and drawing."""
    from grouping.figures.drawing import save, sequential_figure, static_figure, step_columns

    check_dpi(dpi)
    n = default_samples(split) if samples is None else samples
    panels = grouping_panels(model, noise, split, samples=n, steps=steps, seed=seed, title=title)
    (on_stage or _ignore)(1)
    if split.frames > 1:
        fig = sequential_figure(only_steps(panels, step_columns(panels.psi.shape[1], columns)))
    else:
        fig = static_figure(panels)
    (on_stage or _ignore)(2)
    return save(fig, out, dpi)


def _ignore(stage: int) -> None:
    """No one follows the stages."""


def only_steps(panels: Any, keep: list[int]) -> Any:
    """The panels of the steps ``keep`` (0-based) alone, numbered as before."""
    from dataclasses import replace

    numbers = panels.step_numbers or list(range(1, panels.psi.shape[1] + 1))
    return replace(
        panels,
        frames=panels.frames[:, keep],
        psi=panels.psi[:, keep],
        gamma=panels.gamma[:, keep],
        groups=panels.groups[:, keep],
        step_numbers=[numbers[i] for i in keep],
    )


def step_frames(panels: Any) -> list[np.ndarray]:
    """One RGB image (H', W', 3) per EM step: a row per sample holding the input, psi_1..psi_K,
    gamma and the true groups side by side, under a strip naming the step."""
    from PIL import Image, ImageDraw

    from grouping.figures.drawing import component_colours, step_cells

    n, t, k, h, w = panels.psi.shape[:5]
    colours = component_colours(k)
    factor = max(1, -(-GIF_CELL_PX // max(h, w)))
    cell_h, cell_w = h * factor + GIF_GAP_PX, w * factor + GIF_GAP_PX
    out = []
    for s in range(t):
        canvas = np.ones((GIF_HEADER_PX + n * cell_h, (k + 3) * cell_w, 3))
        for i in range(n):
            for c, rgb in enumerate(step_cells(panels, i, s, colours)):
                top, left = GIF_HEADER_PX + i * cell_h, c * cell_w
                canvas[top : top + h * factor, left : left + w * factor] = upscale(rgb, factor)
        image = Image.fromarray(np.round(canvas * 255).astype(np.uint8))
        number = panels.step_numbers[s] if panels.step_numbers else s + 1
        text = f"EM step {number}/{t}: input, psi 1..{k}, gamma, truth"
        ImageDraw.Draw(image).text((2, 1), text, fill=(0, 0, 0))
        out.append(np.asarray(image, dtype=np.float64) / 255.0)
    return out


def animate_groupings(
    model: NeuralEM,
    noise: Noise,
    split: Split,
    out: Path,
    *,
    samples: int | None = None,
    steps: int | None = None,
    seed: int = 0,
) -> Path:
    """Write the animated grouping figure of a model on a split: one GIF frame per EM step (for a
    sequence run, ``grouping run`` can write it as ``figure.gif`` beside ``figure.png``)."""
    n = default_samples(split) if samples is None else samples
    panels = grouping_panels(model, noise, split, samples=n, steps=steps, seed=seed)
    return write_gif(step_frames(panels), out)


def default_figure(run_dir: Path | str, run_path: Path, gif: bool) -> Path:
    """Where ``visualize`` writes without ``out``: beside the run's own figure.png, or in the current
    folder for a shipped model (the package's folder may not be writable)."""
    suffix = ".gif" if gif else ".png"
    if is_pretrained(run_dir):
        return Path(f"{run_path.name}-visualize{suffix}")
    return run_path / f"{VISUALIZE_FIGURE}{suffix}"


def visualize(
    run_dir: Path | str,
    split: SplitName = "test",
    samples: int | None = None,
    steps: int | None = None,
    out: Path | str | None = None,
    seed: int = 0,
    gif: bool = False,
    dpi: int = DPI,
    columns: int | None = MAX_STEP_COLUMNS,
    on_progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Draw a trained run's (or ``pretrained:NAME``'s) groupings on ``samples`` samples of
    ``split`` and return the file's path (default ``RUN_DIR/figure-visualize.png``, never the
    run's own ``figure.png``). ``steps`` unrolls a different number of EM steps than the run was
    trained with; ``gif`` writes an animated GIF, one frame per step (drawn in pixels: ``dpi``, the
    PNG's dots per inch, does not apply). ``samples`` None draws 4 images or 2 sequences; a
    sequence figure shows at most ``columns`` evenly spaced steps (None: every step).
    ``on_progress(done, 3)`` follows loading, running the model and drawing. The API of
    ``grouping visualize``."""
    if split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}; valid: {', '.join(SPLITS)}")
    if samples is not None and samples < 1:
        raise ConfigError(f"samples must be at least 1, got {samples}")
    if steps is not None and steps < 1:
        raise ConfigError(f"steps must be at least 1, got {steps}")
    check_dpi(dpi)
    progress = on_progress or (lambda done, total: None)
    progress(0, 3)
    frames = None if steps is None else steps + 1
    run = load_run(run_dir, frames=frames)
    progress(1, 3)
    t = run.model.steps if steps is None else steps
    target = Path(out) if out is not None else default_figure(run_dir, run.path, gif)
    title = f"{run.path.name}: {split} split, {t} EM steps ({run.checkpoint.name})"
    data = run.dataset.split(split)
    if gif:
        path = animate_groupings(
            run.model, run.noise, data, target, samples=samples, steps=steps, seed=seed
        )
    else:
        path = draw_groupings(
            run.model, run.noise, data, target, samples=samples, steps=steps, seed=seed,
            title=title, dpi=dpi, columns=columns, on_stage=lambda done: progress(1 + done, 3),
        )  # fmt: skip
    progress(3, 3)
    return path
