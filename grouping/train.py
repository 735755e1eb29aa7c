"""Training: Adam on the weighted EM loss, validation, early stopping, checkpoints and the summary.

The protocol of spec 7: batches are fixed blocks of consecutive samples whose order is shuffled each
epoch (the partial tail is dropped), validation uses the first ``valid_samples`` validation samples
with fresh noise and gamma^(0), and the best model by validation loss is kept and tested.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from grouping import distributed
from grouping.build import Assembly, assemble, resolve
from grouping.checkpoint import load_checkpoint, save_checkpoint
from grouping.config import RunConfig
from grouping.cpu_linear import use_cpu_matmul
from grouping.device import resolve_device
from grouping.errors import DataError, Interrupted, NonFiniteError, RunDirError
from grouping.evaluate import Scores, iterate_batches, score_split
from grouping.init_from import init_from
from grouping.interfaces import SplitName
from grouping.loader import Prefetcher
from grouping.precision import resolve_precision
from grouping.registry import Registry
from grouping.rundir import RunDir
from grouping.signals import StopRequest, catch_stop_signals
from grouping.step import TrainStep


class Reporter(Protocol):
    """Receives progress; the CLI shows it, the Python API may ignore it."""

    def message(self, text: str) -> None: ...
    def epoch_start(self, epoch: int, batches: int) -> None: ...
    def batch_end(self, epoch: int, batch: int, loss: float) -> None: ...
    def epoch_end(self, record: dict[str, Any]) -> None: ...


class SilentReporter:
    def message(self, text: str) -> None:
        pass

    def epoch_start(self, epoch: int, batches: int) -> None:
        pass

    def batch_end(self, epoch: int, batch: int, loss: float) -> None:
        pass

    def epoch_end(self, record: dict[str, Any]) -> None:
        pass


@dataclass
class RunResult:
    """What ``grouping.train`` returns: the run folder and its summary."""

    path: Path
    summary: dict[str, Any]

    @property
    def test(self) -> dict[str, Any]:
        return dict(self.summary["test"])


@dataclass
class TrainState:
    """Everything that changes during training; saved in every checkpoint as plain values.

    ``epoch`` counts finished epochs; ``stop_reason`` is set once training has ended (the epoch
    limit, early stopping, the time limit, a non-finite validation loss). The ``epoch_*`` fields and
    ``batch`` describe the epoch in progress: ``batch`` batches of epoch ``epoch + 1`` are done, in
    the block order ``epoch_order``. They are non-empty only in a checkpoint written after a stop
    signal, so that a resumed run goes on with batch ``batch + 1`` exactly where it stopped.
    """

    epoch: int = 0
    best_loss: float = math.inf
    best_epoch: int = 0
    bad_epochs: int = 0
    train_seconds: float = 0.0
    train_images: int = 0
    stop_reason: str = ""
    batch: int = 0
    epoch_order: list[int] = field(default_factory=list)
    epoch_losses: list[float] = field(default_factory=list)
    epoch_images: int = 0
    epoch_seconds: float = 0.0
    epoch_skipped: int = 0

    def start_epoch(self, order: list[int]) -> None:
        self.batch, self.epoch_order, self.epoch_losses = 0, order, []
        self.epoch_images, self.epoch_seconds, self.epoch_skipped = 0, 0.0, 0


def make_generator(device: torch.device, seed: int) -> torch.Generator:
    """The run's one torch generator (noise and gamma^(0)), on the device that uses it."""
    g = torch.Generator(device=device)
    g.manual_seed(seed)
    return g


