"""The thread count of a run without ``train.threads``: probed on its first batches, kept, resumed.

The last test is the issue's: beside two single-thread torch jobs a run with ``train.threads``
unset trains as fast as one with ``train.threads=1`` (it once trained 70 times slower).
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from grouping import build_config, resume, train
from grouping.errors import Interrupted
from grouping.rundir.checkpoint import load_checkpoint
from grouping.training import threads as thread_probe
from grouping.training.reporting import SilentReporter
from grouping.training.state import TrainState
from grouping.training.threads import ThreadProbe, choice_line, decided
from tests.conftest import TINY


@pytest.fixture(autouse=True)
def restore_threads() -> Iterator[None]:
    n = torch.get_num_threads()
    try:
        yield
    finally:
        torch.set_num_threads(n)


class Clock:
    """A fake ``perf_counter``: each batch takes the seconds the test says."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def probe_with(seconds: list[float], many: int = 2) -> tuple[ThreadProbe, TrainState, list[Any]]:
    """Book batches of 64 images taking ``seconds`` each; returns the probe, the state and, per
    batch, (thread count it ran with, line returned)."""
    clock, state = Clock(), TrainState()
    probe = ThreadProbe(many, clock=clock)
    seen = []
    for s in seconds:
        ran_with = torch.get_num_threads()
        clock.now += s
        seen.append((ran_with, probe.batch_done(64, state)))
    return probe, state, seen


def test_decided_by_the_majority_of_timed_batches_or_at_once_by_a_crawl() -> None:
    one = [100.0, 90.0, 120.0]  # median 100: the bar for more threads is 110
    assert decided(one[:2], []) is None
    assert decided(one, []) is None
    assert decided(one, [200.0]) is None
    assert decided(one, [200.0, 150.0]) is True
    assert decided(one, [200.0, 105.0]) is None
    assert decided(one, [200.0, 105.0, 111.0]) is True
    assert decided(one, [200.0, 105.0, 60.0]) is False
    assert decided(one, [105.0, 40.0]) is False
    assert decided(one, [33.0]) is False  # under a third of one thread: a busy machine
    assert decided(one, [34.0]) is None
    assert decided(one, [200.0, 30.0]) is False  # one crawl decides, whatever the others


def test_near_ties_keep_one_thread() -> None:
    one = [100.0, 100.0, 100.0]
    assert decided(one, [109.0, 109.0]) is False  # within MARGIN: fewer threads
    assert decided(one, [111.0, 111.0]) is True
    assert decided(one, [100.0, 100.0]) is False
    assert decided(one, [700.0, 700.0]) is True


def test_the_probe_runs_one_thread_first_then_many_and_keeps_the_faster() -> None:
    # warm-up, three batches at 1 thread (64 img / 0.5 s = 128 img/s), then 2 threads crawl
    probe, state, seen = probe_with([2.0, 0.5, 0.5, 0.5, 4.0, 0.5])
    assert [n for n, _ in seen[:5]] == [1, 1, 1, 1, 2]
    assert [line for _, line in seen[:4]] == [None] * 4
    assert seen[4][1] == (
        "threads: 1 (128 img/s) beat 2 (16 img/s) on the first batches; set train.threads to fix it"
    )
    assert (state.threads, state.thread_rates) == (1, {1: 128.0, 2: 16.0})
    assert torch.get_num_threads() == 1 and not probe.active
    assert seen[5] == (1, None)  # done: later batches change nothing


def test_the_probe_keeps_many_threads_when_they_win_two_batches() -> None:
    _, state, seen = probe_with([2.0, 0.5, 0.5, 0.5, 0.25, 0.25], many=4)
    assert [n for n, _ in seen] == [1, 1, 1, 1, 4, 4]
    assert seen[5][1] == (
        "threads: 4 (256 img/s) beat 1 (128 img/s) on the first batches; "
        "set train.threads to fix it"
    )
    assert state.threads == 4 and torch.get_num_threads() == 4


def test_one_crawling_batch_with_many_threads_keeps_one_thread() -> None:
    _, state, seen = probe_with([2.0, 0.5, 0.5, 0.5, 0.25, 4.0])
    assert seen[5][1] == (
        "threads: 1 (128 img/s) kept over 2 (136 img/s) on the first batches; "
        "set train.threads to fix it"
    )
    assert state.threads == 1 and torch.get_num_threads() == 1


def test_a_near_tie_keeps_one_thread_and_says_so() -> None:
    assert choice_line({1: 100.0, 2: 105.0}, 1) == (
        "threads: 1 (100 img/s) kept over 2 (105 img/s) on the first batches; "
        "set train.threads to fix it"
    )


