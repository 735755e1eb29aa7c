"""Data-parallel training over processes: ``torchrun --nproc-per-node N -m grouping run ...``.

torchrun starts N processes and sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; :func:`setup` then
joins the process group (NCCL on CUDA, gloo on the CPU) and the trainer wraps its model in
``DistributedDataParallel``. Every rank builds the same model from the same seed (DDP also
broadcasts rank 0's weights), and

* the trainer's fixed blocks of ``train.batch_size`` consecutive samples are the global batches: all
  ranks shuffle the blocks identically and rank r takes the r-th slice of each block
  (:meth:`Dist.shard_order`), so one step on N ranks is one step on the combined batch;
* each rank draws its own noise and gamma^(0) (rank 0 keeps the run's seed);
* training loss and image counts are reduced as sums and counts; validation and test split their
  samples across ranks and gather the per-image scores (:meth:`Dist.gather_scores`);
* only rank 0 writes the run folder, checkpoints, logs and the progress bar;
* each worker ends with the torchrun that started it, and that torchrun with the ``grouping run
  --nproc`` launcher, however they end (:mod:`grouping.training.orphans`).

A single process (no ``WORLD_SIZE``, or 1) takes none of these paths.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn

from grouping.accel.device import resolve_device
from grouping.config.loading import read_toml
from grouping.errors import ConfigError
from grouping.evaluation.scoring import Scores
from grouping.plugin_api.interfaces import Split
from grouping.training import orphans


def env_rank() -> int:
    """This process's global rank as torchrun set it (0 outside torchrun)."""
    return int(os.environ.get("RANK", "0"))


def env_world() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    """Rank 0, or a plain single process: the one that prints and writes."""
    return env_rank() == 0


@dataclass(frozen=True)
class Dist:
    """Where this process stands in the group."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    local_world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1

    def check_batch(self, batch_size: int) -> None:
        if batch_size % self.world:
            raise ConfigError(
                f"train.batch_size ({batch_size}) must be divisible by the number of processes "
                f"({self.world}): it is the global batch, split evenly across them"
            )

    def shard_order(self, order: np.ndarray, batch_size: int) -> np.ndarray:
        """This rank's part of a sample order made of blocks of ``batch_size``: slice r of each."""
        if not self.active:
            return order
        share = batch_size // self.world
        blocks = order.reshape(-1, batch_size)  # (blocks, batch)
        return blocks[:, self.rank * share : (self.rank + 1) * share].ravel()

    def shard_split(self, split: Split, samples: int | None) -> Split:
        """Samples rank, rank + N, ... of the first ``samples`` of ``split``."""
        n = len(split) if samples is None else min(samples, len(split))
        if not self.active:
            return split if n == len(split) else _Strided(split, 0, 1, n)
        return _Strided(split, self.rank, self.world, n)

    def seed_for(self, seed: int) -> int:
        """The seed of this rank's noise and gamma^(0) generator; rank 0 keeps the run's seed."""
        if self.rank == 0:
            return seed
        return int(np.random.SeedSequence([seed, self.rank]).generate_state(1, np.uint64)[0] >> 1)

    def sum(self, values: list[float], device: torch.device) -> list[float]:
        """Element-wise sum of ``values`` over ranks (float64)."""
        if not self.active:
            return values
        t = torch.tensor(values, dtype=torch.float64, device=device)
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return [float(v) for v in t.cpu()]

    def any(self, flag: bool, device: torch.device) -> bool:
        """True on every rank when any rank says True (so all ranks leave a loop together)."""
        if not self.active:
            return flag
        return self.sum([1.0 if flag else 0.0], device)[0] > 0

    def any_of(self, flags: list[bool], device: torch.device) -> list[bool]:
        """Each flag True on every rank when any rank says True: one all-reduce for all of them."""
        if not self.active:
            return flags
        return [v > 0 for v in self.sum([1.0 if f else 0.0 for f in flags], device)]

    def broadcast_weights(self, model: nn.Module) -> None:
        """Copy rank 0's parameters and buffers to every rank."""
        if not self.active:
            return
        for tensor in model.state_dict().values():
            dist.broadcast(tensor, src=0)

    def gather_objects(self, obj: object) -> list[object]:
        """Every rank's ``obj`` (picklable), in rank order, on every rank."""
        if not self.active:
            return [obj]
        out: list[object] = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def gather_scores(self, scores: Scores) -> Scores:
        """Every rank's per-image scores, concatenated in rank order, on every rank."""
        if not self.active:
            return scores
        parts: list[Scores | None] = [None] * self.world
        dist.all_gather_object(parts, scores)
        out = [p for p in parts if p is not None]
        return Scores(
            ami=np.concatenate([p.ami for p in out]),
            ari=np.concatenate([p.ari for p in out]),
            losses=[v for p in out for v in p.losses],
            upper_bounds=[v for p in out for v in p.upper_bounds],
            batch_sizes=[v for p in out for v in p.batch_sizes],
            shares=np.concatenate([p.shares for p in out]),
            separation=np.concatenate([p.separation for p in out]),
        )


class _Strided(Split):
    """Samples start, start + step, ... below ``stop`` of another split, as a split."""

    def __init__(self, base: Split, start: int, step: int, stop: int) -> None:
        self.base, self.start, self.step = base, start, step
        self.count = len(range(start, stop, step))

    def __len__(self) -> int:
        return self.count

    @property
    def frames(self) -> int:
        return self.base.frames

    def get(self, index: np.ndarray) -> tuple[Tensor, Tensor]:
        return self.base.get(self.start + self.step * np.asarray(index))