class Trainer:
    """Trains one run; see the module docstring for the protocol."""

    def __init__(
        self,
        config: RunConfig,
        out: Path | RunDir,
        reporter: Reporter | None = None,
        registry: Registry | None = None,
        checkpoint: dict[str, Any] | None = None,
    ) -> None:
        """``out`` is a new run folder, or an opened one with the ``checkpoint`` to resume from
        (see :func:`grouping.resume.resume`)."""
        self.config = resolve(config, registry)
        tc = self.config.train
        # several processes under torchrun: only rank 0 reports and writes (grouping.distributed)
        self.dist, self.device = distributed.setup(resolve_device(tc.device))
        self.dist.check_batch(tc.batch_size)
        self.reporter = (reporter or SilentReporter()) if self.dist.main else SilentReporter()
        threads = tc.threads or (distributed.default_threads(self.dist) if self.dist.active else 0)
        if threads:
            torch.set_num_threads(threads)
        torch.manual_seed(self.config.seed)
        self.parts: Assembly = assemble(self.config, registry)
        self.model = self.parts.model.to(self.device)
        use_cpu_matmul(self.model, tc.cpu_matmul, self.device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=tc.lr)
        self.step = TrainStep(
            self.model,
            self.optimizer,
            self.parts.noise,
            self.device,
            precision=resolve_precision(tc.precision, self.device),
            compile=tc.compile,
            checkpoint_steps=tc.checkpoint_steps,
            forward=distributed.wrap(self.model, self.dist, self.device),
            agree=lambda flag: self.dist.any(flag, self.device),
        )
        self.generator = make_generator(self.device, self.dist.seed_for(self.config.seed))
        self.order_rng = np.random.default_rng([self.config.seed, 7])
        self.state = TrainState()
        self.stop = StopRequest()
        # --init-from: before the run folder exists, so a mismatch leaves none behind
        self.init_message: str | None = None
        if tc.init_from and checkpoint is None:
            self.init_message = init_from(
                self.model, self.optimizer, Path(tc.init_from), self.device
            )
        if isinstance(out, RunDir):
            self.rundir = out
        else:
            self.rundir = RunDir.create(out, self.config) if self.dist.main else RunDir(out)
        if checkpoint is not None:
            self.restore(checkpoint)

    # -- checkpoints -------------------------------------------------------------------------------

    def _payload(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "train_state": asdict(self.state),
            "rng": {
                "torch": self.generator.get_state(),
                "torch_global": torch.get_rng_state(),
                "order": json.dumps(self.order_rng.bit_generator.state),
            },
            "config": self.config.model_dump(mode="json"),
            "config_hash": self.config.digest(),
        }

    def restore(self, payload: dict[str, Any]) -> None:
        """Continue from a checkpoint (loaded on the CPU): weights, optimizer, state and RNGs."""
        try:
            self.model.load_state_dict(payload["model"])
            self.optimizer.load_state_dict(payload["optimizer"])
            self.state = TrainState(**payload["train_state"])
            rng = payload["rng"]
            self.generator.set_state(rng["torch"])
            torch.set_rng_state(rng["torch_global"])
            self.order_rng.bit_generator.state = json.loads(rng["order"])
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise RunDirError(
                f"the checkpoint does not fit this run ({type(exc).__name__}: {first})"
            ) from None

    def save_last(self) -> None:
        if self.dist.main:
            save_checkpoint(self.rundir.last, self._payload())

    def load_weights(self, path: Path) -> None:
        payload = load_checkpoint(path, map_location=self.device)
        try:
            self.model.load_state_dict(payload["model"])
        except (KeyError, RuntimeError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise RunDirError(f"{path} does not fit this model: {first}") from None

    # -- the loop ----------------------------------------------------------------------------------

    @property
    def prefetch_depth(self) -> int:
        """Batches gathered ahead: ``train.prefetch``, or by device (see its description)."""
        depth = self.config.train.prefetch
        if depth is None:
            return 2 if self.device.type == "cuda" else 0
        return depth

    def train_epoch(self, deadline: float | None) -> str:
        """Train the rest of the current epoch; returns "done", "deadline" (the time limit passed)
        or "stop" (a stop request came). Progress goes into ``self.state``, batch by batch."""
        cfg = self.config
        s = self.state
        split = self.parts.split("train")
        batch = cfg.train.batch_size
        blocks = len(split) // batch
        if blocks == 0:
            raise DataError(
                f"the training split holds {len(split)} samples, fewer than train.batch_size "
                f"({batch}); use a smaller --batch-size"
            )
        if s.batch == 0:  # a new epoch; a resumed one keeps its saved order and partial sums
            s.start_epoch(self.order_rng.permutation(blocks).tolist())
        order = (np.asarray(s.epoch_order)[:, None] * batch + np.arange(batch)).ravel()
        order = self.dist.shard_order(order, batch)
        local = batch // self.dist.world
        self.reporter.epoch_start(s.epoch + 1, blocks)
        self.model.train()
        start = time.perf_counter()
        outcome = "done"
        rest = order[s.batch * local :]
        batches = iterate_batches(split, rest, local, cfg.model.steps + 1, self.device)
        try:
            for features, _groups in Prefetcher(batches, self.prefetch_depth):
                loss = float(self.step(features, self.generator))
                s.batch += 1
                if self.step.problem is None:
                    s.epoch_losses.append(loss)
                elif cfg.train.on_nonfinite == "skip":
                    s.epoch_skipped += 1
                else:
                    raise NonFiniteError(
                        self._nonfinite_message(self.step.problem, blocks), self.rundir.path
                    )
                s.epoch_images += features.shape[0]
                self.reporter.batch_end(s.epoch + 1, s.batch, loss)
                late = deadline is not None and time.perf_counter() > deadline
                if self.dist.any(self.stop.requested, self.device):
                    outcome = "stop"
                    break
                if self.dist.any(late, self.device):
                    outcome = "deadline"
                    break
        finally:
            s.epoch_seconds += time.perf_counter() - start
        return outcome

    def _nonfinite_message(self, problem: str, blocks: int) -> str:
        s = self.state
        kept = (
            f"the last good checkpoint is {self.rundir.last} (epoch {s.epoch})"
            if s.epoch and self.rundir.last.is_file()
            else "no epoch had finished, so there is no checkpoint"
        )
        return (
            f"stopped at epoch {s.epoch + 1}, batch {s.batch} of {blocks}: {problem}; {kept}; "
            "--set train.on_nonfinite=skip skips such batches instead"
        )

    def _score(
        self,
        split: SplitName,
        samples: int | None,
        generator: torch.Generator,
        steps: int | None = None,
    ) -> Scores:
        """Score the current model on this rank's share of a split, gathered over all ranks."""
        scores = score_split(
            self.model,
            self.parts.noise,
            self.dist.shard_split(self.parts.split(split), samples),
            samples=None,
            batch_size=self.config.eval.batch_size,
            device=self.device,
            generator=generator,
            steps=steps,
        )
        return self.dist.gather_scores(scores)

    def validate(self) -> Scores:
        return self._score("valid", self.config.train.valid_samples, self.generator)

    def fit(self) -> TrainState:
        """Train until early stopping, the epoch limit or the time limit.

        A stop request (SIGINT, SIGTERM) ends the current batch, writes ``last.pt`` with the
        position inside the epoch and raises :class:`Interrupted`.
        """
        cfg = self.config
        start = time.perf_counter()
        limit = cfg.train.max_minutes
        deadline = start + 60.0 * limit if limit else None
        s = self.state
        while not s.stop_reason and s.epoch < cfg.train.epochs:
            # a signal that came during validation stops here, before another epoch starts
            early = self.dist.any(self.stop.requested, self.device)
            outcome = "stop" if early else self.train_epoch(deadline)
            if outcome == "stop":
                self._interrupted()
            self.end_epoch(outcome == "deadline", time.perf_counter() - start)
        return s

    def _interrupted(self) -> None:
        """Save the position (mid-epoch or at an epoch boundary) and say how to go on."""
        s = self.state
        self.save_last()
        where = (
            f"in epoch {s.epoch + 1} after batch {s.batch}"
            if s.batch
            else (f"after epoch {s.epoch}")
        )
        raise Interrupted(
            f"interrupted by {self.stop.name or 'a signal'} {where}: saved {self.rundir.last}; "
            f"resume with: grouping run --resume {self.rundir.path}",
            self.rundir.path,
            self.stop.signum or 2,
        )

    def end_epoch(self, timed_out: bool, wall: float) -> None:
        """Validate, decide whether to stop, log the epoch and write the checkpoints."""
        cfg, s = self.config, self.state
        # sums and counts over ranks: each rank's loss is the mean over its share of the batch
        total, count, seen = self.dist.sum(
            [sum(s.epoch_losses), len(s.epoch_losses), s.epoch_images], self.device
        )
        loss = total / count if count else math.nan
        images, seconds, skipped = int(seen), s.epoch_seconds, s.epoch_skipped
        s.epoch += 1
        s.train_seconds += seconds
        s.train_images += images
        s.start_epoch([])
        valid = self.validate().summary()
        improved = valid["loss"] < s.best_loss
        if improved:
            s.best_loss, s.best_epoch, s.bad_epochs = valid["loss"], s.epoch, 0
        else:
            s.bad_epochs += 1
        if not math.isfinite(valid["loss"]):
            s.stop_reason = f"validation loss is {valid['loss']}"
        elif s.bad_epochs >= cfg.train.patience:
            s.stop_reason = f"early stopping: no better validation loss for {s.bad_epochs} epochs"
        elif timed_out:
            s.stop_reason = f"the time limit of {cfg.train.max_minutes} minutes is reached"
        elif s.epoch >= cfg.train.epochs:
            s.stop_reason = "epoch limit"
        record = {
            "epoch": s.epoch,
            "train_loss": loss,
            "valid_loss": valid["loss"],
            "valid_ami": valid["ami"],
            "valid_ari": valid["ari"],
            "valid_upper_bound": valid["upper_bound"],
            "nonfinite_batches": skipped,
            "images_per_s": images / seconds if seconds > 0 else 0.0,
            "epoch_s": seconds,
            "wall_s": wall,
            "best": improved,
        }
        if self.dist.main:
            self.rundir.append_metrics(record)
            if improved:
                save_checkpoint(self.rundir.best, self._payload())
            self.save_last()
        self.reporter.epoch_end(record)
        if s.stop_reason and s.stop_reason != "epoch limit":
            self.reporter.message(f"stopping: {s.stop_reason}")

    def test(self, steps: int | None = None) -> dict[str, Any]:
        """Score the best model on the test split (spec 8.1)."""
        cfg = self.config
        if self.dist.main and self.rundir.best.is_file():
            self.load_weights(self.rundir.best)
        self.dist.broadcast_weights(self.model)  # rank 0 read the checkpoint
        generator = make_generator(self.device, self.dist.seed_for(cfg.seed + 1))
        return self._score("test", cfg.eval.samples, generator, steps).summary()


def train(
    config: RunConfig,
    out: Path | str | RunDir | None = None,
    reporter: Reporter | None = None,
    registry: Registry | None = None,
    tensorboard: bool = False,
    checkpoint: dict[str, Any] | None = None,
) -> RunResult:
    """Train a model from ``config`` into the run folder ``out`` and test it; the Python API of
    ``grouping run``. ``tensorboard`` also logs each epoch's metrics for TensorBoard. Raises
    :class:`grouping.errors.Interrupted` on SIGINT/SIGTERM and
    :class:`grouping.errors.NonFiniteError` on a NaN (``summary.json`` then says why). A config
    with ``stages`` trains them in order (``grouping.stages``)."""
    if config.stages:
        from grouping.stages import train_stages  # stages builds on this module

        root = out.path if isinstance(out, RunDir) else out
        return train_stages(config, root, reporter, registry, tensorboard=tensorboard)
    t0 = time.perf_counter()
    path = out if isinstance(out, RunDir) else Path(out) if out is not None else None
    if tensorboard:
        from grouping.tblog import require_tensorboard

        require_tensorboard()  # fail before the run folder exists
    trainer = Trainer(
        config, path or RunDir.default_path(config.preset), reporter, registry, checkpoint
    )
    try:
        board = None
        if tensorboard and trainer.dist.main:  # one writer per run, on rank 0
            from grouping.tblog import TENSORBOARD_DIR, TensorBoardReporter

            board = TensorBoardReporter(trainer.reporter, trainer.rundir.path / TENSORBOARD_DIR)
            trainer.reporter = board
        reporter = trainer.reporter
        reporter.message(f"run folder: {trainer.rundir.path}")
        source = trainer.parts.dataset.source()
        for line in (source.get("description"), trainer.init_message):
            if line:
                reporter.message(str(line))
        with catch_stop_signals(trainer.stop):
            try:
                state = trainer.fit()
            except NonFiniteError as exc:
                if trainer.dist.main:
                    trainer.rundir.write_summary(_stopped_summary(trainer, str(exc), t0))
                raise
        test = trainer.test()
        summary = {
            "status": "finished",
            "stop_reason": state.stop_reason,
            "test": test,
            "epochs": state.epoch,
            "best_epoch": state.best_epoch,
            "best_valid_loss": state.best_loss,
            "train_images_per_s": state.train_images / state.train_seconds
            if state.train_seconds
            else 0.0,
            "train_s": state.train_seconds,
            "wall_s": time.perf_counter() - t0,
            "device": str(trainer.device),
            "parameters": sum(p.numel() for p in trainer.model.parameters()),
            "data_source": source,
            "config": trainer.config.model_dump(mode="json"),
        }
        if trainer.dist.main:
            trainer.rundir.write_summary(summary)
            if board is not None:
                board.close()
            from grouping.inspection import FIGURE, draw_groupings

            figure = draw_groupings(  # rank 0 alone, on the plain model: no collectives
                trainer.model,
                trainer.parts.noise,
                trainer.parts.dataset.split("test"),
                trainer.rundir.path / FIGURE,
                seed=config.seed,
                title=f"{trainer.rundir.path.name}: test split, best model",
            )
            reporter.message(f"figure: {figure}")
    finally:
        trainer.rundir.close()
        if trainer.dist.active:
            distributed.cleanup()
    return RunResult(trainer.rundir.path, summary)


def _stopped_summary(trainer: Trainer, reason: str, t0: float) -> dict[str, Any]:
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
