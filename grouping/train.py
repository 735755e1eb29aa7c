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

from grouping.build import Assembly, assemble, resolve
from grouping.checkpoint import load_checkpoint, save_checkpoint
from grouping.config import RunConfig
from grouping.device import resolve_device
from grouping.errors import DataError
from grouping.evaluate import Scores, iterate_batches, score_split
from grouping.registry import Registry
from grouping.rundir import RunDir


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
        self.reporter = reporter or SilentReporter()
        self.device = resolve_device(self.config.train.device)
        if self.config.train.threads:
            torch.set_num_threads(self.config.train.threads)
        torch.manual_seed(self.config.seed)
        self.parts: Assembly = assemble(self.config, registry)
        self.model = self.parts.model.to(self.device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=self.config.train.lr)
        self.generator = make_generator(self.device, self.config.seed)
        self.order_rng = np.random.default_rng([self.config.seed, 7])
        self.state = TrainState()
        self.rundir = RunDir.create(out, self.config)

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
        self.reporter.epoch_start(self.state.epoch + 1, blocks)
        self.model.train()
        autocast = torch.autocast(
            self.device.type, dtype=torch.bfloat16, enabled=cfg.train.precision == "bf16"
        )
        losses: list[float] = []
        images = 0
        start = time.perf_counter()
        timed_out = False
        batches = iterate_batches(split, order, batch, cfg.model.steps + 1, self.device)
        for i, (features, _groups) in enumerate(batches):
            inputs = self.parts.noise(features, self.generator)
            with autocast:
                out = self.model(inputs, features, self.generator, keep=False)
            self.optimizer.zero_grad(set_to_none=True)
            out.loss.backward()
            self.optimizer.step()
            loss = float(out.loss.detach())
            losses.append(loss)
            images += features.shape[0]
            self.reporter.batch_end(self.state.epoch + 1, i + 1, loss)
            if deadline is not None and time.perf_counter() > deadline:
                timed_out = True
                break
        return float(np.mean(losses)), time.perf_counter() - start, images, timed_out

    def validate(self) -> Scores:
        cfg = self.config
        return score_split(
            self.model,
            self.parts.noise,
            self.parts.dataset.split("valid"),
            samples=cfg.train.valid_samples,
            batch_size=cfg.eval.batch_size,
            device=self.device,
            generator=self.generator,
        )

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
        if self.rundir.best.is_file():
            self.load_weights(self.rundir.best)
        generator = make_generator(self.device, cfg.seed + 1)
        return score_split(
            self.model,
            self.parts.noise,
            self.parts.dataset.split("test"),
            samples=cfg.eval.samples,
            batch_size=cfg.eval.batch_size,
            device=self.device,
            generator=generator,
            steps=steps,
        ).summary()


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
    trainer.rundir.write_summary(summary)
    return RunResult(trainer.rundir.path, summary)