def setup(device: torch.device) -> tuple[Dist, torch.device]:
    """Join the process group torchrun describes (if any) and pick this rank's device.

    On CUDA each process takes the GPU of its local rank; the backend is NCCL there and gloo on the CPU.
    """
    world = env_world()
    if world <= 1:
        return Dist(), device
    orphans.worker_ends_with_torchrun()  # a worker never outlives its launcher (orphans.py)
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        restart = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))
        if restart:  # keys of the attempt before (dead ranks' addresses) must not be read again
            dist.init_process_group(backend, store=_attempt_store(restart), rank=env_rank(),
                                    world_size=world)  # fmt: skip
        else:
            dist.init_process_group(backend)
    return Dist(dist.get_rank(), dist.get_world_size(), local_rank, local_world), device


def _attempt_store(restart: int) -> dist.Store:
    """torchrun's store, under a prefix of this restart: after a rank died and torchrun restarted
    the group, the new ranks rendezvous on fresh keys (gloo was seen to hang on the old ones)."""
    store = dist.TCPStore(
        os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), env_world(), is_master=False
    )
    return dist.PrefixStore(f"grouping-attempt-{restart}", store)


def wrap(model: nn.Module, ctx: Dist, device: torch.device) -> nn.Module:
    """The module the training forward calls: DDP around ``model`` when there are several ranks."""
    if not ctx.active:
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index] if device.type == "cuda" else None
    # buffers outside the state dict (the up-convs' constant sums) are derived, the same on every
    # rank: broadcasting them before every forward would only cost a collective
    state = set(model.state_dict())
    buffers = any(name in state for name, _ in model.named_buffers())
    newer = "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters
    sync: dict[str, Any] = {"forward_sync_buffers" if newer else "broadcast_buffers": buffers}
    return DistributedDataParallel(model, device_ids=ids, **sync)


def default_threads(ctx: Dist) -> int:
    """CPU threads per process: this process's cores shared among the local ranks (at least 1), so
    N processes on one machine do not each spin up a thread per core."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    return max(1, cores // max(1, ctx.local_world))


def cleanup() -> None:
    """Leave the process group (the end of a torchrun'd run), all ranks together.

    Rank 0 still writes the summary and draws the figure after the last collective; a rank that
    tore down its gloo connections meanwhile was seen to abort ("terminate called without an active
    exception"), so every rank waits at a barrier first.
    """
    if dist.is_available() and dist.is_initialized():
        with contextlib.suppress(RuntimeError):  # a peer is gone: nothing left to wait for
            dist.barrier()
        dist.destroy_process_group()


def launch(nproc: int, args: list[str], max_restarts: int = 0) -> int:
    """Run ``grouping ARGS`` under torchrun on ``nproc`` local processes: the one launcher of
    ``grouping run --nproc N``, its ``--resume`` and the stage-wise runs. With ``max_restarts``
    torchrun restarts the whole group when a rank dies; the run then resumes from ``last.pt``
    by itself (``train.resume = "auto"``)."""
    check_gpus(nproc, _device_of(args))
    torchrun = ["--standalone", f"--nproc-per-node={nproc}", f"--max-restarts={max_restarts}"]
    # torchrun and its workers end when this process ends, a SIGKILL included (orphans.py)
    command = orphans.torchrun_command([*torchrun, "-m", "grouping", *args])
    return subprocess.call(command)


def launch_config(
    config_toml: str, nproc: int, out: Path, extra: list[str], max_restarts: int = 0
) -> int:
    """``grouping run --nproc N``: the parent has resolved the config; the children replay it
    from a TOML file, so they train exactly what the parent was asked for, into ``out``."""
    with tempfile.TemporaryDirectory(prefix="grouping-launch-") as tmp:
        preset = Path(tmp) / "launch.toml"
        preset.write_text(config_toml, encoding="utf-8")
        args = ["run", "--preset", str(preset), "--out", str(out), *extra]
        return launch(nproc, args, max_restarts)


def check_gpus(nproc: int, device: str) -> None:
    """Refuse in one line, before torchrun starts anything, more local processes than GPUs for a
    CUDA run (``train.device`` auto on a GPU machine, cuda, cuda:N): each process takes one."""
    if device != "auto" and not device.startswith("cuda"):
        return
    if resolve_device(device).type != "cuda":  # auto without a GPU: the processes share the CPU
        return
    count = torch.cuda.device_count()
    if nproc > count:
        raise ConfigError(
            f"--nproc {nproc} asks for more processes than the {count} GPU(s) here (one each): "
            f"use --nproc {count}, several seeds per GPU (docs/gpu.md), or --device cpu"
        )


def _device_of(args: list[str]) -> str:
    """``train.device`` of the run ``grouping ARGS`` starts: from its preset file or the config of
    the folder it resumes ("auto" where neither says)."""
    for flag in ("--preset", "--resume"):
        if flag in args[:-1]:
            path = Path(args[args.index(flag) + 1])
            try:
                data = read_toml(path / "config.toml" if flag == "--resume" else path)
            except ConfigError:
                return "auto"
            return str(data.get("train", {}).get("device", "auto"))
    return "auto"
