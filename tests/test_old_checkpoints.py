"""Checkpoints written before the engine kept the recurrence in the updater (format 2) load, score
and continue training as they did: names are mapped, optimizer state re-indexed, outputs equal."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import torch
from click.testing import CliRunner

from grouping.cli.main import cli
from grouping.data.batches import iterate_batches
from grouping.rundir.checkpoint import FORMAT_VERSION, load_checkpoint
from grouping.rundir.loading import load_trained
from grouping.rundir.upgrade import renamed, upgrade_2_to_3

#: A tiny conv flying-shapes run trained by the format-2 code, with that code's forward on two test
#: sequences (``expected.pt``: the last step's psi and gamma, and the loss, for generator seed 0).
OLD_RUN = Path(__file__).parent / "data" / "format2-conv-run"


def test_old_names_map_to_the_updaters_layers() -> None:
    assert renamed("updater.network.rnn.weight") == "updater.cell.weight"
    assert renamed("updater.network.rnn_norm.bias") == "updater.norm.bias"
    assert renamed("updater.network.cell.bias") == "updater.cell.bias"  # fc, lstm-fc
    assert renamed("updater.network.norm.weight") == "updater.norm.weight"
    assert renamed("updater.network.decoder.weight") == "updater.network.decoder.weight"


def test_optimizer_state_follows_its_tensor_to_the_new_position() -> None:
    """Old order: network.a, network.rnn.w, network.b; new: network.a, network.b, cell.w."""
    model = {
        "updater.network.a": torch.zeros(1),
        "updater.network.rnn.weight": torch.zeros(2),
        "updater.network.b": torch.zeros(3),
    }
    state = {i: {"exp_avg": torch.full((len(v),), float(i))} for i, v in enumerate(model.values())}
    optimizer = {"state": state, "param_groups": [{"params": [0, 1, 2]}]}
    new = upgrade_2_to_3({"format_version": 2, "model": model, "optimizer": optimizer})
    assert list(new["model"]) == ["updater.network.a", "updater.cell.weight", "updater.network.b"]
    moved = new["optimizer"]["state"]
    assert [moved[i]["exp_avg"].numel() for i in range(3)] == [1, 3, 2]  # a, b, cell.weight
    assert new["format_version"] == 3 == FORMAT_VERSION


def test_a_format_2_conv_run_scores_as_the_old_code_did() -> None:
    payload = load_checkpoint(OLD_RUN / "checkpoints" / "last.pt")
    assert "updater.cell.weight" in payload["model"] and payload["format_version"] == 3
    run = load_trained(OLD_RUN, "last", "cpu")
    expected = torch.load(OLD_RUN / "expected.pt", weights_only=True)
    order = np.arange(2)
    x, _ = next(iter(iterate_batches(run.dataset.split("test"), order, 2, 4, torch.device("cpu"))))
    with torch.no_grad():
        out = run.model(x, x, torch.Generator().manual_seed(0))
    torch.testing.assert_close(out.psi[:, -1], expected["psi"], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.gamma[:, -1], expected["gamma"], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.loss, expected["loss"], rtol=1e-5, atol=1e-3)


def test_a_format_2_run_starts_a_new_one_with_all_its_optimizer_state(tmp_path: Path) -> None:
    source = tmp_path / "old"
    shutil.copytree(OLD_RUN, source)
    checkpoints = source / "checkpoints"
    shutil.copy(checkpoints / "last.pt", checkpoints / "best.pt")  # --init-from reads the best
    args = ["run", "--preset", str(source / "config.toml"), "--init-from", str(source)]
    args += ["--out", str(tmp_path / "new"), "--set", "train.threads=1"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    total = sum(1 for _ in load_trained(source, "last", "cpu").model.parameters())
    assert f"optimizer state for {total} of {total} parameter tensors" in result.output


def test_a_format_2_run_resumes_although_options_were_added_since(tmp_path: Path) -> None:
    """Its saved config lacks today's newer train options (lr_schedule, data_on_device, ...) and
    spells compile as a boolean: read with today's schema, it is the same config."""
    run = tmp_path / "old"
    shutil.copytree(OLD_RUN, run)
    (run / "summary.json").unlink()  # as if stopped after its last epoch, before the test
    result = CliRunner().invoke(cli, ["run", "--resume", str(run), "--set", "train.threads=1"])
    assert result.exit_code == 0, result.output
    assert (run / "summary.json").is_file()
