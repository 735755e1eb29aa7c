"""Collapse diagnostics: component shares and live components, on hand-made gammas and in a run."""

from __future__ import annotations

import json
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import Tensor, nn

from grouping import hookimpl
from grouping.cli import cli
from grouping.evaluation.collapse import (
    collapse_warning,
    component_shares,
    live_components,
    summarize_shares,
)
from grouping.evaluation.scoring import shares_of
from grouping.plugins import Updater


def test_one_component_owning_everything() -> None:
    pred = torch.zeros(1, 1, 6, dtype=torch.long)  # every pixel to component 0
    true = torch.tensor([[[1, 1, 2, 2, 3, 0]]])
    shares = component_shares(pred, true, 3)
    np.testing.assert_array_equal(shares[0, 0], [1.0, 0.0, 0.0])
    assert live_components(shares[:, 0]).tolist() == [1.0]


def test_an_even_three_way_split_has_three_live_components() -> None:
    pred = torch.tensor([[[2, 2, 0, 0, 1, 1, 0]]])  # the last pixel is background: not scored
    true = torch.tensor([[[1, 1, 2, 2, 3, 3, 0]]])
    shares = component_shares(pred, true, 3)
    np.testing.assert_allclose(shares[0, 0], [1 / 3, 1 / 3, 1 / 3])
    assert live_components(shares[:, 0]).tolist() == [3.0]


def test_shares_are_sorted_and_a_small_share_is_not_alive() -> None:
    pred = torch.tensor([[[1] * 19 + [0] * 1 + [2] * 0]])  # 95% / 5% / 0%
    true = torch.ones(1, 1, 20, dtype=torch.long)
    shares = component_shares(pred, true, 3)
    np.testing.assert_allclose(shares[0, 0], [0.95, 0.05, 0.0])
    assert live_components(shares[:, 0]).tolist() == [2.0]  # 5% counts as alive
    assert live_components(shares[:, 0], threshold=0.06).tolist() == [1.0]


def test_summary_averages_images_per_step_and_skips_unlabelled_images() -> None:
    gamma = torch.zeros(3, 3, 2, 1, 4, 1)  # B=3, T+1=3 (2 scored steps), K=2, 1x4 images
    gamma[0, :, 0] = 1.0  # image 0: component 0 everywhere
    gamma[1, :, 0, 0, :2] = 1.0  # image 1: half and half
    gamma[1, :, 1, 0, 2:] = 1.0
    groups = torch.ones(3, 3, 1, 4, dtype=torch.long)
    groups[2] = 0  # image 2: nothing labelled
    out = summarize_shares(shares_of(gamma, groups))
    assert out["component_shares"] == [[0.75, 0.25], [0.75, 0.25]]
    assert out["live_components"] == pytest.approx(1.5)


def test_the_warning_fires_below_one_and_a_half_live_components() -> None:
    assert collapse_warning(1.2, 3, 4) is not None
    assert "epoch 4" in str(collapse_warning(1.2, 3, 4))
    assert collapse_warning(1.6, 3, 4) is None
    assert collapse_warning(1.0, 1, 4) is None  # K = 1 has nothing to collapse


class SameForAll(Updater):
    """Every component predicts the same: gamma is uniform, argmax picks component 0 everywhere."""

    name = "same-for-all"
    description = "test updater: one prediction for every component"

    def __init__(self, config: Any, network: Any, likelihood: Any) -> None:
        super().__init__(config, network, likelihood)
        self.bias = nn.Parameter(torch.zeros(()))

    def forward(self, u: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        return torch.sigmoid(self.bias).expand_as(u).contiguous(), state


@hookimpl
def _register(register: Any) -> None:
    register(SameForAll)


def test_a_forced_collapse_warns_and_is_recorded(
    register_plugin: Callable[[Any, str], None], tmp_path: Path
) -> None:
    mod = types.ModuleType("same_for_all")
    mod.register_updaters = _register  # type: ignore[attr-defined]
    register_plugin(mod, "same-for-all")
    out = tmp_path / "run"
    args = ["run", "--updater", "same-for-all", "--epochs", "1", "--train-size", "64"]
    args += ["--valid-size", "32", "--test-size", "32", "--out", str(out)]
    args += ["--set", "model.steps=2", "--set", "train.batch_size=32", "--set", "network.hidden=8"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "warning: epoch 1: the components have collapsed" in result.output
    record = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])
    assert record["live_components"] == 1.0
    assert record["component_shares"][-1] == [1.0, 0.0, 0.0]
    test = json.loads((out / "summary.json").read_text())["test"]
    assert test["live_components"] == 1.0 and len(test["component_shares"]) == 2


def test_plot_draws_the_component_shares() -> None:
    from grouping.figures.drawing import PANELS, Curves, curves_figure

    records: list[dict[str, object]] = [
        {"epoch": e, "valid_ami": 0.5, "component_shares": [[0.5, 0.3, 0.2], [0.9, 0.1, 0.0]]}
        for e in (1, 2)
    ]
    fig = curves_figure([Curves(label="run", records=records)])
    shares_ax = fig.axes[[p[0] for p in PANELS].index("shares")]
    lines = shares_ax.get_lines()
    assert len(lines) == 3  # one per component rank
    assert list(lines[0].get_ydata()) == [0.9, 0.9]  # the last step's largest share
