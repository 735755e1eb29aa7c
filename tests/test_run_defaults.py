"""Data sets declare their run defaults (``Dataset.run_defaults``): a sequence set picked on the
command line over a shipped preset trains on every step's loss, and what the user chose wins."""

from __future__ import annotations

import types
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
from click.testing import CliRunner
from grouping_plugins.shapes import ShapesDataset

from grouping import hookimpl
from grouping.cli.main import cli
from grouping.config.loading import build_config, read_toml
from grouping.errors import PluginError
from tests.conftest import TINY

#: the smallest run: one batch per split, one thread
QUICK = [*TINY, "dataset.train_size=32", "train.threads=1"]
SET_TINY = [arg for item in QUICK for arg in ("--set", item)]


def invoke(*args: str) -> Any:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def saved_loss_weights(run: Path) -> object:
    return read_toml(run / "config.toml")["model"]["loss_step_weights"]


def weights(preset: str | None = None, dataset: str | None = None, *sets: str) -> object:
    options = {"dataset": {"name": dataset}} if dataset else {}
    return build_config(preset, options, [*TINY, *sets]).model.loss_step_weights


def test_a_sequence_set_picked_on_the_command_line_trains_on_every_step(tmp_path: Path) -> None:
    """The quickstart preset says "last" (static shapes); --dataset flying-shapes brings "all"."""
    run = tmp_path / "flying"
    result = invoke("run", "--dataset", "flying-shapes", *SET_TINY, "--out", str(run))
    assert result.exit_code == 0, result.output
    assert saved_loss_weights(run) == "all"


def test_an_explicit_set_wins_over_the_data_sets_defaults(tmp_path: Path) -> None:
    run = tmp_path / "last"
    args = ["--dataset", "flying-shapes", "--set", "model.loss_step_weights=last"]
    result = invoke("run", *args, *SET_TINY, "--out", str(run))
    assert result.exit_code == 0, result.output
    assert saved_loss_weights(run) == "last"
    assert weights(None, None, "dataset.name=flying-shapes", "model.loss_step_weights=last") == (
        "last"
    )
    assert weights(None, "flying-shapes", "model.loss_step_weights=[0, 0, 1]") == [0, 0, 1]


def test_a_preset_that_names_the_data_set_keeps_its_own(tmp_path: Path) -> None:
    preset = tmp_path / "mine.toml"
    text = build_config("flying-shapes-3", assignments=["model.loss_step_weights=last"]).to_toml()
    preset.write_text(text)
    assert weights(str(preset)) == "last"
    assert weights(str(preset), "flying-shapes") == "last"  # the same data set: nothing switched


def test_a_preset_file_or_a_run_config_keeps_its_values_when_the_data_set_changes(
    tmp_path: Path,
) -> None:
    """A user's TOML and a run folder's config.toml are the user's own choices: no defaults."""
    saved = tmp_path / "config.toml"
    saved.write_text(build_config("quickstart").to_toml())
    assert weights(str(saved), "flying-shapes") == "last"


def test_defaults_replace_a_shipped_presets_values_made_for_another_data_set() -> None:
    assert weights("quickstart") == "last"
    assert weights(None, "flying-shapes") == "all"
    assert weights("static-shapes-nem", "flying-shapes") == "all"
    assert weights("flying-shapes-3", "shapes") == "last"  # static images: the last step's loss
    assert weights(None, "flying-mnist") == "all"
    assert weights(None, "flying-mnist", "dataset.static=true") == "last"
    assert weights(None, None, "dataset.name=flying-shapes") == "all"


def test_file_data_sets_take_their_defaults_from_the_file(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    sequences, images = tmp_path / "seq.npz", tmp_path / "img.npz"
    np.savez_compressed(
        sequences,
        features=rng.random((20, 4, 8, 8), dtype=np.float32),
        groups=rng.integers(0, 3, (20, 4, 8, 8), dtype=np.uint8),
    )
    np.savez(
        images,
        features=rng.random((20, 8, 8), dtype=np.float32),
        groups=rng.integers(0, 3, (20, 8, 8), dtype=np.uint8),
    )
    assert weights(None, "arrays", f"dataset.path={sequences}") == "all"
    assert weights(None, "arrays", f"dataset.path={images}") == "last"
    assert weights("flying-shapes-3", "arrays", f"dataset.path={images}") == "last"
    # a missing file is the data set's to report when it opens, not the defaults'
    assert weights(None, "arrays", f"dataset.path={tmp_path / 'none.npz'}") == "last"


def test_hdf5_sequences_train_on_every_step(tmp_path: Path) -> None:
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "seq.h5"
    with h5py.File(path, "w") as f:
        for group in ("training", "validation", "test"):
            g = f.create_group(group)
            g["features"] = np.zeros((5, 4, 8, 8, 1), np.float32)
            g["groups"] = np.zeros((5, 4, 8, 8, 1), np.float32)
    assert weights(None, "hdf5", f"dataset.path={path}") == "all"


class _Typo(ShapesDataset):
    name = "typo-defaults"
    run_defaults: ClassVar[dict[str, dict[str, object]]] = {"model": {"loss_step_weight": "all"}}


class _Bug(ShapesDataset):
    name = "buggy-defaults"

    @classmethod
    def run_defaults_for(cls, config: Any) -> dict[str, dict[str, object]]:
        raise ZeroDivisionError("oops")


def test_a_data_sets_bad_defaults_are_blamed_on_it(
    register_plugin: Callable[[Any, str], None],
) -> None:
    mod = types.ModuleType("adhoc_defaults")

    def register_datasets(register: Callable[[type], None]) -> None:
        register(_Typo)
        register(_Bug)

    mod.register_datasets = hookimpl(register_datasets)  # type: ignore[attr-defined]
    register_plugin(mod, "adhoc-defaults")
    with pytest.raises(PluginError, match=r"typo-defaults.*unknown key model\.loss_step_weight"):
        build_config(options={"dataset": {"name": "typo-defaults"}})
    with pytest.raises(PluginError, match="buggy-defaults' failed in run_defaults_for"):
        build_config(options={"dataset": {"name": "buggy-defaults"}})
    result = invoke("run", "--dataset", "typo-defaults", *SET_TINY)
    assert result.exit_code == 2
    assert "typo-defaults" in result.output and "Traceback" not in result.output
