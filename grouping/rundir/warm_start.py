"""Start a run from another run's checkpoint (``grouping run --init-from RUN_DIR``): the one it
tested, best by default.

Stage-wise training (spec 7) starts each stage from the previous stage's weights and, as the
original TF saver restored every variable, its Adam moment estimates too. The learning rate and the
other optimizer settings stay those of the new run's config.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from grouping.config.loading import read_toml
from grouping.errors import RunDirError
from grouping.rundir.checkpoint import load_checkpoint, not_a_file
from grouping.rundir.folder import RunDir, final_run


def checkpoint_of(source: Path) -> Path:
    """The checkpoint a run folder tested (of its last stage for a stage-wise run): its best, or
    its last with ``train.test_checkpoint = "last"``; or the checkpoint file itself."""
    if source.is_file():
        return source
    run = RunDir.open(final_run(source))
    tested = read_toml(run.config_path).get("train", {}).get("test_checkpoint", "best")
    path = run.tested(tested)
    if (path.exists() or path.is_symlink()) and not path.is_file():
        raise RunDirError(f"--init-from: {not_a_file(path)}")
    if not path.is_file():
        raise RunDirError(f"--init-from {source} has no {path.stem} checkpoint yet ({path})")
    return path


def _shape(t: Tensor) -> str:
    return "x".join(map(str, t.shape)) or "scalar"


def check_compatible(here: dict[str, Tensor], there: dict[str, Tensor], path: Path) -> None:
    """One line naming the first tensor that is missing or differs in shape, if any."""
    missing = [k for k in here if k not in there]
    extra = [k for k in there if k not in here]
    wrong = [k for k in here if k in there and here[k].shape != there[k].shape]
    if not (missing or extra or wrong):
        return
    if wrong:
        k = wrong[0]
        what = f"{len(wrong)} tensor(s) differ in shape, e.g. {k} is {_shape(there[k])} there "
        what += f"and {_shape(here[k])} here"
    elif missing:
        what = f"it lacks {len(missing)} tensor(s) this model has, e.g. {missing[0]}"
    else:
        what = f"it has {len(extra)} tensor(s) this model lacks, e.g. {extra[0]}"
    raise RunDirError(
        f"cannot initialise from {path}: {what}; the network, its options and the image size "
        "must match the source run"
    )


def restore_optimizer(optimizer: torch.optim.Optimizer, saved: Any) -> int:
    """Copy the saved per-parameter state (Adam moments, step) where its tensors have the shape of
    the parameter; keep this optimizer's hyper-parameters. Returns how many parameters got state."""
    if not isinstance(saved, dict) or not isinstance(saved.get("state"), dict):
        return 0
    params = [p for group in optimizer.param_groups for p in group["params"]]
    current = optimizer.state_dict()
    state: dict[int, Any] = {}
    for index, param in enumerate(params):
        entry = saved["state"].get(index)
        if not isinstance(entry, dict):
            continue
        tensors = [v for v in entry.values() if isinstance(v, Tensor) and v.ndim > 0]
        if tensors and all(v.shape == param.shape for v in tensors):
            state[index] = entry
    optimizer.load_state_dict({"state": state, "param_groups": current["param_groups"]})
    return len(state)


def init_from(
    model: nn.Module, optimizer: torch.optim.Optimizer, source: Path, device: torch.device
) -> str:
    """Load the source run's best weights into ``model`` and its optimizer state where it fits.

    A model whose tensors differ from the checkpoint's is a one-line ``RunDirError``. Returns one
    line saying what was loaded.
    """
    path = checkpoint_of(source)
    payload = load_checkpoint(path, map_location=device)
    weights = payload.get("model")
    if not isinstance(weights, dict):
        raise RunDirError(f"cannot initialise from {path}: it holds no model weights")
    check_compatible(model.state_dict(), weights, path)
    model.load_state_dict(weights)
    restored = restore_optimizer(optimizer, payload.get("optimizer"))
    total = sum(1 for group in optimizer.param_groups for _ in group["params"])
    epoch = payload.get("train_state", {}).get("epoch", "?")
    return (
        f"initialised from {path} (epoch {epoch}): weights, and optimizer state for "
        f"{restored} of {total} parameter tensors"
    )
