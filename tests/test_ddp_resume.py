"""DDP that survives preemption, with real torchrun processes on gloo: a 2-process run killed
mid-epoch resumes to the weights of an uninterrupted one; torchrun's restarts resume by themselves;
another number of processes is refused in one line."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from grouping.rundir.checkpoint import load_checkpoint
from tests.conftest import TINY
from tests.reliability import assert_same_run
from tests.test_plugin_errors import one_line_error

#: 16 batches an epoch, two epochs, last.pt after every batch: a kill lands mid-epoch.
ARGS = [*TINY, "dataset.train_size=512", "train.epochs=2", "train.patience=5"]
ARGS += ["train.checkpoint_minutes=1e-9"]
SETS = [f"--set={a}" for a in ARGS]


def env() -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE")}
    return clean | {"OMP_NUM_THREADS": "1"}


def grouping(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "grouping", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env(), timeout=600)


def start(*args: str) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "grouping", *args]
    return subprocess.Popen(
        command, env=env(), text=True, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip


def wait_mid_epoch(run: Path, proc: subprocess.Popen[str], epoch: int = 1, batch: int = 3) -> None:
    """Poll last.pt until it holds (epoch finished epochs, at least ``batch`` batches more)."""
    last = run / "checkpoints" / "last.pt"
    while proc.poll() is None:
        if last.is_file():
            try:
                state = load_checkpoint(last)["train_state"]
            except Exception:  # replaced while we read it: read the next one
                state = {}
            if state.get("epoch") == epoch and state.get("batch", 0) >= batch:
                return
        time.sleep(0.01)
    pytest.fail(f"the run ended before the kill point: {proc.stderr.read() if proc.stderr else ''}")


def rank_pids(run: Path, rank: int) -> list[int]:
    """Processes whose command line trains into ``run`` and whose environment says RANK=rank."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if str(run).encode() in cmdline and f"RANK={rank}".encode() in environ:
            found.append(int(entry.name))
    return found


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ddp") / "reference"
    result = grouping("run", "--nproc", "2", "--out", str(out), *SETS)
    assert result.returncode == 0, result.stderr
    return out


def test_a_killed_ddp_run_resumes_to_the_uninterrupted_weights(
    reference: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    proc = start("run", "--nproc", "2", "--out", str(run), *SETS)
    wait_mid_epoch(run, proc)
    # torchrun and both ranks (each in a session of its own), no handler runs
    for pid in [proc.pid, *rank_pids(run, 0), *rank_pids(run, 1)]:
        os.kill(pid, signal.SIGKILL)
    proc.wait()
    while rank_pids(run, 0) or rank_pids(run, 1):
        time.sleep(0.05)
    state = load_checkpoint(run / "checkpoints" / "last.pt")["train_state"]
    assert state["epoch"] == 1 and state["batch"] >= 3  # mid-epoch 2
    line = one_line_error(grouping("run", "--resume", str(run)))
    assert "was written by 2 process(es) and this run has 1" in line
    assert line.endswith("resume with --nproc 2")
    assert "and this run has 4" in one_line_error(
        grouping("run", "--resume", str(run), "--nproc", "4")
    )
    result = grouping("run", "--resume", str(run), "--nproc", "2")
    assert result.returncode == 0, result.stderr
    assert_same_run(reference, run)


def children(pid: int) -> list[int]:
    """The pids whose parent is ``pid``."""
    found = []
    for entry in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            stat = entry.read_text()  # pid (comm) state ppid ...: comm may hold spaces
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.parent.name))
    return found


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not: init may be slow to reap the orphans)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_a_sigkill_of_the_launcher_alone_ends_torchrun_and_its_workers_and_it_resumes(
    reference: Path, tmp_path: Path
) -> None:
    """The out-of-memory killer or a ``kill -9`` of ``grouping run --nproc 2``: torchrun and both
    workers (each in a session of its own) end within 30 s, and the run resumes exactly."""
    run = tmp_path / "run"
    with open(tmp_path / "stderr", "w") as stderr:  # a pipe nobody reads could block them
        command = [sys.executable, "-m", "grouping", "run", "--nproc", "2", "--out", str(run)]
        proc = subprocess.Popen([*command, *SETS], env=env(), stderr=stderr, start_new_session=True)
    wait_mid_epoch(run, proc)
    group = [*children(proc.pid), *rank_pids(run, 0), *rank_pids(run, 1)]
    assert len(group) == 3, group  # torchrun and two workers
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    try:
        for _ in range(300):  # the bound: 30 s
            if not any(alive(pid) for pid in group):
                break
            time.sleep(0.1)
        assert not [pid for pid in group if alive(pid)], (tmp_path / "stderr").read_text()
    finally:
        for pid in group:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    assert "interrupted by SIGTERM" in (tmp_path / "stderr").read_text()  # they stopped in order
    result = grouping("run", "--resume", str(run), "--nproc", "2")
    assert result.returncode == 0, result.stderr
    assert_same_run(reference, run)


def test_torchrun_restarts_a_group_whose_rank_died_and_it_resumes_by_itself(
    reference: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    proc = start("run", "--nproc", "2", "--max-restarts", "1", "--out", str(run), *SETS)
    wait_mid_epoch(run, proc)
    victims = rank_pids(run, 1)
    assert victims, "rank 1 not found"
    for pid in victims:
        os.kill(pid, signal.SIGKILL)
    try:
        _, err = proc.communicate(timeout=300)
    finally:  # never leave a hung group behind
        for pid in [proc.pid, *rank_pids(run, 0), *rank_pids(run, 1)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    assert proc.returncode == 0, err
    assert_same_run(reference, run)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_two_nodes_on_localhost_equal_two_processes_on_one(tmp_path: Path) -> None:
    """The README's multi-node command, as two node processes of one rank each (gloo): the
    rendezvous across nodes is what is tested; ranks per node are the single-node tests' work."""
    sets = [f"--set={a}" for a in [*TINY, "train.threads=1", "train.resume=auto"]]
    single = tmp_path / "single"
    result = grouping("run", "--nproc", "2", "--out", str(single), *sets)
    assert result.returncode == 0, result.stderr
    nodes = tmp_path / "nodes"
    port = free_port()
    rdzv = ["--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", "t"]
    command = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2"]
    command += ["--nproc-per-node", "1", *rdzv, "-m", "grouping", "run", "--out", str(nodes), *sets]
    procs = [
        subprocess.Popen(
            command, env=env(), text=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        for _ in range(2)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err
    assert_same_run(single, nodes)
