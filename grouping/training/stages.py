"""Stage-wise training (spec 7): a config whose ``stages`` list is not empty runs as a chain of runs.

Stage i is the config with ``stages[i].overrides`` merged in, trained as a full run (own early
stopping) in ``OUT/<stage name>/`` and started from the checkpoint stage i - 1 tested (its best,
or its last with ``train.test_checkpoint = "last"``), weights and optimizer state
(``train.init_from``); the first stage starts from ``train.init_from`` if the config sets it.
Every stage config is built and validated before the first stage trains, so a typo in the last
stage fails at once, not hours later.

::

    OUT/config.toml          the whole stage-wise config (replayable with --preset)
    OUT/<stage>/...          one ordinary run folder per stage, best checkpoint included
    OUT/summary.json         per-stage summaries; "test" is the last stage's test scores
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from grouping.config.loading import merge, read_toml
from grouping.config.schema import RunConfig, validate
from grouping.engine.assembly import resolve
from grouping.errors import ConfigError, GroupingError, RunDirError
from grouping.plugin_api.registry import Registry
from grouping.rundir.folder import CONFIG, STAGE_KEYS, SUMMARY, RunDir
from grouping.training import distributed
from grouping.training.reporting import Reporter, SilentReporter
from grouping.training.resume import prepare_resume, read_today, resumable
from grouping.training.run import RunResult, train_run


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
    """Train every stage in order, each from the checkpoint the previous stage tested."""
    if not config.stages:
        raise ConfigError("this config has no stages; use grouping.train")
    t0 = time.perf_counter()
    reporter = reporter or SilentReporter()
    configs = stage_configs(config, registry)
    root = Path(out) if out is not None else RunDir.default_path(config.preset, config=config)
    main = distributed.is_main_process()  # under torchrun, one rank writes the shared files
    auto = config.train.resume == "auto"
    if main:
        _create_root(root, config, reuse=auto)
    previous = config.train.init_from
    stages: list[dict[str, Any]] = []
    result: RunResult | None = None
    for i, (stage, stage_config) in enumerate(zip(config.stages, configs), start=1):
        if previous is not None:
            stage_config = stage_config.model_copy(
                update={"train": stage_config.train.model_copy(update={"init_from": previous})}
            )
        reporter.message(f"stage {i} of {len(configs)}: {stage.name}")
        result = run_stage(stage_config, root / stage.name, reporter, registry, tensorboard, auto)
        previous = str(handover(stage_config, result.path))
        stages.append(stage_record(stage.name, result))
    assert result is not None  # there is at least one stage
    summary = {
        **result.summary,
        "stages": stages,
        "epochs": sum(s["epochs"] for s in stages),
        "train_s": sum(s["train_s"] for s in stages),
        "wall_s": time.perf_counter() - t0,
        "config": config.model_dump(mode="json"),
    }
    if main:
        RunDir(root).write_summary(summary)
    return RunResult(root, summary)


def handover(config: RunConfig, folder: Path) -> Path:
    """The checkpoint the next stage starts from: the model this stage tested, so that a stage
    whose validation loss does not track its grouping (``test_checkpoint = "last"``) hands on its
    last model, not an early best-loss one."""
    return RunDir(folder).tested(config.train.test_checkpoint)


def run_stage(
    config: RunConfig,
    folder: Path,
    reporter: Reporter,
    registry: Registry | None,
    tensorboard: bool,
    auto: bool,
) -> RunResult:
    """One stage; with ``train.resume = "auto"`` a finished stage is kept and an unfinished one
    with a ``last.pt`` resumed, so a restarted stage-wise job goes on where it stopped."""
    if auto and (folder / SUMMARY).is_file():
        reporter.message(f"stage {folder.name} already finished: {folder}")
        return RunResult(folder, RunDir(folder).summary())
    if auto and resumable(folder):
        return prepare_resume(folder, registry=registry).run(reporter, tensorboard)
    return train_run(config, folder, reporter, registry, tensorboard)


def stage_record(name: str, result: RunResult) -> dict[str, Any]:
    """One stage's entry in the stage-wise ``summary.json``."""
    return {"name": name, "path": str(result.path)} | {k: result.summary[k] for k in STAGE_KEYS}


def _create_root(root: Path, config: RunConfig, reuse: bool = False) -> None:
    """The stage-wise run's own folder: refused if it holds anything, never overwritten; with
    ``reuse`` a folder that holds this very plan is taken up again."""
    plan = root / CONFIG
    if reuse and plan.is_file() and _same_plan(plan, config):
        return
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise RunDirError(f"--out {root} exists and is not an empty folder; choose a new folder")
    try:
        root.mkdir(parents=True, exist_ok=True)
        (root / CONFIG).write_text(config.to_toml(), encoding="utf-8")
    except OSError as exc:
        raise RunDirError(f"cannot write the run folder {root}: {exc.strerror}") from None


def _same_plan(plan: Path, config: RunConfig) -> bool:
    """Whether the root's ``config.toml`` holds this plan, whatever ``train.resume`` says and
    whichever version wrote it (read back, it is validated with today's defaults)."""
    # compared resolved: the root may hold the plan with its plugins' options filled in
    stored = read_today(read_toml(plan))
    if stored is None:
        return False
    try:
        given = resolve(config).model_dump(mode="json")
    except GroupingError:
        return False
    stored["train"]["resume"] = given["train"]["resume"]
    return bool(stored == given)


def is_stagewise_root(folder: Path) -> bool:
    """Whether ``folder`` is the root of a stage-wise run (its plan names stages)."""
    plan = folder / CONFIG
    if not plan.is_file() or (folder / "checkpoints").exists():
        return False
    return bool(read_toml(plan).get("stages"))


def resume_stages(
    folder: Path,
    reporter: Reporter | None = None,
    registry: Registry | None = None,
    tensorboard: bool = False,
) -> RunResult:
    """Continue a stage-wise run: finished stages are kept, the stage that was stopped resumes
    from its ``last.pt`` (or starts again if it had none), and the rest follow."""
    if (folder / SUMMARY).is_file():
        raise RunDirError(f"run {folder} has already ended; nothing to resume")
    config = validate(read_toml(folder / CONFIG))
    config = config.model_copy(update={"train": config.train.model_copy(update={"resume": "auto"})})
    return train_stages(config, folder, reporter, registry, tensorboard=tensorboard)
