"""Tests of the example plugins: the LSTM step computed by hand, the [h | c] state layout, that c is
carried from one EM step to the next, that gradients reach every weight through the unrolled EM
engine, that lstm-em drives any network, that a checkpoint written before the updater owned the
cell still loads, and that the installed entry points register both plugins with grouping.

Run them with ``python -m pytest examples/grouping-lstm/tests``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import grouping
from grouping.cli.main import cli
from grouping.config.loading import build_config
from grouping.engine.assembly import build_model, resolve
from grouping.engine.em import NeuralEM
from grouping.plugins import Likelihood, NetworkSpec, get_registry
from grouping.rundir.checkpoint import DIGEST_KEY, content_digest, load_checkpoint

grouping_lstm = pytest.importorskip(
    "grouping_lstm",
    reason="the example is not installed: pip install -e examples/grouping-lstm",
)
from grouping_lstm.network import LSTMNetwork  # noqa: E402
from grouping_lstm.updater import LSTMEM, join_state, split_state  # noqa: E402

F64 = torch.float64  # exact comparisons below
SHAPE = (4, 3, 1)  # (H, W, C): D = 12 pixels
B, K, S = 2, 3, 6  # samples, components, LSTM size
N = B * K  # the rows one LSTM cell sees


def bernoulli() -> Likelihood:
    """The built-in Bernoulli likelihood, through the registry as the engine gets it."""
    cls = get_registry().get("likelihood", "bernoulli").cls
    return cls(cls.Config())  # type: ignore[no-any-return]


def network(hidden: int = S) -> LSTMNetwork:
    return LSTMNetwork(LSTMNetwork.Config(hidden=hidden), NetworkSpec(image_shape=SHAPE))


def updater(
    net: LSTMNetwork | None = None, cell_clip: float | None = None, forget_bias: float = 1.0
) -> LSTMEM:
    config = LSTMEM.Config(cell_clip=cell_clip, forget_bias=forget_bias)
    return LSTMEM(config, net or network(), bernoulli()).to(F64)


def random_state(generator: torch.Generator) -> torch.Tensor:
    return torch.randn(B, K, 2 * S, generator=generator, dtype=F64)


def test_the_state_is_h_and_c_side_by_side_and_starts_at_zero() -> None:
    upd = updater()
    assert upd.network.state_size == S and upd.hidden == S and upd.state_size == 2 * S
    state = upd.initial_state(B, K, torch.device("cpu"), F64)
    assert state.shape == (B, K, 2 * S) and state.dtype == F64
    assert torch.equal(state, torch.zeros(B, K, 2 * S, dtype=F64))
    h, c = torch.arange(6.0).reshape(2, 3), -torch.arange(6.0).reshape(2, 3)
    assert join_state(h, c).tolist() == [[0, 1, 2, 0, -1, -2], [3, 4, 5, -3, -4, -5]]
    back_h, back_c = split_state(join_state(h, c))
    assert torch.equal(back_h, h) and torch.equal(back_c, c)
    grouped = join_state(h, c).reshape(1, 2, 6)  # the layout is on the last axis, any batch shape
    assert torch.equal(split_state(grouped)[1], c.reshape(1, 2, 3))


def test_one_step_is_the_lstm_equations_and_psi_is_the_activation_of_the_decoded_h() -> None:
    gen = torch.Generator().manual_seed(0)
    upd = updater()
    for p in upd.parameters():  # non-zero biases everywhere, so a mixed-up gate would show
        torch.nn.init.normal_(p, generator=gen)
    u = torch.randn(B, K, *SHAPE, generator=gen, dtype=F64)
    state = random_state(gen)
    psi, new_state = upd(u, state)
    assert psi.shape == (B, K, *SHAPE) and new_state.shape == (B, K, 2 * S)

    cell, net = upd.cell, upd.network
    x = u.reshape(N, -1)  # lstm-fc's encoding: the flat pixels, one row per component copy
    h0, c0 = state.reshape(N, 2 * S)[:, :S], state.reshape(N, 2 * S)[:, S:]
    gates = x @ cell.weight_ih.T + cell.bias_ih + h0 @ cell.weight_hh.T
    i, f, g, o = (gates + cell.bias_hh).chunk(4, dim=1)
    c1 = torch.sigmoid(f) * c0 + torch.sigmoid(i) * torch.tanh(g)
    h1 = torch.sigmoid(o) * torch.tanh(c1)
    flat = new_state.reshape(N, 2 * S)
    assert torch.allclose(flat[:, :S], h1, atol=1e-12)
    assert torch.allclose(flat[:, S:], c1, atol=1e-12)
    raw = (h1 @ net.decoder.weight.T + net.decoder.bias).reshape(B, K, *SHAPE)
    assert torch.allclose(psi, torch.sigmoid(raw), atol=1e-12)  # bernoulli's activation


def test_the_cell_state_is_carried_from_one_step_to_the_next() -> None:
    gen = torch.Generator().manual_seed(1)
    upd = updater()
    u1, u2 = torch.randn(2, B, K, *SHAPE, generator=gen, dtype=F64)
    _, state = upd(u1, upd.initial_state(B, K, torch.device("cpu"), F64))
    h, c = split_state(state)
    assert c.abs().min() > 0  # the first step wrote a cell state
    psi, after = upd(u2, state)
    psi_no_c, after_no_c = upd(u2, join_state(h, torch.zeros_like(c)))
    assert not torch.allclose(psi, psi_no_c)  # forgetting c changes the next prediction ...
    # ... by exactly the forget gate times the old cell: c2 - c2' = sigmoid(f2) * c1
    cell = upd.cell
    gates = u2.reshape(N, -1) @ cell.weight_ih.T + cell.bias_ih + h.reshape(N, S) @ cell.weight_hh.T
    f = torch.sigmoid((gates + cell.bias_hh).chunk(4, dim=1)[1]).reshape(B, K, S)
    assert torch.allclose(split_state(after)[1] - split_state(after_no_c)[1], f * c, atol=1e-12)


def test_the_weights_are_glorot_with_zero_biases_and_the_forget_bias() -> None:
    upd = updater(forget_bias=1.5)
    cell, net = upd.cell, upd.network
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
    u = 10.0 * torch.randn(B, K, *SHAPE, generator=gen, dtype=F64)
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
    names = [name for name, _ in upd.named_parameters()]
    assert names == [  # the network first, then the updater's cell: the checkpoint order
        "network.decoder.weight",
        "network.decoder.bias",
        "cell.weight_ih",
        "cell.weight_hh",
        "cell.bias_ih",
        "cell.bias_hh",
    ]
    for name, p in upd.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name  # weight_hh too: h is non-zero from step 2 on


@pytest.mark.parametrize(
    ("network_name", "options", "image", "encoding"),
    [
        ("lstm-fc", ["network.hidden=5"], (8, 8, 1), 64),
        ("fc", ["network.hidden=5"], (8, 8, 1), 64),  # an odd S is fine: the state is 2S
        (
            "conv",
            ["network.hidden=5", "network.encoder_channels=[4,4]", "network.encoder_fc=16"],
            (8, 8, 2),
            16,
        ),
    ],
)
def test_lstm_em_drives_any_network_through_its_encoder_and_decoder(
    network_name: str, options: list[str], image: tuple[int, int, int], encoding: int
) -> None:
    names = ["updater.name=lstm-em", f"network.name={network_name}", *options]
    config = resolve(build_config(assignments=[*names, "model.components=2", "model.steps=2"]))
    torch.manual_seed(0)
    model = build_model(config, image, get_registry())
    upd = model.updater
    assert isinstance(upd, LSTMEM) and upd.network.name == network_name
    assert upd.network.encoding_size == encoding
    assert (upd.cell.input_size, upd.cell.hidden_size, upd.state_size) == (encoding, 5, 10)
    frames = (torch.rand(3, 3, *image, generator=torch.Generator().manual_seed(0)) < 0.3).float()
    out = model(frames, frames, torch.Generator().manual_seed(1))
    assert out.psi.shape == (3, 2, 2, *image) and torch.isfinite(out.loss)
    out.loss.backward()
    assert all(p.grad is not None for p in upd.parameters())


def test_lstm_fc_serves_an_updater_that_only_decodes() -> None:
    """Without a recurrence of its own, lstm-fc is an affine decoder that N-EM can step through."""
    net = LSTMNetwork(LSTMNetwork.Config(hidden=4), NetworkSpec(image_shape=SHAPE, encoder=False))
    nem_cls = get_registry().get("updater", "n-em").cls
    nem = nem_cls(nem_cls.Config(eta_init=1.0), net, bernoulli())
    assert nem.form == "closed" and net.decoder_weight() is net.decoder.weight


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
    assert config.network.options() == {"hidden": 8, "forget_bias": None}
    assert config.updater.options() == {"cell_clip": None, "forget_bias": 1.0}
    model = build_model(config, SHAPE, get_registry())
    assert isinstance(model.updater, LSTMEM) and isinstance(model.updater.network, LSTMNetwork)
    state = model.updater.initial_state(3, 2, torch.device("cpu"), torch.float32)
    assert state.shape == (3, 2, 16)


#: What the lstm-fc network held before the updater owned the LSTM cell (checkpoint format 2).
OLD_PREFIX, NEW_PREFIX = "updater.network.cell.", "updater.cell."


def as_format_2(path: Path) -> None:
    """Rewrite a checkpoint as the grouping of format 2 wrote it for lstm-em on lstm-fc: the cell
    inside the network and registered before the decoder (parameters and Adam state in that
    order), ``forget_bias`` a network option, and the updater's options only ``cell_clip``."""
    payload = load_checkpoint(path)
    weights = payload["model"]
    cell = [k for k in weights if k.startswith(NEW_PREFIX)]
    rest = [k for k in weights if not k.startswith(NEW_PREFIX)]
    order = cell + rest  # the old registration order
    position = {k: i for i, k in enumerate(weights)}  # format 3's order
    payload["model"] = {k.replace(NEW_PREFIX, OLD_PREFIX): weights[k] for k in order}
    state = payload["optimizer"]["state"]
    payload["optimizer"]["state"] = {i: state[position[k]] for i, k in enumerate(order)}
    config = payload["config"]
    config["network"]["forget_bias"] = config["updater"].pop("forget_bias")
    payload["format_version"] = 2
    payload.pop(DIGEST_KEY)
    payload[DIGEST_KEY] = content_digest(payload)
    torch.save(payload, path)


