"""The ``r-nem`` updater (Relational N-EM): its interaction term against the equations (R1)-(R7) of
its docstring computed by hand in float64, one pair at a time; K read from the shape (the same
weights with K = 3 and K = 5); the gate at 0 giving the no-interaction update; samples that never
interact; and training and evaluation through the CLI with the fc and the conv network."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from grouping_plugins.bernoulli import BernoulliLikelihood
from grouping_plugins.fc import FCNetwork
from grouping_plugins.r_nem import RNEM, Dense
from torch import Tensor, nn

from grouping.cli.main import cli
from grouping.plugin_api.interfaces import NetworkSpec

S, SHAPE = 6, (2, 3, 1)  # state size, image (H, W, C)


def make(attention: bool = True, gate: bool = True, layer_norm: bool = True) -> RNEM:
    """A small float64 r-nem on the fc network, every bias and layer norm moved off its default
    so that the hand computation exercises each parameter."""
    torch.manual_seed(0)
    net = FCNetwork(FCNetwork.Config(hidden=S, layer_norm=layer_norm), NetworkSpec(SHAPE))
    config = RNEM.Config(
        attention=attention, gate=gate, encoder_size=5, core_size=4, effect_size=3, attention_size=2
    )
    upd = RNEM(config, net, BernoulliLikelihood(BernoulliLikelihood.Config())).double()
    with torch.no_grad():
        for module in upd.modules():
            if isinstance(module, nn.Linear | nn.LayerNorm) and module.bias is not None:
                module.bias.uniform_(-0.5, 0.5)
            if isinstance(module, nn.LayerNorm):
                module.weight.uniform_(0.5, 1.5)
        if upd.gate is not None:
            upd.gate.fill_(0.7)
    return upd


def ln(x: Tensor, norm: nn.LayerNorm) -> Tensor:
    """Layer norm by hand: population variance, eps, gain and bias."""
    mean = x.mean()
    var = ((x - mean) ** 2).mean()
    return (x - mean) / torch.sqrt(var + norm.eps) * norm.weight + norm.bias


def fc_ln(x: Tensor, layer: Dense) -> Tensor:
    return ln(layer.linear.weight @ x + layer.linear.bias, layer.norm)


def hand_effect(upd: RNEM, state: Tensor, b: int, k: int) -> Tensor:
    """(R1)-(R5) for component k of sample b: a loop over the other components j != k."""
    h = [torch.relu(fc_ln(state[b, j], upd.encoder)) for j in range(state.shape[1])]  # (R1)
    total = torch.zeros(upd.config.effect_size, dtype=torch.float64)
    for j in range(state.shape[1]):
        if j == k:
            continue
        c = torch.relu(fc_ln(torch.cat([h[k], h[j]]), upd.core))  # (R2)
        f = torch.relu(fc_ln(c, upd.effect))  # (R3)
        a = torch.tensor(1.0, dtype=torch.float64)
        if upd.attend is not None and upd.attend_out is not None:
            hidden = torch.tanh(fc_ln(c, upd.attend))
            out = upd.attend_out
            a = torch.sigmoid(out.weight[0] @ hidden + out.bias[0])  # (R4)
        total = total + a * f  # (R5)
    return total


def hand_update(upd: RNEM, u: Tensor, state: Tensor, b: int, k: int) -> tuple[Tensor, Tensor]:
    """(R6)-(R7) for component k of sample b: its psi (H, W, C) and new state (S)."""
    h = torch.relu(fc_ln(state[b, k], upd.encoder))
    gate: float | Tensor = 1.0 if upd.gate is None else upd.gate
    e = u[b, k].reshape(-1)  # the fc network's encoding: the flat pixels
    z = upd.cell.weight @ torch.cat([h, gate * hand_effect(upd, state, b, k), e]) + upd.cell.bias
    shown = torch.sigmoid(ln(z, upd.norm) if upd.norm is not None else z)
    assert isinstance(upd.network, FCNetwork)
    decoder = upd.network.decoder
    psi = torch.sigmoid(decoder.weight @ shown + decoder.bias).reshape(SHAPE)
    return psi, torch.sigmoid(z)


def inputs(batch: int, k: int) -> tuple[Tensor, Tensor]:
    gen = torch.Generator().manual_seed(k)
    u = torch.randn(batch, k, *SHAPE, generator=gen, dtype=torch.float64)
    return u, torch.rand(batch, k, S, generator=gen, dtype=torch.float64)


@pytest.mark.parametrize("attention", [True, False])
def test_the_interaction_term_is_the_equations_by_hand(attention: bool) -> None:
    upd = make(attention=attention)
    _, state = inputs(2, 3)
    with torch.no_grad():
        effect = upd.interaction(upd.encode_state(state))  # (B, K, effect_size)
        for b in range(2):
            for k in range(3):
                torch.testing.assert_close(effect[b, k], hand_effect(upd, state, b, k))
    assert effect.abs().sum(dim=-1).min() > 0  # every component felt its others


@pytest.mark.parametrize("attention", [True, False])
@pytest.mark.parametrize("layer_norm", [True, False])
def test_the_whole_update_is_the_equations_by_hand(attention: bool, layer_norm: bool) -> None:
    upd = make(attention=attention, layer_norm=layer_norm)
    u, state = inputs(2, 3)
    with torch.no_grad():
        psi, new = upd(u, state)
        for b in range(2):
            for k in range(3):
                want_psi, want_state = hand_update(upd, u, state, b, k)
                torch.testing.assert_close(psi[b, k], want_psi)
                torch.testing.assert_close(new[b, k], want_state)


def test_the_same_weights_run_with_k3_and_k5() -> None:
    """No weight depends on K: one model runs with K = 3 and K = 5, and with K = 5 each
    component's update sums over its 4 others."""
    upd = make()
    shapes = {name: p.shape for name, p in upd.named_parameters()}
    for k in (3, 5):
        u, state = inputs(2, k)
        with torch.no_grad():
            psi, new = upd(u, state)
        assert psi.shape == (2, k, *SHAPE) and new.shape == (2, k, S)
    assert {name: p.shape for name, p in upd.named_parameters()} == shapes
    with torch.no_grad():
        for b in range(2):
            for k in range(5):
                torch.testing.assert_close(new[b, k], hand_update(upd, u, state, b, k)[1])
        alone, _ = upd(u[:, :1], state[:, :1])  # K = 1: no others, no effect
        assert alone.shape == (2, 1, *SHAPE)


