"""Issue 37 on the CPU: device-resident splits, compile modes, the CUDA precision policy, the
trainer's evaluation precision and deterministic kernels (the DDP guards: test_ddp_guards.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from grouping.accel import precision
from grouping.config.loading import build_config, read_toml
from grouping.config.schema import TrainConfig
from grouping.data.batches import iterate_batches
from grouping.data.resident import FeaturesOnly, ResidentSplit, RunSplits
from grouping.engine.assembly import assemble, resolve
from grouping.plugin_api.interfaces import ArraySplit
from grouping.training import setup
from grouping.training.api import train
from grouping.training.batch_step import TrainStep
from grouping.training.trainer import Trainer
from tests.conftest import TINY

FLYING = [
    "dataset.train_size=40",
    "dataset.valid_size=12",
    "dataset.test_size=12",
    "model.steps=3",
    "train.batch_size=8",
    "train.epochs=1",
    "train.valid_samples=12",
    "eval.batch_size=6",
    "train.threads=1",
]


def flying(seed: int = 0) -> Any:
    """A fresh flying-shapes data set (rendered on demand) from ``seed``."""
    sets = [*FLYING, f"seed={seed}"]
    return assemble(resolve(build_config("flying-shapes-3", assignments=sets))).dataset


@pytest.fixture
def restore_globals() -> Iterator[None]:
    """Deterministic kernels and the matmul precision are process-wide: put them back."""
    before = (torch.get_float32_matmul_precision(), torch.are_deterministic_algorithms_enabled())
    yield
    torch.set_float32_matmul_precision(before[0])
    torch.use_deterministic_algorithms(before[1])
    torch.backends.cudnn.deterministic = False
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.allow_tf32 = True


def test_resident_and_rendered_splits_give_identical_batches() -> None:
    rendered, resident = flying().split("train"), ResidentSplit(flying().split("train"), cpu())
    assert resident.features.dtype == torch.uint8  # binary frames: one byte a pixel
    for index in ([5, 3, 3, 39, 0], list(range(40))[::-3], [7]):
        want, got = rendered.get(np.array(index)), resident.get(np.array(index))
        for a, b in zip(want, got, strict=True):
            assert a.dtype == b.dtype and torch.equal(a, b)
    order = np.random.default_rng(0).permutation(40)
    for (f1, g1), (f2, g2) in zip(
        iterate_batches(rendered, order, 8, 4, cpu()),
        iterate_batches(resident.fill(), order, 8, 4, cpu()),
        strict=True,
    ):
        assert torch.equal(f1, f2) and torch.equal(g1, g2)
    assert resident.filled.all()


def cpu() -> torch.device:
    return torch.device("cpu")


def test_values_off_the_byte_grid_and_large_labels_are_kept_exactly() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(6, 2, 5, 5, 1, generator=g)
    labels = torch.randint(0, 300, (6, 2, 5, 5), generator=g)
    base = ArraySplit(x, labels)
    kept = ResidentSplit(base, cpu())
    first = kept.get(np.array([0, 1]))
    assert (
        kept.features.dtype == torch.float32
    )  # off the 1/255 grid: float32 and kept.groups is not None
    assert kept.groups.dtype == torch.int64
    for index in ([0, 1], [5, 2, 4, 3]):
        want = base.get(np.array(index))
        got = kept.get(np.array(index))
        assert torch.equal(want[0], got[0]) and torch.equal(want[1], got[1])
    assert torch.equal(first[0], x[:2])


def test_training_batches_carry_no_groups_and_auto_places_by_kind() -> None:
    data = flying()
    splits = RunSplits(data.split, True, cpu())
    train_split, valid = splits.split("train"), splits.split("valid", 5)
    assert isinstance(train_split, ResidentSplit) and train_split.groups is None
    assert isinstance(valid, ResidentSplit) and len(valid) == 5 and valid.groups is not None
    features, groups = train_split.get(np.arange(4))
    assert groups.shape == features.shape[:4] and groups.stride() == (0, 0, 0, 0)
    assert not groups.any()
    off = RunSplits(data.split, False, cpu())
    assert isinstance(off.split("train"), FeaturesOnly)
    assert off.split("valid") is data.split("valid")
    auto = RunSplits(data.split, "auto", cpu())  # on the CPU: a cache of rendered splits
    assert isinstance(auto.split("valid"), ResidentSplit)
    arrays = ArraySplit(torch.zeros(4, 1, 3, 3, 1), torch.zeros(4, 1, 3, 3, dtype=torch.long))
    in_memory = RunSplits(lambda name: arrays, "auto", cpu())
    assert in_memory.split("valid") is arrays  # already in memory: not copied


def test_a_run_trains_the_same_with_resident_and_rendered_data(tmp_path: Path) -> None:
    results = []
    for setting in ("true", "false"):
        sets = [*FLYING, f"train.data_on_device={setting}"]
        run = train(build_config("flying-shapes-3", assignments=sets), tmp_path / setting)
        results.append(run.summary)
    on, off = results
    assert on["config"]["train"]["data_on_device"] is True
    assert on["test"]["loss"] == off["test"]["loss"] and on["test"]["ami"] == off["test"]["ami"]
    assert on["best_valid_loss"] == off["best_valid_loss"]


def test_compile_takes_modes_and_the_old_booleans() -> None:
    assert TrainConfig.model_validate({"compile": True}).compile == "default"
    assert TrainConfig.model_validate({"compile": False}).compile == "off"
    assert build_config("quickstart", assignments=["train.compile=max-autotune"]).train.compile == (
        "max-autotune"
    )
    saved = read_toml(Path(__file__).parent / "data/format2-conv-run/config.toml")
    assert saved["train"]["compile"] is False  # a checkpoint's config from before the modes
    assert TrainConfig.model_validate(saved["train"]).compile == "off"


def test_compiled_passes_the_mode_and_marks_graph_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(torch, "compile", lambda module, **kw: calls.append(kw) or module)
    marks: list[int] = []
    monkeypatch.setattr(torch.compiler, "cudagraph_mark_step_begin", lambda: marks.append(1))
    module = nn.Linear(2, 2)
    assert setup.compiled(module, "off") is module and setup.compiled(module, False) is module
    assert setup.compiled(module, True) is module and calls == [{}]  # default: torch's own
    assert setup.compiled(module, "max-autotune") is module
    graphs = setup.compiled(module, "reduce-overhead")
    graphs(torch.zeros(1, 2))
    graphs(torch.zeros(1, 2))
    assert calls[1:] == [{"mode": "max-autotune"}, {"mode": "reduce-overhead"}] and marks == [1, 1]
    with pytest.raises(ValueError, match="train.compile"):
        setup.compile_mode("fast")


def test_adam_is_fused_and_capturable_only_where_compiled_on_cuda() -> None:
    params = [nn.Parameter(torch.zeros(3))]
    eager = setup.make_optimizer(params, TrainConfig(), cpu())
    assert eager.defaults["fused"] and not eager.defaults["capturable"]
    config = TrainConfig(compile="reduce-overhead")
    graphs = setup.make_optimizer(params, config, torch.device("cuda"))
    assert graphs.defaults["fused"] and graphs.defaults["capturable"]
    assert not setup.make_optimizer(params, config, cpu()).defaults["capturable"]


def test_precision_policy_on_cuda_and_unchanged_on_the_cpu(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cuda = torch.device("cuda")
    monkeypatch.setattr(precision, "native_bf16", lambda device: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
    resolve_p = precision.resolve_precision
    assert resolve_p("auto", cuda, batch=64) == "tf32"  # eager, launch-bound: no casts
    assert resolve_p("auto", cuda, compiled=True, batch=64) == "bf16"
    assert resolve_p("auto", cuda, batch=precision.BF16_MIN_BATCH) == "bf16"
    assert resolve_p("fp32", cuda) == "fp32" and resolve_p("tf32", cuda) == "tf32"
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 0))
    monkeypatch.setattr(precision, "native_bf16", lambda device: False)
    assert resolve_p("auto", cuda, batch=64) == "fp32"  # no TF32 before Ampere
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)
    assert resolve_p("auto", cpu(), compiled=True, batch=4096) == "fp32"
    assert resolve_p("tf32", cpu()) == "fp32"


@pytest.mark.usefixtures("restore_globals")
def test_tf32_is_set_for_cuda_only() -> None:
    torch.set_float32_matmul_precision("highest")
    precision.apply_matmul_precision(cpu(), "bf16")
    assert torch.get_float32_matmul_precision() == "highest"  # the CPU policy is untouched
    precision.apply_matmul_precision(torch.device("cuda"), "tf32")
    assert torch.get_float32_matmul_precision() == "high" and torch.backends.cudnn.allow_tf32
    precision.apply_matmul_precision(torch.device("cuda"), "fp32")
    assert torch.get_float32_matmul_precision() == "highest"
    assert not torch.backends.cudnn.allow_tf32


@pytest.mark.parametrize("prec", ["bf16", "fp32"])
def test_validation_scores_in_the_training_precision(tmp_path: Path, prec: str) -> None:
    config = resolve(build_config("quickstart", assignments=[*TINY, f"train.precision={prec}"]))
    trainer = Trainer(config, tmp_path / "run")
    seen: list[bool] = []
    trainer.model.register_forward_pre_hook(
        lambda module, args: seen.append(torch.is_autocast_enabled("cpu"))
    )
    trainer.validate()
    trainer.rundir.close()
    assert seen and all(seen) == (prec == "bf16") and any(seen) == (prec == "bf16")


@pytest.mark.usefixtures("restore_globals")
def test_deterministic_kernels_on_the_cpu_repeat_a_step_bit_for_bit() -> None:
    config = resolve(build_config("quickstart", assignments=[*TINY, "train.deterministic=true"]))
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        parts = assemble(config)
        model, prec = setup.prepare_model(parts.model, config.train, cpu())
        assert torch.are_deterministic_algorithms_enabled()
        step = TrainStep(model, setup.make_optimizer(model.parameters(), config.train, cpu()),
                         parts.noise, cpu(), precision=prec)  # fmt: skip
        x, _ = parts.split("train").get(np.arange(8))
        g = torch.Generator().manual_seed(1)
        losses = [step(x.expand(8, 4, *x.shape[2:]), g)[0] for _ in range(2)]
        runs.append((losses, [p.detach().clone() for p in model.parameters()]))
    assert all(torch.equal(a, b) for a, b in zip(runs[0][0], runs[1][0], strict=True))
    assert all(torch.equal(a, b) for a, b in zip(runs[0][1], runs[1][1], strict=True))
    setup.prepare_model(parts.model, TrainConfig(), cpu())
    assert not torch.are_deterministic_algorithms_enabled()
