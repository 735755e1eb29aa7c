"""Stage-wise training (spec 7): a config whose ``stages`` list is not empty runs as a chain of runs.

Stage i is the config with ``stages[i].overrides`` merged in, trained as a full run (own early
stopping) in ``OUT/<stage name>/`` and started from stage i - 1's best checkpoint, weights and
optimizer state (``train.init_from``); the first stage starts from ``train.init_from`` if the config
sets it. Every stage config is built and validated before the first stage trains, so a typo in the
last stage fails at once, not hours later.

::

    OUT/config.toml          the whole stage-wise config (replayable with --preset)
    OUT/<stage>/...          one ordinary run folder per stage, best checkpoint included
    OUT/summary.json         per-stage summaries; "test" is the last stage's test scores
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from grouping import distributed
from grouping.build import resolve
from grouping.config import RunConfig, merge, validate
from grouping.errors import ConfigError, RunDirError
from grouping.registry import Registry
from grouping.rundir import CONFIG, RunDir
from grouping.train import Reporter, RunResult, SilentReporter, train


def stage_configs(config: RunConfig, registry: Registry | None = None) -> list[RunConfig]:
    """The resolved config of every stage, in order (without ``init_from`` between stages)."""
    base = config.model_dump(mode="python")
    base["stages"] = []
    out = []
    for stage in config.stages:
        if "stages" in stage.overrides:
            raise ConfigError(f"stage {stage.name!r}: a stage cannot have stages of its own")
        try:
            stage_config = resolve(validate(merge(base, stage.overrides)), registry)
        except ConfigError as exc:
            raise ConfigError(f"stage {stage.name!r}: {exc}") from None
        out.append(stage_config)
    return out


def train_stages(
    config: RunConfig,
    out: Path | str | None = None,
    reporter: Reporter | None = None,
    registry: Registry | None = None,
    tensorboard: bool = False,
) -> RunResult:
    """Train every stage in order, each from the previous stage's best checkpoint."""
    if not config.stages:
        raise ConfigError("this config has no stages; use grouping.train")
    t0 = time.perf_counter()
    reporter = reporter or SilentReporter()
    configs = stage_configs(config, registry)
    root = Path(out) if out is not None else RunDir.default_path(config.preset)
    main = distributed.is_main_process()  # under torchrun, one rank writes the shared files
    if main:
        _create_root(root, config)
    previous = config.train.init_from
    stages: list[dict[str, Any]] = []
    result: RunResult | None = None
    for i, (stage, stage_config) in enumerate(zip(config.stages, configs), start=1):
        if previous is not None:
            stage_config = stage_config.model_copy(
                update={"train": stage_config.train.model_copy(update={"init_from": previous})}
            )
        reporter.message(f"stage {i} of {len(configs)}: {stage.name}")
        result = train(stage_config, root / stage.name, reporter, registry, tensorboard)
        previous = str(result.path)
        s = result.summary
        stages.append(
            {
                "name": stage.name,
                "path": str(result.path),
                "test": s["test"],
                "epochs": s["epochs"],
                "best_epoch": s["best_epoch"],
                "best_valid_loss": s["best_valid_loss"],
                "train_s": s["train_s"],
                "train_images_per_s": s["train_images_per_s"],
            }
        )
    assert result is not None  # there is at least one stage
    last = result.summary
    train_s = sum(s["train_s"] for s in stages)
    summary = {
        **last,
        "stages": stages,
        "epochs": sum(s["epochs"] for s in stages),
        "train_s": train_s,
        "wall_s": time.perf_counter() - t0,
        "config": config.model_dump(mode="json"),
    }
    if main:
        RunDir(root).write_summary(summary)
    return RunResult(root, summary)


def _create_root(root: Path, config: RunConfig) -> None:
    """The stage-wise run's own folder: refused if it holds anything, never overwritten."""
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise RunDirError(f"--out {root} exists and is not an empty folder; choose a new folder")
    try:
        root.mkdir(parents=True, exist_ok=True)
        (root / CONFIG).write_text(config.to_toml(), encoding="utf-8")
    except OSError as exc:
        raise RunDirError(f"cannot write the run folder {root}: {exc.strerror}") from None
