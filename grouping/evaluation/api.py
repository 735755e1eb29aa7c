"""Evaluate a trained run folder, possibly with another K, number of steps or data set (spec 8.2).

The Python API of ``grouping evaluate``. :func:`grouping.rundir.loading.load_trained` rebuilds the
model with the overrides (refusing another network or updater); :mod:`grouping.evaluation.scoring`
scores it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from torch import Tensor

from grouping.accel.device import make_generator
from grouping.config.loading import build_config
from grouping.config.schema import RunConfig
from grouping.engine.assembly import resolve
from grouping.errors import RunDirError
from grouping.evaluation.scoring import Scores, score_split
from grouping.plugin_api.interfaces import SPLITS, Split, SplitName
from grouping.plugin_api.registry import Registry
from grouping.rundir.folder import RunDir
from grouping.rundir.loading import Checkpoint, LoadedRun, config_changes, load_trained

#: ``(samples done, samples in all)``, called as evaluation goes through the split.
OnProgress = Callable[[int, int], None]


class CountedSplit(Split):
    """A split that reports how many of ``total`` samples have been read, for a progress bar: the
    scoring reads each batch just before it runs the model on it."""

    def __init__(self, inner: Split, total: int, on_progress: OnProgress) -> None:
        self.inner, self.total, self.on_progress = inner, total, on_progress
        self.done = 0

    def __len__(self) -> int:
        return len(self.inner)

    @property
    def frames(self) -> int:
        return self.inner.frames

    def get(self, index: np.ndarray) -> tuple[Tensor, Tensor]:
        self.on_progress(self.done, self.total)  # the batch before this one is scored
        self.done = min(self.total, self.done + len(index))
        return self.inner.get(index)


def evaluate(
    run_dir: Path | str,
    *,
    dataset: str | None = None,
    components: int | None = None,
    steps: int | None = None,
    assignments: Sequence[str] = (),
    split: SplitName = "test",
    checkpoint: Checkpoint = "auto",
    device: str | None = None,
    per_image: bool = False,
    registry: Registry | None = None,
    on_progress: OnProgress | None = None,
) -> dict[str, Any]:
    """Score a run's checkpoint on a split, with the overrides given; the API of ``grouping
    evaluate``. ``run_dir`` may be ``pretrained:NAME``, a model shipped in the package;
    ``checkpoint`` ``auto`` is the one the run tested (``train.test_checkpoint``).

    Returns :meth:`grouping.evaluation.scoring.Scores.summary` plus ``run_dir``, ``checkpoint``,
    ``epoch``, ``split``, ``changed`` ({key: [the run's, now]}: what the overrides changed in the
    run's resolved ``config.toml``) and the evaluation's ``config``;
    with ``per_image``, ``ami_per_image`` (N lists of T floats). Noise and gamma^(0) come from the
    seed + 1 stream, as the run's own test, so evaluating without overrides on the test split
    reproduces ``summary.json``'s test scores. ``on_progress(done, total)`` follows the samples.
    """
    if split not in SPLITS:
        raise RunDirError(f"unknown split {split!r}; valid: {', '.join(SPLITS)}")
    run = load_trained(
        run_dir, checkpoint, device, overrides(dataset, components, steps), assignments,
        registry=registry,
    )  # fmt: skip
    scores = _score(run, run.dataset.split(split), on_progress)
    result = {
        "run_dir": str(run.path),
        "checkpoint": run.checkpoint.stem,
        "epoch": run.epoch,
        "split": split,
        **scores.summary(),
        "changed": config_changes(run_config(run.path, registry), run.config),
        "config": run.config.model_dump(mode="json"),
    }
    return result | ({"ami_per_image": scores.ami.tolist()} if per_image else {})


def _score(run: LoadedRun, data: Split, on_progress: OnProgress | None) -> Scores:
    """The run's model scored on the split's first ``eval.samples`` (all by default)."""
    device = next(run.model.parameters()).device
    n = len(data) if run.config.eval.samples is None else min(run.config.eval.samples, len(data))
    scores = score_split(
        run.model,
        run.noise,
        data if on_progress is None else CountedSplit(data, n, on_progress),
        samples=run.config.eval.samples,
        batch_size=run.config.eval.batch_size,
        device=device,
        generator=make_generator(device, run.config.seed + 1),
        precision=run.precision,  # as the run's own test scored it
    )
    if on_progress is not None:
        on_progress(n, n)
    return scores


def run_config(path: Path, registry: Registry | None = None) -> RunConfig:
    """The run's own ``config.toml``, resolved as training resolved it: what "changed" is measured
    from (the checkpoint's copy may come from an older version that lacked newer keys)."""
    return resolve(build_config(str(RunDir(path).config_path)), registry)


def overrides(
    dataset: str | None, components: int | None, steps: int | None
) -> dict[str, dict[str, Any]]:
    """``grouping evaluate``'s options as config sections."""
    out: dict[str, dict[str, Any]] = {}
    if dataset is not None:
        out["dataset"] = {"name": dataset}
    model = {k: v for k, v in (("components", components), ("steps", steps)) if v is not None}
    if model:
        out["model"] = model
    return out