def test_the_probe_times_from_the_start_of_each_epoch() -> None:
    clock, state = Clock(), TrainState()
    probe = ThreadProbe(2, clock=clock)
    for s in (1.0, 0.5, 0.5):
        clock.now += s
        probe.batch_done(64, state)
    clock.now += 30.0  # validation between epochs
    probe.start()
    clock.now += 0.5
    probe.batch_done(64, state)
    assert probe.one == [128.0, 128.0, 128.0]


@pytest.mark.parametrize(
    "threads, device, distributed, many",
    [(None, "cpu", False, 2), (2, "cpu", False, 2), (None, "cuda", False, 2),
     (None, "cpu", True, 2), (None, "cpu", False, 1)],
)  # fmt: skip
def test_only_an_unset_count_on_one_cpu_process_probes(
    threads: int | None, device: str, distributed: bool, many: int
) -> None:
    torch.set_num_threads(many)
    probe = ThreadProbe.for_run(threads, torch.device(device), distributed)
    assert probe.active == (threads is None and device == "cpu" and not distributed and many > 1)


def test_a_resumed_run_keeps_the_recorded_count() -> None:
    torch.set_num_threads(2)
    probe = ThreadProbe.for_run(None, torch.device("cpu"), False)
    probe.resume(TrainState(threads=2, thread_rates={1: 50.0, 2: 90.0}))
    assert not probe.active and torch.get_num_threads() == 2
    again = ThreadProbe.for_run(None, torch.device("cpu"), False)
    again.resume(TrainState())  # stopped before the probe chose: it probes again
    assert again.active and torch.get_num_threads() == 1


def test_an_epoch_far_slower_than_the_probe_warns_once_the_probe_is_over() -> None:
    probe = ThreadProbe()
    state = TrainState(epoch=3, threads=2, thread_rates={1: 400.0, 2: 900.0})
    assert probe.slow_warning(state, 301.0) is None
    assert probe.slow_warning(state, 299.0) == (
        "epoch 3 trained at 299 img/s, under a third of the 900 img/s that 2 threads had when "
        "probed: the machine is busier than then; set train.threads=1 if other jobs share its "
        "cores"
    )
    state.threads = 1
    assert probe.slow_warning(state, 99.0) == (
        "epoch 3 trained at 99 img/s, under a third of the 400 img/s that 1 thread had when "
        "probed: other jobs share its cores now"
    )
    probe.chosen_in = 3  # the epoch the probe ran in is slowed by its own batches
    assert probe.slow_warning(state, 99.0) is None
    assert probe.slow_warning(TrainState(epoch=3), 1.0) is None  # no probe, no rate


def book(probe: ThreadProbe, state: TrainState, seconds: list[float]) -> list[Any]:
    """Batches of 64 images taking ``seconds`` each on the probe's fake clock: per batch, (thread
    count it ran with, line returned)."""
    seen = []
    for s in seconds:
        ran_with = torch.get_num_threads()
        probe.clock.now += s  # type: ignore[attr-defined]
        seen.append((ran_with, probe.batch_done(64, state)))
    return seen


def test_a_window_under_half_the_probed_rate_probes_again_and_switches() -> None:
    # the first probe keeps 2 threads at 256 img/s (one thread: 128)
    probe, state, _ = probe_with([2.0, 0.5, 0.5, 0.5, 0.25, 0.25])
    assert state.threads == 2 and not probe.active
    # a batch untimed after the choice, then 8 at 256 img/s (one 2 s window) and 4 at 128 img/s:
    # slower, half and not under it, nothing changes
    assert book(probe, state, [0.25] * 9 + [0.5] * 4) == [(2, None)] * 13
    # other jobs start: 3 batches at 64 img/s (under half of 256) end a window: probe again
    assert book(probe, state, [1.0] * 3) == [(2, None)] * 3
    assert probe.active and torch.get_num_threads() == 1
    # one untimed and three timed batches with one thread (128 img/s), then 2 threads crawl
    seen = book(probe, state, [0.5] * 4 + [4.0, 0.5])
    assert [n for n, _ in seen] == [1, 1, 1, 1, 2, 1]
    assert seen[4][1] == (
        "threads: 1 (128 img/s) beat 2 (16 img/s) when probed again (training had slowed to 64 "
        "from 256); set train.threads to fix it"
    )
    assert (state.threads, state.thread_rates) == (1, {1: 128.0, 2: 16.0})
    assert not probe.active and probe.slowed is None
    # one thread slower still is kept: fewer is not possible, and more would crawl
    assert book(probe, state, [4.0] * 6) == [(1, None)] * 6 and not probe.active


