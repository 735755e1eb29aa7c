"""The flying-shapes presets (spec 7 table) and the preset command of issue 4 on the CPU."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from grouping.cli.main import cli
from grouping.config.loading import build_config
from grouping.engine.assembly import resolve
from grouping.training.stages import stage_configs


@pytest.mark.parametrize(
    ("preset", "objects", "k"),
    [("flying-shapes-3", 3, 3), ("flying-shapes-5", 5, 5), ("flying-shapes-autoencoder", 3, 1)],
)
def test_presets_follow_the_paper_protocol(preset: str, objects: int, k: int) -> None:
    c = resolve(build_config(preset))
    assert c.dataset.name == "flying-shapes" and c.dataset.options()["objects"] == objects
    assert (c.dataset.train_size, c.dataset.valid_size, c.dataset.test_size) == (
        50_000,
        10_000,
        10_000,
    )
    assert c.model.components == k and c.model.steps == 20
    assert c.model.loss_step_weights == "all" and c.model.gradient_gamma is False
    assert c.noise.name == "bitflip" and c.noise.options() == {"probability": 0.2}
    assert c.network.name == "conv" and c.network.options()["hidden"] == 100
    assert c.train.lr == 1e-3 and c.train.batch_size == 64 and c.train.patience == 10


def test_one_epoch_of_the_flying_shapes_preset_runs_on_the_cpu(tmp_path: Path) -> None:
    """``grouping run --preset flying-shapes-3 --epochs 1 --train-size 64`` with small
    validation and test splits: the full conv network, 20 steps, one batch."""
    args = ["run", "--preset", "flying-shapes-3", "--epochs", "1", "--train-size", "64"]
    small = ["--valid-size", "16", "--test-size", "16", "--set", "train.valid_samples=16"]
    out = tmp_path / "run"
    result = CliRunner().invoke(cli, [*args, *small, "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output[result.output.index("{") :])
    assert summary["epochs"] == 1 and summary["parameters"] == 3_403_389
    assert summary["data_source"]["dataset"] == "flying-shapes"
    assert summary["data_source"]["frames"] == 21
    assert len(summary["test"]["ami_per_step"]) == 20


def test_the_cpu_preset_differs_from_the_paper_only_where_it_says() -> None:
    """``flying-shapes-3-cpu``: the paper's data, K, T, noise and loss; a small conv net, batch 16,
    Adam 4e-3, the last model tested, and a curriculum: 80k sequences at T = 5, then T = 20, at
    most 10 + 45 minutes (docs/reproduction.md, runs r5, c1 and c1b)."""
    config = build_config("flying-shapes-3-cpu")
    short, full = stage_configs(config)
    paper = resolve(build_config("flying-shapes-3"))
    assert [stage.name for stage in config.stages] == ["1-unroll-5", "2-unroll-20"]
    assert full.model == paper.model and full.noise == paper.noise
    assert short.model == paper.model.model_copy(update={"steps": 5})
    assert full.likelihood == paper.likelihood and full.updater == paper.updater
    assert full.dataset.options() == paper.dataset.options() == short.dataset.options()
    assert tuple(full.network.options()["encoder_channels"]) == (16, 32)
    assert (full.train.lr, full.train.batch_size, full.train.max_minutes) == (4e-3, 16, 45)
    assert (short.train.epochs, short.train.max_minutes) == (8, 10)
    for stage in (short, full):
        assert stage.train.test_checkpoint == "last" and stage.dataset.test_size >= 1000
