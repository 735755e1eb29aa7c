"""The models shipped in the package: ``pretrained:NAME`` wherever a run folder is taken.

Each is a run folder under ``grouping/pretrained/`` holding config.toml, summary.json, the tested
checkpoint with the weights only, in half precision (:func:`strip_checkpoint`; loading casts them
back to float32), and ``shipped.json`` (:data:`SHIPPED`): the paper's experiment it stands for,
the command that trained it, its budget and how much the stored precision moved its test AMI.
:func:`resolve_run` turns ``pretrained:NAME`` into that folder (and leaves any other path as it
is); :func:`grouping.rundir.loading.load_trained` calls it, so ``grouping evaluate``,
``visualize`` and ``segment`` all take the name. A folder shipped before (fp32 weights, no
``shipped.json``) still loads and lists.

A finished run is shipped, after a check that the stored precision changes its test AMI by less
than 0.002, with ``python benchmarks/results.py --ship RUN NAME --command "..."``
(:func:`grouping.evaluation.stored.ship_checked`). ``static-shapes``, the quickstart model, was
trained with ``grouping run --out /work/runs/pretrained-static-shapes --set train.threads=1``
(234 s on one thread of a shared 2-core CPU: 6 epochs, test AMI 0.859 on 2,000 test images).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch

from grouping.config.loading import read_toml
from grouping.config.schema import ModelConfig
from grouping.errors import RunDirError
from grouping.rundir.checkpoint import (
    HALF_DTYPES,
    STORED_DTYPE_KEY,
    load_checkpoint,
    save_checkpoint,
)
from grouping.rundir.folder import final_run

#: How a run folder argument names a model shipped in the package.
PRETRAINED_PREFIX = "pretrained:"
#: Where those models live: one run folder each (config.toml, checkpoints/, summary.json).
PRETRAINED_ROOT = Path(__file__).resolve().parents[1] / "pretrained"
#: A shipped model's own record: experiment, command, budget, stored precision and its check.
SHIPPED = "shipped.json"

#: The paper's experiments a shipped model can stand for: (title, the paper's test AMI). The
#: paper's figures are means over 5 runs trained to early stopping.
EXPERIMENTS: dict[str, tuple[str, float]] = {
    "static-shapes": ("static shapes, RNN-EM, K = 3 (section 4.1)", 0.826),
    "flying-shapes-3": ("flying shapes, 3 shapes, K = 3 (Table 1)", 0.970),
    "flying-shapes-5": ("flying shapes, 5 shapes, K = 5 (Table 1)", 0.878),
    "flying-mnist": ("flying MNIST, 2 digits, K = 2, direct (section 4.3)", 0.819),
    "flying-mnist-stagewise": ("flying MNIST, 2 digits, K = 2, stage-wise (section 4.3)", 0.917),
}


def pretrained_models(root: Path = PRETRAINED_ROOT) -> list[str]:
    """The names of the models shipped in the package, sorted."""
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / "config.toml").is_file())


def is_pretrained(run_dir: Path | str) -> bool:
    """Whether a run folder argument names a shipped model (``pretrained:NAME``)."""
    return str(run_dir).startswith(PRETRAINED_PREFIX)


def resolve_run(run_dir: Path | str) -> Path:
    """A run folder from a path or from ``pretrained:NAME``; an unknown name is one line that
    names the shipped ones."""
    if not is_pretrained(run_dir):
        return Path(run_dir)
    name = str(run_dir)[len(PRETRAINED_PREFIX) :]
    if name not in pretrained_models():
        shipped = ", ".join(PRETRAINED_PREFIX + n for n in pretrained_models()) or "none"
        raise RunDirError(f"unknown pretrained model {name!r}; shipped: {shipped}")
    return PRETRAINED_ROOT / name


def original_ami(per_step: list[float], weights: list[float]) -> float:
    """The original code's "AMI": the per-step AMI (steps 1..T, gamma^(0) never scored) averaged
    with the loss step weights, so every step on sequences and the last step on static images."""
    total = sum(weights)
    if len(per_step) != len(weights) or total <= 0:
        raise ValueError(f"{len(per_step)} steps scored but {len(weights)} step weights")
    return sum(a * w for a, w in zip(per_step, weights)) / total


def compact_weights(payload: dict[str, Any], dtype: str) -> dict[str, Any]:
    """The checkpoint with its float32 weights in ``dtype`` (float16 or bfloat16), marked so that
    :func:`grouping.rundir.checkpoint.load_checkpoint` restores float32."""
    if dtype == "float32":
        return payload
    if dtype not in HALF_DTYPES:
        raise RunDirError(
            f"unknown weight dtype {dtype!r}; valid: float32, {', '.join(HALF_DTYPES)}"
        )
    half = HALF_DTYPES[dtype]
    weights = {
        k: v.to(half) if v.dtype == torch.float32 else v for k, v in payload["model"].items()
    }
    return payload | {"model": weights, STORED_DTYPE_KEY: dtype}


def strip_checkpoint(source: Path, target: Path, dtype: str = "float32") -> None:
    """A checkpoint with only what loading needs (weights, config, epoch): no Adam state or RNG;
    its weights in ``dtype`` (see :func:`compact_weights`)."""
    save_checkpoint(target, compact_weights(_stripped(load_checkpoint(source)), dtype))


def tested_checkpoint(folder: Path) -> Path:
    """The checkpoint a run folder tested (``train.test_checkpoint``): what its summary scores."""
    tested = read_toml(folder / "config.toml").get("train", {}).get("test_checkpoint", "best")
    return folder / "checkpoints" / f"{'last' if tested == 'last' else 'best'}.pt"


def budget_of(summary: dict[str, Any]) -> dict[str, Any]:
    """What a run's training cost, from its summary (a stage-wise run's summed over stages)."""
    parts = summary.get("stages") or [summary]
    seen = sum(
        float(p.get("train_images_per_s", 0.0)) * float(p.get("train_s", 0.0)) for p in parts
    )
    return {
        "train_minutes": round(float(summary.get("train_s", 0.0)) / 60, 1),
        "epochs": summary.get("epochs"),
        "samples_seen": round(seen),
        "stages": len(summary.get("stages") or []) or None,
        "device": summary.get("device"),
    }


def ship(
    run_dir: Path | str,
    name: str,
    *,
    dtype: str = "float16",
    record: dict[str, Any] | None = None,
    root: Path = PRETRAINED_ROOT,
) -> Path:
    """Copy a finished run into ``root`` as ``pretrained:NAME``: config, summary, the tested
    weights in ``dtype`` and :data:`SHIPPED` (``record`` plus the budget and dtype). A stage-wise
    run ships its last stage's model. The run may be the shipped folder itself (re-shipping)."""
    import tomli_w

    source, target = Path(run_dir), root / name
    final = final_run(source)
    summary = json.loads((source / "summary.json").read_text(encoding="utf-8"))
    for stage in summary.get("stages") or []:
        stage.pop("path", None)  # the training machine's, not the model's
    config = read_toml(final / "config.toml")
    for section in (config, summary.get("config") or {}):
        for key in ("threads", "init_from"):  # the training machine's, not the model's
            section.get("train", {}).pop(key, None)
    checkpoint = tested_checkpoint(final)
    payload = load_checkpoint(checkpoint)  # read before writing: source may be the target
    meta = {"experiment": name if name in EXPERIMENTS else None, **(record or {})}
    meta |= {"budget": budget_of(summary), "weights_dtype": dtype, "checkpoint": checkpoint.name}
    shutil.rmtree(target / "checkpoints", ignore_errors=True)
    target.mkdir(parents=True, exist_ok=True)
    weights = target / "checkpoints" / checkpoint.name
    save_checkpoint(weights, compact_weights(_stripped(payload), dtype))
    (target / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    (target / "config.toml").write_text(tomli_w.dumps(config), encoding="utf-8")
    (target / SHIPPED).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    for path in (weights, target / "summary.json", target / "config.toml", target / SHIPPED):
        path.chmod(0o644)  # readable by every user of an installed package
    return target


def _stripped(payload: dict[str, Any]) -> dict[str, Any]:
    """Weights, config and epoch: no optimizer state or RNG."""
    state = payload.get("train_state", {})
    kept: dict[str, Any] = {
        k: payload[k] for k in ("model", "config", "config_hash") if k in payload
    }
    kept["train_state"] = {k: state[k] for k in ("epoch", "best_epoch", "best_loss") if k in state}
    return kept


def shipped_record(name: str, root: Path = PRETRAINED_ROOT) -> dict[str, Any]:
    """One shipped model as ``grouping pretrained --json`` lists it: its data, updater and scores
    (last step, mean over steps, the original code's "AMI"), the paper's figure for its
    experiment, its training command and budget, and its stored precision."""
    folder = root / name
    config = read_toml(folder / "config.toml")
    summary = _read_json(folder / "summary.json")
    meta = _read_json(folder / SHIPPED)
    test = summary.get("test") or {}
    experiment = meta.get("experiment") or (name if name in EXPERIMENTS else None)
    title, paper = EXPERIMENTS.get(experiment or "", (None, None))
    model = config.get("model", {})
    return {
        "name": PRETRAINED_PREFIX + name,
        "path": str(folder),
        "dataset": config.get("dataset", {}).get("name"),
        "updater": config.get("updater", {}).get("name"),
        "network": config.get("network", {}).get("name"),
        "components": model.get("components"),
        "steps": model.get("steps"),
        "test_ami": test.get("ami"),
        "status": summary.get("status"),
        "scores": _scores(test, model),
        "experiment": experiment,
        "paper": {"experiment": title, "ami": paper},
        "data": {**(summary.get("data_source") or {}), "test_samples": test.get("images")},
        "command": meta.get("command"),
        "budget": (meta.get("budget") or budget_of(summary)) | {"note": meta.get("budget_note")},
        "weights_dtype": meta.get("weights_dtype", "float32"),
        "precision_check": meta.get("precision_check"),
        "size_bytes": sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()),
    }


def _scores(test: dict[str, Any], model: dict[str, Any]) -> dict[str, Any]:
    """The summary's test scores under both of the original code's names."""
    per_step = test.get("ami_per_step")
    original = None
    if per_step:
        weights = ModelConfig.model_validate(model).step_weights()
        original = original_ami(per_step, weights)
    return {
        "last_step": test.get("ami"),
        "mean_over_steps": test.get("ami_mean_over_steps"),
        "original_ami": original,
        "images": test.get("images"),
    }


def _read_json(path: Path) -> dict[str, Any]:
    """A JSON object from ``path``, or {} where there is none (a folder shipped before it)."""
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RunDirError(f"cannot read {path}: {exc}") from None
    return data if isinstance(data, dict) else {}
