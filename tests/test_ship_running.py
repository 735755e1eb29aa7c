"""Shipping a model from a run still training (issue 39): the snapshot of a stage-wise run whose
last stage has not finished scores the stage's best checkpoint exactly as the run's own test
would, sums the budget over the stages so far, says it is in progress, and leaves the run as it
was, so that it can go on training."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from grouping.cli import segment
from grouping.cli.main import cli
from grouping.config.loading import build_config
from grouping.errors import RunDirError
from grouping.evaluation.running import newest_model, snapshot
from grouping.evaluation.stored import ship_checked
from grouping.rundir.checkpoint import load_checkpoint
from grouping.rundir.folder import IN_PROGRESS
from grouping.rundir.pretrained import shipped_record
from grouping.training.api import train
from tests.conftest import TINY

STAGES = '[{name = "short", overrides = {model = {steps = 2}}}, {name = "long"}]'


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny two-stage run trained to its end (the second stage tests its best checkpoint)."""
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("ship") / "run"
    train(build_config("quickstart", assignments=[*TINY, f"stages={STAGES}"]), out)
    return out


def still_training(finished: Path, tmp_path: Path) -> Path:
    """The same run as it looked before its last stage ended: that stage has best.pt and
    last.pt but no summary, and the stage-wise root has no summary either."""
    run = tmp_path / "running"
    shutil.copytree(finished, run)
    (run / "summary.json").unlink()
    (run / "long" / "summary.json").unlink()
    return run


def tree(folder: Path) -> dict[str, tuple[int, int]]:
    return {
        p.relative_to(folder).as_posix(): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in folder.rglob("*")
        if p.is_file()
    }


def test_a_snapshot_scores_the_running_stage_as_its_own_test_would(
    finished: Path, tmp_path: Path
) -> None:
    run = still_training(finished, tmp_path)
    before = tree(run)
    folder = snapshot(run, tmp_path / "snap")
    assert tree(run) == before  # read, never written
    summary = json.loads((folder / "summary.json").read_text())
    done = json.loads((finished / "summary.json").read_text())
    assert summary["status"] == IN_PROGRESS and "long, epoch 1" in summary["stop_reason"]
    # the best checkpoint scored on the same test samples and draws as the finished run's test
    assert summary["test"]["ami"] == pytest.approx(done["test"]["ami"], abs=1e-9)
    assert summary["test"]["ami_per_step"] == pytest.approx(done["test"]["ami_per_step"])
    assert [s["name"] for s in summary["stages"]] == ["short", "long"]
    short = summary["stages"][0]
    assert short["test"] == done["stages"][0]["test"] and short["epochs"] == 1
    state = load_checkpoint(run / "long" / "checkpoints" / "best.pt")["train_state"]
    assert summary["train_s"] == pytest.approx(short["train_s"] + state["train_seconds"])
    assert summary["epochs"] == 2 and summary["data_source"] == done["data_source"]
    assert sorted(p.name for p in (folder / "checkpoints").iterdir()) == ["best.pt"]


def test_a_running_run_ships_its_best_model_so_far(
    finished: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = still_training(finished, tmp_path)
    target = ship_checked(run, "tiny", samples=16, root=tmp_path / "models")
    record = shipped_record("tiny", tmp_path / "models")
    assert record["status"] == IN_PROGRESS and record["budget"]["stages"] == 2
    assert record["steps"] == 3 and "init_from" not in (target / "config.toml").read_text()
    assert not any(tmp_path.glob("grouping-snapshot-*"))
    assert not (run / "summary.json").exists()  # the run goes on: nothing marks it finished
    monkeypatch.setattr(segment, "pretrained_models", lambda: ["tiny"])
    monkeypatch.setattr(segment, "shipped_record", lambda n: shipped_record(n, tmp_path / "models"))
    listed = CliRunner().invoke(cli, ["pretrained"]).output
    assert listed.startswith("pretrained:tiny  shapes, rnn-em, test AMI ")
    assert listed.rstrip().endswith("; its run was still training")


def test_the_newest_model_is_the_last_finished_stage_until_the_next_has_an_epoch(
    finished: Path, tmp_path: Path
) -> None:
    run = still_training(finished, tmp_path)
    for name in ("best.pt", "last.pt"):
        (run / "long" / "checkpoints" / name).unlink()
    assert newest_model(run) == (run / "short", [])
    summary = json.loads((snapshot(run, tmp_path / "snap") / "summary.json").read_text())
    assert summary["test"] == json.loads((run / "short" / "summary.json").read_text())["test"]
    assert "short, epoch 1" in summary["stop_reason"]


def test_a_finished_run_or_one_without_a_model_is_one_line(finished: Path, tmp_path: Path) -> None:
    with pytest.raises(RunDirError, match="has finished; it needs no snapshot"):
        snapshot(finished, tmp_path / "snap")
    run = still_training(finished, tmp_path)
    (run / "short" / "summary.json").unlink()  # the first stage has not finished an epoch
    (run / "short" / "checkpoints" / "best.pt").unlink()
    with pytest.raises(RunDirError, match="has not finished an epoch yet"):
        snapshot(run, tmp_path / "snap")