def test_with_the_gate_at_zero_the_update_has_no_interaction() -> None:
    upd = make()
    u, state = inputs(2, 4)
    gate = upd.gate
    assert gate is not None
    with torch.no_grad():
        gate.zero_()
        psi, new = upd(u, state)
        # each component alone (K = 1) gives its own update: the others do not enter
        for k in range(4):
            psi_k, new_k = upd(u[:, k : k + 1], state[:, k : k + 1])
            torch.testing.assert_close(psi[:, k : k + 1], psi_k)
            torch.testing.assert_close(new[:, k : k + 1], new_k)
    # and the gate still learns: its gradient at 0 is not 0
    upd(u, state)[0].sum().backward()
    assert gate.grad is not None and gate.grad.abs() > 0


def test_a_fresh_model_starts_with_the_gate_at_zero_and_without_gate_has_none() -> None:
    net = FCNetwork(FCNetwork.Config(hidden=S), NetworkSpec(SHAPE))
    like = BernoulliLikelihood(BernoulliLikelihood.Config())
    gated = RNEM(RNEM.Config(), net, like)
    assert gated.gate is not None and gated.gate.item() == 0.0
    plain = RNEM(RNEM.Config(gate=False), net, like)
    assert plain.gate is None and "gate" not in dict(plain.named_parameters())


def test_components_of_different_samples_never_interact() -> None:
    upd = make()
    u, state = inputs(3, 4)
    with torch.no_grad():
        psi, new = upd(u, state)
        changed = state.clone()
        changed[0] += 1.0  # every component of sample 0
        psi2, new2 = upd(u, changed)
    assert not torch.equal(new2[0], new[0])
    assert torch.equal(new2[1:], new[1:]) and torch.equal(psi2[1:], psi[1:])


TINY_FLYING = [
    "dataset.size=16",
    "dataset.train_size=16",
    "dataset.valid_size=8",
    "dataset.test_size=8",
    "train.batch_size=8",
    "train.epochs=1",
    "train.valid_samples=8",
    "train.threads=1",
    "train.max_minutes=null",  # never a wall-clock limit in tests
    "eval.batch_size=8",
    "model.steps=3",
    "network.hidden=16",
    "updater.encoder_size=16",
    "updater.core_size=16",
    "updater.effect_size=16",
    "updater.attention_size=8",
]
CONV = ["network.encoder_channels=[4,8]", "network.encoder_fc=32", "network.decoder_fc=32"]


def _train(out: Path, network: str, *extra: str) -> dict[str, object]:
    args = ["run", "--updater", "r-nem", "--network", network, "--dataset", "flying-shapes"]
    for item in (*TINY_FLYING, *extra):
        args += ["--set", item]
    result = CliRunner().invoke(cli, [*args, "--out", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    summary: dict[str, object] = json.loads((out / "summary.json").read_text())
    return summary


@pytest.mark.parametrize(
    ("network", "extra"), [("fc", ("updater.attention=false",)), ("conv", tuple(CONV))]
)
def test_it_trains_through_the_cli_and_evaluates_with_another_k(
    network: str, extra: tuple[str, ...], tmp_path: Path
) -> None:
    summary = _train(tmp_path / "run", network, *extra)
    config = summary["config"]
    assert isinstance(config, dict) and config["updater"]["name"] == "r-nem"
    assert summary["epochs"] == 1
    losses = [
        json.loads(line)["train_loss"] for line in (tmp_path / "run" / "metrics.jsonl").open()
    ]
    assert losses and all(math.isfinite(loss) for loss in losses)
    result = CliRunner().invoke(cli, ["evaluate", str(tmp_path / "run"), "-k", "4", "--json"])
    assert result.exit_code == 0, result.output
    scores = json.loads(result.output)
    assert scores["images"] == 8 and -1.0 <= scores["ami"] <= 1.0
