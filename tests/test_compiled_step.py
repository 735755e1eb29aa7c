"""``train.compile``: the compiled training step computes what the eager one computes.

Marked slow: torch.compile's cold start for this tiny model took 30-42 s on the busy 2-core
development machine (3 s with inductor's on-disk cache warm). CI runs the whole suite, slow tests
included.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from types import ModuleType

import pytest
import torch
from torch import Tensor

from grouping.config.loading import build_config
from grouping.engine.assembly import build_model, build_noise, resolve
from grouping.training.batch_step import TrainStep
from grouping.training.setup import compiled as compiled_forward
from tests.conftest import TINY
from tests.scripts import load_benchmark

B, T, IMAGE = 2, 3, (12, 12, 1)


@pytest.fixture
def fresh_dynamo() -> Iterator[None]:
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def _steps() -> tuple[TrainStep, TrainStep, Tensor]:
    """Two trainer steps of one fc RNN-EM model (K = 2, T = 3), eager and compiled, and a batch."""
    sets = [*TINY, f"model.steps={T}", "model.components=2", "network.hidden=8"]
    config = resolve(build_config("quickstart", assignments=sets))
    torch.manual_seed(0)
    eager_model = build_model(config, IMAGE)
    compiled_model = copy.deepcopy(eager_model)
    noise, cpu = build_noise(config), torch.device("cpu")
    eager = TrainStep(eager_model, torch.optim.Adam(eager_model.parameters()), noise, cpu)
    compiled = TrainStep(
        compiled_model,
        torch.optim.Adam(compiled_model.parameters()),
        noise,
        cpu,
        forward=compiled_forward(compiled_model, True),  # as the trainer builds it
    )
    features = torch.rand(B, T + 1, *IMAGE, generator=torch.Generator().manual_seed(1)) < 0.3
    return eager, compiled, features.float()


def _step_counts() -> ModuleType:
    return load_benchmark("step_counts")


@pytest.mark.slow
@pytest.mark.usefixtures("fresh_dynamo")
def test_compiled_and_eager_steps_give_the_same_loss_gradients_and_weights(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """... and the compiled step launches under half the eager step's operators (the count
    ``benchmarks/throughput.py --compile`` reports; inductor fuses the elementwise work)."""
    counts = _step_counts()
    monkeypatch.setattr(torch._inductor.config.cpp, "enable_kernel_profile", False)
    counts.profile_compiled_kernels()  # before the compile; restored after the test
    eager, compiled, features = _steps()
    assert compiled.forward is not compiled.model  # really compiled
    for seed in range(2):  # the second step starts from Adam-updated weights
        want, want_norms = eager(features, torch.Generator().manual_seed(seed))
        got, got_norms = compiled(features, torch.Generator().manual_seed(seed))
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(got_norms, want_norms, rtol=1e-4, atol=1e-6)
        assert torch.isfinite(want_norms).all() and torch.isfinite(got_norms).all()
        named = zip(eager.model.named_parameters(), compiled.model.parameters(), strict=True)
        for (name, a), b in named:
            assert a.grad is not None and b.grad is not None, name
            torch.testing.assert_close(b.grad, a.grad, rtol=1e-4, atol=1e-6, msg=name)
            torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-6, msg=name)
    launches = {
        label: counts.count_launches(step, lambda: features, torch.Generator().manual_seed(2))
        for label, step in (("eager", eager), ("compiled", compiled))
    }
    eager_ops = counts.count_step(eager, lambda: features, torch.Generator().manual_seed(3))
    assert abs(launches["eager"] - eager_ops["ops_per_step"]) <= 0.05 * eager_ops["ops_per_step"]
    assert launches["compiled"] < launches["eager"] / 2, launches