def test_a_run_saved_before_the_updater_owned_the_cell_loads_and_scores_the_same(
    tmp_path: Path,
) -> None:
    out = tmp_path / "lstm"
    args = ["run", "--updater", "lstm-em", "--network", "lstm-fc", "--epochs", "1", "--steps", "2"]
    args += ["--train-size", "32", "--valid-size", "16", "--test-size", "16", "--batch-size", "16"]
    for item in ("train.threads=1", "train.valid_samples=16", "network.hidden=4"):
        args += ["--set", item]
    args += ["--set", "updater.cell_clip=3.0", "--set", "train.max_minutes=null", "--out", str(out)]
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    today = grouping.evaluate(out)
    for name in ("best.pt", "last.pt"):
        as_format_2(out / "checkpoints" / name)
    config = (out / "config.toml").read_text()  # the run folder's config, as format 2 wrote it
    assert config.count("forget_bias = 1.0\n") == 1 and config.count('name = "lstm-fc"\n') == 1
    config = config.replace("forget_bias = 1.0\n", "")  # updater: the option it did not have
    config = config.replace('name = "lstm-fc"\n', 'name = "lstm-fc"\nforget_bias = 1.0\n')
    (out / "config.toml").write_text(config)
    assert load_checkpoint(out / "checkpoints" / "best.pt")["format_version"] == 3  # upgraded
    before = grouping.evaluate(out)
    assert (before["ami"], before["loss"]) == (today["ami"], today["loss"])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["config"]["updater"]["name"] == "lstm-em"
