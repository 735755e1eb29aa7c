"""The attacks of issue 36 on runs, checkpoints, configs and data files, re-run as real CLI calls on
generated files: each is one line with exit code 2, or it works, and nothing is lost."""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import sys
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
import torch
from click.testing import CliRunner

import grouping.training.run as run_module
import grouping.training.trainer as trainer_module
from grouping import build_config, train
from grouping.cli.main import cli
from grouping.plugin_api.registry import new_registry
from grouping.rundir.folder import RunDir, never_checkpointed
from tests.conftest import TINY
from tests.reliability import torch_threads

ONE = [*TINY, "train.threads=1"]
SET_ONE = [arg for item in ONE for arg in ("--set", item)]


class Killed(BaseException):
    """Stands for SIGKILL at one exact moment: nothing after it runs."""


def invoke(*args: str, **kwargs: Any) -> Any:
    return CliRunner().invoke(cli, list(args), **kwargs)


def one_line_error(result: Any, *expected: str) -> str:
    assert result.exit_code == 2, result.output
    lines = [x for x in result.output.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert all(e in lines[0] for e in expected), lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def done(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished tiny run, copied by the tests that damage it."""
    with torch_threads():
        return train(
            build_config("quickstart", assignments=ONE), tmp_path_factory.mktemp("r") / "d"
        ).path


def copy_run(done: Path, to: Path) -> Path:
    shutil.copytree(done, to)
    return to


# -- data loss: a dead start is always restartable ------------------------------------------------


def test_killed_while_writing_the_first_best_pt_restarts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = tmp_path / "run"
    real = trainer_module.save_checkpoint

    def dies_in_best(path: Path, payload: dict[str, Any]) -> None:
        if path.name == "best.pt":  # best.pt comes first: no record names a model not saved
            assert RunDir(run).metrics() == []
            (path.parent / ".best.pt.k1ll3d.tmp").write_bytes(b"\0" * 4096)
            raise Killed
        real(path, payload)

    monkeypatch.setattr(trainer_module, "save_checkpoint", dies_in_best)
    with torch_threads(), pytest.raises(Killed):
        train(build_config("quickstart", assignments=ONE), run)
    monkeypatch.setattr(trainer_module, "save_checkpoint", real)
    one_line_error(invoke("run", "--resume", str(run)), f"--preset {run}/config.toml --out {run}")
    with torch_threads():
        again = invoke("run", "--preset", str(run / "config.toml"), "--out", str(run))
    assert again.exit_code == 0, again.output
    assert (run / "summary.json").is_file() and not list(run.rglob("*.tmp"))


def test_a_dead_start_restarts_with_resume_auto(tmp_path: Path) -> None:
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.toml").write_text(build_config("quickstart", assignments=ONE).to_toml())
    (run / "metrics.jsonl").write_text('{"epoch": 1}\n')  # the old order: metrics, then a kill
    (run / "checkpoints" / ".last.pt.x.tmp").write_bytes(b"\0" * 100)
    with torch_threads():
        result = invoke("run", *SET_ONE, "--set", "train.resume=auto", "--out", str(run))
    assert result.exit_code == 0, result.output
    assert len(RunDir(run).metrics()) == 1 and not list(run.rglob("*.tmp"))


def test_leftover_tmp_files_are_removed_on_resume(done: Path, tmp_path: Path) -> None:
    run = copy_run(done, tmp_path / "partial")
    (run / "summary.json").unlink()
    leftover = run / "checkpoints" / ".last.pt.abc123.tmp"
    leftover.write_bytes((run / "checkpoints" / "last.pt").read_bytes())
    with torch_threads():
        result = invoke("run", "--resume", str(run))
    assert result.exit_code == 0, result.output
    assert not leftover.exists() and (run / "summary.json").is_file()


def test_killed_while_drawing_the_figure_is_resumed_and_draws_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = tmp_path / "run"

    def killed(*args: Any) -> None:
        raise Killed

    monkeypatch.setattr(run_module, "draw_run_figure", killed)
    with torch_threads(), pytest.raises(Killed):
        train(build_config("quickstart", assignments=ONE), run)
    assert not (run / "summary.json").exists()  # so the run has not ended, and resumes
    monkeypatch.undo()
    with torch_threads():
        result = invoke("run", "--resume", str(run))
    assert result.exit_code == 0, result.output
    assert (run / "figure.png").is_file() and (run / "summary.json").is_file()


@pytest.mark.parametrize("name", [".", ".."])
def test_a_stage_named_dot_is_refused_before_anything_trains(tmp_path: Path, name: str) -> None:
    preset = tmp_path / "staged.toml"
    preset.write_text(
        f'preset = "quickstart"\n[[stages]]\nname = "one"\n[[stages]]\nname = "{name}"\n'
    )
    result = invoke("run", "--preset", str(preset), *SET_ONE, "--out", str(tmp_path / "out"))
    one_line_error(result, "stages.1.name", f"not {name!r}")
    assert not (tmp_path / "out").exists()


# -- checkpoints: bounded in time and memory, whatever they hold ----------------------------------


def forged(done: Path, to: Path, extra: Any) -> Path:
    """A run whose checkpoints hold ``extra`` besides a valid payload."""
    run = copy_run(done, to)
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 20_000))  # torch.save recurses into a deep list
    try:
        for name in ("best.pt", "last.pt"):
            payload = torch.load(run / "checkpoints" / name, weights_only=True)
            torch.save({**payload, "extra": extra}, run / "checkpoints" / name)
    finally:
        sys.setrecursionlimit(limit)
    return run


def shared_levels(n: int) -> list[Any]:
    x: list[Any] = [0]
    for _ in range(n):
        x = [x, x]  # 2^n paths through n + 1 lists
    return x


def self_referencing() -> list[Any]:
    x: list[Any] = []
    x.append(x)
    return x


def deep(n: int) -> list[Any]:
    x: list[Any] = []
    for _ in range(n):
        x = [x]
    return x


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (shared_levels(60), "shared or circular references"),
        (self_referencing(), "shared or circular references"),
        (deep(5000), "nested deeper than 64 levels"),
        ({1, 2, 3}, "it holds a set"),
    ],
    ids=["60 shared levels", "self-referencing", "5000 deep", "a set"],
)
def test_forged_checkpoints_are_refused_at_once(
    done: Path, tmp_path: Path, extra: Any, expected: str
) -> None:
    run = forged(done, tmp_path / "run", extra)
    for args in (["evaluate", str(run)], ["visualize", str(run), "--out", str(tmp_path / "f.png")]):
        one_line_error(invoke(*args), "is not a grouping checkpoint", expected)
    (run / "summary.json").unlink()
    one_line_error(invoke("run", "--resume", str(run)), expected)
    init = ["run", *SET_ONE, "--init-from", str(run), "--out", str(tmp_path / "new")]
    one_line_error(invoke(*init), expected)


def test_a_best_pt_that_is_a_folder_or_a_device_says_so(done: Path, tmp_path: Path) -> None:
    run = copy_run(done, tmp_path / "run")
    best = run / "checkpoints" / "best.pt"
    best.unlink()
    best.mkdir()
    one_line_error(invoke("evaluate", str(run)), "best.pt is a folder")
    best.rmdir()
    best.symlink_to("/dev/zero")
    one_line_error(invoke("evaluate", str(run)), "a link to /dev/zero", "not a regular file")


def test_evaluate_on_the_meta_device_is_one_line(done: Path) -> None:
    one_line_error(invoke("evaluate", str(done), "--device", "meta"), "meta device")


# -- data files: declared sizes are checked first ---------------------------------------------------


def test_an_h5_declaring_a_petabyte_is_refused_without_reading(tmp_path: Path) -> None:
    path = tmp_path / "huge.h5"
    with h5py.File(path, "w") as f:
        for split in ("training", "validation", "test"):
            group = f.create_group(split)
            for key, dtype in (("features", "f4"), ("groups", "u1")):
                shape = (1, 10**9, 1000, 1000, 1)
                group.create_dataset(key, shape=shape, dtype=dtype, chunks=(1, 1, 100, 100, 1))
    result = invoke("data", "check", str(path))
    assert result.exit_code == 2
    assert "training/features declares shape (1, 1000000000, 1000, 1000, 1)" in result.output
    assert "stores only 0 bytes" in result.output and "Traceback" not in result.output


def forged_npz(path: Path) -> Path:
    """A 2 KB ``.npz`` whose features header declares 3 PB."""
    import io
    import zipfile

    header = io.BytesIO()
    shape = (10**12, 28, 28)
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<f4", "fortran_order": False, "shape": shape}
    )
    groups = io.BytesIO()
    np.save(groups, np.zeros((2, 28, 28), np.uint8))
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("features.npy", header.getvalue() + b"\0" * 64)
        z.writestr("groups.npy", groups.getvalue())
    return path


def test_an_npz_declaring_a_huge_shape_is_one_line(tmp_path: Path) -> None:
    path = forged_npz(tmp_path / "huge.npz")
    result = invoke("data", "check", str(path))
    assert result.exit_code == 2 and "declares shape (1000000000000, 28, 28)" in result.output
    result = invoke("run", *SET_ONE, "--dataset", "arrays", "--set", f"dataset.path={path}")
    one_line_error(result, "declares shape (1000000000000, 28, 28)")


def test_a_train_size_beyond_memory_is_one_line(tmp_path: Path) -> None:
    out = tmp_path / "run"
    big = "dataset.train_size=100000000000000"
    with torch_threads():
        result = invoke("run", *SET_ONE, "--set", big, "--out", str(out))
    assert result.exit_code == 2 and "Traceback" not in result.output
    last = result.output.splitlines()[-1]  # after "run folder: ..."
    assert last.startswith("error: not enough memory") and "train_size=100000000000000" in last
    assert never_checkpointed(out)  # a dead start: the same folder takes a new run


# -- config: nothing accepted that means something else ----------------------------------------------


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        ("model.components=true", "model.components: Input should be a number, not True"),
        ("dataset.train_size=false", "dataset.train_size: Input should be a number"),
        ("train.lr=0.1\n[evil]\nx=1", "--set train.lr: the value holds a line break"),
    ],
)
def test_set_refuses_bools_for_numbers_and_line_breaks(
    tmp_path: Path, item: str, expected: str
) -> None:
    result = invoke("run", *SET_ONE, "--set", item, "--out", str(tmp_path / "run"))
    one_line_error(result, expected)
    assert not (tmp_path / "run").exists()


def test_a_preset_without_plugins_says_how_to_name_them_or_build_on_one(tmp_path: Path) -> None:
    bare = tmp_path / "bare.toml"
    bare.write_text("[model]\ncomponents = 2\n")
    one_line_error(
        invoke("run", "--preset", str(bare)), 'preset = "quickstart"', "names its plugins"
    )
    built = tmp_path / "built.toml"
    built.write_text('preset = "quickstart"\n[model]\ncomponents = 2\n')
    config = build_config(str(built))
    assert (config.dataset.name, config.model.components) == ("shapes", 2)


def test_an_unknown_name_in_grouping_plugins_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GROUPING_PLUGINS", "no-such-plugin")
    registry = new_registry()
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("warning: GROUPING_PLUGINS names 'no-such-plugin'")
    assert "no-such-plugin" in registry.failures


def test_summary_json_is_strict_json(tmp_path: Path) -> None:
    RunDir(tmp_path).write_summary({"best_valid_loss": math.inf, "test": {"ami": math.nan}})

    def refuse(name: str) -> None:
        raise ValueError(name)

    data = json.loads((tmp_path / "summary.json").read_text(), parse_constant=refuse)
    assert data == {"best_valid_loss": None, "test": {"ami": None}}


def test_sigterm_during_the_test_says_how_to_resume(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = tmp_path / "run"
    test = trainer_module.Trainer.test

    def signalled(self: Any, *args: Any) -> Any:
        os.kill(os.getpid(), signal.SIGTERM)
        return test(self, *args)

    monkeypatch.setattr(trainer_module.Trainer, "test", signalled)
    with torch_threads():
        result = invoke("run", *SET_ONE, "--out", str(run))
    assert result.exit_code == 143, result.output
    assert f"grouping run --resume {run}" in result.output.splitlines()[-1]
    monkeypatch.undo()
    with torch_threads():
        assert invoke("run", "--resume", str(run)).exit_code == 0
    assert (run / "summary.json").is_file()
