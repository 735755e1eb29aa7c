"""Evaluate a trained run folder, possibly with another K, number of steps or data set (spec 8.2).

The K copies share their weights, so a model trained with K = 3 runs unchanged with K = 5; the same
holds for the number of EM steps and for any data set of the same image size. What must not change
is the network (and updater) the weights were trained for: that is refused in one line.

This is the Python API of ``grouping evaluate``; :mod:`grouping.evaluate` does the scoring.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from grouping.build import assemble, resolve
from grouping.checkpoint import load_checkpoint
from grouping.config import RunConfig, build_config
from grouping.cpu_linear import use_cpu_matmul
from grouping.device import resolve_device
from grouping.errors import RunDirError
from grouping.evaluate import Scores, score_split
from grouping.interfaces import SPLITS, SplitName
from grouping.registry import Registry
from grouping.rundir import RunDir, final_run
from grouping.train import make_generator

#: Checkpoints a run folder holds (``checkpoints/<name>.pt``).
CHECKPOINTS = ("best", "last")
#: Config sections the weights depend on: they must be the same as in training.
WEIGHT_SECTIONS = ("network", "updater")
#: Lower and upper quartile reported per step across images (Figure 6 style bands).


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out |= _flatten(value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = value
    return out


def config_changes(before: RunConfig | dict[str, Any], after: RunConfig) -> dict[str, list[Any]]:
    """Dotted keys whose value differs, as {key: [before, after]} (``None`` where absent)."""
    old = before if isinstance(before, dict) else before.model_dump(mode="json")
    a, b = _flatten(old), _flatten(after.model_dump(mode="json"))
    return {k: [a.get(k), b.get(k)] for k in sorted(a.keys() | b.keys()) if a.get(k) != b.get(k)}


def eval_config(
    run: RunDir,
    *,
    dataset: str | None = None,
    components: int | None = None,
    steps: int | None = None,
    assignments: Sequence[str] = (),
    registry: Registry | None = None,
) -> RunConfig:
    """The run's saved config with the evaluation's overrides, resolved and validated."""
    options: dict[str, Any] = {}
    if dataset is not None:
        options["dataset"] = {"name": dataset}
    if components is not None or steps is not None:
        options["model"] = {
            k: v for k, v in (("components", components), ("steps", steps)) if v is not None
        }
    config = build_config(str(run.config_path), options, list(assignments))
    return resolve(config, registry)


def _check_weights_fit(trained: dict[str, Any], config: RunConfig, path: Path) -> None:
    """Refuse an evaluation whose network or updater differs from the one the weights are for."""
    for section in WEIGHT_SECTIONS:
        before = trained.get(section, {})
        after = config.model_dump(mode="json")[section]
        if before != after:
            diff = config_changes({section: before}, config)
            diff = {k: v for k, v in diff.items() if k.startswith(f"{section}.")}
            name = f"{section}.name"
            key = name if name in diff else next(iter(diff))  # a new plugin first, else an option
            old, new = diff[key]
            raise RunDirError(
                f"{path} was trained with {key} = {old!r} but the evaluation asks for {new!r}; "
                f"the {section} must match the checkpoint (K, steps, data set and noise may change)"
            )


def evaluate(
    run_dir: Path | str,
    *,
    dataset: str | None = None,
    components: int | None = None,
    steps: int | None = None,
    assignments: Sequence[str] = (),
    split: SplitName = "test",
    checkpoint: str = "best",
    device: str | None = None,
    per_image: bool = False,
    registry: Registry | None = None,
) -> dict[str, Any]:
    """Score a run's checkpoint on a split, with the overrides given; the API of ``grouping
    evaluate``.

    Returns the scores of :meth:`grouping.evaluate.Scores.summary` (AMI and ARI at the last step and
    averaged over steps, AMI per step with its quartiles over images, the upper bound per step),
    and ``run_dir``, ``checkpoint``, ``epoch``,
    ``split``, ``changed`` (config keys that differ from training: {key: [trained, now]}) and the
    evaluation's ``config``. With ``per_image``, ``ami_per_image`` holds every image's AMI per step
    (N lists of T floats). Noise and gamma^(0) come from the seed + 1 stream, as the run's own test,
    so evaluating without overrides on the test split reproduces ``summary.json``'s test scores.
    """
    if split not in SPLITS:
        raise RunDirError(f"unknown split {split!r}; valid: {', '.join(SPLITS)}")
    if checkpoint not in CHECKPOINTS:
        raise RunDirError(f"unknown checkpoint {checkpoint!r}; valid: {', '.join(CHECKPOINTS)}")
    run = RunDir.open(final_run(Path(run_dir)))  # a stage-wise run: its last stage
    ckpt_path = run.best if checkpoint == "best" else run.last
    if not ckpt_path.is_file():
        raise RunDirError(
            f"{run.path} has no checkpoints/{ckpt_path.name}: the run has not finished an epoch, "
            "so there is nothing to evaluate"
        )
    config = eval_config(
        run,
        dataset=dataset,
        components=components,
        steps=steps,
        assignments=assignments,
        registry=registry,
    )
    if config.train.threads:
        torch.set_num_threads(config.train.threads)
    target = resolve_device(device or config.train.device)
    payload = load_checkpoint(ckpt_path, map_location=target)
    trained = payload.get("config") or run_config_dict(run)
    _check_weights_fit(trained, config, ckpt_path)

    torch.manual_seed(config.seed)
    parts = assemble(config, registry)
    model = parts.model.to(target)
    use_cpu_matmul(model, config.train.cpu_matmul, target)  # as the run's own test scoring
    try:
        model.load_state_dict(payload["model"])
    except (RuntimeError, KeyError) as exc:
        first = str(exc).strip().splitlines()
        reason = first[1].strip() if len(first) > 1 else (first[0] if first else "no weights")
        raise RunDirError(
            f"{ckpt_path} does not fit the {config.network.name!r} network built for this "
            f"evaluation ({reason[:160]}); evaluate on data of the image size it was trained on"
        ) from None
    scores: Scores = score_split(
        model,
        parts.noise,
        parts.dataset.split(split),
        samples=config.eval.samples,
        batch_size=config.eval.batch_size,
        device=target,
        generator=make_generator(target, config.seed + 1),
    )
    result: dict[str, Any] = {
        "run_dir": str(run.path),
        "checkpoint": checkpoint,
        "epoch": int(payload.get("train_state", {}).get("epoch", 0)),
        "split": split,
        **scores.summary(),
        "changed": config_changes(trained, config),
        "config": config.model_dump(mode="json"),
    }
    if per_image:
        result["ami_per_image"] = scores.ami.tolist()
    return result


def run_config_dict(run: RunDir) -> dict[str, Any]:
    """The run's saved config as plain data (for checkpoints that carry none)."""
    return build_config(str(run.config_path)).model_dump(mode="json")
