"""The frictions of a first hour (issue 35): progress bars, "changed from training", run folder
names, palette labels, figure legends and sizes, unwrapped piped output, sequences/s, and plugin
descriptions that say where they are explained."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import grouping
from grouping.cli.main import cli
from grouping.config.loading import build_config
from grouping.figures.curves import run_label
from grouping.figures.drawing import (
    SHARE_NAMES,
    Curves,
    GroupingPanels,
    component_colours,
    curves_figure,
    save,
    sequential_figure,
    static_figure,
    step_columns,
)
from grouping.figures.groupings import default_samples, only_steps
from grouping.figures.resolution import DPI, MAX_STEP_COLUMNS
from grouping.plugin_api.interfaces import ArraySplit
from grouping.rundir.folder import RunDir
from tests.conftest import TINY

ROOT = Path(__file__).resolve().parents[1]
SET_TINY = [arg for item in [*TINY, "train.threads=1"] for arg in ("--set", item)]
#: Pixels of a 1-inch image cell, the 0.75-inch label strip and the 0.25-inch title strip.
CELL, LABEL, TITLE = DPI, DPI * 3 // 4, DPI // 4
#: What rich reads to treat click's captured streams as an interactive terminal.
TERMINAL = {"TTY_COMPATIBLE": "1", "TTY_INTERACTIVE": "1"}
EPOCH_LINE = re.compile(
    r"^epoch +\d+  train loss .* valid AMI -?\d\.\d{3}  ARI -?\d\.\d{3} +\d+ (images|sequences)/s"
)


def invoke(*args: str, env: dict[str, str] | None = None) -> Any:
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


@pytest.fixture(scope="module")
def static_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished tiny static run (quickstart: shapes, rnn-em, K = 3)."""
    config = build_config("quickstart", assignments=TINY)
    return grouping.train(config, tmp_path_factory.mktemp("runs") / "static").path


@pytest.fixture(scope="module")
def sequence_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    """A tiny flying-shapes run started by `grouping run --dataset flying-shapes` in an empty
    folder (so it picks its own folder name), with the command's result."""
    cwd = tmp_path_factory.mktemp("cwd")
    old = Path.cwd()
    os.chdir(cwd)
    try:
        result = invoke("run", "--dataset", "flying-shapes", *SET_TINY)
    finally:
        os.chdir(old)
    assert result.exit_code == 0, result.output
    (folder,) = (cwd / "runs").iterdir()
    return folder, result


# --------------------------------------------------------------------------------------------------
# a progress bar for long commands, on a terminal only, never with --json


def test_evaluate_shows_a_progress_bar_on_a_terminal_only(static_run: Path) -> None:
    shown = invoke("evaluate", str(static_run), env=TERMINAL)
    assert shown.exit_code == 0
    assert "scoring the test split" in shown.stderr and "32/32" in shown.stderr
    assert "scoring" not in shown.stdout  # the scores alone on stdout
    piped = invoke("evaluate", str(static_run))
    assert piped.stderr == "" and "test scores (32 samples" in piped.stdout
    as_json = invoke("evaluate", str(static_run), "--json", env=TERMINAL)
    assert as_json.stderr == ""
    assert json.loads(as_json.stdout)["images"] == 32


