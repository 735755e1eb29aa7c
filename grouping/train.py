"""Training: Adam on the weighted EM loss, validation, early stopping, checkpoints and the summary.

The protocol of spec 7: batches are fixed blocks of consecutive samples whose order is shuffled each
epoch (the partial tail is dropped), validation uses the first ``valid_samples`` validation samples
with fresh noise and gamma^(0), and the best model by validation loss is kept and tested.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from grouping import distributed
from grouping.build import Assembly, assemble, resolve
from grouping.checkpoint import load_checkpoint, save_checkpoint
from grouping.config import RunConfig
from grouping.device import resolve_device
from grouping.errors import DataError
from grouping.evaluate import Scores, iterate_batches, score_split
from grouping.loader import Prefetcher
from grouping.precision import resolve_precision
from grouping.registry import Registry
from grouping.rundir import RunDir
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
    """Everything that changes from epoch to epoch; saved in every checkpoint."""

    epoch: int = 0
    best_loss: float = math.inf
    best_epoch: int = 0
    bad_epochs: int = 0
    train_seconds: float = 0.0
    train_images: int = 0


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
        out: Path,
        reporter: Reporter | None = None,
        registry: Registry | None = None,
    ) -> None:
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
        )
        self.generator = make_generator(self.device, self.dist.seed_for(self.config.seed))
        self.order_rng = np.random.default_rng([self.config.seed, 7])
        self.state = TrainState()
        self.rundir = RunDir.create(out, self.config) if self.dist.main else RunDir(out)

    # -- checkpoints -------------------------------------------------------------------------------

    def _payload(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "train_state": vars(self.state).copy(),
            "rng": {
                "torch": self.generator.get_state(),
                "torch_global": torch.get_rng_state(),
                "order": json.dumps(self.order_rng.bit_generator.state),
            },
            "config": self.config.model_dump(mode="json"),
            "config_hash": self.config.digest(),
        }

    def load_weights(self, path: Path) -> None:
        payload = load_checkpoint(path, map_location=self.device)
        self.model.load_state_dict(payload["model"])

    # -- the loop ----------------------------------------------------------------------------------

    def train_epoch(self, deadline: float | None) -> tuple[float, float, int, bool]:
        """One epoch; returns (mean loss, seconds, images, stopped early by the deadline)."""
        cfg = self.config
        split = self.parts.dataset.split("train")
        batch = cfg.train.batch_size
        blocks = len(split) // batch
        if blocks == 0:
            raise DataError(
                f"the training split holds {len(split)} samples, fewer than train.batch_size "
                f"({batch}); use a smaller --batch-size"
            )
        order = (self.order_rng.permutation(blocks)[:, None] * batch + np.arange(batch)).ravel()
        order = self.dist.shard_order(order, batch)
        local = batch // self.dist.world
        self.reporter.epoch_start(self.state.epoch + 1, blocks)
        self.model.train()
        losses: list[float] = []
        images = 0
        start = time.perf_counter()
        timed_out = False
        batches = iterate_batches(split, order, local, cfg.model.steps + 1, self.device)
        for i, (features, _groups) in enumerate(Prefetcher(batches, cfg.train.prefetch)):
            loss = float(self.step(features, self.generator))
            losses.append(loss)
            images += features.shape[0]
            self.reporter.batch_end(self.state.epoch + 1, i + 1, loss)
            late = deadline is not None and time.perf_counter() > deadline
            if self.dist.any(late, self.device):
                timed_out = True
                break
        # sums and counts over ranks: each rank's loss is the mean over its share of the batch
        total, count, seen = self.dist.sum([sum(losses), len(losses), images], self.device)
        mean = total / count if count else math.nan
        return mean, time.perf_counter() - start, int(seen), timed_out

    def validate(self) -> Scores:
        cfg = self.config
        scores = score_split(
            self.model,
            self.parts.noise,
            self.dist.shard_split(self.parts.dataset.split("valid"), cfg.train.valid_samples),
            samples=None,
            batch_size=cfg.eval.batch_size,
            device=self.device,
            generator=self.generator,
        )
        return self.dist.gather_scores(scores)

    def fit(self) -> TrainState:
        """Train until early stopping, the epoch limit or the time limit."""
        cfg = self.config
        start = time.perf_counter()
        limit = cfg.train.max_minutes
        deadline = start + 60.0 * limit if limit else None
        s = self.state
        while s.epoch < cfg.train.epochs:
            loss, seconds, images, timed_out = self.train_epoch(deadline)
            s.epoch += 1
            s.train_seconds += seconds
            s.train_images += images
            scores = self.validate()
            valid = scores.summary()
            improved = valid["loss"] < s.best_loss
            if improved:
                s.best_loss, s.best_epoch, s.bad_epochs = valid["loss"], s.epoch, 0
            else:
                s.bad_epochs += 1
            record = {
                "epoch": s.epoch,
                "train_loss": loss,
                "valid_loss": valid["loss"],
                "valid_ami": valid["ami"],
                "valid_ari": valid["ari"],
                "valid_upper_bound": valid["upper_bound"],
                "images_per_s": images / seconds if seconds > 0 else 0.0,
                "epoch_s": seconds,
                "wall_s": time.perf_counter() - start,
                "best": improved,
            }
            if self.dist.main:
                self.rundir.append_metrics(record)
                if improved:
                    save_checkpoint(self.rundir.best, self._payload())
                save_checkpoint(self.rundir.last, self._payload())
            self.reporter.epoch_end(record)
            if not math.isfinite(valid["loss"]):
                self.reporter.message(f"stopping: validation loss is {valid['loss']}")
                break
            if s.bad_epochs >= cfg.train.patience:
                self.reporter.message(
                    f"early stopping: no better validation loss for {s.bad_epochs} epochs"
                )
                break
            if timed_out:
                self.reporter.message(f"stopping: the time limit of {limit} minutes is reached")
                break
        return s

    def test(self, steps: int | None = None) -> dict[str, Any]:
        """Score the best model on the test split (spec 8.1)."""
        cfg = self.config
        if self.dist.main and self.rundir.best.is_file():
            self.load_weights(self.rundir.best)
        self.dist.broadcast_weights(self.model)  # rank 0 read the checkpoint
        generator = make_generator(self.device, self.dist.seed_for(cfg.seed + 1))
        scores = score_split(
            self.model,
            self.parts.noise,
            self.dist.shard_split(self.parts.dataset.split("test"), cfg.eval.samples),
            samples=None,
            batch_size=cfg.eval.batch_size,
            device=self.device,
            generator=generator,
            steps=steps,
        )
        return self.dist.gather_scores(scores).summary()


def train(
    config: RunConfig,
    out: Path | str | None = None,
    reporter: Reporter | None = None,
    registry: Registry | None = None,
) -> RunResult:
    """Train a model from ``config`` into the run folder ``out`` and test it; the Python API of
    ``grouping run``."""
    t0 = time.perf_counter()
    path = Path(out) if out is not None else RunDir.default_path(config.preset)
    trainer = Trainer(config, path, reporter, registry)
    reporter = trainer.reporter
    reporter.message(f"run folder: {trainer.rundir.path}")
    state = trainer.fit()
    test = trainer.test()
    summary = {
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
        "data_source": trainer.parts.dataset.source(),
        "config": trainer.config.model_dump(mode="json"),
    }
    if trainer.dist.main:
        trainer.rundir.write_summary(summary)
    if trainer.dist.active:
        distributed.cleanup()
    return RunResult(trainer.rundir.path, summary)
