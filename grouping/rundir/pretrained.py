"""The models shipped in the package: ``pretrained:NAME`` wherever a run folder is taken.

Each is a run folder under ``grouping/pretrained/`` holding config.toml, summary.json and
checkpoints/best.pt with the weights only (:func:`strip_checkpoint`). :func:`resolve_run` turns
``pretrained:NAME`` into that folder (and leaves any other path as it is);
:func:`grouping.rundir.loading.load_trained` calls it, so ``grouping evaluate``, ``visualize`` and
``segment`` all take the name. ``static-shapes`` is the quickstart model, trained and shipped
with::

    grouping run --out /work/runs/pretrained-static-shapes --set train.threads=1
    python -c "from grouping.rundir.pretrained import ship; ship('/work/runs/pretrained-static-shapes', 'static-shapes')"

(234 s on one thread of a shared 2-core CPU: 6 epochs, test AMI 0.859 on 2,000 test images.)
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from grouping.config.loading import read_toml
from grouping.errors import RunDirError
from grouping.rundir.checkpoint import load_checkpoint, save_checkpoint

#: How a run folder argument names a model shipped in the package.
PRETRAINED_PREFIX = "pretrained:"
#: Where those models live: one run folder each (config.toml, checkpoints/best.pt, summary.json).
PRETRAINED_ROOT = Path(__file__).resolve().parents[1] / "pretrained"


def pretrained_models() -> list[str]:
    """The names of the models shipped in the package, sorted."""
    if not PRETRAINED_ROOT.is_dir():
        return []
    return sorted(p.name for p in PRETRAINED_ROOT.iterdir() if (p / "config.toml").is_file())


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


def strip_checkpoint(source: Path, target: Path) -> None:
    """A checkpoint with only what loading needs (weights, config, epoch): no Adam state or RNG."""
    payload = load_checkpoint(source)
    state = payload.get("train_state", {})
    kept: dict[str, Any] = {
        k: payload[k] for k in ("model", "config", "config_hash") if k in payload
    }
    kept["train_state"] = {k: state[k] for k in ("epoch", "best_epoch", "best_loss") if k in state}
    save_checkpoint(target, kept)


def ship(run_dir: Path | str, name: str) -> Path:
    """Copy a finished run into the package as ``pretrained:NAME``: config, summary, best weights."""
    import tomli_w

    source, target = Path(run_dir), PRETRAINED_ROOT / name
    target.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source / "summary.json", target / "summary.json")
    config = read_toml(source / "config.toml")
    config.get("train", {}).pop("threads", None)  # the training machine's, not the model's
    (target / "config.toml").write_text(tomli_w.dumps(config), encoding="utf-8")
    weights = target / "checkpoints" / "best.pt"
    strip_checkpoint(source / "checkpoints" / "best.pt", weights)
    weights.chmod(0o644)  # readable by every user of an installed package
    return target
