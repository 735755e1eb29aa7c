"""The trainer: Adam on the weighted EM loss, validation, early stopping and checkpoints.

The protocol of spec 7: batches are fixed blocks of consecutive samples whose order is shuffled each
epoch (the partial tail is dropped), validation uses the first ``valid_samples`` validation samples
with fresh noise and gamma^(0), and the best model by validation loss is kept and tested.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from grouping.accel.device import make_generator, resolve_device
from grouping.config.schema import RunConfig
from grouping.data.batches import Prefetcher, iterate_batches, prefetch_depth
from grouping.engine.assembly import Assembly, assemble, is_resolved
from grouping.errors import DataError, Interrupted, NonFiniteError
from grouping.evaluation.collapse import collapse_warning
from grouping.evaluation.scoring import Scores, score_split
from grouping.plugin_api.interfaces import SplitName
from grouping.plugin_api.registry import Registry
from grouping.rundir.checkpoint import load_checkpoint, save_checkpoint
from grouping.rundir.folder import RunDir
from grouping.rundir.loading import load_weights
from grouping.rundir.warm_start import init_from
from grouping.training import distributed
from grouping.training.batch_step import TrainStep
from grouping.training.books import LossBook
from grouping.training.reporting import Reporter, SilentReporter
from grouping.training.schedule import LrSchedule
from grouping.training.setup import compiled, make_optimizer, prepare_model, run_splits
from grouping.training.signals import StopRequest
from grouping.training.snapshot import restore, snapshot
from grouping.training.state import TrainState
from grouping.training.threads import threads_for_run


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
        if not is_resolved(config, registry):
            raise ValueError("Trainer takes a resolved config (grouping.engine.assembly.resolve)")
        self.config = config
        tc = self.config.train
        # several processes under torchrun: only rank 0 reports and writes (grouping.distributed)
        self.dist, self.device = distributed.setup(resolve_device(tc.device))
        self.dist.check_batch(tc.batch_size)
        self.reporter = (reporter or SilentReporter()) if self.dist.main else SilentReporter()
        # train.threads; under torchrun the cores shared among the local ranks; else a probe
        shared = distributed.default_threads(self.dist) if self.dist.active else 0
        self.threads = threads_for_run(tc.threads, shared, self.device, self.dist.active)
        torch.manual_seed(self.config.seed)
        self.parts: Assembly = assemble(self.config, registry)
        self.model, self.precision = prepare_model(self.parts.model, tc, self.device)
        self.optimizer = make_optimizer(self.model.parameters(), tc, self.device)
        self.data = run_splits(self.parts.split, tc, self.device)  # train.data_on_device
        self.schedule = LrSchedule.for_train(tc)  # train.lr_schedule (grouping.training.schedule)
        self.step = self._train_step()
        self.losses = LossBook()  # the losses since the trainer last read them, on the device
        self.generator = make_generator(self.device, self.dist.seed_for(self.config.seed))
        self.order_rng = np.random.default_rng([self.config.seed, 7])
        self.state = TrainState()
        self.stop = StopRequest()
        self._saved_at = time.perf_counter()
        # --init-from: before the run folder exists, so a mismatch leaves none behind
        self.init_message: str | None = None
        if tc.init_from and checkpoint is None:
            self.init_message = init_from(
                self.model, self.optimizer, Path(tc.init_from), self.device
            )
        self.rundir = self._open_rundir(out)
        if checkpoint is not None:
            self.restore(checkpoint)

    def _train_step(self) -> TrainStep:
        """One optimizer step on the prepared model, through its DDP wrapper and compiled where
        ``train.compile`` asks."""
        forward = distributed.wrap(self.model, self.dist, self.device)
        return TrainStep(
            self.model,
            self.optimizer,
            self.parts.noise,
            self.device,
            precision=self.precision,
            forward=compiled(forward, self.config.train.compile),
        )

    def _open_rundir(self, out: Path | RunDir) -> RunDir:
        """A new run folder (rank 0 creates and locks it), or the opened one being resumed."""
        if isinstance(out, RunDir):
            return out
        return RunDir.create(out, self.config) if self.dist.main else RunDir(out)

    # -- checkpoints -------------------------------------------------------------------------------

    def _payload(self) -> dict[str, Any]:
        """The checkpoint payload; under DDP a collective, so every rank builds it."""
        return snapshot(
            self.model, self.optimizer, self.state, self.generator, self.order_rng,
            self.config, self.dist,
        )  # fmt: skip

    def restore(self, payload: dict[str, Any]) -> None:
        """Continue from a checkpoint (loaded on the CPU): weights, optimizer, state and RNGs."""
        self.state = restore(
            payload, self.model, self.optimizer, self.generator, self.order_rng, self.dist
        )
        self.threads.resume(self.state)  # the count a probe chose before the stop

    def save_last(self, payload: dict[str, Any] | None = None) -> None:
        """``last.pt``: the state now, mid-epoch or at its end, so a resumed run continues here.
        Every rank calls it (the payload gathers every rank's RNG state); rank 0 writes."""
        if payload is None:
            self.read_losses()  # the partial sums the checkpoint holds
            payload = self._payload()
        if self.dist.main:
            save_checkpoint(self.rundir.last, payload)
        self._saved_at = time.perf_counter()

    def load_weights(self, path: Path) -> None:
        """Load a checkpoint of this run (its best, before the test) into the model."""
        payload = load_checkpoint(path, map_location=self.device)
        load_weights(self.model, payload, path, self.config.network.name)

    # -- the loop ----------------------------------------------------------------------------------

    def train_epoch(self, deadline: float | None) -> str:
        """Train the rest of the current epoch; returns "done", "deadline" (the time limit passed)
        or "stop" (a stop request came). Progress goes into ``self.state``, batch by batch."""
        cfg = self.config
        s = self.state
        split = self.data.split("train")
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
        self.threads.start()
        outcome = "done"
        rest = order[s.batch * local :]
        batches = iterate_batches(split, rest, local, cfg.model.steps + 1, self.device)
        try:
            for features, _groups in Prefetcher(
                batches, prefetch_depth(self.config.train.prefetch, self.device)
            ):
                self.schedule.apply(self.optimizer, s)  # the rate for this batch, from the state
                _, norms = self.step(features, self.generator)  # noise, forward, backward, Adam
                self._count_batch(norms, features.shape[0])
                late = deadline is not None and time.perf_counter() > deadline
                due, stop, late = self.dist.any_of(
                    [self._checkpoint_due(), self.stop.requested, late], self.device
                )
                if due:  # train.checkpoint_minutes
                    now = time.perf_counter()
                    s.epoch_seconds, start = s.epoch_seconds + now - start, now
                    self.save_last()
                    self.threads.start()  # the save is not a batch: the watch must not time it
                if stop or late:
                    outcome = "stop" if stop else "deadline"
                    break
        finally:
            s.epoch_seconds += time.perf_counter() - start
            self.read_losses()
        return outcome

    def _count_batch(self, norms: torch.Tensor, images: int) -> None:
        """Book one trained batch; its loss is read with the others at the logging interval."""
        s = self.state
        s.batch += 1
        s.epoch_images += images
        self.losses.add(s.batch, norms)
        if self.losses.due():
            self.read_losses()
        self.reporter.batch_end(s.epoch + 1, s.batch, self.losses.last_loss)
        chosen = self.threads.batch_done(images, s)  # a line once the probe has chosen
        if chosen:
            self.reporter.message(chosen)

    def read_losses(self) -> None:
        """Book the pending losses (one host sync); a non-finite one stops the run unless
        ``train.on_nonfinite = "skip"``, which counts it (its step changed nothing)."""
        skip = self.config.train.on_nonfinite == "skip"
        problem = self.losses.read(self.state, self.step.names, skip)
        if problem is not None:
            batch, what = problem
            last = self.rundir.last if self.rundir.last.is_file() else None
            blocks = len(self.state.epoch_order)  # the batches of the epoch in progress
            message = self.state.nonfinite_message(what, blocks, last, batch)
            raise NonFiniteError(message, self.rundir.path)

    def _checkpoint_due(self) -> bool:
        """Whether ``train.checkpoint_minutes`` have passed since ``last.pt`` was written (rank 0's
        clock decides; the caller agrees it over ranks, since the snapshot is a collective)."""
        minutes = self.config.train.checkpoint_minutes
        if not minutes or not self.dist.main:
            return False
        return time.perf_counter() - self._saved_at >= 60.0 * minutes

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
            self.dist.shard_split(self.data.split(split, samples), samples),
            samples=None,
            batch_size=self.config.eval.batch_size,
            device=self.device,
            generator=generator,
            steps=steps,
            precision=self.precision,
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
        s = self.state
        start = time.perf_counter()
        limit = cfg.train.max_minutes
        # The limit is the run's: a resumed run trains for what its earlier processes left of it.
        spent = s.train_seconds + s.epoch_seconds
        deadline = start + 60.0 * limit - spent if limit else None
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
            f"in epoch {s.epoch + 1} after batch {s.batch}" if s.batch else f"after epoch {s.epoch}"
        )
        raise Interrupted(
            f"interrupted by {self.stop.name or 'a signal'} {where}: saved {self.rundir.last}; "
            f"resume with: grouping run --resume {self.rundir.path}",
            self.rundir.path,
            self.stop.signum or 2,
        )

    def end_epoch(self, timed_out: bool, wall: float) -> None:
        """Validate, decide whether to stop, log the epoch and write the checkpoints."""
        loss, images, seconds, skipped = self._close_epoch()
        valid = self.validate().summary()
        tc = self.config.train
        improved = self.state.judge(
            valid["loss"], timed_out, tc.patience, tc.epochs, tc.max_minutes
        )
        record = {
            "epoch": self.state.epoch,
            "train_loss": loss,
            "valid_loss": valid["loss"],
            "valid_ami": valid["ami"],
            "valid_ari": valid["ari"],
            "valid_upper_bound": valid["upper_bound"],
            "component_shares": valid["component_shares"],
            "live_components": valid["live_components"],
            "nonfinite_batches": skipped,
            "images_per_s": images / seconds if seconds > 0 else 0.0,
            "epoch_s": seconds,
            "wall_s": wall,
            "best": improved,
        }
        payload = self._payload()
        if self.dist.main:  # best.pt first: a record never names a best model that is not saved
            if improved:
                save_checkpoint(self.rundir.best, payload)
            self.rundir.append_metrics(record)
        self.save_last(payload)
        self.reporter.epoch_end(record)
        k = self.config.model.components
        for warning in (
            collapse_warning(valid["live_components"], k, self.state.epoch),
            self.threads.slow_warning(self.state, record["images_per_s"]),
        ):
            if warning:
                self.reporter.message(warning)
        reason = self.state.stop_reason
        if reason and reason != "epoch limit":
            self.reporter.message(f"stopping: {reason}")

    def _close_epoch(self) -> tuple[float, int, float, int]:
        """The finished epoch's mean loss, images, seconds and skipped batches, summed over ranks
        (each rank's loss is the mean over its share of the batch); the state moves on."""
        s = self.state
        total, count, seen = self.dist.sum(
            [sum(s.epoch_losses), len(s.epoch_losses), s.epoch_images], self.device
        )
        out = (total / count if count else math.nan, int(seen), s.epoch_seconds, s.epoch_skipped)
        s.epoch += 1
        s.train_seconds += s.epoch_seconds
        s.train_images += int(seen)
        s.start_epoch([])
        return out

    def test(self, steps: int | None = None) -> dict[str, Any]:
        """Score the best model (or, with ``train.test_checkpoint = "last"``, the model as training
        left it) on the test split (spec 8.1)."""
        cfg = self.config
        best = cfg.train.test_checkpoint == "best"
        if self.dist.main and best and self.rundir.best.is_file():
            self.load_weights(self.rundir.best)
        self.dist.broadcast_weights(self.model)  # rank 0 read the checkpoint
        generator = make_generator(self.device, self.dist.seed_for(cfg.seed + 1))
        return self._score("test", cfg.eval.samples, generator, steps).summary()
