"""Updaters whose components interact: they see the K components of a sample together, read K from
the shape, and so run with another K than they were trained with, whatever the evaluation's batch
size. The updater here is the smallest such method: each component's recurrent update also reads
the mean of the other components' states (a mean field, the simplest R-NEM-like interaction)."""

from __future__ import annotations

import json
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import Tensor, nn

from grouping import hookimpl
from grouping.cli.main import cli
from grouping.plugin_api.interfaces import Likelihood, Network, PluginConfig, Updater
from tests.conftest import TINY

SET_TINY = [arg for item in TINY for arg in ("--set", item)]


class MeanField(Updater):
    """h_k = sigmoid(W [e_k; h_k; mean_{j != k} h_j] + b); psi_k = activation(decode(h_k))."""

    name = "mean-field"
    description = "test updater: RNN-EM whose update also reads the other components' mean state"

    def __init__(self, config: PluginConfig, network: Network, likelihood: Likelihood) -> None:
        super().__init__(config, network, likelihood)
        size = network.state_size
        self.cell = nn.Linear(network.encoding_size + 2 * size, size)

    def forward(self, u: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        b, k = u.shape[:2]  # K is the shape: nothing here depends on the trained K
        others = (state.sum(dim=1, keepdim=True) - state) / max(k - 1, 1)  # (B, K, S)
        e = self.network.encode(u.flatten(0, 1))  # (B*K, E)
        a = self.cell(torch.cat([e, state.flatten(0, 1), others.flatten(0, 1)], dim=1))
        h = torch.sigmoid(a)
        psi = self.likelihood.activation(self.network.decode(h))
        return psi.unflatten(0, (b, k)), h.unflatten(0, (b, k))


@pytest.fixture
def mean_field(register_plugin: Callable[[Any, str], None]) -> None:
    mod = types.ModuleType("mean_field_plugin")
    mod.register_updaters = hookimpl(lambda register: register(MeanField))  # type: ignore[attr-defined]
    register_plugin(mod, "mean-field-plugin")


def test_the_updater_sees_all_components_and_mixes_them() -> None:
    """Changing one component's state changes the others' next state (they interact), and a
    sample's update never reads another sample's components."""
    from grouping_plugins.bernoulli import BernoulliLikelihood
    from grouping_plugins.fc import FCNetwork

    from grouping.plugin_api.interfaces import NetworkSpec

    torch.manual_seed(0)
    like = BernoulliLikelihood(BernoulliLikelihood.Config())
    net = FCNetwork(FCNetwork.Config(hidden=5), NetworkSpec((2, 2, 1)))
    upd = MeanField(PluginConfig(), net, like)
    u, state = torch.randn(2, 3, 2, 2, 1), torch.rand(2, 3, 5)
    _, before = upd(u, state)
    changed = state.clone()
    changed[0, 0] += 1.0
    _, after = upd(u, changed)
    assert not torch.equal(after[0, 1], before[0, 1])  # component 1 of sample 0 felt it
    assert torch.equal(after[1], before[1])  # sample 1 did not


def _evaluate(run: Path, *args: str) -> dict[str, Any]:
    result = CliRunner().invoke(cli, ["evaluate", str(run), "--json", *args])
    assert result.exit_code == 0, result.output
    return dict(json.loads(result.output))


def _gammas(run: Path, k: int, batch: int) -> Tensor:
    """The last step's gamma of the first 12 test images, scored in batches of ``batch``."""
    from grouping.data.batches import iterate_batches
    from grouping.evaluation.scoring import per_sample_draws
    from grouping.rundir.loading import load_trained

    loaded = load_trained(run, "auto", "cpu", overrides={"model": {"components": k}})
    split, model = loaded.dataset.split("test"), loaded.model
    out, start = [], 0
    with torch.no_grad():
        for x, _ in iterate_batches(
            split, np.arange(12), batch, model.steps + 1, torch.device("cpu")
        ):
            inputs, gamma0 = per_sample_draws(model, loaded.noise, x, 1234, start)
            start += x.shape[0]
            out.append(model(inputs, x, gamma=gamma0).gamma[:, -1])
    return torch.cat(out)


def test_trained_with_k3_it_evaluates_with_k4_and_k2_whatever_the_batch_size(
    mean_field: None, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    args = ["run", *SET_TINY, "--updater", "mean-field", "--set", "model.components=3"]
    result = CliRunner().invoke(cli, [*args, "--set", "train.threads=1", "--out", str(run)])
    assert result.exit_code == 0, result.output
    for k in (4, 2):
        # each image's grouping is its own: the same for batches of 12, 5 and 1, to float rounding
        gammas = [_gammas(run, k, batch) for batch in (12, 5, 1)]
        assert gammas[0].shape == (12, k, 28, 28, 1)
        for other in gammas[1:]:
            torch.testing.assert_close(other, gammas[0], atol=1e-5, rtol=1e-4)
        # and through the CLI, with any eval.batch_size
        scores = [_evaluate(run, "-k", str(k), "--set", f"eval.batch_size={b}") for b in (32, 7)]
        assert scores[0]["images"] == scores[1]["images"] == 32
        assert scores[1]["ami"] == pytest.approx(scores[0]["ami"], abs=0.01)
