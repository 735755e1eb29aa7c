"""The command line, through click's runner and as a real subprocess of the installed script."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from torch import Tensor

from grouping import hookimpl
from grouping.cli.main import cli
from grouping.plugin_api.interfaces import Updater
from tests.conftest import TINY

SET_TINY = [arg for item in TINY for arg in ("--set", item)]


def invoke(*args: str) -> Any:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_version() -> None:
    result = invoke("--version")
    assert result.exit_code == 0 and "grouping, version" in result.output


def test_list_plugins_json_names_the_providing_package() -> None:
    result = invoke("list-plugins", "--json")
    assert result.exit_code == 0
    rows = json.loads(result.output)
    by_name = {(r["kind"], r["name"]): r for r in rows}
    for key in [("updater", "rnn-em"), ("likelihood", "bernoulli"), ("dataset", "shapes")]:
        row = by_name[key]
        assert row["package"] == "grouping"
        assert row["version"]
        assert row["description"]
    assert {"kind", "name", "description", "package", "version"} <= set(rows[0])


def test_run_writes_a_complete_run_folder(run_dir: Path) -> None:
    result = invoke("run", *SET_TINY, "--out", str(run_dir), "--seed", "3", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output[result.output.index("{") :])
    for key in ("ami", "ami_std", "ari"):
        assert 0.0 - 1.0 <= summary["test"][key] <= 1.0
    for key in ("epochs", "best_epoch", "train_images_per_s", "wall_s", "config"):
        assert key in summary
    assert summary["config"]["seed"] == 3
    assert (run_dir / "config.toml").is_file()
    assert (run_dir / "checkpoints" / "best.pt").is_file()
    assert (run_dir / "checkpoints" / "last.pt").is_file()
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert len(records) == 1
    for key in ("train_loss", "valid_loss", "valid_ami", "valid_ari", "images_per_s", "wall_s"):
        assert key in records[0]
    assert json.loads((run_dir / "summary.json").read_text())["epochs"] == 1


def test_a_saved_config_replays_the_same_run(tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    assert invoke("run", *SET_TINY, "--out", str(first)).exit_code == 0
    assert (
        invoke("run", "--preset", str(first / "config.toml"), "--out", str(second)).exit_code == 0
    )
    a = json.loads((first / "summary.json").read_text())
    b = json.loads((second / "summary.json").read_text())
    assert a["test"]["ami"] == b["test"]["ami"]
    assert a["config"] == b["config"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--updater", "nope"], "unknown updater 'nope'; valid: "),
        (["--likelihood", "nope"], "unknown likelihood 'nope'; valid: "),
        (["--dataset", "nope"], "unknown dataset 'nope'; valid: "),
        (["-k", "0"], "model.components"),
        (["--set", "model.steps=0"], "model.steps"),
        (["--set", "dataset.train_size=-3"], "dataset.train_size"),
        (["--set", "train.epochs=0"], "train.epochs"),
        (["--lr", "nan"], "train.lr"),
        (["--set", "train.batch_size=999"], "larger than dataset.train_size"),
        (["--set", "model.components=abc"], "model.components"),
        (["--set", "noise.probability=2"], "noise.probability"),
        (["--set", "nosuchkey=1"], "nosuchkey: unknown key"),
        (["--preset", "nope"], "unknown preset 'nope'"),
        (["-k", "abc"], "'abc' is not a valid integer"),
        (["--device", "tpu"], "device must be"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(
    args: list[str], message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # nothing may be written, but never into the source tree
    result = CliRunner().invoke(cli, ["run", *SET_TINY, *args])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert message in lines[0]
    assert "Traceback" not in result.output
    assert not (tmp_path / "runs").exists()


def test_out_folder_holding_another_run_is_refused(run_dir: Path) -> None:
    assert invoke("run", *SET_TINY, "--out", str(run_dir)).exit_code == 0
    result = CliRunner().invoke(cli, ["run", *SET_TINY, "--out", str(run_dir)])
    assert result.exit_code == 2
    assert "already holds a run" in result.output


class ZeroUpdater(Updater):
    """Predicts 0.5 everywhere; used to check that an ad-hoc plugin is selectable."""

    name = "adhoc-half"
    description = "test updater that predicts one half"

    def forward(self, u: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        raw = self.network.decode(state.flatten(0, 1)).unflatten(0, u.shape[:2])
        return self.likelihood.activation(raw * 0.0), state


def test_a_plugin_registered_in_a_test_is_listed_and_selectable(
    register_plugin: Callable[[Any, str], None], run_dir: Path
) -> None:
    mod = types.ModuleType("adhoc_plugin")
    mod.register_updaters = hookimpl(lambda register: register(ZeroUpdater))  # type: ignore[attr-defined]
    register_plugin(mod, "adhoc-plugin")
    rows = json.loads(invoke("list-plugins", "--json").output)
    assert any(r["name"] == "adhoc-half" and r["plugin"] == "adhoc-plugin" for r in rows)
    result = invoke("run", *SET_TINY, "--updater", "adhoc-half", "--out", str(run_dir), "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["config"]["updater"]["name"] == "adhoc-half"


def test_the_installed_script_runs_as_a_subprocess(tmp_path: Path) -> None:
    exe = shutil.which("grouping") or str(Path(sys.executable).parent / "grouping")
    out = tmp_path / "sub"
    proc = subprocess.run(
        [exe, "run", *SET_TINY, "--out", str(out)], capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr
    assert "test AMI" in proc.stdout
    assert (out / "summary.json").is_file()
    bad = subprocess.run([exe, "run", "--updater", "nope"], capture_output=True, text=True)
    assert bad.returncode == 2
    assert bad.stderr.strip().count("\n") == 0 and "unknown updater" in bad.stderr
    assert "Traceback" not in bad.stderr
    listing = subprocess.run([exe, "list-plugins", "--json"], capture_output=True, text=True)
    assert listing.returncode == 0 and json.loads(listing.stdout)