def test_a_resumed_run_watches_its_rate_against_the_checkpoint() -> None:
    torch.set_num_threads(2)
    probe = ThreadProbe(2, clock=Clock())
    state = TrainState(threads=2, thread_rates={1: 128.0, 2: 256.0})
    probe.resume(state)
    assert not probe.active and torch.get_num_threads() == 2
    # the first batch after the resume is not timed (it pays the set-up); then a slow window
    assert book(probe, state, [30.0, 1.0, 1.0]) == [(2, None)] * 3 and not probe.active
    book(probe, state, [1.0])
    assert probe.active and torch.get_num_threads() == 1
    assert probe.slow_warning(state, 10.0) is None  # a probe is running: it says what it finds


def test_an_inactive_probe_never_watches() -> None:
    probe, state = ThreadProbe(clock=Clock()), TrainState(threads=2, thread_rates={2: 900.0})
    torch.set_num_threads(2)
    assert book(probe, state, [10.0] * 10) == [(2, None)] * 10 and not probe.active


class Lines(SilentReporter):
    """Keeps the messages; sends SIGTERM after (epoch, batch) when asked."""

    def __init__(self, stop_at: tuple[int, int] | None = None) -> None:
        self.lines: list[str] = []
        self.stop_at = stop_at

    def message(self, text: str) -> None:
        self.lines.append(text)

    def batch_end(self, epoch: int, batch: int, loss: float) -> None:
        if (epoch, batch) == self.stop_at:
            os.kill(os.getpid(), signal.SIGTERM)


PROBED = [*TINY, "train.epochs=3", "train.patience=5"]  # 4 batches an epoch: the probe spans two


def test_a_probed_run_trains_what_a_one_thread_run_trains(tmp_path: Path) -> None:
    torch.set_num_threads(2)
    probed = train(build_config("quickstart", assignments=PROBED), tmp_path / "a")
    assert torch.get_num_threads() == 2  # the next run probes again
    one = train(
        build_config("quickstart", assignments=[*PROBED, "train.threads=1"]), tmp_path / "b"
    )
    assert set(probed.summary["thread_probe"]) == {"1", "2"}
    assert probed.summary["threads"] in (1, 2) and one.summary["thread_probe"] is None
    assert torch.get_num_threads() == 1  # train.threads=1 stays; a probe's choice does not
    a, b = (load_checkpoint(r.path / "checkpoints" / "last.pt") for r in (probed, one))
    assert a["train_state"]["threads"] == probed.summary["threads"]
    for key in ("torch", "torch_global"):  # the same random draws, whatever the count
        assert torch.equal(a["rng"][key], b["rng"][key])
    assert a["rng"]["order"] == b["rng"]["order"]
    for name, w in a["model"].items():  # the same batches: equal up to the kernels' rounding
        torch.testing.assert_close(w, b["model"][name], rtol=1e-4, atol=1e-5)


def test_a_resumed_run_keeps_its_choice_without_probing_again(tmp_path: Path) -> None:
    torch.set_num_threads(2)
    config = build_config("quickstart", assignments=PROBED)
    first = Lines(stop_at=(2, 3))
    with pytest.raises(Interrupted):
        train(config, tmp_path / "run", reporter=first)
    chose = [line for line in first.lines if line.startswith("threads: ")]
    state = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["train_state"]
    assert len(chose) == 1 and state["threads"] in (1, 2)
    torch.set_num_threads(2)
    again = Lines()
    result = resume(tmp_path / "run", reporter=again)
    assert not [line for line in again.lines if line.startswith("threads: ")]
    assert result.summary["threads"] == state["threads"] and torch.get_num_threads() == 2
    assert result.summary["thread_probe"] == {str(k): v for k, v in state["thread_rates"].items()}


HOG = textwrap.dedent(
    """
    import time, torch
    torch.set_num_threads(1)
    a, w = torch.rand(64, 256), torch.rand(256, 256)
    print("ready", flush=True)
    end = time.monotonic() + 300  # stops by itself should the test not
    while time.monotonic() < end:
        torch.tanh(a @ w)
    """
)


