"""Figures, curves and the run listing: ``grouping visualize``, ``plot``, ``runs`` and their API."""

from __future__ import annotations

import json
import runpy
import shutil
import subprocess
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import grouping
from grouping import hookimpl
from grouping.cli.main import cli
from grouping.config.loading import build_config
from grouping.errors import ConfigError
from grouping.evaluation.scoring import quartiles_per_step
from grouping.figures.drawing import (
    BACKGROUND_GREY,
    component_colours,
    gamma_rgb,
    groups_rgb,
    image_rgb,
)
from grouping.figures.resolution import DPI, check_pixels
from grouping.plugin_api.interfaces import SPLITS, ArraySplit, Dataset, Split, SplitName
from tests.conftest import TINY

SET_TINY = [arg for item in TINY for arg in ("--set", item)]
SIZE = 12  # the ad-hoc sequential data set's image height and width
FRAMES = 4  # and its frames per sample: T + 1 for the 3 steps of TINY
#: Pixels at the default dpi of a 1-inch image cell, the 0.75-inch row-label strip, the 0.25-inch
#: title strip and the 0.25-inch gap between a sequential figure's sample blocks.
CELL, LABEL, TITLE, GAP = DPI, DPI * 3 // 4, DPI // 4, DPI // 4
#: The curves figure: six panels, 14 x 7.5 inches.
CURVES = (14 * DPI, 15 * DPI // 2)


def invoke(*args: str) -> Any:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def png_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as image:
        return image.size  # (width, height)


def one_line_error(result: Any, message: str) -> None:
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], result.output


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two finished tiny static runs (seeds 0 and 1) in one folder."""
    root = tmp_path_factory.mktemp("runs")
    for seed in (0, 1):
        config = build_config("quickstart", assignments=[*TINY, f"seed={seed}"])
        grouping.train(config, root / f"seed{seed}")
    return root / "seed0", root / "seed1"


# --------------------------------------------------------------------------------------------------
# colours


def test_a_certain_assignment_takes_exactly_its_component_colour() -> None:
    colours = component_colours(3)
    gamma = np.zeros((3, 2, 2))
    gamma[1] = 1.0
    assert np.array_equal(gamma_rgb(gamma, colours), np.broadcast_to(colours[1], (2, 2, 3)))
    half = np.full((3, 1, 1), 1 / 3)
    assert np.allclose(gamma_rgb(half, colours)[0, 0], colours.mean(axis=0))


def test_images_become_rgb_grey_or_colour_and_groups_keep_background_grey() -> None:
    grey = np.array([[[0.25]], [[2.0]]])  # (2, 1, 1): one value above 1 is clipped
    assert np.array_equal(image_rgb(grey)[:, 0], [[0.25] * 3, [1.0] * 3])
    colour = np.array([[[0.1, 0.5, 0.9]]])
    assert np.array_equal(image_rgb(colour), colour)
    colours = component_colours(12)  # more than tab10 holds: still 12 distinct colours
    assert len({tuple(c) for c in colours}) == 12
    rgb = groups_rgb(np.array([[0, 1, 13]]), colours)
    assert np.array_equal(rgb[0, 0], [BACKGROUND_GREY] * 3)
    assert np.array_equal(rgb[0, 1], colours[0])
    assert np.array_equal(rgb[0, 2], colours[0])  # 13 - 1 = 12 wraps to colour 0


def test_per_step_quartiles_over_images_are_exact() -> None:
    ami = np.array([[0.0, 1.0], [0.25, 0.5], [0.5, 0.0], [0.75, 0.25], [1.0, 0.75]])  # (N=5, T=2)
    q = quartiles_per_step(ami)
    assert q == {"q25": [0.25, 0.25], "median": [0.5, 0.5], "q75": [0.75, 0.75]}


# --------------------------------------------------------------------------------------------------
# visualize: static


def test_run_writes_a_static_figure_of_the_expected_size(two_runs: tuple[Path, Path]) -> None:
    # 4 samples as columns; rows input, psi 1..3, gamma, truth; 1-inch cells, a label strip and a
    # title strip; 950 x 1250 pixels at 200 dpi.
    assert png_size(two_runs[0] / "figure.png") == (LABEL + 4 * CELL, TITLE + 6 * CELL)


def test_visualize_static_writes_the_requested_samples(
    two_runs: tuple[Path, Path], tmp_path: Path
) -> None:
    out = tmp_path / "fig.png"
    result = invoke(
        "visualize", str(two_runs[0]), "--samples", "2", "--steps", "5", "--out", str(out)
    )
    assert result.exit_code == 0, result.output
    assert result.output.strip() == str(out)
    assert png_size(out) == (LABEL + 2 * CELL, TITLE + 6 * CELL)


def test_visualize_api_defaults_to_the_run_folder(
    two_runs: tuple[Path, Path], tmp_path: Path
) -> None:
    run = tmp_path / "copy"
    shutil.copytree(two_runs[1], run)
    (run / "figure.png").unlink()
    # beside the run's own figure.png, never over it
    assert grouping.visualize(run, split="valid", samples=1) == run / "figure-visualize.png"
    assert png_size(run / "figure-visualize.png") == (LABEL + CELL, TITLE + 6 * CELL)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--split", "nope"], "'nope' is not one of"),
        (["--samples", "0"], "0 is not in the range x>=1"),
        (["--dpi", "0"], "Invalid value for '--dpi': 0 is not in the range 1<=x<=1200"),
        (["--dpi", "-150"], "Invalid value for '--dpi': -150 is not in the range 1<=x<=1200"),
    ],
)
def test_visualize_bad_options_are_one_line(
    two_runs: tuple[Path, Path], args: list[str], message: str
) -> None:
    one_line_error(CliRunner().invoke(cli, ["visualize", str(two_runs[0]), *args]), message)


def test_visualize_a_folder_that_is_not_a_run_is_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["visualize", str(tmp_path)])
    one_line_error(result, "is not a run folder (no config.toml)")


def test_visualize_a_run_without_checkpoint_is_one_line(
    two_runs: tuple[Path, Path], tmp_path: Path
) -> None:
    run = tmp_path / "nockpt"
    shutil.copytree(two_runs[0], run)
    shutil.rmtree(run / "checkpoints")
    one_line_error(CliRunner().invoke(cli, ["visualize", str(run)]), "checkpoint not found")


# --------------------------------------------------------------------------------------------------
# visualize: sequences (an ad-hoc data set plugin with F > 1 colour frames)


class MovingColourSquares(Dataset):
    """A 3x3 red and a 3x3 green square on black, moving one pixel right per frame; groups 1, 2.
    Stores FRAMES frames whatever the run asks for, as a data set read from files would."""

    name = "adhoc-moving-squares"
    description = "test data: two colour squares moving right"

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (SIZE, SIZE, 3)

    @property
    def binary(self) -> bool:
        return True

    def split(self, name: SplitName) -> Split:
        n = self.sizes[name]
        rng = np.random.default_rng([self.seed, SPLITS.index(name)])
        features = torch.zeros(n, FRAMES, SIZE, SIZE, 3)
        groups = torch.zeros(n, FRAMES, SIZE, SIZE, dtype=torch.int64)
        for i in range(n):
            rows = rng.choice([1, 7], size=2, replace=False)
            for f in range(FRAMES):
                for obj, (row, channel) in enumerate(zip(rows, (0, 1))):
                    col = (f + 3 * obj) % (SIZE - 3)
                    features[i, f, row : row + 3, col : col + 3, channel] = 1.0
                    groups[i, f, row : row + 3, col : col + 3] = obj + 1
        return ArraySplit(features, groups)


@pytest.fixture
def sequential_run(register_plugin: Callable[[Any, str], None], tmp_path: Path) -> Path:
    module = types.ModuleType("adhoc_sequences")
    module.register_datasets = hookimpl(lambda register: register(MovingColourSquares))  # type: ignore[attr-defined]
    register_plugin(module, "adhoc-sequences")
    config = build_config(
        "quickstart",
        assignments=[*TINY, "dataset.name=adhoc-moving-squares", "model.components=2"],
    )
    return grouping.train(config, tmp_path / "seq").path


def test_visualize_sequences_one_column_per_step_in_colour(
    sequential_run: Path, tmp_path: Path
) -> None:
    # run's own figure: 3 EM steps as columns; 2 samples (sequences), each a block of rows input,
    # psi 1..2, gamma, truth (5 rows), blocks 50 px apart.
    assert png_size(sequential_run / "figure.png") == (LABEL + 3 * CELL, TITLE + 2 * 5 * CELL + GAP)
    out = tmp_path / "seq.png"
    result = invoke("visualize", str(sequential_run), "--samples", "2", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert png_size(out) == (LABEL + 3 * CELL, TITLE + 2 * 5 * CELL + GAP)
    # The first input panel (row 0, column 0) shows the red and green squares in colour.
    rgb = np.asarray(Image.open(out).convert("RGB"), dtype=np.int32)
    panel = rgb[TITLE : TITLE + CELL, LABEL : LABEL + CELL]
    red = (panel[..., 0] > 200) & (panel[..., 1] < 60) & (panel[..., 2] < 60)
    green = (panel[..., 1] > 200) & (panel[..., 0] < 60) & (panel[..., 2] < 60)
    assert red.sum() > 100 and green.sum() > 100


def test_visualize_more_steps_than_stored_frames_is_one_line(sequential_run: Path) -> None:
    result = CliRunner().invoke(cli, ["visualize", str(sequential_run), "--steps", "9"])
    one_line_error(result, "cannot draw 9 EM steps: the data has 4 frames per sample")


# --------------------------------------------------------------------------------------------------
# plot and runs


def test_plot_overlays_two_runs_and_an_evaluation_file(
    two_runs: tuple[Path, Path], tmp_path: Path
) -> None:
    evaluation = tmp_path / "eval-k5.json"
    evaluation.write_text(
        json.dumps(
            {
                "ami_per_step": [0.1, 0.2, 0.3],
                "ami_per_step_quartiles": {
                    "q25": [0.0, 0.1, 0.2],
                    "median": [0.1, 0.2, 0.3],
                    "q75": [0.2, 0.3, 0.4],
                },
            }
        )
    )
    out = tmp_path / "curves.png"
    args = ["plot", *map(str, two_runs), "--evaluation", str(evaluation), "--out", str(out)]
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    assert png_size(out) == CURVES == (2800, 1500)  # six panels, 14 x 7.5 in at 200 dpi


@pytest.mark.parametrize("command", ["visualize", "plot"])
def test_dpi_scales_the_png_exactly(
    two_runs: tuple[Path, Path], tmp_path: Path, command: str
) -> None:
    # visualize: 2 samples, 2.75 x 6.25 in; plot: 14 x 7.5 in
    inches = (0.75 + 2, 0.25 + 6) if command == "visualize" else (14.0, 7.5)
    sizes = {}
    for dpi in (100, 300):
        out = tmp_path / f"{dpi}.png"
        args = [command, str(two_runs[0]), "--out", str(out), "--dpi", str(dpi)]
        result = invoke(*args, *(["--samples", "2"] if command == "visualize" else []))
        assert result.exit_code == 0, result.output
        sizes[dpi] = png_size(out)
    assert sizes[100] == (round(inches[0] * 100), round(inches[1] * 100))
    assert sizes[300] == (3 * sizes[100][0], 3 * sizes[100][1])


def test_the_api_takes_dpi(two_runs: tuple[Path, Path], tmp_path: Path) -> None:
    fig = grouping.visualize(two_runs[0], samples=1, out=tmp_path / "v.png", dpi=100)
    assert png_size(fig) == (175, 625)  # 1.75 x 6.25 in
    curves = grouping.plot(list(two_runs), out=tmp_path / "c.png", dpi=300)
    assert png_size(curves) == (4200, 2250)  # 14 x 7.5 in


@pytest.mark.parametrize("dpi", [0, -100, 1201, 2.5, True])
def test_the_api_refuses_a_bad_dpi_before_drawing(
    two_runs: tuple[Path, Path], tmp_path: Path, dpi: Any
) -> None:
    message = "dpi must be a whole number from 1 to 1200"
    with pytest.raises(ConfigError, match=message):
        grouping.visualize(two_runs[0], out=tmp_path / "v.png", dpi=dpi)
    with pytest.raises(ConfigError, match=message):
        grouping.plot(list(two_runs), out=tmp_path / "c.png", dpi=dpi)
    assert not any(tmp_path.iterdir())


def test_plot_bad_dpi_is_one_line(two_runs: tuple[Path, Path]) -> None:
    result = CliRunner().invoke(cli, ["plot", str(two_runs[0]), "--dpi", "0"])
    one_line_error(result, "Invalid value for '--dpi': 0 is not in the range 1<=x<=1200")


def test_a_figure_too_large_to_draw_is_one_line() -> None:
    check_pixels(14.0, 7.5, 1200)  # the curves at the highest dpi: 16800 x 9000
    with pytest.raises(ConfigError, match="would be 72000 x 1200 pixels at 1200 dpi"):
        check_pixels(60.0, 1.0, 1200)


def test_plot_reads_quartiles_written_by_training(two_runs: tuple[Path, Path]) -> None:
    test = json.loads((two_runs[0] / "summary.json").read_text())["test"]
    q = test["ami_per_step_quartiles"]
    assert len(q["q25"]) == len(q["median"]) == len(q["q75"]) == len(test["ami_per_step"]) == 3
    assert all(lo <= mid <= hi for lo, mid, hi in zip(q["q25"], q["median"], q["q75"]))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "evaluation file not found"),
        ("{not json", "cannot read evaluation file"),
        ('{"ami": 0.5}', "holds no ami_per_step list"),
    ],
)
def test_plot_bad_evaluation_file_is_one_line(
    tmp_path: Path, content: str | None, message: str
) -> None:
    path = tmp_path / "e.json"
    if content is not None:
        path.write_text(content)
    result = CliRunner().invoke(cli, ["plot", "--evaluation", str(path), "--out", "x.png"])
    one_line_error(result, message)


def test_plot_nothing_is_one_line() -> None:
    one_line_error(CliRunner().invoke(cli, ["plot"]), "give at least one run folder")


def test_runs_lists_finished_and_unfinished_runs(two_runs: tuple[Path, Path]) -> None:
    root = two_runs[0].parent
    unfinished = root / "zz-unfinished"
    unfinished.mkdir(exist_ok=True)
    for name in ("config.toml", "metrics.jsonl"):
        shutil.copy(two_runs[0] / name, unfinished / name)
    (root / "not-a-run").mkdir(exist_ok=True)
    try:
        result = invoke("runs", str(root), "--json")
        assert result.exit_code == 0, result.output
        rows = {r["name"]: r for r in json.loads(result.output)}
        assert list(rows) == ["seed0", "seed1", "zz-unfinished"]
        summary = json.loads((two_runs[0] / "summary.json").read_text())
        done = rows["seed0"]
        assert done["status"] == "finished"
        assert (done["preset"], done["updater"], done["likelihood"], done["dataset"]) == (
            "quickstart",
            "rnn-em",
            "bernoulli",
            "shapes",
        )
        assert done["epochs"] == 1
        assert done["test_ami"] == summary["test"]["ami"]
        assert done["best_valid_loss"] == summary["best_valid_loss"]
        assert done["wall_s"] == summary["wall_s"]
        record = json.loads((two_runs[0] / "metrics.jsonl").read_text().splitlines()[0])
        open_run = rows["zz-unfinished"]
        assert open_run["status"] == "unfinished" and open_run["test_ami"] is None
        assert open_run["best_valid_loss"] == record["valid_loss"]
        assert open_run["wall_s"] == record["wall_s"]
        table = invoke("runs", str(root))
        assert table.exit_code == 0
        for text in ("seed0", "seed1", "zz-unfinished", "unfinished", "quickstart"):
            assert text in table.output
        assert [r.name for r in grouping.runs(two_runs[1])] == ["seed1"]  # a run folder itself
    finally:
        shutil.rmtree(unfinished)


def test_runs_of_a_missing_folder_is_one_line(tmp_path: Path) -> None:
    one_line_error(CliRunner().invoke(cli, ["runs", str(tmp_path / "nope")]), "no such folder")


# --------------------------------------------------------------------------------------------------
# tensorboard (optional) and the real script


def test_tensorboard_without_the_package_is_one_line_before_any_folder(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import now fails
    out = tmp_path / "tb"
    result = CliRunner().invoke(cli, ["run", *SET_TINY, "--tensorboard", "--out", str(out)])
    one_line_error(result, "pip install 'grouping[tensorboard]'")
    assert not out.exists()


def test_tensorboard_scalars_equal_the_metrics_records(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard", reason="the optional tensorboard extra is not installed")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "tb"
    set_two_epochs = [*SET_TINY, "--set", "train.epochs=2", "--set", "train.patience=5"]
    assert invoke("run", *set_two_epochs, "--tensorboard", "--out", str(out)).exit_code == 0
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))
    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]
    for key in ("train_loss", "valid_loss", "valid_ami", "valid_upper_bound"):
        scalars = events.Scalars(key)
        assert [s.step for s in scalars] == [1, 2]
        want = [r[key] for r in records]
        assert [s.value for s in scalars] == pytest.approx(want, rel=1e-6)  # stored as float32


def test_inspection_commands_run_as_subprocesses(
    two_runs: tuple[Path, Path], tmp_path: Path
) -> None:
    exe = shutil.which("grouping") or str(Path(sys.executable).parent / "grouping")
    fig, curves = tmp_path / "v.png", tmp_path / "c.png"
    for args in (
        ["visualize", str(two_runs[0]), "--samples", "1", "--out", str(fig)],
        ["plot", *map(str, two_runs), "--out", str(curves)],
        ["runs", str(two_runs[0].parent), "--json"],
    ):
        proc = subprocess.run([exe, *args], capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr
    assert png_size(fig) == (LABEL + CELL, TITLE + 6 * CELL)
    assert png_size(curves) == CURVES
    assert {r["name"] for r in json.loads(proc.stdout)} >= {"seed0", "seed1"}


def test_the_api_example_script_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    script = Path(__file__).resolve().parents[1] / "examples" / "notebook_api.py"
    runpy.run_path(str(script))["main"](["--tiny", str(tmp_path)])
    printed = capsys.readouterr().out
    assert "test AMI" in printed and "api-demo: finished, 1 epochs" in printed
    assert png_size(tmp_path / "valid.png") == (LABEL + 3 * CELL, TITLE + 6 * CELL)
    assert png_size(tmp_path / "curves.png") == CURVES
