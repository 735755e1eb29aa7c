"""``grouping visualize``: a trained model's groupings on a split, drawn as the paper's figures
(inputs, per-component predictions, gamma and the ground truth)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from grouping.data.batches import frames_for
from grouping.engine.em import NeuralEM
from grouping.errors import ConfigError, GroupingError
from grouping.plugins.interfaces import SPLITS, Noise, Split, SplitName
from grouping.rundir.loading import load_run

#: The file ``grouping run`` writes its grouping figure to, inside the run folder.
FIGURE = "figure.png"


#: Samples drawn in that figure.
RUN_FIGURE_SAMPLES = 4


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


def draw_groupings(
    model: NeuralEM,
    noise: Noise,
    split: Split,
    out: Path,
    *,
    samples: int = RUN_FIGURE_SAMPLES,
    steps: int | None = None,
    seed: int = 0,
    title: str = "",
) -> Path:
    """Write the grouping figure of a model on a split: the static layout (paper Figure 3) when the
    split holds one frame per sample, the sequential layout (Figures 4 and 7) otherwise."""
    from grouping.figures.drawing import save, sequential_figure, static_figure

    panels = grouping_panels(
        model, noise, split, samples=samples, steps=steps, seed=seed, title=title
    )
    draw = sequential_figure if split.frames > 1 else static_figure
    return save(draw(panels), out)


def visualize(
    run_dir: Path | str,
    split: SplitName = "test",
    samples: int = RUN_FIGURE_SAMPLES,
    steps: int | None = None,
    out: Path | str | None = None,
    seed: int = 0,
) -> Path:
    """Draw a trained run's groupings on ``samples`` samples of ``split`` and return the PNG's path
    (default ``RUN_DIR/figure.png``). ``steps`` unrolls a different number of EM steps than the run
    was trained with. The Python API of ``grouping visualize``."""
    if split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}; valid: {', '.join(SPLITS)}")
    if samples < 1:
        raise ConfigError(f"samples must be at least 1, got {samples}")
    if steps is not None and steps < 1:
        raise ConfigError(f"steps must be at least 1, got {steps}")
    frames = None if steps is None else steps + 1
    run = load_run(run_dir, frames=frames)
    t = run.model.steps if steps is None else steps
    target = Path(out) if out is not None else run.path / FIGURE
    title = f"{run.path.name}: {split} split, {t} EM steps ({run.checkpoint.name})"
    return draw_groupings(
        run.model,
        run.noise,
        run.dataset.split(split),
        target,
        samples=samples,
        steps=steps,
        seed=seed,
        title=title,
    )
