"""Issue 37's DDP guards, on the CPU: ``--nproc`` beyond the GPUs of a CUDA run is one line, and DDP
syncs the model's buffers only where they are state."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from click.testing import CliRunner
from torch import nn

from grouping.cli.main import cli
from grouping.config.loading import build_config
from grouping.engine.assembly import assemble, resolve
from grouping.training import distributed
from tests.conftest import TINY
from tests.test_gpu_ready import FLYING


def test_nproc_beyond_the_gpus_is_refused_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    launched: list[list[str]] = []
    monkeypatch.setattr(distributed.subprocess, "call", lambda cmd: launched.append(cmd) or 0)
    sets = [a for s in TINY for a in ("--set", s)]
    result = CliRunner().invoke(cli, ["run", "--nproc", "2", "--device", "cuda", *sets])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "--nproc 2" in lines[0] and "1 GPU" in lines[0], result.output
    assert "Traceback" not in result.output and not launched
    result = CliRunner().invoke(cli, ["run", "--nproc", "2", "--device", "cpu", *sets])
    assert result.exit_code == 0 and len(launched) == 1  # gloo processes share the CPU


def test_resumed_launch_reads_the_device_of_the_run(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text('[train]\ndevice = "cuda:0"\n', encoding="utf-8")
    assert distributed._device_of(["run", "--resume", str(tmp_path)]) == "cuda:0"
    assert distributed._device_of(["run", "--resume", str(tmp_path / "nothing")]) == "auto"


def test_ddp_broadcasts_buffers_only_where_they_are_state(tmp_path: Path) -> None:
    store = dist.FileStore(str(tmp_path / "store"), 1)
    dist.init_process_group("gloo", store=store, rank=0, world_size=1)
    try:
        ctx = distributed.Dist(rank=0, world=2)  # "active": the wrap DDP gets
        conv = assemble(resolve(build_config("flying-shapes-3", assignments=FLYING))).model
        assert any(True for _ in conv.buffers())  # the up-convs' derived sums
        assert distributed.wrap(conv, ctx, torch.device("cpu")).broadcast_buffers is False
        norm = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))  # running stats: state
        assert distributed.wrap(norm, ctx, torch.device("cpu")).broadcast_buffers is True
    finally:
        dist.destroy_process_group()
