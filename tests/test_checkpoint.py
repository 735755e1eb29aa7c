"""Checkpoints: atomic writes, a full disk, truncation, foreign files, and code that must not run."""

from __future__ import annotations

import errno
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import torch
from click.testing import CliRunner

import grouping.rundir.checkpoint as ckpt
from grouping import build_config, train
from grouping.cli.main import cli
from grouping.config.schema import validate
from grouping.errors import RunDirError
from grouping.rundir.checkpoint import FORMAT_VERSION, load_checkpoint, save_checkpoint
from grouping.rundir.lock import RunLock
from tests.conftest import TINY
from tests.reliability import metrics, torch_threads

SET_TINY = [arg for item in TINY for arg in ("--set", item)]


def config_hash(saved: dict[str, Any]) -> str:
    return validate(saved).digest()


def payload() -> dict[str, Any]:
    return {"model": {"w": torch.arange(300, dtype=torch.float32)}, "train_state": {"epoch": 1}}


def test_a_checkpoint_round_trips_with_its_version_and_digest(tmp_path: Path) -> None:
    path = tmp_path / "c.pt"
    save_checkpoint(path, payload())
    loaded = load_checkpoint(path)
    assert loaded["format_version"] == FORMAT_VERSION
    assert torch.equal(loaded["model"]["w"], payload()["model"]["w"])
    assert len(loaded["sha256"]) == 64
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]  # no temporary file left


def test_a_run_stores_the_config_hash_and_best_pt_holds_the_best_epoch(run_dir: Path) -> None:
    config = build_config(
        "quickstart", assignments=[*TINY, "train.epochs=3", "train.lr=0.03", "train.threads=1"]
    )
    with torch_threads():
        run = train(config, run_dir)
    records = metrics(run_dir)
    best = load_checkpoint(run_dir / "checkpoints" / "best.pt")
    last = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    assert best["config_hash"] == last["config_hash"] == config_hash(run.summary["config"])
    losses = [r["valid_loss"] for r in records]
    assert best["train_state"]["best_loss"] == min(losses)
    assert best["train_state"]["epoch"] == losses.index(min(losses)) + 1
    assert last["train_state"]["epoch"] == 3


@pytest.mark.parametrize("fraction", [0.0, 0.001, 0.1, 0.5, 0.9, 0.999])
def test_a_truncated_checkpoint_is_one_clear_line(tmp_path: Path, fraction: float) -> None:
    good = tmp_path / "good.pt"
    save_checkpoint(good, payload())
    data = good.read_bytes()
    cut = tmp_path / "cut.pt"
    cut.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(RunDirError) as err:
        load_checkpoint(cut)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"cannot read checkpoint {cut}: it is truncated, corrupt or not")


def test_a_flipped_byte_anywhere_is_refused_or_changes_nothing(tmp_path: Path) -> None:
    good = tmp_path / "good.pt"
    save_checkpoint(good, payload())
    data = good.read_bytes()
    refused = 0
    for offset in range(0, len(data), max(1, len(data) // 60)):
        bad = bytearray(data)
        bad[offset] ^= 0x01
        path = tmp_path / "bad.pt"
        path.write_bytes(bytes(bad))
        try:
            loaded = load_checkpoint(path)
        except RunDirError as err:
            assert "\n" not in str(err), offset
            refused += 1
        else:  # a byte the reader never uses (zip padding, a header's time stamp)
            assert torch.equal(loaded["model"]["w"], payload()["model"]["w"]), offset
    assert refused > 40


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"hello, I am a text file\n", "cannot read checkpoint"),
        (b"", "cannot read checkpoint"),
        ("tensor", "is not a grouping checkpoint (no format_version)"),
        ("dict", "is not a grouping checkpoint (no format_version)"),
        ("old", "has checkpoint format 1; this grouping reads formats 2, 3"),
        ("digest", "is corrupt: its content does not match its sha256 digest"),
    ],
)
def test_a_foreign_file_is_one_clear_line(tmp_path: Path, content: Any, message: str) -> None:
    path = tmp_path / "x.pt"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content == "tensor":
        torch.save(torch.zeros(3), path)
    elif content == "dict":
        torch.save({"state_dict": {"w": torch.zeros(3)}}, path)
    elif content == "old":
        torch.save({"format_version": 1, "model": {}}, path)
    else:
        save_checkpoint(path, payload())
        loaded = torch.load(path, weights_only=True)
        loaded["train_state"]["epoch"] = 2  # edited without updating the digest
        torch.save(loaded, path)
    with pytest.raises(RunDirError) as err:
        load_checkpoint(path)
    assert message in str(err.value) and "\n" not in str(err.value)


