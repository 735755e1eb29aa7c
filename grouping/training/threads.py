"""The CPU thread count of a run whose ``train.threads`` is unset: measured, not guessed.

Why: torch runs a thread per core, and its OpenMP threads spin while they wait for each other. On
a busy machine other processes take those cores, a descheduled thread holds up every parallel
region, and the run crawls: the quickstart trained at 195 images/s with both cores of a 2-core
machine beside two single-thread torch jobs, at 865 with one thread, and once at 17. Which count
is faster depends on the machine, its load and the model, so a run on the CPU (not distributed:
torchrun shares the cores among its ranks) times its first batches with one thread and with all
the threads torch has at the start, and keeps the faster count for the rest of the run (training and
its test). Only the thread count changes: the batches, their order and every random draw are the
ones an unprobed run uses.

The choice and both rates go into the :class:`TrainState` (so every checkpoint has them and a
resumed run keeps the count instead of probing again) and into ``summary.json``.

The load can change after the probe: in a run started on an idle machine, two threads fell from 190
to 8 images/s when other jobs started minutes later. So the probe keeps watching: when a window of
batches (``WINDOW_S`` seconds, at least ``WINDOW`` batches) trains under ``1 / DROP`` of the rate
the chosen count had, it probes again on the next batches and says what it chose in one line (one
thread that slows is kept: more threads would crawl). A resumed run watches the same way, against
the rates in its checkpoint.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch

from grouping.training.state import TrainState

#: Untimed batches at the start: the first pays for allocations and kernel set-up.
WARMUP = 1
#: Timed batches per thread count; a count's rate is their median images/s.
TIMED = 3
#: More threads are kept only when this much faster than one: fewer threads lose little on an idle
#: machine, and much less than many when load comes later.
MARGIN = 1.1
#: A batch with more threads this many times slower than one thread's rate decides at once (a busy
#: machine: each such batch costs as much as several with one thread); an epoch this many times
#: slower than the probe measured is warned of.
SLOW = 3.0
#: A window of batches this many times slower than the probe measured for the chosen count probes
#: again. Half, not a third: on a 2-core machine two threads that kept a near tie with one lost a
#: factor of 2 to 3 when two jobs started (the CI machine), and then one thread may be faster; a
#: probe again costs a few batches, and an idle machine's windows do not halve.
DROP = 2.0
#: The window the rate is watched over after the probe: at least this many batches and seconds
#: (the first batch after a resume is not timed), so that one slow batch does not start a probe.
WINDOW = 3
WINDOW_S = 2.0


def decided(one: list[float], more: list[float]) -> bool | None:
    """The choice rule: whether more threads win (True), lose (False) or it is open yet (None),
    given ``TIMED`` batch rates (images/s) with one thread and those measured so far with more.

    More threads win when the median of ``TIMED`` batches is at least ``MARGIN`` times one thread's
    median, and that is decided as soon as a majority of them is on one side of the bar. They lose
    at once when a batch is ``SLOW`` times slower than one thread: a count that crawls on a busy
    machine costs one batch, not three."""
    if len(one) < TIMED:
        return None
    median = statistics.median(one)
    above = sum(rate >= MARGIN * median for rate in more)
    need = TIMED // 2 + 1
    if len(more) - above >= need or any(rate < median / SLOW for rate in more):
        return False
    return True if above >= need else None


def choice_line(
    rates: dict[int, float], chosen: int, slowed: tuple[float, float] | None = None
) -> str:
    """The line that says what the probe chose (``slowed``: the rate that started a probe again,
    and the one measured before), and how to fix the count."""
    other = next(n for n in rates if n != chosen)
    verb = "beat" if rates[chosen] > rates[other] else "kept over"
    when = "on the first batches"
    if slowed is not None:
        when = f"when probed again (training had slowed to {slowed[0]:,.0f} from {slowed[1]:,.0f})"
    return (
        f"threads: {chosen} ({rates[chosen]:,.0f} img/s) {verb} {other} "
        f"({rates[other]:,.0f} img/s) {when}; set train.threads to fix it"
    )


class ThreadProbe:
    """Times the first batches: ``WARMUP`` untimed and ``TIMED`` timed ones with one thread, then
    up to ``TIMED`` with ``many`` until :func:`decided` says which count to keep. One thread
    goes first so that a count that crawls on a busy machine is the one cut short. After the
    choice it watches the rate over windows of batches and probes again when one is ``DROP``
    times slower than the chosen count's probed rate. A probe without ``many`` does nothing.

    The trainer calls :meth:`start` when an epoch starts (validation between epochs is not timed)
    and :meth:`batch_done` after each trained batch; the probe may span epochs. :meth:`close` at
    the end of the run gives the process its own count back, so that the next run probes again.
    """

    def __init__(self, many: int | None = None, clock: Callable[[], float] = time.perf_counter):
        self.cores = self.many = many  # cores: all of torch's threads; many: while probing
        self.one: list[float] = []
        self.more: list[float] = []
        self.seen = 0  # batches since the probe or the watch (re)started
        self.window = [0.0, 0.0, 0]  # images, seconds and batches since the last look
        self.slowed: tuple[float, float] | None = None  # why the probe in progress started
        self.chosen_in = 0  # the epoch in which this probe last chose
        self.clock = clock
        self._last = clock()
        if self.active:
            torch.set_num_threads(1)

    @classmethod
    def for_run(cls, threads: int | None, device: torch.device, distributed: bool) -> ThreadProbe:
        """The probe of a run: all of torch's threads against one, where ``train.threads`` is unset
        and the run is on the CPU and not distributed; else one that does nothing."""
        many = torch.get_num_threads()
        if threads is not None or device.type != "cpu" or distributed or many == 1:
            return cls()
        return cls(many)

    @property
    def active(self) -> bool:
        """Whether a probe is in progress (at the start, or again after a slow window)."""
        return self.many is not None

    def resume(self, state: TrainState) -> None:
        """A run continued from a checkpoint keeps the count it chose, and watches its rate; one
        that stopped before its first probe ended probes again."""
        if self.cores is not None and state.threads:
            self.many, self.seen = None, 0
            torch.set_num_threads(state.threads)

    def close(self) -> None:
        """The run has ended: the process's own thread count again (a probing run's only)."""
        if self.cores is not None:
            torch.set_num_threads(self.cores)

    def start(self) -> None:
        """An epoch is about to gather its first batch: time from now."""
        self._last = self.clock()

    def batch_done(self, images: int, state: TrainState) -> str | None:
        """Book one batch of ``images``: a step of the probe in progress (when it ends, set the
        chosen count, record it and the rates in ``state`` and return the line that says so), or
        of the watch that starts a probe again."""
        if self.cores is None:
            return None
        now = self.clock()
        seconds, self._last = max(now - self._last, 1e-9), now
        self.seen += 1
        if self.many is not None:
            return self._probe(self.many, images / seconds, state)
        if self.seen > WARMUP:
            self._watch(images, seconds, state)
        return None

    def _probe(self, many: int, rate: float, state: TrainState) -> str | None:
        if self.seen > WARMUP:
            (self.one if len(self.one) < TIMED else self.more).append(rate)
        verdict = decided(self.one, self.more)
        if verdict is None:
            if len(self.one) == TIMED and not self.more:  # one thread is timed: now all
                torch.set_num_threads(many)
            return None
        rates = {1: statistics.median(self.one), many: statistics.median(self.more)}
        chosen = many if verdict else 1
        self.many, self.chosen_in, self.seen = None, state.epoch + 1, 0
        self.window = [0.0, 0.0, 0]  # the watch starts after the first batch with the choice
        torch.set_num_threads(chosen)
        state.threads, state.thread_rates = chosen, rates
        line, self.slowed = choice_line(rates, chosen, self.slowed), None
        return line

    def _watch(self, images: int, seconds: float, state: TrainState) -> None:
        """Add a batch to the window; when it is full, probe again if it trained under ``1 / DROP``
        of the rate the chosen count (more than one thread) had when probed."""
        w = self.window
        w[0], w[1], w[2] = w[0] + images, w[1] + seconds, w[2] + 1
        if w[2] < WINDOW or w[1] < WINDOW_S:
            return
        rate, self.window = w[0] / w[1], [0.0, 0.0, 0]
        probed = state.thread_rates.get(state.threads) if state.threads else None
        if probed is None or rate >= probed / DROP or state.threads == 1:
            return  # one thread that slows has no fewer to go to; more would crawl
        self.slowed, self.many, self.seen = (rate, probed), self.cores, 0
        self.one, self.more = [], []
        torch.set_num_threads(1)

    def slow_warning(self, state: TrainState, rate: float) -> str | None:
        """A line when the epoch that just ended (``state.epoch``) trained at under ``1 / SLOW`` of
        the rate the probe measured and no probe ran in it (one ran if the watch saw the slowdown;
        its own batches slow the epoch it runs in)."""
        probed = state.thread_rates.get(state.threads) if state.threads else None
        if probed is None or rate >= probed / SLOW or state.epoch == self.chosen_in or self.active:
            return None
        n = state.threads
        why = (
            f"{n} threads had when probed: the machine is busier than then; "
            "set train.threads=1 if other jobs share its cores"
            if n > 1
            else "1 thread had when probed: other jobs share its cores now"
        )
        return (
            f"epoch {state.epoch} trained at {rate:,.0f} img/s, under a third of the "
            f"{probed:,.0f} img/s that {why}"
        )


def threads_for_run(
    threads: int | None, shared: int, device: torch.device, distributed: bool
) -> ThreadProbe:
    """Set ``train.threads`` (or ``shared``, the cores of one rank under torchrun) and return the
    probe that, with neither, picks the faster of one thread and all cores on the first batches."""
    if threads or shared:
        torch.set_num_threads(threads or shared)
    return ThreadProbe.for_run(threads, device, distributed)