class Hogs:
    """Two single-thread torch jobs from :meth:`start` until the test ends."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[str]] = []

    def start(self) -> None:
        self.procs = [
            subprocess.Popen([sys.executable, "-c", HOG], stdout=subprocess.PIPE, text=True)
            for _ in range(2)
        ]
        for hog in self.procs:
            assert hog.stdout is not None and hog.stdout.readline().strip() == "ready"

    def stop(self) -> None:
        for hog in self.procs:
            hog.kill()
            hog.wait()


@pytest.fixture
def hogs() -> Iterator[Hogs]:
    jobs = Hogs()
    try:
        yield jobs
    finally:
        jobs.stop()


LOADED = [
    "dataset.train_size=1024",
    "dataset.valid_size=64",
    "dataset.test_size=64",
    "train.valid_samples=64",
    "eval.batch_size=64",
    "train.epochs=2",
    "train.max_minutes=null",
]


def test_beside_two_single_thread_jobs_the_default_trains_like_one_thread(
    tmp_path: Path, hogs: Hogs
) -> None:
    """The quickstart (fc, static shapes, batch 64) at a small size beside two single-thread torch
    jobs: the second epoch (after the probe) of a run without ``train.threads`` trains within 1.5x
    of one with ``train.threads=1``. Before the probe, all cores trained 4 to 70 times slower."""
    torch.set_num_threads(len(os.sched_getaffinity(0)))
    hogs.start()
    rates = {}
    for name, extra in (("default", []), ("one", ["train.threads=1"])):
        config = build_config("quickstart", assignments=[*LOADED, *extra])
        run = train(config, tmp_path / name)
        rates[name] = epoch_rate(run.path, 2)
    assert rates["default"] * 1.5 >= rates["one"], rates


class LoadAfter(Lines):
    """Starts the jobs when the first epoch ends."""

    def __init__(self, jobs: Hogs) -> None:
        super().__init__()
        self.jobs, self.epoch = jobs, 0
        self.chose_in: list[int] = []  # the epochs in which a probe chose

    def epoch_start(self, epoch: int, batches: int) -> None:
        self.epoch = epoch

    def message(self, text: str) -> None:
        super().message(text)
        if text.startswith("threads: "):
            self.chose_in.append(self.epoch)

    def epoch_end(self, record: dict[str, Any]) -> None:
        if record["epoch"] == 1:
            self.jobs.start()


def test_jobs_started_after_the_first_epoch_leave_the_run_near_the_one_thread_rate(
    tmp_path: Path, hogs: Hogs, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The issue's run: started idle, two single-thread torch jobs start after its first epoch; the
    epochs after that train within 1.5x of a run with ``train.threads=1`` beside the same jobs.
    The ratio is printed (docs/performance.md records it).

    How the run gets there depends on how this machine shares its cores. Where two threads crawl
    beside the jobs (spinning OpenMP threads descheduled: 190 to 8 images/s here), the watch sees
    a window under ``1 / DROP`` of the probed rate, probes again by epoch 3 and keeps the faster
    count; the ratio is over the epochs after that probe. Where they only lose a little (the CI
    machine once kept two threads at over a third of their rate), no probe is due and the ratio is
    over epochs 2-4. The watch itself is checked exactly on a fake clock above.

    "Started idle" is what the first probe records: all cores kept, at ``MARGIN`` times one
    thread's rate (what they must reach to be kept), whatever this machine's load is now."""
    cores = len(os.sched_getaffinity(0))
    if cores < 2:
        pytest.skip("one core: there is no thread count to switch")
    real, verdicts = thread_probe.decided, list[bool]()

    def idle_first(one: list[float], more: list[float]) -> bool | None:
        verdict = real(one, more)
        if verdict is not None and not verdicts:  # the first probe, as on an idle machine
            verdict, more[:] = True, [thread_probe.MARGIN * statistics.median(one)] * len(more)
        if verdict is not None:
            verdicts.append(verdict)
        return verdict

    monkeypatch.setattr(thread_probe, "decided", idle_first)
    torch.set_num_threads(cores)
    reporter = LoadAfter(hogs)
    epochs = [*LOADED, "dataset.train_size=512", "train.epochs=4"]
    adapted = train(build_config("quickstart", assignments=epochs), tmp_path / "adapted", reporter)
    chose = [line for line in reporter.lines if line.startswith("threads: ")]
    assert chose and "on the first batches" in chose[0], reporter.lines
    assert all("when probed again" in line for line in chose[1:]), reporter.lines
    switch = reporter.chose_in[1] if len(chose) > 1 else 1
    assert switch <= 3, reporter.lines
    one_config = build_config("quickstart", assignments=[*epochs, "train.threads=1"])
    one = train(one_config, tmp_path / "one")
    after = range(switch + 1, 5)  # the epochs after the probe again, or all with the jobs
    ratio = sum(epoch_rate(one.path, e) for e in after) / sum(
        epoch_rate(adapted.path, e) for e in after
    )
    print(
        f"\n{chose[1:] or 'no probe again'} (epoch {switch})\n"
        f"epochs {list(after)}: threads=1 / adapted = {ratio:.2f}"
    )
    assert ratio <= 1.5


def epoch_rate(run: Path, epoch: int) -> float:
    records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return float(next(r["images_per_s"] for r in records if r["epoch"] == epoch))
