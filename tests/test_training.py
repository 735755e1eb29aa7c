"""End to end: a short real training run groups clearly better than the untrained model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from grouping.accel.device import make_generator
from grouping.accel.precision import native_bf16
from grouping.config.loading import build_config
from grouping.engine.assembly import assemble, resolve
from grouping.evaluation.scoring import score_split
from grouping.training.api import train

SHORT = [
    "dataset.train_size=4096",
    "dataset.valid_size=200",
    "dataset.test_size=300",
    "train.epochs=3",
    "train.valid_samples=200",
    "model.gradient_gamma=false",
    "model.steps=8",
    "train.lr=0.003",
    "train.lr_schedule=constant",  # a cosine over these 3 short epochs would decay too early
    "train.max_minutes=null",  # the preset's time limit would make the result load-dependent
]


def test_training_beats_the_untrained_model(tmp_path: Path) -> None:
    config = resolve(build_config("quickstart", assignments=SHORT))
    torch.manual_seed(config.seed)
    parts = assemble(config)
    untrained = score_split(
        parts.model,
        parts.noise,
        parts.dataset.split("test"),
        samples=None,
        batch_size=100,
        device=torch.device("cpu"),
        generator=make_generator(torch.device("cpu"), config.seed + 1),
    ).summary()
    run = train(config, tmp_path / "run")
    trained = run.test
    assert trained["images"] == untrained["images"] == 300
    assert trained["ami"] > untrained["ami"] + 0.3, (trained["ami"], untrained["ami"])
    assert trained["upper_bound"] < untrained["upper_bound"]
    metrics = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert len(metrics) == run.summary["epochs"] == 3


def test_a_finished_run_leaves_no_lock_file(tiny_config: Any, tmp_path: Path) -> None:
    out = tmp_path / "run"
    train(tiny_config(), out)
    assert (out / "summary.json").is_file()
    assert not (out / ".lock").exists()


def test_the_summary_records_the_machine_and_the_precision_auto_chose(
    tiny_config: Any, tmp_path: Path
) -> None:
    """``auto`` precision is bf16 on one CPU and fp32 on another: the summary says which ran."""
    auto = train(tiny_config(), tmp_path / "auto").summary["machine"]
    fp32 = train(tiny_config("train.precision=fp32"), tmp_path / "fp32").summary["machine"]
    expected = "bf16" if native_bf16(torch.device("cpu")) else "fp32"
    assert auto["precision"] == expected and fp32["precision"] == "fp32"
    assert auto["native_bf16"] is native_bf16(torch.device("cpu"))
    assert auto["torch"] == torch.__version__
    assert auto["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert "gpu" not in auto


def test_test_checkpoint_last_tests_the_model_training_left(
    tiny_config: Any, tmp_path: Path
) -> None:
    import grouping

    out = tmp_path / "run"
    result = train(tiny_config("train.epochs=2", "train.test_checkpoint=last"), out)
    last = grouping.evaluate(out, checkpoint="last")
    # the same model and data: the same loss, to the last float bits, which the products' order
    # (it depends on the thread count) may change; the groupings of this barely trained model sit
    # near ties, so a few pixels may flip and its AMI (near 0) is compared to a small tolerance
    assert result.test["loss"] == pytest.approx(last["loss"], rel=1e-5)
    assert result.test["ami"] == pytest.approx(last["ami"], abs=2e-3)
