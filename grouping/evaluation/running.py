"""A run still training, written out as a finished run folder, so that a long run can ship its
best model so far and go on training (issue 39).

The run is read, never written. Its newest model is the best checkpoint (lowest validation loss)
of the stage now training, once that stage has finished an epoch, or else the model the last
finished stage tested. :func:`snapshot` copies that checkpoint and its stage's config into a new
folder and writes a ``summary.json`` as a finished run's: the model scored now on its test split
(the same samples and draws as the run's own test would use), the finished stages' records, and
the budget so far, read from the checkpoint's training state. ``status`` is ``"in progress"`` and
``stop_reason`` names the stage and epoch, so nobody takes it for the run's final result.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from grouping.config.loading import read_toml
from grouping.errors import RunDirError
from grouping.evaluation.api import evaluate
from grouping.rundir.checkpoint import load_checkpoint
from grouping.rundir.folder import CONFIG, IN_PROGRESS, STAGE_KEYS, SUMMARY, stage_folders
from grouping.rundir.pretrained import tested_checkpoint

#: What ``grouping.evaluate`` adds to the test scores a trained run records.
EVALUATE_EXTRAS = ("run_dir", "checkpoint", "epoch", "split", "changed", "config")


def is_finished(run_dir: Path) -> bool:
    """Whether a run (or stage-wise run) trained to its end and wrote its summary."""
    return (run_dir / SUMMARY).is_file()


def newest_model(root: Path) -> tuple[Path, list[Path]]:
    """The folder that holds a run's newest model, and the finished stages before it. A stage
    that has not finished an epoch has no model yet: then it is the last finished stage's."""
    stages = stage_folders(root) or [root]
    finished = [s for s in stages if is_finished(s)]
    current = next((s for s in stages if not is_finished(s)), None)
    if current is not None and (current / "checkpoints" / "best.pt").is_file():
        return current, finished
    if not finished:
        raise RunDirError(f"{root} has not finished an epoch yet: no model to take")
    return finished[-1], finished[:-1]


def stage_record(folder: Path) -> dict[str, Any]:
    """A finished stage as the stage-wise summary lists it."""
    summary = json.loads((folder / SUMMARY).read_text(encoding="utf-8"))
    return {"name": folder.name} | {k: summary.get(k) for k in STAGE_KEYS}


def current_record(folder: Path, device: str) -> dict[str, Any]:
    """The stage still training: its best checkpoint scored on the test split now, and its
    training so far from that checkpoint's state."""
    scores = evaluate(folder, checkpoint="best", device=device)
    state = load_checkpoint(folder / "checkpoints" / "best.pt").get("train_state", {})
    seconds = float(state.get("train_seconds", 0.0))
    record = {
        "name": folder.name,
        "test": {k: v for k, v in scores.items() if k not in EVALUATE_EXTRAS},
        "epochs": state.get("epoch", 0),
        "best_epoch": state.get("best_epoch", 0),
        "best_valid_loss": state.get("best_loss"),
        "train_s": seconds,
        "train_images_per_s": float(state.get("train_images", 0)) / seconds if seconds else 0.0,
    }
    return record


def snapshot(run_dir: Path | str, out: Path | str, device: str = "cpu") -> Path:
    """Write the newest model of a run still training into ``out`` (a new folder) as a finished
    run folder: its stage's config (testing the copied checkpoint), the checkpoint and a summary
    whose ``status`` is :data:`IN_PROGRESS`. A finished run is refused: ship it as it is."""
    root, target = Path(run_dir), Path(out)
    if is_finished(root):
        raise RunDirError(f"{root} has finished; it needs no snapshot")
    if target.exists():
        raise RunDirError(f"{target} exists; a snapshot goes to a new folder")
    folder, before = newest_model(root)
    records = [stage_record(s) for s in before]
    if is_finished(folder):
        records.append(stage_record(folder))
        checkpoint = tested_checkpoint(folder)
        last_summary = json.loads((folder / SUMMARY).read_text(encoding="utf-8"))
        epoch = records[-1]["epochs"]
    else:
        record = current_record(folder, device)
        records.append(record)
        checkpoint = folder / "checkpoints" / "best.pt"
        last_summary = json.loads((before[-1] / SUMMARY).read_text("utf-8")) if before else {}
        epoch = record["epochs"]
    summary = summarize(root, records, last_summary, f"{folder.name}, epoch {epoch}")
    config = read_toml(folder / CONFIG)
    config.setdefault("train", {})["test_checkpoint"] = checkpoint.stem
    write(target, config, checkpoint, summary)
    return target


def summarize(
    root: Path, records: list[dict[str, Any]], previous: dict[str, Any], where: str
) -> dict[str, Any]:
    """The snapshot's ``summary.json``: the newest stage's test, the budget summed over stages."""
    seconds = sum(float(r["train_s"] or 0.0) for r in records)
    images = sum(
        float(r["train_images_per_s"] or 0.0) * float(r["train_s"] or 0.0) for r in records
    )
    summary: dict[str, Any] = {
        "status": IN_PROGRESS,
        "stop_reason": f"still training: its best model so far ({where})",
        "test": records[-1]["test"],
        "epochs": sum(int(r["epochs"] or 0) for r in records),
        "best_epoch": records[-1]["best_epoch"],
        "best_valid_loss": records[-1]["best_valid_loss"],
        "train_images_per_s": images / seconds if seconds else 0.0,
        "train_s": seconds,
        "device": previous.get("device"),
        "data_source": previous.get("data_source"),
        "config": read_toml(root / CONFIG),
    }
    if stage_folders(root):
        summary["stages"] = records
    return summary


def write(target: Path, config: dict[str, Any], checkpoint: Path, summary: dict[str, Any]) -> None:
    """The snapshot folder: config.toml, checkpoints/<name>.pt, summary.json."""
    import tomli_w

    (target / "checkpoints").mkdir(parents=True)
    shutil.copyfile(checkpoint, target / "checkpoints" / checkpoint.name)
    (target / CONFIG).write_text(tomli_w.dumps(config), encoding="utf-8")
    (target / SUMMARY).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
