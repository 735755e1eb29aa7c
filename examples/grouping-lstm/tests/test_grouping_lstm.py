"""Tests of the example plugins: the LSTM step computed by hand, the [h | c] state layout, that c is
carried from one EM step to the next, that gradients reach every weight through the unrolled EM
engine, the refusals, and that the installed entry points register both plugins with grouping.

Run them with ``python -m pytest examples/grouping-lstm/tests``.
"""

from __future__ import annotations

import pytest
import torch

from grouping.config.loading import build_config
from grouping.engine.assembly import build_model, resolve
from grouping.engine.em import NeuralEM
from grouping.errors import PluginError
from grouping.plugins import Likelihood, NetworkSpec, get_registry

grouping_lstm = pytest.importorskip(
    "grouping_lstm",
    reason="the example is not installed: pip install -e examples/grouping-lstm",
)
from grouping_lstm.network import LSTMNetwork, join_state, split_state  # noqa: E402
from grouping_lstm.updater import LSTMEM  # noqa: E402

F64 = torch.float64  # exact comparisons below
SHAPE = (4, 3, 1)  # (H, W, C): D = 12 pixels
N, S = 5, 6  # copies, LSTM size


def bernoulli() -> Likelihood:
    """The built-in Bernoulli likelihood, through the registry as the engine gets it."""
    cls = get_registry().get("likelihood", "bernoulli").cls
    return cls(cls.Config())  # type: ignore[no-any-return]


def network(hidden: int = S, forget_bias: float = 1.0) -> LSTMNetwork:
    config = LSTMNetwork.Config(hidden=hidden, forget_bias=forget_bias)
    return LSTMNetwork(config, NetworkSpec(image_shape=SHAPE)).to(F64)


def updater(net: LSTMNetwork | None = None, cell_clip: float | None = None) -> LSTMEM:
    return LSTMEM(LSTMEM.Config(cell_clip=cell_clip), net or network(), bernoulli()).to(F64)


def random_state(generator: torch.Generator) -> torch.Tensor:
    return torch.randn(N, 2 * S, generator=generator, dtype=F64)


def test_the_state_is_h_and_c_side_by_side_and_starts_at_zero() -> None:
    net, upd = network(), updater()
    assert net.state_size == 2 * S and upd.hidden == S
    state = upd.initial_state(N, torch.device("cpu"), F64)
    assert state.shape == (N, 2 * S) and state.dtype == F64
    assert torch.equal(state, torch.zeros(N, 2 * S, dtype=F64))
    h, c = torch.arange(6.0).reshape(2, 3), -torch.arange(6.0).reshape(2, 3)
    assert join_state(h, c).tolist() == [[0, 1, 2, 0, -1, -2], [3, 4, 5, -3, -4, -5]]
    back_h, back_c = split_state(join_state(h, c))
    assert torch.equal(back_h, h) and torch.equal(back_c, c)


def test_one_step_is_the_lstm_equations_and_psi_is_the_activation_of_the_decoded_h() -> None:
    gen = torch.Generator().manual_seed(0)
    upd = updater()
    net = upd.network
    for p in net.parameters():  # non-zero biases everywhere, so a mixed-up gate would show
        torch.nn.init.normal_(p, generator=gen)
    u = torch.randn(N, *SHAPE, generator=gen, dtype=F64)
    state = random_state(gen)
    psi, new_state = upd(u, state)
    assert psi.shape == (N, *SHAPE) and new_state.shape == (N, 2 * S)

    cell = net.cell
    h0, c0 = state[:, :S], state[:, S:]
    gates = u.reshape(N, -1) @ cell.weight_ih.T + cell.bias_ih + h0 @ cell.weight_hh.T
    i, f, g, o = (gates + cell.bias_hh).chunk(4, dim=1)
    c1 = torch.sigmoid(f) * c0 + torch.sigmoid(i) * torch.tanh(g)
    h1 = torch.sigmoid(o) * torch.tanh(c1)
    assert torch.allclose(new_state[:, :S], h1, atol=1e-12)
    assert torch.allclose(new_state[:, S:], c1, atol=1e-12)
    raw = (h1 @ net.decoder.weight.T + net.decoder.bias).reshape(N, *SHAPE)
    assert torch.allclose(psi, torch.sigmoid(raw), atol=1e-12)  # bernoulli's activation


