"""N-EM: the generalized-EM property, closed form == autograd form, and N-EM through the CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from grouping_plugins.bernoulli import BernoulliLikelihood
from grouping_plugins.fc import FCNetwork
from grouping_plugins.n_em import GLOROT_SCALAR_LIMIT, NEM
from torch import Tensor, nn

from grouping.cli.main import cli
from grouping.config.loading import build_config
from grouping.engine.assembly import assemble, resolve
from grouping.errors import PluginError
from grouping.plugin_api.interfaces import Likelihood, Network, NetworkSpec, PluginConfig

bern = BernoulliLikelihood(BernoulliLikelihood.Config())
SHAPE = (4, 5, 1)  # (H, W, C): D = 20 pixels


def make_nem(
    form: str = "auto",
    eta: float = 0.1,
    hidden: int = 6,
    seed: int = 0,
    shape: tuple[int, int, int] = SHAPE,
) -> NEM:
    torch.manual_seed(seed)
    spec = NetworkSpec(image_shape=shape, encoder=False)
    net = FCNetwork(FCNetwork.Config(hidden=hidden, decoder_bias=False), spec)
    return NEM(NEM.Config(eta_init=eta, form=form), net, bern)  # type: ignore[arg-type]


def q_value(nem: NEM, theta: Tensor, x: Tensor, gamma: Tensor) -> Tensor:
    """Q(theta) = sum gamma * log P(x | psi(theta)), the expected log-likelihood (spec 2.5)."""
    psi = bern.activation(nem.network.decode(torch.sigmoid(theta)))
    return -(gamma * bern.intra(x, psi)).sum()


def random_problem(seed: int, n: int = 6) -> tuple[Tensor, Tensor, Tensor]:
    """Binary data x, responsibilities gamma in (0, 1) and a state theta, all (N, ...)."""
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(n, *SHAPE, generator=g) < 0.5).float()
    gamma = torch.rand(n, *SHAPE, generator=g)
    theta = 2.0 * torch.randn(n, 6, generator=g)
    return x, gamma, theta


def grouped(t: Tensor) -> Tensor:
    """N = 6 rows as the updater sees them: B = 2 samples of K = 3 components."""
    return t.unflatten(0, (2, 3))


def em_step(nem: NEM, theta: Tensor, x: Tensor, gamma: Tensor) -> Tensor:
    with torch.no_grad():
        psi = bern.activation(nem.network.decode(torch.sigmoid(theta)))
        _, new = nem(grouped(gamma * (x - psi)), grouped(theta))
    return new.flatten(0, 1)


@pytest.mark.parametrize("form", ["closed", "autograd"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_small_step_never_decreases_q(form: str, seed: int) -> None:
    nem = make_nem(form, eta=0.05, seed=seed)
    x, gamma, theta = random_problem(seed)
    q = q_value(nem, theta, x, gamma)
    for _ in range(20):
        theta = em_step(nem, theta, x, gamma)
        q_next = q_value(nem, theta, x, gamma)
        assert q_next > q  # strictly: the gradient is never zero on random data
        q = q_next


def test_the_step_is_the_gradient_of_q() -> None:
    nem = make_nem("closed", eta=1.0)
    x, gamma, theta = random_problem(3)
    theta = theta.requires_grad_(True)
    (grad_q,) = torch.autograd.grad(q_value(nem, theta, x, gamma), theta)
    step = em_step(nem, theta.detach(), x, gamma) - theta.detach()
    torch.testing.assert_close(step, grad_q, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("form", ["closed", "autograd"])
def test_eta_zero_leaves_the_state_unchanged(form: str) -> None:
    nem = make_nem(form, eta=0.0)
    x, gamma, theta = random_problem(4)
    assert torch.equal(em_step(nem, theta, x, gamma), theta)


def unrolled_loss(nem: NEM, x: Tensor, gamma: Tensor, steps: int = 4) -> tuple[Tensor, Tensor]:
    """A few N-EM steps from theta = 0 with psi^(0) = 0, as the engine runs them; (loss, psi)."""
    x, gamma = grouped(x), grouped(gamma)
    theta = nem.initial_state(2, 3, x.device, x.dtype)  # (B, K, S)
    psi = torch.zeros_like(x)
    for _ in range(steps):
        psi, theta = nem(gamma * (x - psi), theta)
    return (gamma * bern.intra(x, psi)).sum(), psi


def test_closed_and_autograd_forms_agree_in_value_and_gradient() -> None:
    closed, auto = make_nem("closed", eta=0.7), make_nem("autograd", eta=0.7)
    auto.load_state_dict(closed.state_dict())
    assert (closed.form, auto.form) == ("closed", "autograd")
    x, gamma, _ = random_problem(5)
    loss_c, psi_c = unrolled_loss(closed, x, gamma)
    loss_a, psi_a = unrolled_loss(auto, x, gamma)
    torch.testing.assert_close(psi_c, psi_a)  # float32 tolerances
    loss_c.backward()
    loss_a.backward()
    for (name, p_c), p_a in zip(closed.named_parameters(), auto.parameters()):
        assert p_c.grad is not None and p_a.grad is not None, name
        torch.testing.assert_close(p_c.grad, p_a.grad, rtol=1e-4, atol=1e-6)
    assert closed.eta.grad is not None and float(closed.eta.grad) != 0.0


def test_forms_agree_without_gradients_as_at_evaluation() -> None:
    closed, auto = make_nem("closed"), make_nem("autograd")
    auto.load_state_dict(closed.state_dict())
    x, gamma, _ = random_problem(6)
    with torch.no_grad():
        psi_c = unrolled_loss(closed, x, gamma)[1]
        psi_a = unrolled_loss(auto, x, gamma)[1]
    assert not psi_a.requires_grad
    torch.testing.assert_close(psi_c, psi_a)


def test_auto_picks_the_closed_form_when_the_network_offers_its_weight() -> None:
    assert make_nem("auto").form == "closed"


class SquareDecoder(Network):
    """A non-affine decoder (no ``decoder_weight``): raw = (h V)^2."""

    name = "square-decoder"
    description = "test network"

    def __init__(self, config: PluginConfig, spec: NetworkSpec) -> None:
        super().__init__(config, spec)
        self.v = nn.Parameter(torch.randn(3, math.prod(spec.image_shape)))

    @property
    def state_size(self) -> int:
        return 3

    def decode(self, h: Tensor) -> Tensor:
        return ((h @ self.v) ** 2).reshape(h.shape[0], *self.spec.image_shape)


def test_autograd_form_is_the_gradient_of_q_for_any_decoder() -> None:
    torch.manual_seed(0)
    net = SquareDecoder(PluginConfig(), NetworkSpec(SHAPE, encoder=False))
    nem = NEM(NEM.Config(eta_init=1.0), net, bern)
    assert nem.form == "autograd"
    x, gamma, _ = random_problem(7)
    theta = torch.randn(x.shape[0], 3, requires_grad=True)
    (grad_q,) = torch.autograd.grad(q_value(nem, theta, x, gamma), theta)
    step = em_step(nem, theta.detach(), x, gamma) - theta.detach()
    torch.testing.assert_close(step, grad_q, rtol=1e-5, atol=1e-5)


def test_closed_form_is_refused_for_a_network_without_decoder_weight() -> None:
    net = SquareDecoder(PluginConfig(), NetworkSpec(SHAPE, encoder=False))
    with pytest.raises(ValueError, match="form 'closed' needs a network"):
        NEM(NEM.Config(form="closed"), net, bern)


def test_a_likelihood_without_canonical_link_is_refused() -> None:
    class Odd(BernoulliLikelihood):
        name = "odd"
        canonical_link = False

    net = FCNetwork(FCNetwork.Config(hidden=4), NetworkSpec(SHAPE, encoder=False))
    with pytest.raises(ValueError, match="canonical link"):
        NEM(NEM.Config(), net, Odd(Odd.Config()))
    assert not Likelihood.canonical_link and bern.canonical_link


def test_eta_init_glorot_is_uniform_in_plus_minus_sqrt3_and_a_number_is_exact() -> None:
    spec = NetworkSpec(SHAPE, encoder=False)
    net = FCNetwork(FCNetwork.Config(hidden=4), spec)
    torch.manual_seed(0)
    etas = [NEM(NEM.Config(), net, bern).eta.item() for _ in range(200)]
    assert all(abs(e) <= GLOROT_SCALAR_LIMIT for e in etas)
    assert min(etas) < -1.0 and max(etas) > 1.0  # both signs, as the original
    assert NEM(NEM.Config(eta_init=1.0), net, bern).eta.item() == 1.0


def test_the_preset_builds_the_paper_network_with_196001_parameters() -> None:
    config = resolve(build_config("static-shapes-nem"))
    assert config.updater.name == "n-em" and config.model.components == 3
    model = assemble(config).model
    assert sum(p.numel() for p in model.parameters()) == 196_001
    names = {name for name, _ in model.updater.named_parameters()}
    assert names == {"eta", "network.decoder.weight"}  # no encoder, no recurrent weights built
    assert model.updater.eta.item() == 1.0  # the documented positive start


def test_the_engine_runs_n_em_and_the_loss_reaches_decoder_and_eta(tiny_config) -> None:  # type: ignore[no-untyped-def]
    config = resolve(tiny_config("updater.name=n-em", "network.decoder_bias=false"))
    parts = assemble(config)
    features, _ = parts.dataset.split("train").get(torch.arange(4).numpy())
    frames = features.expand(4, config.model.steps + 1, *features.shape[2:])
    out = parts.model(frames, frames, torch.Generator().manual_seed(0))
    assert out.gamma.shape[:3] == (4, config.model.steps + 1, 3)
    torch.testing.assert_close(out.gamma.sum(dim=2), torch.ones_like(out.gamma[:, :, 0]))
    out.loss.backward()
    updater = parts.model.updater
    assert isinstance(updater, NEM)
    assert updater.eta.grad is not None and torch.isfinite(updater.eta.grad)
    assert updater.network.decoder.weight.grad.abs().sum() > 0


def test_grouping_run_with_n_em_through_the_cli(run_dir: Path) -> None:
    from tests.conftest import TINY

    args = ["run", "--updater", "n-em", "--out", str(run_dir), "--json"]
    for item in TINY:
        args += ["--set", item]
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["config"]["updater"]["name"] == "n-em"
    assert summary["config"]["dataset"]["name"] == "shapes"
    assert -1.0 <= summary["test"]["ami"] <= 1.0
    # 28 x 28 pixels, 16 hidden units, the quickstart network keeps its decoder bias; plus eta
    assert summary["parameters"] == 784 * 16 + 784 + 1


def test_the_static_shapes_nem_preset_runs_through_the_cli(run_dir: Path) -> None:
    from tests.conftest import TINY

    args = ["run", "--preset", "static-shapes-nem", "--out", str(run_dir)]
    for item in TINY:
        args += ["--set", item]
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["parameters"] == 784 * 16 + 1


def test_a_bad_n_em_option_is_one_line_and_exit_code_2() -> None:
    result = CliRunner().invoke(cli, ["run", "--updater", "n-em", "--set", "updater.form=fast"])
    assert result.exit_code == 2
    assert "updater.form" in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_plugin_error_for_closed_form_on_a_network_without_weight(register_plugin) -> None:  # type: ignore[no-untyped-def]
    from grouping.plugin_api.hookspecs import hookimpl

    class Provider:
        @hookimpl
        def register_networks(self, register):  # type: ignore[no-untyped-def]
            register(SquareDecoder)

    register_plugin(Provider(), "square-decoder-test")
    config = build_config(
        "static-shapes-nem",
        assignments=[
            "network.name=square-decoder",
            "updater.form=closed",
            "dataset.train_size=8",
            "train.batch_size=8",
        ],
    )
    with pytest.raises(PluginError, match="form 'closed' needs a network"):
        assemble(resolve(config))
