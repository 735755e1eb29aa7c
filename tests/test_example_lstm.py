"""The second third-party example, end to end: the package in examples/grouping-lstm (an updater
and a network) is pip-installed, listed with its package and version, and trained through the CLI,
with its own network and with the built-in conv network.

Without the example installed these tests skip, unless GROUPING_REQUIRE_EXAMPLE=1 (set by CI), where
they fail: a CI run must never skip them.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from click.testing import CliRunner
from grouping_plugins.conv import ConvNetwork

from grouping.cli.main import cli
from grouping.plugin_api.interfaces import NetworkSpec
from tests.examples import assert_listed, example_version, require_example

EXAMPLE = require_example("grouping-lstm", "grouping_lstm")


def test_list_plugins_shows_the_example_with_its_package_and_version() -> None:
    version = example_version(EXAMPLE, "grouping-lstm")
    assert version == "0.1.0"
    assert_listed(
        "grouping-lstm",
        version,
        {("updater", "lstm-em"): "lstm-em", ("network", "lstm-fc"): "lstm-fc"},
    )


def test_run_trains_the_lstm_updater_and_network_for_one_epoch(tmp_path: Path) -> None:
    out = tmp_path / "lstm"
    args = ["run", "--updater", "lstm-em", "--network", "lstm-fc", "--epochs", "1"]
    args += ["--train-size", "128", "--valid-size", "64", "--test-size", "64", "--steps", "3"]
    args += ["--batch-size", "32", "--out", str(out)]
    for item in ("train.threads=1", "train.valid_samples=64", "network.hidden=16"):
        args += ["--set", item]
    args += ["--set", "train.max_minutes=null"]  # never a wall-clock limit in tests
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["epochs"] == 1
    assert summary["config"]["updater"]["name"] == "lstm-em"
    assert summary["config"]["network"]["name"] == "lstm-fc"
    assert summary["config"]["network"]["hidden"] == 16
    ami = summary["test"]["ami"]
    assert isinstance(ami, float) and math.isfinite(ami) and -1.0 <= ami <= 1.0


def test_the_lstm_updater_trains_with_the_conv_network(tmp_path: Path) -> None:
    """lstm-em owns its LSTM cell, so it drives any network: here the conv encoder and decoder, on
    a few batches of 16x16 flying shapes."""
    out = tmp_path / "lstm-conv"
    args = ["run", "--updater", "lstm-em", "--network", "conv", "--dataset", "flying-shapes"]
    args += ["--epochs", "1", "--steps", "3", "--batch-size", "8", "--out", str(out)]
    args += ["--train-size", "24", "--valid-size", "8", "--test-size", "8"]
    for item in (
        "dataset.size=16",
        "network.encoder_channels=[4,8]",
        "network.encoder_fc=32",
        "network.decoder_fc=32",
        "network.hidden=16",
        "updater.cell_clip=5.0",
        "train.threads=1",
        "train.valid_samples=8",
        "eval.batch_size=8",
        "train.max_minutes=null",
    ):
        args += ["--set", item]
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    config = summary["config"]
    assert (config["updater"]["name"], config["network"]["name"]) == ("lstm-em", "conv")
    assert config["dataset"]["name"] == "flying-shapes" and config["dataset"]["size"] == 16
    assert summary["epochs"] == 1
    losses = [json.loads(line)["train_loss"] for line in (out / "metrics.jsonl").open()]
    assert losses and all(math.isfinite(loss) for loss in losses)
    assert math.isfinite(summary["test"]["loss"])
    # the conv network's encoder and decoder, then the updater's LSTM cell on the encoder's 32
    # outputs: 4 gates * 16 * (32 + 16) weights and 2 * 4 * 16 biases
    net_config = ConvNetwork.Config(
        encoder_channels=(4, 8), encoder_fc=32, decoder_fc=32, hidden=16
    )
    network = ConvNetwork(net_config, NetworkSpec(image_shape=(16, 16, 1)))
    conv_parameters = sum(p.numel() for p in network.parameters())
    assert summary["parameters"] == conv_parameters + 4 * 16 * (32 + 16) + 2 * 4 * 16
