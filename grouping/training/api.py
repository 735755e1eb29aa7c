"""``grouping.train``: a run, or a stage-wise chain of runs when the config has ``stages``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from grouping.config.schema import RunConfig
from grouping.engine.assembly import is_resolved, resolve
from grouping.plugin_api.registry import Registry
from grouping.rundir.folder import RunDir
from grouping.training.reporting import Reporter
from grouping.training.resume import prepare_resume, resumable
from grouping.training.run import RunResult, train_run
from grouping.training.stages import train_stages


def train(
    config: RunConfig,
    out: Path | str | RunDir | None = None,
    reporter: Reporter | None = None,
    registry: Registry | None = None,
    tensorboard: bool = False,
    checkpoint: dict[str, Any] | None = None,
) -> RunResult:
    """Train a model from ``config`` into the run folder ``out`` and test it; the Python API of
    ``grouping run``. ``tensorboard`` also logs each epoch's metrics for TensorBoard. A config with
    ``stages`` trains them in order (:mod:`grouping.training.stages`); otherwise see
    :func:`grouping.training.run.train_run`. With ``train.resume = "auto"`` a folder ``out`` that
    holds an unfinished run with a ``last.pt`` is resumed instead of refused."""
    if not is_resolved(config, registry):  # the edge of the Python API: resolved once, here
        config = resolve(config, registry)
    if config.stages:
        root = out.path if isinstance(out, RunDir) else out
        return train_stages(config, root, reporter, registry, tensorboard=tensorboard)
    if config.train.resume == "auto" and isinstance(out, str | Path) and resumable(Path(out)):
        # an elastic restart (torchrun --max-restarts) or a rerun after a crash: go on
        return prepare_resume(out, registry=registry).run(reporter, tensorboard)
    return train_run(config, out, reporter, registry, tensorboard, checkpoint)
