"""The capturable step (issue 37 item 2): gamma^(0) and the noise drawn outside the compiled region,
so the compiled unrolled pass is one graph, and its training equals eager's.

Marked slow, as tests/test_compiled_step.py: torch.compile's cold start on a small CPU.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator

import pytest
import torch
from torch._dynamo.utils import counters

from grouping.config.loading import build_config
from grouping.engine.assembly import build_model, build_noise, resolve
from grouping.training.batch_step import TrainStep
from grouping.training.setup import compiled, make_optimizer, prepare_model
from tests.conftest import TINY

B, T, IMAGE = 2, 3, (12, 12, 1)


@pytest.fixture
def fresh_dynamo() -> Iterator[None]:
    torch._dynamo.reset()
    counters.clear()
    yield
    torch._dynamo.reset()


@pytest.mark.slow
@pytest.mark.usefixtures("fresh_dynamo")
def test_compiled_step_is_one_graph_and_trains_as_eager() -> None:
    sets = [*TINY, f"model.steps={T}", "model.components=2", "network.hidden=8",
            "train.compile=default"]  # fmt: skip
    config = resolve(build_config("quickstart", assignments=sets))
    cpu, noise = torch.device("cpu"), build_noise(config)
    torch.manual_seed(0)
    built = build_model(config, IMAGE)
    steps = []
    for mode in ("off", "default"):  # as the trainer builds them
        model, precision = prepare_model(copy.deepcopy(built), config.train, cpu)
        adam = make_optimizer(model.parameters(), config.train, cpu)
        forward = compiled(model, mode)
        steps.append(TrainStep(model, adam, noise, cpu, precision=precision, forward=forward))
    eager, graph = steps
    assert graph.forward is not graph.model
    features = (
        torch.rand(B, T + 1, *IMAGE, generator=torch.Generator().manual_seed(1)) < 0.3
    ).float()
    for seed in range(2):  # the second step starts from Adam-updated weights
        want, want_norms = eager(features, torch.Generator().manual_seed(seed))
        got, got_norms = graph(features, torch.Generator().manual_seed(seed))
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(got_norms, want_norms, rtol=1e-4, atol=1e-6)
        for (name, a), b in zip(
            eager.model.named_parameters(), graph.model.parameters(), strict=True
        ):
            assert a.grad is not None and b.grad is not None, name
            torch.testing.assert_close(b.grad, a.grad, rtol=1e-4, atol=1e-6, msg=name)
            torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-6, msg=name)
    assert not counters["graph_break"], dict(counters["graph_break"])  # the draws are outside
    assert counters["stats"]["unique_graphs"] == 1, dict(counters["stats"])
