"""``grouping evaluate`` and ``grouping.evaluate``: a trained run scored with another K, another
number of objects or steps, and the one-line refusals."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

import grouping
from grouping.cli.main import cli
from grouping.config.loading import build_config
from grouping.errors import RunDirError
from grouping.evaluation.separation import object_separation
from grouping.rundir.loading import load_trained

#: flying shapes with a conv network small enough to train in about a second
FLY_TINY = [
    "dataset.train_size=64",
    "dataset.valid_size=16",
    "dataset.test_size=24",
    "train.batch_size=32",
    "train.epochs=1",
    "train.valid_samples=16",
    "eval.batch_size=16",
    "model.steps=3",
    "network.encoder_channels=[4, 8]",
    "network.encoder_fc=16",
    "network.hidden=8",
    "network.decoder_fc=16",
]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tiny flying-shapes run (3 shapes, K = 3), shared by the tests of this module."""
    path = tmp_path_factory.mktemp("eval") / "run"
    grouping.train(build_config("flying-shapes-3", assignments=FLY_TINY), path)
    return path


def invoke(*args: str) -> Any:
    return CliRunner().invoke(cli, list(args))


def test_evaluating_without_changes_reproduces_the_run_s_test_scores(trained: Path) -> None:
    result = grouping.evaluate(trained)
    test = json.loads((trained / "summary.json").read_text())["test"]
    for key in ("ami", "ari", "ami_mean_over_steps", "upper_bound", "images"):
        assert result[key] == test[key], key
    assert result["changed"] == {} and result["epoch"] == 1 and result["split"] == "test"


def test_a_run_that_tested_its_last_model_is_evaluated_on_it(tmp_path: Path) -> None:
    """With ``train.test_checkpoint = "last"`` the default checkpoint is last.pt, so evaluating
    the run as it is gives its summary's test scores; --checkpoint best still picks the other."""
    path = tmp_path / "last"
    assignments = [*FLY_TINY, "train.epochs=2", "train.test_checkpoint=last"]
    grouping.train(build_config("flying-shapes-3", assignments=assignments), path)
    test = json.loads((path / "summary.json").read_text())["test"]
    result = grouping.evaluate(path)
    assert result["checkpoint"] == "last" and result["epoch"] == 2
    assert (result["ami"], result["upper_bound"]) == (test["ami"], test["upper_bound"])
    assert grouping.evaluate(path, checkpoint="best")["checkpoint"] == "best"
    table = invoke("evaluate", str(path))
    assert table.exit_code == 0 and "last checkpoint" in table.output, table.output


def test_evaluate_with_another_k_and_another_number_of_objects(trained: Path) -> None:
    result = invoke("evaluate", str(trained), "--set", "dataset.objects=5", "-k", "5", "--json")
    assert result.exit_code == 0, result.output
    scores = json.loads(result.output)
    assert scores["changed"] == {"dataset.objects": [3, 5], "model.components": [3, 5]}
    assert scores["config"]["model"]["components"] == 5
    assert scores["images"] == 24
    assert len(scores["ami_per_step"]) == len(scores["upper_bound_per_step"]) == 3
    for lo, mid, hi in zip(
        scores["ami_per_step_quartiles"]["q25"],
        scores["ami_per_step"],
        scores["ami_per_step_quartiles"]["q75"],
    ):
        assert -1.0 <= lo <= hi <= 1.0 and -1.0 <= mid <= 1.0
    for key in ("ami", "ari", "ami_mean_over_steps", "ari_mean_over_steps", "upper_bound"):
        assert key in scores


def test_evaluate_more_steps_and_keep_per_image_scores(trained: Path) -> None:
    result = grouping.evaluate(trained, steps=6, components=1, per_image=True, split="valid")
    assert result["changed"]["model.steps"] == [3, 6]
    assert len(result["ami_per_step"]) == 6
    assert len(result["ami_per_image"]) == 16 and len(result["ami_per_image"][0]) == 6
    # with one component every scored pixel is in the same group
    assert result["ami_per_step_quartiles"]["q75"][-1] <= 1.0


def test_evaluate_prints_a_table(trained: Path) -> None:
    result = invoke("evaluate", str(trained), "-k", "2")
    assert result.exit_code == 0, result.output
    assert "AMI per step" in result.output and "model.components 3 -> 2" in result.output
    assert "by the objects' distance (quartiles): " in result.output


def test_the_last_step_ami_is_broken_down_by_the_objects_distance(trained: Path) -> None:
    """``ami_by_separation`` is the per-image last-step AMI averaged within quartiles of the
    distance between the closest two objects of the scored (last) frame, recomputed here from the
    test split's own labels; ``summary.json``'s test scores carry the same."""
    result = grouping.evaluate(trained, per_image=True)
    last = np.array([row[-1] for row in result["ami_per_image"]])
    run = load_trained(trained)
    _, groups = run.dataset.split("test").get(np.arange(len(last)))
    distance = object_separation(groups[:, run.config.model.steps].numpy())
    assert np.isfinite(distance).all()  # three shapes show in every frame of this data set
    edges = np.quantile(distance, [0.0, 0.25, 0.5, 0.75, 1.0])
    sep = result["ami_by_separation"]
    assert sep["edges"] == pytest.approx(edges)
    assert sum(sep["images"]) == len(last) == 24
    below = distance <= edges[1]
    assert sep["mean"][0] == pytest.approx(last[below].mean())
    assert sep["images"][0] == below.sum()
    test = json.loads((trained / "summary.json").read_text())["test"]
    assert test["ami_by_separation"] == sep


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "network.hidden=9"], "trained with network.hidden = 8"),
        (["--set", "dataset.size=32"], "does not fit the 'conv' network"),
        (["--set", "network.name=fc"], "trained with network.name = 'conv'"),
        (["--network", "fc"], "No such option"),
        (["--dataset", "nope"], "unknown dataset 'nope'"),
        (["-k", "0"], "model.components"),
        (["--split", "nope"], "'nope' is not one of"),
    ],
)
def test_bad_evaluations_are_refused_in_one_line(
    trained: Path, args: list[str], message: str
) -> None:
    result = invoke("evaluate", str(trained), *args)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], result.output


def test_a_run_without_checkpoints_or_config_is_refused(trained: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(trained, copy)
    shutil.rmtree(copy / "checkpoints")
    result = invoke("evaluate", str(copy))
    assert result.exit_code == 2
    assert result.output.strip().count("\n") == 0 and "has no checkpoints/last.pt" in result.output
    with pytest.raises(RunDirError, match="not a run folder"):
        grouping.evaluate(tmp_path / "nothing")


def test_evaluate_runs_as_a_subprocess(trained: Path) -> None:
    exe = shutil.which("grouping") or str(Path(sys.executable).parent / "grouping")
    proc = subprocess.run(
        [exe, "evaluate", str(trained), "-k", "5", "--json"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["config"]["model"]["components"] == 5
    bad = subprocess.run([exe, "evaluate", str(trained.parent)], capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "not a run folder" in bad.stderr
