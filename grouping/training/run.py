"""One training run from start to summary: the trainer fits, tests, writes ``summary.json`` and
draws the grouping figure. :func:`grouping.training.api.train` picks this or the stage-wise path."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from grouping.accel.precision import machine_facts
from grouping.config.schema import RunConfig
from grouping.errors import DataError, NonFiniteError, one_line
from grouping.figures.groupings import FIGURE, animate_groupings, draw_groupings
from grouping.plugin_api.registry import Registry
from grouping.rundir.folder import RunDir
from grouping.training import distributed
from grouping.training.reporting import Reporter
from grouping.training.signals import catch_stop_signals, stop_at_once
from grouping.training.tensorboard import TENSORBOARD_DIR, TensorBoardReporter, require_tensorboard
from grouping.training.trainer import Trainer, TrainState

#: The animated grouping figure a sequence run writes beside ``figure.png``.
FIGURE_GIF = "figure.gif"


@dataclass
class RunResult:
    """What ``grouping.train`` returns: the run folder and its summary."""

    path: Path
    summary: dict[str, Any]

    @property
    def test(self) -> dict[str, Any]:
        return dict(self.summary["test"])


def train_run(
    config: RunConfig,
    out: Path | str | RunDir | None = None,
    reporter: Reporter | None = None,
    registry: Registry | None = None,
    tensorboard: bool = False,
    checkpoint: dict[str, Any] | None = None,
) -> RunResult:
    """Train one run (a config without stages) into ``out``, test it and write its summary.

    ``checkpoint`` continues an opened run folder (``grouping.training.resume``). Raises
    :class:`grouping.errors.Interrupted` on SIGINT/SIGTERM and
    :class:`grouping.errors.NonFiniteError` on a NaN (``summary.json`` then says why).
    """
    t0 = time.perf_counter()
    path = out if isinstance(out, RunDir) else Path(out) if out is not None else None
    if tensorboard:
        require_tensorboard()  # fail before the run folder exists
    trainer = Trainer(
        config,
        path or RunDir.default_path(config.preset, config=config),
        reporter,
        registry,
        checkpoint,
    )
    try:
        board = attach_tensorboard(trainer) if tensorboard and trainer.dist.main else None
        source = announce(trainer)
        state = fit(trainer, t0)
        with stop_at_once(trainer.rundir.path, resume_hint(trainer)):
            summary = finished_summary(trainer, state, trainer.test(), source, t0)
            if trainer.dist.main:
                if board is not None:
                    board.close()
                # the figure before summary.json: until that is written the run has not ended,
                # so a run killed while drawing is resumed, and the figure drawn again
                draw_run_figure(trainer, config.seed)
                trainer.rundir.write_summary(summary)
    except MemoryError as exc:  # a data set or model far too big for this machine
        raise DataError(out_of_memory(config, exc)) from None
    finally:
        trainer.rundir.close()
        trainer.threads.close()  # the process's own thread count again, after a probe
        if trainer.dist.active:
            distributed.cleanup()
    return RunResult(trainer.rundir.path, summary)


def resume_hint(trainer: Trainer) -> str:
    """What the user does after a stop once training has ended: the model is in ``last.pt``."""
    return (
        f"the trained model is in {trainer.rundir.last}; test it and finish the run with: "
        f"grouping run --resume {trainer.rundir.path}"
    )


def out_of_memory(config: RunConfig, exc: MemoryError) -> str:
    """One line for a run whose data or model does not fit in memory, naming the split sizes."""
    d = config.dataset
    return (
        f"not enough memory for this run ({one_line(str(exc), 160) or 'MemoryError'}); the splits "
        f"are dataset.train_size={d.train_size}, valid_size={d.valid_size}, "
        f"test_size={d.test_size}: use smaller ones"
    )


def attach_tensorboard(trainer: Trainer) -> TensorBoardReporter:
    """One TensorBoard writer per run, on rank 0, in front of the trainer's reporter."""
    board = TensorBoardReporter(trainer.reporter, trainer.rundir.path / TENSORBOARD_DIR)
    trainer.reporter = board
    return board


def announce(trainer: Trainer) -> dict[str, Any]:
    """Say where the run writes, where its data comes from and what it started from."""
    trainer.reporter.message(f"run folder: {trainer.rundir.path}")
    sequences = trainer.parts.split("train").frames > 1  # checked on its first batch
    trainer.reporter.data_unit("sequences" if sequences else "images")
    source = trainer.parts.dataset.source()
    for line in (source.get("description"), trainer.init_message):
        if line:
            trainer.reporter.message(str(line))
    return source


def fit(trainer: Trainer, t0: float) -> TrainState:
    """Fit under the stop-signal handlers; a non-finite stop still leaves a summary saying why."""
    with catch_stop_signals(trainer.stop):
        try:
            return trainer.fit()
        except NonFiniteError as exc:
            if trainer.dist.main:
                trainer.rundir.write_summary(stopped_summary(trainer, str(exc), t0))
            raise


def finished_summary(
    trainer: Trainer, state: TrainState, test: dict[str, Any], source: dict[str, Any], t0: float
) -> dict[str, Any]:
    """``summary.json`` of a run that trained to its end and was tested."""
    seconds = state.train_seconds
    return {
        "status": "finished",
        "stop_reason": state.stop_reason,
        "test": test,
        "epochs": state.epoch,
        "best_epoch": state.best_epoch,
        "best_valid_loss": state.best_loss,
        "train_images_per_s": state.train_images / seconds if seconds else 0.0,
        "train_s": seconds,
        "wall_s": time.perf_counter() - t0,
        "device": str(trainer.device),
        "machine": machine_facts(trainer.device, trainer.step.precision),
        "threads": torch.get_num_threads(),
        "thread_probe": {str(n): r for n, r in state.thread_rates.items()} or None,  # img/s
        "parameters": sum(p.numel() for p in trainer.model.parameters()),
        "data_source": source,
        "config": trainer.config.model_dump(mode="json"),
    }


def stopped_summary(trainer: Trainer, reason: str, t0: float) -> dict[str, Any]:
    """``summary.json`` of a run that stopped on a non-finite number: why, and where it got to."""
    s = trainer.state
    return {
        "status": "stopped",
        "stop_reason": reason,
        "test": None,
        "epochs": s.epoch,
        "best_epoch": s.best_epoch,
        "best_valid_loss": s.best_loss,
        "wall_s": time.perf_counter() - t0,
        "device": str(trainer.device),
        "config": trainer.config.model_dump(mode="json"),
    }


def draw_run_figure(trainer: Trainer, seed: int) -> None:
    """The run's grouping figure from the best model on four test samples (rank 0 alone, on the
    plain model: no collectives)."""
    figure = draw_groupings(
        trainer.model,
        trainer.parts.noise,
        trainer.parts.dataset.split("test"),
        trainer.rundir.path / FIGURE,
        seed=seed,
        title=f"{trainer.rundir.path.name}: test split, best model",
    )
    trainer.reporter.message(f"figure: {figure}")
    split = trainer.parts.dataset.split("test")
    if split.frames > 1:  # sequences: the same samples as an animation, one frame per EM step
        gif = animate_groupings(
            trainer.model, trainer.parts.noise, split, trainer.rundir.path / FIGURE_GIF, seed=seed
        )
        trainer.reporter.message(f"animation: {gif}")