def test_evaluate_api_reports_progress_up_to_every_sample(static_run: Path) -> None:
    seen: list[tuple[int, int]] = []
    grouping.evaluate(
        static_run, assignments=["eval.batch_size=10"], on_progress=lambda *a: seen.append(a)
    )
    assert seen[0] == (0, 32) and seen[-1] == (32, 32)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_visualize_shows_its_stages_on_a_terminal(static_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "v.png"
    result = invoke("visualize", str(static_run), "--out", str(out), env=TERMINAL)
    assert result.exit_code == 0 and out.is_file()
    assert "drawing" in result.stderr and result.stdout.strip() == str(out)


# --------------------------------------------------------------------------------------------------
# "changed from training": only what differs from the run's own resolved config


def test_evaluate_lists_only_what_was_changed() -> None:
    result = invoke("evaluate", "pretrained:static-shapes", "--set", "eval.samples=8", "--json")
    assert result.exit_code == 0, result.output
    # the shipped checkpoint's own copy of the config predates likelihood.sharpness and says
    # train.threads = 1; neither was changed by anyone
    assert json.loads(result.stdout)["changed"] == {"eval.samples": [None, 8]}


def test_evaluate_names_a_changed_k_and_nothing_else(static_run: Path) -> None:
    result = invoke("evaluate", str(static_run), "-k", "4")
    assert "changed from training: model.components 3 -> 4\n" in result.stdout
    same = invoke("evaluate", str(static_run))
    assert "changed from training: nothing" in same.stdout


# --------------------------------------------------------------------------------------------------
# run folders named after the updater and data set where they differ from the preset's


def test_default_run_folder_names_what_differs_from_the_preset(tmp_path: Path) -> None:
    def name(**sections: str) -> str:
        config = build_config("quickstart", {k: {"name": v} for k, v in sections.items()})
        return RunDir.default_path("quickstart", tmp_path, config=config).name

    assert name().endswith("-quickstart")
    assert name(updater="rnn-em").endswith("-quickstart")  # the preset's own
    assert name(updater="n-em").endswith("-quickstart-n-em")
    assert name(updater="n-em", dataset="flying-shapes").endswith("-quickstart-n-em-flying-shapes")
    assert RunDir.default_path("quickstart", tmp_path).name.endswith("-quickstart")


def test_a_piped_n_em_run_is_named_unwrapped_and_counts_images(tmp_path: Path) -> None:
    """The installed script, stdout and stderr pipes: every epoch line whole, whatever its
    length, in images/s; the folder says n-em; the plot legend says n-em too."""
    env = {**os.environ, "COLUMNS": "60", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "grouping", "run", "--updater", "n-em", *SET_TINY],
        cwd=tmp_path, capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    (folder,) = (tmp_path / "runs").iterdir()
    assert folder.name.endswith("-quickstart-n-em")
    epochs = [line for line in proc.stderr.splitlines() if line.startswith("epoch")]
    assert epochs and all(EPOCH_LINE.match(line) for line in epochs), proc.stderr
    assert all(len(line) > 60 for line in epochs)  # longer than the width, and not wrapped
    assert " images/s " in epochs[0]
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith("test AMI") and last.endswith(str(Path("runs") / folder.name))
    assert run_label(RunDir(folder)) == f"{folder.name} (n-em, shapes)"


# --------------------------------------------------------------------------------------------------
# sequences: sequences/s, fewer samples and at most MAX_STEP_COLUMNS steps by default


def test_a_sequence_run_counts_sequences(sequence_run: tuple[Path, Any]) -> None:
    folder, result = sequence_run
    assert folder.name.endswith("-quickstart-flying-shapes")
    epochs = [line for line in result.stderr.splitlines() if line.startswith("epoch")]
    assert epochs and all(EPOCH_LINE.match(line) for line in epochs)
    assert all(" sequences/s" in line for line in epochs)
    assert " sequences/s  wall " in result.stdout and "img/s" not in result.output


def test_visualize_columns_caps_the_steps_of_a_sequence_figure(
    sequence_run: tuple[Path, Any], tmp_path: Path
) -> None:
    folder = sequence_run[0]
    blocks = 2 * 6 * CELL + DPI // 4  # two samples of rows input, psi 1..3, gamma, truth
    with Image.open(folder / "figure.png") as image:  # 3 steps, 2 samples
        assert image.size == (LABEL + 3 * CELL, TITLE + blocks)
    out = tmp_path / "two.png"
    result = invoke("visualize", str(folder), "--columns", "2", "--out", str(out))
    assert result.exit_code == 0, result.output
    with Image.open(out) as image:
        assert image.size == (LABEL + 2 * CELL, TITLE + blocks)


def test_step_columns_are_evenly_spaced_with_the_first_and_last() -> None:
    assert step_columns(20) == [0, 2, 4, 6, 8, 11, 13, 15, 17, 19]
    assert len(step_columns(20)) == MAX_STEP_COLUMNS
    assert step_columns(5) == [0, 1, 2, 3, 4]
    assert step_columns(20, None) == list(range(20))
    assert step_columns(20, 1) == [19]


def test_twenty_steps_draw_ten_columns_of_two_samples() -> None:
    n, t, k, size = 2, 20, 3, 6
    rng = np.random.default_rng(0)
    panels = GroupingPanels(
        frames=rng.random((n, t, size, size, 1)),
        psi=rng.random((n, t, k, size, size, 1)),
        gamma=rng.dirichlet(np.ones(k), (n, t, size, size)).transpose(0, 1, 4, 2, 3),
        groups=rng.integers(0, k + 1, (n, t, size, size)),
    )
    shown = only_steps(panels, step_columns(t))
    assert shown.step_numbers == [1, 3, 5, 7, 9, 12, 14, 16, 18, 20]
    assert np.array_equal(shown.psi[:, -1], panels.psi[:, -1])
    width, height = sequential_figure(shown).get_size_inches() * DPI
    assert (width, height) == (LABEL + 10 * CELL, TITLE + 2 * 6 * CELL + DPI // 4)  # 2150 x 2500
    static = ArraySplit(torch.zeros(3, 1, 4, 4, 1), torch.zeros(3, 1, 4, 4, dtype=torch.long))
    moving = ArraySplit(torch.zeros(3, 5, 4, 4, 1), torch.zeros(3, 5, 4, 4, dtype=torch.long))
    assert (default_samples(static), default_samples(moving)) == (4, 2)


# --------------------------------------------------------------------------------------------------
# legends: gamma's colours tied to psi 1..K, the share panel's line styles


def test_each_psi_row_label_carries_the_colour_gamma_gives_it(tmp_path: Path) -> None:
    k, size = 3, 8
    panels = GroupingPanels(
        frames=np.zeros((1, 1, size, size, 1)),
        psi=np.zeros((1, 1, k, size, size, 1)),
        gamma=np.full((1, 1, k, size, size), 1 / k),
        groups=np.zeros((1, 1, size, size), np.int64),
    )
    path = save(static_figure(panels), tmp_path / "fig.png")
    rgb = np.asarray(Image.open(path).convert("RGB"), dtype=np.int32)
    colours = np.round(component_colours(k) * 255).astype(np.int32)
    for row in range(k + 3):  # input, psi 1..3, gamma, truth
        strip = rgb[TITLE + row * CELL : TITLE + (row + 1) * CELL, :LABEL]
        for j, colour in enumerate(colours):
            found = (np.abs(strip - colour).sum(axis=-1) <= 6).sum()
            assert (found > 100) == (row == j + 1), (row, j, found)
    texts = [t.get_text() for t in static_figure(panels).texts]
    assert "ψ 1" in texts and any("γ" in t and "ψ colours" in t for t in texts)


def test_the_share_panel_names_its_line_styles() -> None:
    records: list[dict[str, object]] = [
        {"epoch": e, "component_shares": [[0.5, 0.3, 0.2]], "valid_ami": 0.5} for e in (1, 2)
    ]
    fig = curves_figure([Curves("run a (n-em, shapes)", records)])
    shares = next(ax for ax in fig.axes if ax.get_title().startswith("validation component"))
    legend = shares.get_legend()
    assert [t.get_text() for t in legend.get_texts()] == list(SHARE_NAMES[:3])
    ami = next(ax for ax in fig.axes if ax.get_title() == "validation AMI")
    assert [t.get_text() for t in ami.get_legend().get_texts()] == ["run a (n-em, shapes)"]


# --------------------------------------------------------------------------------------------------
# palette labels


def test_segment_labels_are_palette_pngs_in_the_overlay_colours(
    static_run: Path, tmp_path: Path
) -> None:
    picture = np.zeros((28, 28), np.uint8)
    picture[3:10, 3:10] = 255
    picture[15:24, 14:22] = 255
    Image.fromarray(picture).save(tmp_path / "two.png")
    out = tmp_path / "out"
    result = invoke("segment", str(static_run), str(tmp_path / "two.png"), "--out", str(out))
    assert result.exit_code == 0, result.output
    with Image.open(out / "two.labels.png") as image:
        assert image.mode == "P"
        values = np.asarray(image)
        palette = np.asarray(image.getpalette()[: 3 * 4]).reshape(4, 3)
        shown = np.asarray(image.convert("RGB"))
    arrays = np.load(out / "two.npz")
    assert np.array_equal(values, arrays["gamma"][-1].argmax(axis=0) + 1)  # the values stay 1..K
    colours = np.round(component_colours(3) * 255).astype(int)
    assert np.array_equal(palette[1:], colours)
    assert np.array_equal(shown, colours[values - 1])  # a viewer sees each component's colour


# --------------------------------------------------------------------------------------------------
# list-plugins: where "spec 6.4" is


def test_plugin_descriptions_name_the_section_of_docs_method_md() -> None:
    rows = json.loads(invoke("list-plugins", "--json").stdout)
    described = [r["description"] for r in rows if r.get("description")]
    assert not [d for d in described if re.search(r"\bspec \d", d)]
    cited = {
        s for d in described for s in re.findall(r"docs/method\.md section (\d+(?:\.\d+)*)", d)
    }
    assert cited, "no plugin cites docs/method.md any more; drop this test"
    headings = (ROOT / "docs" / "method.md").read_text(encoding="utf-8")
    for section in cited:
        assert re.search(rf"^#+ {re.escape(section)}\.? ", headings, re.M), section
    table = invoke("list-plugins").stdout
    assert "docs/method.md section" in table and not re.search(r"\bspec \d", table)
