"""``train.checkpoint_minutes``: last.pt is also written mid-epoch on a clock, so a kill loses at
most that much work, and a run resumed from such a checkpoint ends as if never stopped."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from grouping import build_config, train
from grouping.config.loading import build_config as build
from grouping.errors import ConfigError
from grouping.rundir.checkpoint import load_checkpoint
from tests.reliability import RESUMABLE, assert_same_run, torch_threads
from tests.test_resume import resume_cli, start_paused

#: A clock so short that every batch writes last.pt.
EVERY_BATCH = "train.checkpoint_minutes=1e-9"


def test_a_sigkill_mid_epoch_resumes_from_the_time_based_checkpoint(tmp_path: Path) -> None:
    reference = tmp_path / "reference"
    with torch_threads():
        train(build_config("quickstart", assignments=[*RESUMABLE, EVERY_BATCH]), reference)
    run = tmp_path / "run"
    args = [x for item in [*RESUMABLE, EVERY_BATCH] for x in ("--set", item)]
    proc = start_paused(tmp_path, ["run", *args, "--out", str(run)])  # after batch 3 of epoch 2
    proc.kill()  # SIGKILL: no handler runs
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    state = load_checkpoint(run / "checkpoints" / "last.pt")["train_state"]
    # mid-epoch, not the last epoch's end: written after batch 2 (the driver pauses while batch 3
    # is being reported, before its checkpoint)
    assert (state["epoch"], state["batch"]) == (1, 2)
    result = resume_cli(run)
    assert result.exit_code == 0, result.output
    assert_same_run(reference, run)


def test_the_default_clock_is_ten_minutes_and_none_turns_it_off() -> None:
    assert build("quickstart").train.checkpoint_minutes == 10.0
    assert (
        build("quickstart", assignments=["train.checkpoint_minutes=null"]).train.checkpoint_minutes
        is None
    )
    with pytest.raises(ConfigError, match="train.checkpoint_minutes"):
        build("quickstart", assignments=["train.checkpoint_minutes=0"])
