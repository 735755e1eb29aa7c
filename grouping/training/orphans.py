"""Processes that end with the one that started them: the torchrun of ``grouping run --nproc N``
and its workers.

Why: torchrun starts each worker in a session of its own, so a SIGKILL of the launcher (the
out-of-memory killer, a ``kill -9``) left both workers training, re-parented to init; they kept the
run folder locked, and a requeued job would have raced them. Each link of the chain (launcher ->
torchrun -> worker) now watches its parent: on Linux the kernel sends SIGTERM when the parent dies
(``prctl(PR_SET_PDEATHSIG)``), and on every system a thread polls the parent's pid and sends the
SIGTERM itself. SIGTERM is the ordinary stop: torchrun stops its workers, each worker stops after
its batch (rank 0 writes ``last.pt``), and ``--resume`` continues exactly. A process still alive
``GRACE`` seconds later (one stuck in a collective with a dead peer) is killed: every checkpoint is
written whole or not at all, so a SIGKILL loses at most the batches since the last one.
"""

from __future__ import annotations

import ctypes
import os
import runpy
import signal
import sys
import threading
import time

#: The environment variable through which workers learn the pid of the torchrun that started them
#: (their parent): a worker whose torchrun died before it looked ends at once.
TORCHRUN_PID = "GROUPING_TORCHRUN_PID"
#: Seconds between two looks at the parent's pid.
POLL = 0.5
#: Seconds a worker has to stop by itself after its SIGTERM; torchrun gives its workers 30.
GRACE = 20.0
#: torchrun's: its own workers' 30 s and some more.
TORCHRUN_GRACE = 45.0
PR_SET_PDEATHSIG = 1  # linux/prctl.h


def kernel_signal_on_parent_death(signum: int) -> bool:
    """Ask Linux to send ``signum`` to this process when its parent dies; False where it cannot
    (another system, no libc)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(PR_SET_PDEATHSIG, signum, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def end_with_parent(parent: int, grace: float | None = GRACE, kernel: bool = True) -> None:
    """SIGTERM this process when ``parent`` (the pid its parent had at the start) is no longer its
    parent, then SIGKILL it ``grace`` seconds later if it is still alive. A parent that died
    before this call counts: the process stops at once. ``kernel=False`` leaves the kernel out
    (the thread alone, as on systems without ``prctl``)."""
    by_kernel = kernel and kernel_signal_on_parent_death(signal.SIGTERM)
    # a parent gone before the kernel was asked: no signal comes from it
    send = not by_kernel or os.getppid() != parent
    watch = threading.Thread(
        target=_watch, args=(parent, grace, send), name="grouping-end-with-parent", daemon=True
    )
    watch.start()


def _watch(parent: int, grace: float | None, send: bool) -> None:
    """Wait for the parent to go; SIGTERM this process if the kernel does not (a second SIGTERM
    would cut torchrun's own stop short), then SIGKILL it ``grace`` seconds later."""
    while os.getppid() == parent:
        time.sleep(POLL)
    if send:
        os.kill(os.getpid(), signal.SIGTERM)
    if grace is not None:
        time.sleep(grace)
        os.kill(os.getpid(), signal.SIGKILL)


_watched: list[int] = []  # the parent a worker watches, once it does


def worker_ends_with_torchrun() -> None:
    """Called by each worker as it joins the group: end with the torchrun that started it (the
    one ``grouping run --nproc`` named, else this process's parent now); once a process."""
    if not _watched:
        _watched.append(int(os.environ.get(TORCHRUN_PID) or os.getppid()))
        end_with_parent(_watched[0])


def torchrun_command(args: list[str]) -> list[str]:
    """The command that runs ``torchrun ARGS`` ending with this process (see :func:`torchrun`)."""
    code = "import sys; from grouping.training.orphans import torchrun; torchrun(sys.argv[1:])"
    return [sys.executable, "-c", code, str(os.getpid()), *args]


def torchrun(argv: list[str]) -> None:
    """``LAUNCHER_PID ARGS``: ``torchrun ARGS`` in this process, ending with the launcher: on the
    SIGTERM torchrun stops its workers and exits."""
    os.environ[TORCHRUN_PID] = str(os.getpid())
    end_with_parent(int(argv[0]), TORCHRUN_GRACE)
    sys.argv = ["torchrun", *argv[1:]]
    runpy.run_module("torch.distributed.run", run_name="__main__", alter_sys=True)