class CreatesAFile:
    """Unpickling this object opens (creates) a file: the harmless stand-in for any code."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.target), "w"))


@pytest.mark.parametrize("container", ["torch.save", "pickle-2", "pickle-5"])
def test_a_pickle_that_would_run_code_is_refused_and_runs_nothing(
    tmp_path: Path, container: str
) -> None:
    target = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    evil = {"format_version": FORMAT_VERSION, "model": CreatesAFile(target)}
    if container == "torch.save":
        torch.save(evil, path)
    else:
        with open(path, "wb") as f:
            pickle.dump(evil, f, protocol=int(container[-1]))
    with pytest.raises(RunDirError) as err:
        load_checkpoint(path)
    assert not target.exists()
    if container == "pickle-5":  # torch's unpickler stops at the protocol-5 framing already
        assert str(err.value).startswith(f"cannot read checkpoint {path}: it is truncated")
    else:
        assert str(err.value) == (
            f"refused to load {path}: it holds objects other than tensors and plain values "
            "(io.open), and loading them could run code; only grouping checkpoints are read"
        )
    # The payload is live: an unrestricted unpickler would have run it.
    with open(path, "rb") as f:
        if container == "torch.save":
            torch.load(f, weights_only=False)
        else:
            pickle.load(f)
    assert target.exists()


def test_resume_with_a_malicious_last_pt_runs_nothing(tmp_path: Path) -> None:
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.toml").write_text('preset = "quickstart"\n')
    target = tmp_path / "pwned"
    torch.save(
        {"format_version": FORMAT_VERSION, "x": CreatesAFile(target)}, run / "checkpoints/last.pt"
    )
    result = CliRunner().invoke(cli, ["run", "--resume", str(run)])
    assert result.exit_code == 2 and "refused to load" in result.output
    assert result.output.count("\n") == 1
    assert not target.exists()


def fail_mid_write(payload: Any, f: Any) -> None:
    """What a full disk does to ``torch.save``: some bytes land, then ENOSPC."""
    f.write(b"PK\x03\x04 partial zip ")
    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_full_disk_leaves_the_previous_checkpoint_intact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "last.pt"
    save_checkpoint(path, payload())
    before = path.read_bytes()
    monkeypatch.setattr(ckpt.torch, "save", fail_mid_write)
    newer = payload()
    newer["train_state"]["epoch"] = 2
    with pytest.raises(RunDirError) as err:
        save_checkpoint(path, newer)
    assert str(err.value) == (
        f"cannot write checkpoint {path}: No space left on device; the previous one is unchanged"
    )
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_a_full_disk_during_a_run_is_one_line_and_keeps_the_last_epoch(
    run_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_save = torch.save
    calls = {"n": 0}

    def save(obj: Any, f: Any) -> None:  # epoch 1 writes best.pt and last.pt; epoch 2 fails
        calls["n"] += 1
        if calls["n"] <= 2:
            real_save(obj, f)
        else:
            fail_mid_write(obj, f)

    monkeypatch.setattr(ckpt.torch, "save", save)
    result = CliRunner().invoke(
        cli,
        [
            "run",
            *SET_TINY,
            "--set",
            "train.epochs=2",
            "--set",
            "train.lr=0.01",
            "--out",
            str(run_dir),
        ],
    )
    assert result.exit_code == 2
    last_line = result.output.strip().splitlines()[-1]  # after the progress of epoch 1
    assert last_line == (
        f"error: cannot write checkpoint {run_dir}/checkpoints/best.pt: No space left on device; "
        "the previous one is unchanged"
    )
    assert load_checkpoint(run_dir / "checkpoints" / "last.pt")["train_state"]["epoch"] == 1
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["best.pt", "last.pt"]


HOLDER = textwrap.dedent(
    """
    import fcntl, os, sys

    with open(os.path.join(sys.argv[1], ".lock"), "a+") as f:  # what grouping.lock does
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        f.truncate(0)
        f.write(str(os.getpid()))
        f.flush()
        print("locked", flush=True)
        sys.stdin.readline()
    """
)


def test_a_second_process_on_the_same_out_refuses_clearly(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(run)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        second = subprocess.run(
            [sys.executable, "-m", "grouping", "run", *SET_TINY, "--out", str(run)],
            capture_output=True,
            text=True,
        )
        assert second.returncode == 2
        assert second.stderr.strip() == (
            f"error: run folder {run} is in use by another grouping process "
            f"(pid {holder.pid}); wait for it to end or choose another --out"
        )
        assert sorted(p.name for p in run.iterdir()) == [".lock"]  # nothing written
        resumed = CliRunner().invoke(cli, ["run", "--resume", str(run)])
        assert resumed.exit_code == 2 and "no config.toml" in resumed.output
    finally:
        holder.communicate("done\n")
    with RunLock(run) as lock:  # released when the holder ended
        assert lock.held


def test_the_lock_is_per_open_file_so_one_process_cannot_take_it_twice(tmp_path: Path) -> None:
    with RunLock(tmp_path), pytest.raises(RunDirError, match="is in use by another"):
        RunLock(tmp_path).acquire()
