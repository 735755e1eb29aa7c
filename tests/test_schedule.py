"""train.lr_schedule: the rate over the budget, exact on resume, and no collapse after the peak."""

from __future__ import annotations

import os
import signal
from itertools import pairwise
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from grouping import build_config, resume, train
from grouping.cli.main import cli
from grouping.config.schema import TrainConfig
from grouping.errors import Interrupted
from grouping.rundir.checkpoint import load_checkpoint
from grouping.training.reporting import SilentReporter
from grouping.training.schedule import LrSchedule, factor, peak
from grouping.training.state import TrainState
from tests.reliability import RESUMABLE, assert_same_run, metrics, torch_threads

COSINE = [*RESUMABLE, "train.lr_schedule=cosine"]
#: The quickstart on a small budget: 14x14 images, five EM steps, six epochs of 64 batches of 32,
#: at a rate (1e-2) where a constant one lets the valid AMI fall after its peak, as the full
#: quickstart's does (measured with a constant rate: .344 .417 .376 .333 .308 .273; with the
#: preset's schedule, a cosine from 1e-2 x 2 / 6: .048 .336 .360 .390 .398 .395;
#: docs/experiments/quickstart-schedule.md).
SMALL_BUDGET = [
    "dataset.size=14",
    "dataset.train_size=2048",
    "dataset.valid_size=200",
    "dataset.test_size=64",
    "train.valid_samples=200",
    "network.hidden=100",
    "model.steps=5",
    "train.epochs=6",
    "train.lr=0.01",
    "train.max_minutes=null",
    "train.threads=1",
]


@pytest.mark.parametrize(
    ("kind", "values"),
    [("constant", (1.0, 1.0, 1.0)), ("cosine", (1.0, 0.5, 0.0)), ("linear", (1.0, 0.5, 0.0))],
)
def test_factor_at_the_start_middle_and_end(kind: str, values: tuple[float, ...]) -> None:
    got = tuple(factor(kind, p) for p in (0.0, 0.5, 1.0))  # type: ignore[arg-type]
    assert got == pytest.approx(values, abs=1e-12)
    assert factor(kind, -1.0) == factor(kind, 0.0)  # type: ignore[arg-type]
    assert factor(kind, 2.0) == factor(kind, 1.0)  # type: ignore[arg-type]


def test_cosine_decays_slower_than_linear_early_and_faster_late() -> None:
    assert factor("cosine", 0.25) > factor("linear", 0.25)
    assert factor("cosine", 0.75) < factor("linear", 0.75)


def state_at(epoch: int, batch: int, blocks: int, seconds: float = 0.0) -> TrainState:
    s = TrainState(epoch=epoch, batch=batch, train_seconds=seconds)
    s.epoch_order = list(range(blocks))
    return s


def test_progress_counts_batches_and_takes_the_larger_budget() -> None:
    epochs_only = LrSchedule("linear", 0.01, epochs=4, max_minutes=None)
    assert epochs_only.progress(state_at(1, 2, blocks=4)) == pytest.approx(1.5 / 4)
    assert epochs_only.rate(state_at(1, 2, blocks=4)) == pytest.approx(0.01 * (1 - 1.5 / 4))
    # a minute's budget with 45 s trained is further along than 1.5 epochs of 4
    timed = LrSchedule("linear", 0.01, epochs=4, max_minutes=1.0)
    assert timed.progress(state_at(1, 2, blocks=4, seconds=45.0)) >= 0.75
    # and the epochs decide when they are further along than the minutes
    assert timed.progress(state_at(3, 0, blocks=4, seconds=1.0)) == pytest.approx(0.75)


def test_apply_sets_every_group_and_constant_leaves_the_rate_alone() -> None:
    params = [torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(3))]
    opt = torch.optim.Adam([{"params": params[:1]}, {"params": params[1:]}], lr=0.003)
    LrSchedule("cosine", 0.003, epochs=2, max_minutes=None).apply(opt, state_at(1, 0, 8))
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.0015, 0.0015])
    opt.param_groups[0]["lr"] = 0.5  # e.g. what a warm start's optimizer state brought
    LrSchedule("constant", 0.003, epochs=2, max_minutes=None).apply(opt, state_at(1, 0, 8))
    assert opt.param_groups[0]["lr"] == 0.5


