"""Resume: an interrupted run, continued, ends bit for bit where an uninterrupted one ends."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from grouping import build_config, resume, train
from grouping.cli.main import cli
from grouping.errors import Interrupted
from grouping.rundir.checkpoint import load_checkpoint, save_checkpoint
from grouping.training.reporting import SilentReporter
from tests.reliability import RESUMABLE, assert_same_run, metrics, torch_threads


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The uninterrupted run every resumed run must equal."""
    out = tmp_path_factory.mktemp("reference") / "run"
    with torch_threads():
        train(build_config("quickstart", assignments=RESUMABLE), out)
    return out


class SignalAt(SilentReporter):
    """Sends this process a signal after the given (epoch, batch), as a user or a scheduler would."""

    def __init__(self, epoch: int, batch: int, signum: int) -> None:
        self.at, self.signum = (epoch, batch), signum

    def batch_end(self, epoch: int, batch: int, loss: float) -> None:
        if (epoch, batch) == self.at:
            os.kill(os.getpid(), self.signum)


def test_sigterm_mid_epoch_saves_the_position_and_resume_is_exact(
    reference: Path, run_dir: Path
) -> None:
    config = build_config("quickstart", assignments=RESUMABLE)
    with torch_threads(), pytest.raises(Interrupted) as stop:
        train(config, run_dir, reporter=SignalAt(2, 3, signal.SIGTERM))
    assert stop.value.exit_code == 143
    assert f"resume with: grouping run --resume {run_dir}" in str(stop.value)
    assert "epoch 2 after batch 3" in str(stop.value)
    state = load_checkpoint(run_dir / "checkpoints" / "last.pt")["train_state"]
    assert (state["epoch"], state["batch"], len(state["epoch_losses"])) == (1, 3, 3)
    assert len(metrics(run_dir)) == 1
    assert not (run_dir / "summary.json").exists()
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handlers restored
    with torch_threads():
        resumed = resume(run_dir)
    assert resumed.summary["status"] == "finished"
    assert_same_run(reference, run_dir)


def test_the_time_limit_is_the_runs_not_each_processs(run_dir: Path) -> None:
    """A resumed run trains for what its earlier processes left of ``train.max_minutes``: here
    they had spent it all, so the resumed run stops after one more batch (not 600 minutes later)."""
    config = build_config("quickstart", assignments=[*RESUMABLE, "train.max_minutes=600"])
    with torch_threads(), pytest.raises(Interrupted):
        train(config, run_dir, reporter=SignalAt(2, 3, signal.SIGTERM))
    last = run_dir / "checkpoints" / "last.pt"
    payload = load_checkpoint(last)
    payload["train_state"]["train_seconds"] += 600 * 60.0  # as if they had trained ten hours
    save_checkpoint(last, payload)
    with torch_threads():
        resumed = resume(run_dir)
    assert resumed.summary["stop_reason"] == "the time limit of 600.0 minutes is reached"
    assert resumed.summary["epochs"] == 2  # epoch 2 ended after its 4th batch; epoch 3 never ran
    assert [r["epoch"] for r in metrics(run_dir)] == [1, 2]


DRIVER = textwrap.dedent(
    """
    import sys
    from grouping.cli import main, run
    from grouping.cli.progress import ProgressReporter

    class Pausing(ProgressReporter):
        def batch_end(self, epoch, batch, loss):
            super().batch_end(epoch, batch, loss)
            if (epoch, batch) == (2, 3):
                print("paused", flush=True)
                sys.stdin.readline()

    run.ProgressReporter = Pausing
    main(sys.argv[1:])
    """
)


