"""What a checkpoint holds of a run in training, and how a run continues from it.

Everything that decides the numbers: weights, Adam's state, the :class:`TrainState` (with the
position inside an epoch and, per rank, the partial sums of the epoch in progress), and every
random state: the run's torch generator (noise and gamma^(0)) and the global torch RNG of every
rank, and the batch-order generator. Under DDP each rank draws
its own noise, so all ranks' states are gathered (a collective: every rank builds the snapshot)
and a run resumes only with the number of processes that wrote it; anything else would continue
with other noise streams, so it is refused in one line.
"""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from grouping.config.schema import RunConfig
from grouping.errors import RunDirError
from grouping.training.distributed import Dist
from grouping.training.state import TrainState


def snapshot(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    state: TrainState,
    generator: torch.Generator,
    order_rng: np.random.Generator,
    config: RunConfig,
    dist: Dist,
) -> dict[str, Any]:
    """The checkpoint payload, on every rank (only rank 0 writes it)."""
    mine = [generator.get_state(), torch.get_rng_state(), own_partials(state)]
    rng: dict[str, Any] = {
        "torch": mine[0],
        "torch_global": mine[1],
        "order": json.dumps(order_rng.bit_generator.state),
    }
    if dist.active:
        rng["ranks"] = dist.gather_objects(mine)  # [[generator, global, partials], ...]
    return {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "train_state": asdict(state),
        "rng": rng,
        "world": dist.world,
        "config": config.model_dump(mode="json"),
        "config_hash": config.digest(),
    }


#: What each rank sums over its own share of the epoch in progress (the rest of the state is global).
PARTIALS = ("epoch_losses", "epoch_images", "epoch_skipped")


def own_partials(state: TrainState) -> dict[str, Any]:
    return {key: getattr(state, key) for key in PARTIALS}


def check_world(payload: dict[str, Any], world: int, where: Path | str) -> None:
    """Refuse to continue a checkpoint with another number of processes than wrote it."""
    saved = int(payload.get("world", 1))
    if saved != world:
        raise RunDirError(
            f"{where} was written by {saved} process(es) and this run has {world}: each process "
            "draws its own noise and gamma^(0), so the run would not continue as it started; "
            f"resume with --nproc {saved}" + (" (or without --nproc)" if saved == 1 else "")
        )


def restore(
    payload: dict[str, Any],
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
    order_rng: np.random.Generator,
    dist: Dist,
) -> TrainState:
    """Load a snapshot (read on the CPU) into this rank's parts; returns the training state."""
    check_world(payload, dist.world, "the checkpoint")
    try:
        model.load_state_dict(payload["model"])
        optimizer.load_state_dict(payload["optimizer"])
        state = TrainState(**payload["train_state"])
        rng = payload["rng"]
        if dist.active:  # this rank's own streams and its share of the epoch's partial sums
            own, glob, partials = rng["ranks"][dist.rank]
            state = replace(state, **partials)
        else:
            own, glob = rng["torch"], rng["torch_global"]
        generator.set_state(own)
        torch.set_rng_state(glob)
        order_rng.bit_generator.state = json.loads(rng["order"])
    except (KeyError, TypeError, ValueError, RuntimeError, IndexError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise RunDirError(
            f"the checkpoint does not fit this run ({type(exc).__name__}: {first})"
        ) from None
    return state
