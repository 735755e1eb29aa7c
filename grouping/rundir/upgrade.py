"""Checkpoints of earlier layouts, read as today's: old runs and shipped models keep loading.

Format 2 (before the engine kept the recurrence in the updater) stored RNN-EM's recurrent layer
inside the network: ``updater.network.rnn`` / ``rnn_norm`` (conv), ``updater.network.cell`` /
``norm`` (fc, and the LSTM example's ``lstm-fc``). Format 3 keeps it in the updater as
``updater.cell`` and ``updater.norm``. The tensors are the same; only their names and, in the
optimizer state, their positions change: the updater registers its network first and its own
layers after it, so the moved tensors go to the end, in their old order.
"""

from __future__ import annotations

from typing import Any

#: (old prefix, new prefix) of the tensors format 3 moved, most specific first.
MOVES_2_TO_3 = (
    ("updater.network.rnn_norm.", "updater.norm."),
    ("updater.network.rnn.", "updater.cell."),
    ("updater.network.cell.", "updater.cell."),
    ("updater.network.norm.", "updater.norm."),
)


def renamed(key: str) -> str:
    """A format-2 state-dict key under its format-3 name."""
    for old, new in MOVES_2_TO_3:
        if key.startswith(old):
            return new + key[len(old) :]
    return key


def upgrade_2_to_3(payload: dict[str, Any]) -> dict[str, Any]:
    """The same checkpoint in format 3: model keys renamed, optimizer state re-indexed.

    The old state dict's keys are its parameters in registration order (the built-in networks
    hold no persistent buffers), which is also the optimizer's index order.
    """
    weights = payload.get("model")
    if not isinstance(weights, dict):
        return {**payload, "format_version": 3}
    old_order = list(weights)
    new_weights = {renamed(k): v for k, v in weights.items()}
    stays = [k for k in old_order if renamed(k) == k]
    moved = [k for k in old_order if renamed(k) != k]
    position = {k: i for i, k in enumerate(stays + moved)}
    out = {**payload, "model": new_weights, "format_version": 3}
    optimizer = payload.get("optimizer")
    if moved and isinstance(optimizer, dict) and isinstance(optimizer.get("state"), dict):
        state = {
            position[old_order[i]] if isinstance(i, int) and i < len(old_order) else i: v
            for i, v in optimizer["state"].items()
        }
        out["optimizer"] = {**optimizer, "state": state}
    return out
