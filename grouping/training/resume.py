"""Resume a run from its folder: ``grouping run --resume RUN`` and ``grouping.resume(RUN)``.

A run continues from ``checkpoints/last.pt`` with its saved config. Everything that decides the
numbers is restored: weights, Adam's moments, the epoch and early-stopping state, the run's torch
generator (noise, gamma^(0) and the validation pass), the global torch RNG, the numpy generator of
the batch order and, after a stop signal, the position inside the epoch. The data splits are
generated again from the seed. On the CPU the resumed run therefore ends with the same weights and
metrics as a run that was never interrupted.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grouping.config.loading import assignments_to_dict, merge, read_toml
from grouping.config.schema import RunConfig, validate
from grouping.engine.assembly import resolve
from grouping.errors import GroupingError, RunDirError
from grouping.plugin_api.registry import Registry
from grouping.rundir.checkpoint import load_checkpoint
from grouping.rundir.folder import SUMMARY, RunDir
from grouping.training.distributed import env_world, is_main_process
from grouping.training.reporting import Reporter
from grouping.training.run import RunResult, train_run
from grouping.training.snapshot import check_world


@dataclass
class Resumption:
    """A run folder, locked and checked, ready to continue: :meth:`run` trains and tests it."""

    rundir: RunDir
    config: RunConfig
    checkpoint: dict[str, Any]
    registry: Registry | None = None

    def run(self, reporter: Reporter | None = None, tensorboard: bool = False) -> RunResult:
        try:
            return train_run(
                self.config, self.rundir, reporter, self.registry, tensorboard, self.checkpoint
            )
        finally:
            self.rundir.close()


def prepare_resume(
    path: Path | str,
    overrides: dict[str, Any] | None = None,
    assignments: list[str] | None = None,
    registry: Registry | None = None,
    world: int | None = None,
) -> Resumption:
    """Lock the run in ``path`` and check that it can continue: it has not ended, ``last.pt`` reads
    and verifies, it was written by ``world`` processes (default: this run's), and
    ``overrides``/``assignments`` (if any) only restate its config. Under torchrun only rank 0
    locks the folder and trims its metrics."""
    main = is_main_process()
    rundir = RunDir.open(Path(path), lock=main)
    try:
        if (rundir.path / SUMMARY).is_file():
            raise RunDirError(
                f"run {rundir.path} has already ended ({_status(rundir)}); nothing to resume, "
                "start a new run with --preset RUN/config.toml --out NEW"
            )
        if not rundir.last.is_file():
            raise RunDirError(
                f"run {rundir.path} has no checkpoints/last.pt (it stopped before its first "
                f"epoch ended); start it again in the same folder: grouping run --preset "
                f"{rundir.config_path} --out {rundir.path}"
            )
        checkpoint = load_checkpoint(rundir.last, map_location="cpu")
        check_world(checkpoint, env_world() if world is None else world, rundir.last)
        data = merge(read_toml(rundir.config_path), overrides or {})
        data = merge(data, assignments_to_dict(assignments or []))
        config = resolve(validate(data), registry)
        check_same_config(config, checkpoint, rundir.last)
        train_state = checkpoint.get("train_state")
        epoch = train_state.get("epoch") if isinstance(train_state, dict) else None
        if not isinstance(epoch, int):
            raise RunDirError(f"{rundir.last} has no training state; it is not a run checkpoint")
        if main:
            rundir.keep_metrics_until(epoch)
    except BaseException:
        rundir.close()
        raise
    return Resumption(rundir, config, checkpoint, registry)


def resume(
    path: Path | str,
    reporter: Reporter | None = None,
    registry: Registry | None = None,
    overrides: dict[str, Any] | None = None,
    assignments: list[str] | None = None,
) -> RunResult:
    """Continue the run in ``path`` (see :func:`prepare_resume`); the Python API of
    ``grouping run --resume``."""
    return prepare_resume(path, overrides, assignments, registry).run(reporter)


def resumable(path: Path) -> bool:
    """A run folder whose run has not ended and has a ``last.pt`` to continue from."""
    run = RunDir(path)
    return run.config_path.is_file() and not (path / SUMMARY).exists() and run.last.is_file()


def check_same_config(config: RunConfig, checkpoint: dict[str, Any], where: Path) -> None:
    """Refuse to resume with a config whose hash differs from the checkpoint's, naming the keys."""
    if config.digest() == checkpoint.get("config_hash"):
        return
    saved = checkpoint.get("config")
    keys = _changed_since(saved, config) if isinstance(saved, dict) else []
    if isinstance(saved, dict) and not keys:
        return  # saved by an older version: only options added since (at their defaults) differ
    shown = ", ".join(keys[:8]) + (" ..." if len(keys) > 8 else "") if keys else "unknown keys"
    raise RunDirError(
        f"the config differs from the one {where} was trained with ({shown}); a resumed run "
        "keeps its config: drop the changed options, or start a new run"
    )


def read_today(saved: dict[str, Any]) -> dict[str, Any] | None:
    """A saved config (a checkpoint's, a stage-wise root's plan) as today's schema reads it,
    resolved, in JSON values: options added since take their defaults, and old spellings
    (``compile = false``) read as today's. None where today's schema refuses it."""
    try:
        return resolve(validate(saved)).model_dump(mode="json")
    except GroupingError:
        return None


def _changed_since(saved: dict[str, Any], config: RunConfig) -> list[str]:
    """The keys where ``config`` differs from a checkpoint's saved config read with today's
    schema, so that a run saved by an older version resumes."""
    then = read_today(saved)
    if then is None:
        return ["config"]
    return _differences(then, config.model_dump(mode="json"))


def _differences(a: Any, b: Any, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out: list[str] = []
        for key in sorted(set(a) | set(b)):
            out += _differences(a.get(key), b.get(key), f"{prefix}{key}.")
        return out
    return [] if a == b else [prefix.rstrip(".")]


def _status(rundir: RunDir) -> str:
    try:
        summary = rundir.summary()
    except (ValueError, RunDirError):
        return "summary.json exists"
    status = summary.get("status", "finished")
    reason = summary.get("stop_reason")
    return f"{status}: {reason}" if reason else str(status)