def start_paused(tmp_path: Path, args: list[str]) -> subprocess.Popen[str]:
    """The real CLI in a child process, paused after batch 3 of epoch 2 (mid-epoch)."""
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    proc = subprocess.Popen(
        [sys.executable, str(script), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.strip() == "paused", (line, proc.stderr.read() if proc.stderr else "")
    return proc


def resume_cli(run: Path, *extra: str) -> Any:
    with torch_threads():
        return CliRunner().invoke(cli, ["run", "--resume", str(run), *extra])


def test_sigkill_mid_epoch_then_resume_equals_the_uninterrupted_run(
    reference: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    proc = start_paused(tmp_path, ["run", "--set", *RESUMABLE_ARGS, "--out", str(run)])
    proc.kill()  # SIGKILL: no handler runs, nothing is flushed
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    state = load_checkpoint(run / "checkpoints" / "last.pt")["train_state"]
    assert (state["epoch"], state["batch"]) == (1, 0)  # the last finished epoch
    # A crash between writing a metrics record and last.pt, and a torn line, must not duplicate:
    with open(run / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"epoch": 2, "train_loss": 0.0}) + "\n" + '{"epoch": 3, "tra')
    result = resume_cli(run)
    assert result.exit_code == 0, result.output
    assert_same_run(reference, run)
    assert [r["epoch"] for r in metrics(run)] == [1, 2, 3]


RESUMABLE_ARGS = [x for item in RESUMABLE for x in ("--set", item)][1:]


def test_sigint_finishes_the_batch_writes_last_pt_and_says_how_to_resume(
    reference: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    proc = start_paused(tmp_path, ["run", "--set", *RESUMABLE_ARGS, "--out", str(run)])
    proc.send_signal(signal.SIGINT)  # arrives while batch 3 of epoch 2 is finishing
    _, err = proc.communicate("go\n")
    assert proc.returncode == 130, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines[-1] == (
        f"interrupted by SIGINT in epoch 2 after batch 3: saved {run}/checkpoints/last.pt; "
        f"resume with: grouping run --resume {run}"
    )
    assert "Traceback" not in err
    state = load_checkpoint(run / "checkpoints" / "last.pt")["train_state"]
    assert (state["epoch"], state["batch"]) == (1, 3)
    result = resume_cli(run)
    assert result.exit_code == 0, result.output
    assert_same_run(reference, run)


def test_resume_refuses_a_finished_run_and_a_changed_config(reference: Path, run_dir: Path) -> None:
    result = resume_cli(reference)
    assert result.exit_code == 2
    assert "has already ended (finished: epoch limit); nothing to resume" in result.output
    config = build_config("quickstart", assignments=RESUMABLE)
    with torch_threads(), pytest.raises(Interrupted):
        train(config, run_dir, reporter=SignalAt(1, 2, signal.SIGINT))
    changed = resume_cli(run_dir, "--set", "train.lr=0.01", "--epochs", "9")
    assert changed.exit_code == 2
    assert changed.output.strip() == (
        f"error: the config differs from the one {run_dir}/checkpoints/last.pt was trained with "
        "(train.epochs, train.lr); a resumed run keeps its config: drop the changed options, "
        "or start a new run"
    )
    toml = run_dir / "config.toml"
    toml.write_text(toml.read_text().replace("components = 3", "components = 4"))
    edited = resume_cli(run_dir)
    assert edited.exit_code == 2 and "(model.components)" in edited.output
    assert resume_cli(run_dir.parent).output.strip() == (
        f"error: {run_dir.parent} is not a run folder (no config.toml)"
    )


class SignalInValidation(SilentReporter):
    """Sends SIGINT while epoch 1 ends (as validation runs, after the last batch)."""

    def epoch_end(self, record: dict[str, Any]) -> None:
        if record["epoch"] == 1:
            os.kill(os.getpid(), signal.SIGINT)


def test_a_signal_between_epochs_stops_before_the_next_one(reference: Path, run_dir: Path) -> None:
    config = build_config("quickstart", assignments=RESUMABLE)
    with torch_threads(), pytest.raises(Interrupted) as stop:
        train(config, run_dir, reporter=SignalInValidation())
    assert "interrupted by SIGINT after epoch 1: saved" in str(stop.value)
    state = load_checkpoint(run_dir / "checkpoints" / "last.pt")["train_state"]
    assert (state["epoch"], state["batch"]) == (1, 0)
    with torch_threads():
        resume(run_dir)
    assert_same_run(reference, run_dir)
