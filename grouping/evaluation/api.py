"""Evaluate a trained run folder, possibly with another K, number of steps or data set (spec 8.2).

The Python API of ``grouping evaluate``. :func:`grouping.rundir.loading.load_trained` rebuilds the
model with the overrides (refusing another network or updater); :mod:`grouping.evaluation.scoring`
scores it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from grouping.accel.device import make_generator
from grouping.errors import RunDirError
from grouping.evaluation.scoring import score_split
from grouping.plugins.interfaces import SPLITS, SplitName
from grouping.plugins.registry import Registry
from grouping.rundir.loading import Checkpoint, config_changes, load_trained


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
) -> dict[str, Any]:
    """Score a run's checkpoint on a split, with the overrides given; the API of ``grouping
    evaluate``. ``run_dir`` may be ``pretrained:NAME``, a model shipped in the package;
    ``checkpoint`` ``auto`` is the one the run tested (``train.test_checkpoint``).

    Returns :meth:`grouping.evaluation.scoring.Scores.summary` plus ``run_dir``, ``checkpoint``,
    ``epoch``, ``split``, ``changed`` ({key: [trained, now]}) and the evaluation's ``config``;
    with ``per_image``, ``ami_per_image`` (N lists of T floats). Noise and gamma^(0) come from the
    seed + 1 stream, as the run's own test, so evaluating without overrides on the test split
    reproduces ``summary.json``'s test scores.
    """
    if split not in SPLITS:
        raise RunDirError(f"unknown split {split!r}; valid: {', '.join(SPLITS)}")
    run = load_trained(
        run_dir, checkpoint, device, overrides(dataset, components, steps), assignments,
        registry=registry,
    )  # fmt: skip
    device_ = next(run.model.parameters()).device
    scores = score_split(
        run.model,
        run.noise,
        run.dataset.split(split),
        samples=run.config.eval.samples,
        batch_size=run.config.eval.batch_size,
        device=device_,
        generator=make_generator(device_, run.config.seed + 1),
    )
    result = {
        "run_dir": str(run.path),
        "checkpoint": run.checkpoint.stem,
        "epoch": run.epoch,
        "split": split,
        **scores.summary(),
        "changed": config_changes(run.trained_config, run.config),
        "config": run.config.model_dump(mode="json"),
    }
    return result | ({"ami_per_image": scores.ami.tolist()} if per_image else {})


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
