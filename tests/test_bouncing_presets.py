"""The bouncing-balls presets: the paper's protocol and its CPU-hour version, for R-NEM and for
RNN-EM, which differ in the updater alone (``extends``: a shipped preset built on another)."""

from __future__ import annotations

import pytest

from grouping.config.loading import build_config
from grouping.engine.assembly import resolve

PAIRS = [
    ("bouncing-balls-rnem", "bouncing-balls-rnn-em"),
    ("bouncing-balls-rnem-cpu", "bouncing-balls-rnn-em-cpu"),
]


@pytest.mark.parametrize(("rnem", "rnn"), PAIRS)
def test_the_rnn_em_baseline_differs_in_the_updater_alone(rnem: str, rnn: str) -> None:
    a = resolve(build_config(rnem)).model_dump(mode="json")
    b = resolve(build_config(rnn)).model_dump(mode="json")
    assert (a["updater"]["name"], b["updater"]["name"]) == ("r-nem", "rnn-em")
    assert b["updater"] == {"name": "rnn-em"}  # r-nem's options did not leak into rnn-em's
    for section in ("dataset", "likelihood", "network", "noise", "model", "train", "eval"):
        assert a[section] == b[section], section
    assert a["preset"] == rnem and b["preset"] == rnn


def test_the_protocol_is_the_papers_and_the_cpu_preset_says_how_it_differs() -> None:
    paper = resolve(build_config("bouncing-balls-rnem"))
    assert (paper.model.components, paper.model.steps, paper.model.loss_step_weights) == (
        5,
        30,
        "all",
    )
    assert paper.dataset.options()["size"] == 64 and paper.network.options()["hidden"] == 250
    assert (paper.train.lr, paper.train.batch_size, paper.train.patience) == (0.001, 64, 10)
    cpu = resolve(build_config("bouncing-balls-rnem-cpu"))
    assert cpu.dataset.options()["size"] == 32 and cpu.model.steps == 20
    assert cpu.model.components == 5 and cpu.noise.name == "bitflip"
    assert cpu.train.max_minutes is not None and cpu.train.max_minutes <= 50