def test_the_cell_state_is_carried_from_one_step_to_the_next() -> None:
    gen = torch.Generator().manual_seed(1)
    upd = updater()
    u1, u2 = torch.randn(2, N, *SHAPE, generator=gen, dtype=F64)
    _, state = upd(u1, upd.initial_state(N, torch.device("cpu"), F64))
    h, c = split_state(state)
    assert c.abs().min() > 0  # the first step wrote a cell state
    psi, after = upd(u2, state)
    psi_no_c, after_no_c = upd(u2, join_state(h, torch.zeros_like(c)))
    assert not torch.allclose(psi, psi_no_c)  # forgetting c changes the next prediction ...
    # ... by exactly the forget gate times the old cell: c2 - c2' = sigmoid(f2) * c1
    cell = upd.network.cell
    gates = u2.reshape(N, -1) @ cell.weight_ih.T + cell.bias_ih + h @ cell.weight_hh.T
    f = torch.sigmoid((gates + cell.bias_hh).chunk(4, dim=1)[1])
    assert torch.allclose(split_state(after)[1] - split_state(after_no_c)[1], f * c, atol=1e-12)


def test_the_weights_are_glorot_with_zero_biases_and_the_forget_bias() -> None:
    net = network(hidden=S, forget_bias=1.5)
    cell = net.cell
    assert cell.weight_ih.shape == (4 * S, 12) and cell.weight_hh.shape == (4 * S, S)
    assert net.decoder.weight.shape == (12, S)
    bound = (6.0 / (4 * S + 12)) ** 0.5  # Glorot uniform over fan_in + fan_out
    assert cell.weight_ih.abs().max().item() <= bound
    expected = torch.zeros(4 * S, dtype=F64)
    expected[S : 2 * S] = 1.5  # gates i, f, g, o: only f is biased
    assert torch.equal(cell.bias_ih.detach(), expected)
    assert not cell.bias_hh.any() and not net.decoder.bias.any()


def test_cell_clip_bounds_only_the_carried_cell_state() -> None:
    gen = torch.Generator().manual_seed(2)
    free, clipped = updater(), updater(cell_clip=0.1)
    clipped.load_state_dict(free.state_dict())
    u = 10.0 * torch.randn(N, *SHAPE, generator=gen, dtype=F64)
    state = 10.0 * random_state(gen)
    psi_free, s_free = free(u, state)
    psi_clip, s_clip = clipped(u, state)
    assert torch.equal(psi_free, psi_clip)  # this step's prediction is unchanged
    assert torch.equal(split_state(s_clip)[0], split_state(s_free)[0])  # and so is h
    assert torch.equal(split_state(s_clip)[1], split_state(s_free)[1].clamp(-0.1, 0.1))
    assert split_state(s_free)[1].abs().max() > 0.1  # the bound did bite


def test_gradients_reach_every_weight_through_the_unrolled_em_engine() -> None:
    gen = torch.Generator().manual_seed(3)
    upd = updater()
    model = NeuralEM(upd, upd.likelihood, components=3, steps=3, gradient_gamma=False).to(F64)
    frames = (torch.rand(2, 4, *SHAPE, generator=gen, dtype=F64) > 0.5).to(F64)  # (B, T+1, ...)
    result = model(frames, frames, generator=gen)
    assert result.psi.shape == (2, 3, 3, *SHAPE) and torch.isfinite(result.loss)
    result.loss.backward()
    names = {name for name, _ in upd.named_parameters()}
    assert names == {
        "network.cell.weight_ih",
        "network.cell.weight_hh",
        "network.cell.bias_ih",
        "network.cell.bias_hh",
        "network.decoder.weight",
        "network.decoder.bias",
    }
    for name, p in upd.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name  # weight_hh too: h is non-zero from step 2 on


def test_lstm_em_refuses_a_network_with_an_odd_state_size() -> None:
    config = resolve(
        build_config(assignments=["updater.name=lstm-em", "network.name=fc", "network.hidden=5"])
    )
    with pytest.raises(PluginError, match="even state size.*state size 5"):
        build_model(config, SHAPE, get_registry())


def test_lstm_fc_refuses_to_be_built_for_an_updater_that_only_decodes() -> None:
    with pytest.raises(ValueError, match="recurrent cell"):
        LSTMNetwork(LSTMNetwork.Config(), NetworkSpec(image_shape=SHAPE, recurrent=False))


def test_the_entry_points_register_both_plugins_under_the_package() -> None:
    registry = get_registry()
    for kind, name, cls in (("updater", "lstm-em", LSTMEM), ("network", "lstm-fc", LSTMNetwork)):
        info = registry.get(kind, name)  # type: ignore[arg-type]
        assert info.cls is cls
        assert info.provider.package == "grouping-lstm"
        assert info.provider.version == grouping_lstm.__version__


def test_a_run_config_builds_the_model_with_the_lstm() -> None:
    names = ["updater.name=lstm-em", "network.name=lstm-fc", "network.hidden=8"]
    config = resolve(build_config(assignments=names))
    assert config.network.options() == {"hidden": 8, "forget_bias": 1.0}
    model = build_model(config, SHAPE, get_registry())
    assert isinstance(model.updater, LSTMEM) and isinstance(model.updater.network, LSTMNetwork)
    assert model.updater.initial_state(3, torch.device("cpu"), torch.float32).shape == (3, 16)
