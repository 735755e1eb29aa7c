"""Load a trained model from its run folder, or say in one line why not.

One path for training's test, ``grouping evaluate`` and the figures: the run's saved config plus
the caller's overrides is resolved once, the checkpoint is read and verified, the parts are built
through the registry and the weights loaded. The K copies share their weights, so K, the number of
EM steps, the noise and the data set may change; the network and updater the weights were trained
for may not, and asking for another is refused in one line.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from grouping.accel.cpu_linear import use_cpu_matmul
from grouping.accel.device import resolve_device
from grouping.accel.precision import Precision, install_fp32_outputs, resolve_precision
from grouping.config.loading import build_config
from grouping.config.schema import RunConfig
from grouping.engine.assembly import build_dataset, build_model, build_noise, resolve
from grouping.engine.contracts import check_model
from grouping.engine.em import NeuralEM
from grouping.errors import RunDirError
from grouping.plugin_api.interfaces import Dataset, Noise
from grouping.plugin_api.registry import Registry
from grouping.rundir.checkpoint import load_checkpoint, not_a_file
from grouping.rundir.folder import RunDir, final_run
from grouping.rundir.pretrained import resolve_run

#: Checkpoints a run folder holds (``checkpoints/<name>.pt``); ``auto`` is the one the run tested.
CHECKPOINTS = ("best", "last")
Checkpoint = Literal["best", "last", "auto"]
#: Config sections the weights depend on: they must be the same as in training.
WEIGHT_SECTIONS = ("network", "updater")


@dataclass
class LoadedRun:
    """A trained run rebuilt from its folder: the resolved config (with the overrides), data set,
    model with the checkpoint's weights (in eval mode), noise, and what the checkpoint said."""

    path: Path
    config: RunConfig
    dataset: Dataset
    model: NeuralEM
    noise: Noise
    checkpoint: Path
    epoch: int
    trained_config: dict[str, Any]
    #: the matmul precision the run trained in on this device: scores and figures use it too
    precision: Precision = "fp32"


def load_trained(
    run_dir: Path | str,
    checkpoint: Checkpoint = "auto",
    device: str | torch.device | None = "cpu",
    overrides: dict[str, Any] | None = None,
    assignments: Sequence[str] = (),
    *,
    frames: int | None = None,
    registry: Registry | None = None,
) -> LoadedRun:
    """The model of a run folder (a stage-wise run's last stage, or ``pretrained:NAME``, a model
    shipped in the package), ready to score or draw.

    ``overrides`` are config sections as in a preset ({"model": {"components": 5}}) and
    ``assignments`` ``--set`` items; ``frames`` asks the data set for that many frames per sample.
    ``device`` None means the run's own ``train.device``.
    """
    run = RunDir.open(final_run(resolve_run(run_dir)))
    config = resolve(
        build_config(str(run.config_path), overrides or {}, list(assignments)), registry
    )
    path = checkpoint_path(run, checkpoint, config.train.test_checkpoint)
    if config.train.threads:
        torch.set_num_threads(config.train.threads)
    if device is None or isinstance(device, str):
        target = resolve_device(device or config.train.device)
    else:
        target = device
    payload = load_checkpoint(path, map_location=target)
    trained = payload.get("config") or build_config(str(run.config_path)).model_dump(mode="json")
    check_weights_fit(trained, config, path)
    torch.manual_seed(config.seed)
    dataset = build_dataset(config, registry, frames=frames)
    model = build_model(config, dataset.image_shape, registry)
    noise = build_noise(config, registry)
    check_model(model, noise, dataset.image_shape)  # the contracts, once, with this K
    model = model.to(target)
    use_cpu_matmul(model, config.train.cpu_matmul, target)  # the kernel the run trained with
    precision = resolve_precision(config.train.precision, target)
    if precision == "bf16":
        install_fp32_outputs(model)  # as training prepared it (grouping.training.setup)
    load_weights(model, payload, path, config.network.name)
    model.eval()
    epoch = int(payload.get("train_state", {}).get("epoch", 0))
    return LoadedRun(run.path, config, dataset, model, noise, path, epoch, trained, precision)


def checkpoint_path(run: RunDir, checkpoint: Checkpoint, tested: str = "best") -> Path:
    """The checkpoint file asked for, or one line saying why there is none. ``auto`` is the one
    the run tested (``tested``, its ``train.test_checkpoint``): best, or last where the run tests
    its last model or has no best yet, so that scores and figures show the model of its summary."""
    if checkpoint not in (*CHECKPOINTS, "auto"):
        raise RunDirError(f"unknown checkpoint {checkpoint!r}; valid: {', '.join(CHECKPOINTS)}")
    path = run.tested(tested if checkpoint == "auto" else checkpoint)
    if checkpoint == "auto" and not _present(path):
        path = run.last  # a run that has not yet written a best checkpoint
    if _present(path) and not path.is_file():  # a folder, a link to a device: say so
        raise RunDirError(not_a_file(path))
    if not path.is_file():
        raise RunDirError(
            f"checkpoint not found: {run.path} has no checkpoints/{path.name}; the run has not "
            "finished an epoch, so there is no trained model to load"
        )
    return path


def _present(path: Path) -> bool:
    """Something (a file, a folder, a link even to nothing) is at ``path``."""
    return path.exists() or path.is_symlink()


def load_weights(model: nn.Module, payload: dict[str, Any], path: Path, network: str) -> None:
    """The checkpoint's weights into ``model``, or one line naming the first tensor that differs."""
    try:
        model.load_state_dict(payload["model"])
    except (RuntimeError, KeyError) as exc:
        lines = str(exc).strip().splitlines()
        reason = lines[1].strip() if len(lines) > 1 else (lines[0] if lines else "no weights")
        raise RunDirError(
            f"{path} does not fit the {network!r} network built for it ({reason[:160]}); "
            "use data of the image size it was trained on"
        ) from None


def check_weights_fit(trained: dict[str, Any], config: RunConfig, path: Path) -> None:
    """Refuse a config whose network or updater differs from the one the weights are for."""
    for section in WEIGHT_SECTIONS:
        before = trained.get(section, {})
        if before == config.model_dump(mode="json")[section]:
            continue
        saved = _flatten({section: before})  # options added since the run was saved keep defaults
        diff = config_changes({section: before}, config)
        diff = {k: v for k, v in diff.items() if k in saved}
        if not diff:
            continue
        name = f"{section}.name"
        key = name if name in diff else next(iter(diff))  # a new plugin first, else an option
        old, new = diff[key]
        raise RunDirError(
            f"{path} was trained with {key} = {old!r} but {new!r} is asked for; the {section} "
            "must match the checkpoint (K, steps, data set and noise may change)"
        )


def config_changes(before: RunConfig | dict[str, Any], after: RunConfig) -> dict[str, list[Any]]:
    """Dotted keys whose value differs, as {key: [before, after]} (``None`` where absent)."""
    old = before if isinstance(before, dict) else before.model_dump(mode="json")
    a, b = _flatten(old), _flatten(after.model_dump(mode="json"))
    return {k: [a.get(k), b.get(k)] for k in sorted(a.keys() | b.keys()) if a.get(k) != b.get(k)}


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out |= _flatten(value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = value
    return out


def load_run(
    run_dir: Path | str, frames: int | None = None, registry: Registry | None = None
) -> LoadedRun:
    """A run's model from its best checkpoint (else its last) on the CPU; ``frames`` asks the data
    set for that many frames per sample (default: the run's steps + 1)."""
    return load_trained(run_dir, "auto", "cpu", frames=frames, registry=registry)
