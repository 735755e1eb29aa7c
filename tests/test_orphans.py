"""A process that ends with its parent (grouping.training.orphans), with real processes and no
torch: a parent that starts a child and is SIGKILLed; the child gets its SIGTERM from the kernel
(prctl) or from its watch thread, and a SIGKILL ``grace`` seconds later if it does not stop.
tests/test_ddp_resume.py kills the launcher of a real 2-process run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import grouping.training.orphans as orphans

#: The child: loads orphans.py by its path (no torch to import), notes a SIGTERM and ignores it,
#: so that only the grace SIGKILL ends it; watches ``parent`` (its real one, or a pid that is not).
CHILD = textwrap.dedent(
    """
    import importlib.util, os, signal, sys, time
    spec = importlib.util.spec_from_file_location("orphans", sys.argv[1])
    orphans = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(orphans)
    orphans.POLL = 0.05
    signal.signal(signal.SIGTERM, lambda *_: open(sys.argv[2], "a").write("SIGTERM\\n"))
    parent = os.getppid() if sys.argv[3] != "gone" else 2**22 + 1
    orphans.end_with_parent(parent, grace=1.0, kernel=sys.argv[3] == "kernel")
    print(os.getpid(), flush=True)
    while True:
        time.sleep(0.05)
    """
)
PARENT = "import subprocess, sys; subprocess.run([sys.executable, '-c', *sys.argv[1:]])"


def running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc")
@pytest.mark.parametrize("how", ["kernel", "thread", "gone"])
def test_a_child_ends_when_its_parent_is_killed(tmp_path: Path, how: str) -> None:
    """kernel: prctl's SIGTERM; thread: the watch thread's, as where prctl is missing; gone: the
    parent was gone before the watch began (the race prctl alone loses)."""
    notes = tmp_path / "notes"
    args = [CHILD, orphans.__file__, str(notes), how]
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, *args], stdout=subprocess.PIPE, text=True
    )
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    if how != "gone":
        os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    try:
        for _ in range(600):
            if not running(child):
                break
            time.sleep(0.05)
        assert not running(child)
    finally:
        if running(child):
            os.kill(child, signal.SIGKILL)
    assert notes.read_text() == "SIGTERM\n"  # one SIGTERM, then the grace SIGKILL


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only")
def test_prctl_is_there_on_linux() -> None:
    """The kernel's part works where the tests run: else only the thread would."""
    assert orphans.kernel_signal_on_parent_death(0)  # 0: no signal, the default, kept
