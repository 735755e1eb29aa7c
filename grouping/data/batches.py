"""Batches on their way from a data set's split to the EM loop: indexing, frames, device, prefetch.

:func:`iterate_batches` yields (features, groups) in a given sample order, with a static sample's one
frame repeated to T + 1 frames (:func:`frames_for`, spec 4.3); :class:`Prefetcher` gathers the next
batches on a background thread while the current one trains. Batch assembly (indexing the in-memory
split, widening the labels, pinning and the host-to-device copy on CUDA) runs in torch ops that
release the GIL, so a thread overlaps it with the training step; order and content are exactly those
of the wrapped iterator.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import Generic, TypeVar

import numpy as np
import torch
from torch import Tensor

from grouping.plugin_api.interfaces import Split

T = TypeVar("T")

_DONE = object()


class Prefetcher(Generic[T]):
    """Iterate ``source`` with up to ``depth`` items made ahead on a daemon thread (0: inline).

    An exception raised by ``source`` is re-raised in the consumer at the point it occurred.
    Leaving the loop early (``break``) stops the thread after at most ``depth`` more items.
    """

    def __init__(self, source: Iterable[T], depth: int = 2) -> None:
        self.source = source
        self.depth = depth

    def __iter__(self) -> Iterator[T]:
        if self.depth <= 0:
            yield from self.source
            return
        items: queue.Queue[object] = queue.Queue(maxsize=self.depth)
        stop = threading.Event()

        def work() -> None:
            try:
                for item in self.source:
                    while not stop.is_set():
                        try:
                            items.put(item, timeout=0.1)
                            break
                        except queue.Full:
                            continue
                    if stop.is_set():
                        return
                items.put(_DONE)
            except BaseException as exc:  # handed to the consumer
                items.put(exc)

        thread = threading.Thread(target=work, name="grouping-prefetch", daemon=True)
        thread.start()
        try:
            while True:
                item = items.get()
                if item is _DONE:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item  # type: ignore[misc]
        finally:
            stop.set()
            while thread.is_alive():  # unblock a producer waiting on a full queue
                try:
                    items.get_nowait()
                except queue.Empty:
                    thread.join(timeout=0.05)


def frames_for(features: Tensor, groups: Tensor, frames: int) -> tuple[Tensor, Tensor]:
    """The first ``frames`` frames; a static sample (1 frame) is repeated (spec 4.3)."""
    stored = features.shape[1]
    if stored == 1:
        shape = (features.shape[0], frames, *features.shape[2:])
        return features.expand(shape), groups.expand(shape[:4])
    if stored < frames:
        raise ValueError(f"the data has {stored} frames per sample but the run needs {frames}")
    return features[:, :frames], groups[:, :frames]


def iterate_batches(
    split: Split, order: np.ndarray, batch_size: int, frames: int, device: torch.device
) -> Iterator[tuple[Tensor, Tensor]]:
    """Batches of (features, groups) in the given sample order, on ``device``."""
    for start in range(0, len(order), batch_size):
        features, groups = split.get(order[start : start + batch_size])
        yield frames_for(to_device(features, device), to_device(groups, device), frames)


def to_device(tensor: Tensor, device: torch.device) -> Tensor:
    """``tensor`` on ``device``: as it is where it is there already (a resident split's batch, a
    training batch's absent groups); to a GPU through pinned memory, without waiting for it."""
    if tensor.device == device or (device.index is None and tensor.device.type == device.type):
        return tensor
    pin = device.type == "cuda" and tensor.device.type == "cpu"
    return (tensor.pin_memory() if pin else tensor).to(device, non_blocking=pin)


def prefetch_depth(setting: int | None, device: torch.device) -> int:
    """Batches gathered ahead: ``train.prefetch``, or 2 on CUDA and 0 on the CPU, where the thread
    competes with the compute threads (it halved the quickstart's images/s)."""
    if setting is None:
        return 2 if device.type == "cuda" else 0
    return setting
