"""Bad numbers: a NaN in the loss or a gradient stops the run (or skips the batch), injected by an
ad-hoc plugin."""

from __future__ import annotations

import json
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from click.testing import CliRunner
from grouping_plugins.rnn_em import RNNEM
from torch import Tensor

from grouping import build_config, hookimpl, train
from grouping.cli.main import cli
from grouping.errors import NonFiniteError
from grouping.plugin_api.interfaces import Noise, PluginConfig
from grouping.rundir.checkpoint import load_checkpoint
from tests.conftest import TINY
from tests.reliability import metrics, torch_threads

SET_TINY = [arg for item in TINY for arg in ("--set", item)]


class NanAt(Noise):
    """The clean input, except that training batch number ``at`` returns NaN everywhere.

    Only training batches count (TINY's 32 samples): the contract check when the run is assembled
    (``grouping.engine.contracts``) draws on 2 samples, and validation draws per sample
    (``grouping.evaluation.scoring.per_sample_draws``). With TINY's 4 training batches per epoch,
    batch 6 is epoch 2, batch 2.
    """

    name = "nan-at"
    description = "test noise: NaN inputs on one training batch"

    class Config(PluginConfig):
        at: int = 6

    config: Config

    def __init__(self, config: PluginConfig) -> None:
        super().__init__(config)
        self.calls = 0

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        if x.shape[0] < TRAINING_BATCH:
            return x.clone()
        self.calls += 1
        return x * float("nan") if self.calls == self.config.at else x.clone()


#: TINY's train.batch_size: the batches NanAt counts.
TRAINING_BATCH = 32


class NanBackward(torch.autograd.Function):
    """Identity forward; NaN gradients backward: a finite loss with broken gradients."""

    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:
        return x.clone()

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        return grad * float("nan")


class NanGradient(RNNEM):
    name = "nan-gradient"
    description = "test updater: RNN-EM whose gradients are NaN"

    def forward(self, u: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        psi, state = super().forward(u, state)
        return NanBackward.apply(psi), state


@pytest.fixture
def nan_plugins(register_plugin: Callable[[Any, str], None]) -> None:
    mod = types.ModuleType("nan_plugins")
    mod.register_noises = hookimpl(lambda register: register(NanAt))  # type: ignore[attr-defined]
    mod.register_updaters = hookimpl(lambda register: register(NanGradient))  # type: ignore[attr-defined]
    register_plugin(mod, "nan-plugins")


def test_a_nan_loss_stops_the_run_names_epoch_and_batch_and_keeps_the_checkpoint(
    nan_plugins: None, run_dir: Path
) -> None:
    args = ["run", *SET_TINY, "--set", "train.epochs=3", "--set", "noise.name=nan-at"]
    result = CliRunner().invoke(cli, [*args, "--out", str(run_dir)])
    assert result.exit_code == 3
    message = (
        f"stopped at epoch 2, batch 2 of 4: the loss is nan; the last good checkpoint is "
        f"{run_dir}/checkpoints/last.pt (epoch 1); --set train.on_nonfinite=skip skips such "
        "batches instead"
    )
    assert result.output.strip().splitlines()[-1] == message
    assert "Traceback" not in result.output
    summary = json.loads((run_dir / "summary.json").read_text())
    assert (summary["status"], summary["stop_reason"], summary["epochs"]) == ("stopped", message, 1)
    last = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    assert (last["train_state"]["epoch"], last["train_state"]["batch"]) == (1, 0)
    assert all(torch.isfinite(v).all() for v in last["model"].values())
    assert [r["epoch"] for r in metrics(run_dir)] == [1]
    again = CliRunner().invoke(cli, ["run", "--resume", str(run_dir)])
    assert again.exit_code == 2 and "has already ended (stopped: stopped at epoch 2" in again.output


def test_skip_mode_skips_the_bad_batch_and_counts_it(nan_plugins: None, run_dir: Path) -> None:
    skip = ["train.epochs=3", "noise.name=nan-at", "train.on_nonfinite=skip", "train.threads=1"]
    config = build_config("quickstart", assignments=[*TINY, *skip])
    with torch_threads():
        run = train(config, run_dir)
    records = metrics(run_dir)
    assert [r["nonfinite_batches"] for r in records] == [0, 1, 0]
    assert all(r["train_loss"] == r["train_loss"] for r in records)  # no NaN in the means
    assert run.summary["status"] == "finished" and run.summary["epochs"] == 3
    assert all(
        torch.isfinite(v).all()
        for v in load_checkpoint(run_dir / "checkpoints/last.pt")["model"].values()
    )


def test_a_nan_gradient_with_a_finite_loss_stops_the_run(nan_plugins: None, run_dir: Path) -> None:
    config = build_config("quickstart", assignments=[*TINY, "updater.name=nan-gradient"])
    with pytest.raises(NonFiniteError) as err:
        train(config, run_dir)
    assert str(err.value).startswith("stopped at epoch 1, batch 1 of 4: the gradient of updater.")
    assert "is not finite; no epoch had finished, so there is no checkpoint" in str(err.value)
    assert not (run_dir / "checkpoints" / "last.pt").exists()
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "stopped"