def test_the_peak_falls_as_one_over_the_epochs_beyond_the_reference_budget() -> None:
    """lr is the peak up to the reference budget; beyond it the area under the schedule stays."""
    rates = [
        LrSchedule("cosine", 0.0045, e, None, reference_epochs=2).rate(state_at(0, 0, 8))
        for e in (1, 2, 4, 6)
    ]
    assert rates == pytest.approx([0.0045, 0.0045, 0.00225, 0.0015])
    areas = [rate * e for rate, e in zip(rates[1:], (2, 4, 6), strict=True)]
    assert areas == pytest.approx([0.009] * 3)
    # a constant rate is the rate given, whatever the budget
    assert LrSchedule("constant", 0.0045, 6, None, 2).lr == 0.0045
    assert peak(0.0045, 6, None) == 0.0045


def test_the_default_is_constant_and_the_quickstart_opts_in() -> None:
    assert TrainConfig().lr_schedule == "constant"
    assert build_config("quickstart").train.lr_schedule != "constant"
    assert build_config("static-shapes-rnn-em").train.lr_schedule == "constant"


def test_an_unknown_schedule_is_one_line_and_exit_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli, ["run", "--set", "train.lr_schedule=step", "--out", str(tmp_path / "r")]
    )
    assert result.exit_code == 2
    assert "lr_schedule" in result.output
    assert "Traceback" not in result.output


class SigtermAt(SilentReporter):
    """Stops the run after the given (epoch, batch), as a scheduler would."""

    def __init__(self, epoch: int, batch: int) -> None:
        self.at = (epoch, batch)

    def batch_end(self, epoch: int, batch: int, loss: float) -> None:
        if (epoch, batch) == self.at:
            os.kill(os.getpid(), signal.SIGTERM)


def test_a_resumed_run_goes_on_with_the_rate_it_stopped_at(tmp_path: Path) -> None:
    config = build_config("quickstart", assignments=COSINE)
    with torch_threads():
        train(config, tmp_path / "reference")
        with pytest.raises(Interrupted):
            train(config, tmp_path / "stopped", reporter=SigtermAt(2, 3))
    # three epochs of four batches: batch 3 of epoch 2 ran at progress (1 + 2/4) / 3 = 0.5, from
    # the quickstart's peak for three epochs (its rate is set for two: lr_reference_epochs)
    saved = load_checkpoint(tmp_path / "stopped" / "checkpoints" / "last.pt")
    lr = config.train.lr * 2 / 3
    assert lr == pytest.approx(peak(config.train.lr, 3, config.train.lr_reference_epochs))
    assert saved["optimizer"]["param_groups"][0]["lr"] == pytest.approx(0.5 * lr)
    with torch_threads():
        resume(tmp_path / "stopped")
    assert_same_run(tmp_path / "reference", tmp_path / "stopped")
    end = load_checkpoint(tmp_path / "stopped" / "checkpoints" / "last.pt")
    last_progress = (2 + 3 / 4) / 3  # the last batch started there
    assert end["optimizer"]["param_groups"][0]["lr"] == pytest.approx(
        lr * factor("cosine", last_progress)
    )


def test_the_quickstart_valid_ami_does_not_collapse_after_its_peak(tmp_path: Path) -> None:
    config = build_config("quickstart", assignments=SMALL_BUDGET)
    with torch_threads():
        train(config, tmp_path / "run")
    ami = [row["valid_ami"] for row in metrics(tmp_path / "run")]
    assert len(ami) == 6
    assert max(ami) > 0.3  # it learnt to group at all
    assert ami[-1] >= max(ami) - 0.01
    assert all(b >= a - 0.01 for a, b in pairwise(ami))
