"""The model shipped in the package: ``pretrained:static-shapes`` lists, loads, scores (``grouping
evaluate``), segments and draws."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import grouping
from grouping.cli.main import cli
from grouping.errors import RunDirError
from grouping.evaluation.metrics import adjusted_mutual_info
from grouping.rundir.loading import load_trained
from grouping.rundir.pretrained import PRETRAINED_ROOT, pretrained_models, resolve_run

NAME = "pretrained:static-shapes"
#: The shipped folder stays small: stripped weights, config and summary only.
MAX_BYTES = 3_000_000


def test_the_static_shapes_model_ships_small_and_is_listed() -> None:
    assert "static-shapes" in pretrained_models()
    folder = resolve_run(NAME)
    assert folder == PRETRAINED_ROOT / "static-shapes"
    files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    assert files == ["checkpoints/best.pt", "config.toml", "summary.json"]
    assert sum((folder / f).stat().st_size for f in files) < MAX_BYTES
    result = CliRunner().invoke(cli, ["pretrained", "--json"])
    assert result.exit_code == 0, result.output
    [row] = [r for r in json.loads(result.stdout) if r["name"] == NAME]
    assert row["dataset"] == "shapes" and row["updater"] == "rnn-em" and row["test_ami"] >= 0.8


def test_it_loads_as_the_quickstart_model() -> None:
    run = load_trained(resolve_run(NAME), "best", "cpu")
    assert run.config.preset == "quickstart"
    assert (run.model.components, run.model.steps) == (3, 15)
    assert run.dataset.image_shape == (28, 28, 1) and run.dataset.binary


def test_it_scores_test_ami_of_at_least_0_8_on_generated_static_shapes() -> None:
    scores = grouping.evaluate(NAME, assignments=["eval.samples=500"], device="cpu")
    assert scores["images"] == 500
    assert scores["ami"] >= 0.80, scores["ami"]
    assert scores["run_dir"] == str(PRETRAINED_ROOT / "static-shapes")


def test_evaluate_command_takes_the_pretrained_name() -> None:
    args = ["evaluate", NAME, "--set", "dataset.test_size=300", "--device", "cpu", "--json"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    scores = json.loads(result.stdout)
    assert scores["images"] == 300 and scores["split"] == "test"
    assert scores["ami"] >= 0.75, scores["ami"]  # 0.859 on the whole 2,000-image test split
    assert scores["changed"]["dataset.test_size"] == [2000, 300]


@pytest.mark.parametrize("command", ["evaluate", "visualize", "segment"])
def test_an_unknown_pretrained_name_is_one_line_naming_the_shipped_ones(
    command: str, tmp_path: Path
) -> None:
    args = [command, "pretrained:nope"]
    if command == "segment":
        args += [str(tmp_path), "--out", str(tmp_path / "masks")]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines == ["error: unknown pretrained model 'nope'; shipped: pretrained:static-shapes"]
    with pytest.raises(RunDirError, match="unknown pretrained model 'nope'"):
        grouping.evaluate("pretrained:nope")


def test_segment_and_visualize_take_the_pretrained_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = load_trained(resolve_run(NAME), "best", "cpu", {"dataset": {"test_size": 16}})
    features, groups = run.dataset.split("test").get(np.arange(16))
    for i in range(16):
        Image.fromarray((features[i, 0, ..., 0].numpy() * 255).astype(np.uint8)).save(
            tmp_path / f"shapes{i:02d}.png"
        )
    out = tmp_path / "masks"
    result = CliRunner().invoke(cli, ["segment", NAME, str(tmp_path), "--out", str(out)])
    assert result.exit_code == 0, result.output
    labels = np.stack(
        [np.asarray(Image.open(out / f"shapes{i:02d}.labels.png")) for i in range(16)]
    )
    assert labels.shape == (16, 28, 28) and labels.min() >= 1 and labels.max() <= 3
    ami = adjusted_mutual_info(groups[:, 0].reshape(16, -1).numpy(), labels.reshape(16, -1))
    assert ami.mean() >= 0.6  # 16 images: a loose bound on the 0.8 of the whole test split
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["visualize", NAME, "--samples", "2"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "static-shapes-visualize.png"
    assert (tmp_path / "static-shapes-visualize.png").is_file()
