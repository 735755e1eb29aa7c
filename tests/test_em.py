"""The EM engine: exact checks of the E-step, the loss, stop-gradient and frame alignment."""

from __future__ import annotations

import math

import pytest
import torch
from grouping_plugins.bernoulli import BernoulliLikelihood
from grouping_plugins.fc import FCNetwork
from grouping_plugins.rnn_em import RNNEM
from torch import Tensor

from grouping.engine.em import (
    E_STEP_FLOOR,
    NeuralEM,
    e_step,
    initial_gamma,
    smooth_gamma,
    step_loss,
    upper_bound,
)
from grouping.plugin_api.interfaces import NetworkSpec, PluginConfig, Updater
from tests.fakes import IdentityNetwork

bern = BernoulliLikelihood(BernoulliLikelihood.Config())


def test_initial_gamma_sums_to_one_and_is_random() -> None:
    g = torch.Generator().manual_seed(0)
    gamma = initial_gamma((4, 3, 5, 5, 1), g, torch.device("cpu"))
    torch.testing.assert_close(gamma.sum(dim=1), torch.ones(4, 5, 5, 1))
    assert (gamma > 0).all()
    again = initial_gamma((4, 3, 5, 5, 1), g, torch.device("cpu"))
    assert not torch.equal(gamma, again)
    assert torch.equal(
        initial_gamma((2, 1, 3, 3, 1), g, torch.device("cpu")), torch.ones(2, 1, 3, 3, 1)
    )


def _neighbours_agree(gamma: Tensor) -> float:
    """The fraction of horizontally adjacent pixels whose argmax component is the same."""
    owner = gamma[..., 0].argmax(dim=1)
    return (owner[..., 1:] == owner[..., :-1]).float().mean().item()


def test_smooth_gamma_sums_to_one_and_is_spatially_coherent() -> None:
    g = torch.Generator().manual_seed(0)
    cpu = torch.device("cpu")
    gamma = smooth_gamma((8, 3, 28, 28, 1), 3, g, cpu)
    assert gamma.shape == (8, 3, 28, 28, 1)
    torch.testing.assert_close(gamma.sum(dim=1), torch.ones(8, 28, 28, 1))
    assert not torch.equal(gamma, smooth_gamma((8, 3, 28, 28, 1), 3, g, cpu))
    # regions, not salt and pepper: with 3 components a pixel init agrees 1/3 of the time
    assert _neighbours_agree(gamma) > 0.9
    assert _neighbours_agree(initial_gamma((8, 3, 28, 28, 1), g, cpu)) < 0.45
    assert torch.equal(smooth_gamma((2, 1, 5, 5, 1), 3, g, cpu), torch.ones(2, 1, 5, 5, 1))


def test_the_model_draws_the_gamma_init_its_config_names() -> None:
    from grouping.config.loading import build_config
    from grouping.engine.assembly import build_model

    def model_for(*assignments: str) -> NeuralEM:
        config = build_config("quickstart", assignments=list(assignments))
        return build_model(config, (28, 28, 1))

    assert model_for().gamma_grid is None
    smooth = model_for("model.gamma_init=smooth", "model.gamma_init_grid=4")
    assert smooth.gamma_grid == 4
    targets = torch.zeros(2, 3, 28, 28, 1)
    _, gamma, _ = smooth.start(targets, torch.Generator().manual_seed(1))
    assert _neighbours_agree(gamma) > 0.9


def test_e_step_sums_to_one_and_matches_hand_computation() -> None:
    x = torch.tensor([1.0, 0.0]).reshape(1, 1, 1, 2, 1)
    psi = torch.tensor([[0.9, 0.2], [0.3, 0.6]]).reshape(1, 2, 1, 2, 1)
    gamma = e_step(bern, x, psi)
    torch.testing.assert_close(gamma.sum(dim=1), torch.ones(1, 1, 2, 1))
    # pixel 0 (x=1): p = 0.9, 0.3; pixel 1 (x=0): p = 0.8, 0.4, each plus the floor
    p0 = torch.tensor([0.9, 0.3]) + E_STEP_FLOOR
    p1 = torch.tensor([0.8, 0.4]) + E_STEP_FLOOR
    torch.testing.assert_close(gamma[0, :, 0, 0, 0], p0 / p0.sum())
    torch.testing.assert_close(gamma[0, :, 0, 1, 0], p1 / p1.sum())


def test_a_sharper_bernoulli_e_step_raises_the_likelihoods_to_its_power() -> None:
    sharp = BernoulliLikelihood(BernoulliLikelihood.Config(sharpness=2.0))
    x = torch.tensor([1.0, 0.0]).reshape(1, 1, 1, 2, 1)
    psi = torch.tensor([[0.9, 0.2], [0.3, 0.6]]).reshape(1, 2, 1, 2, 1)
    gamma = e_step(sharp, x, psi)
    p0 = torch.tensor([0.81, 0.09]) + E_STEP_FLOOR
    torch.testing.assert_close(gamma[0, :, 0, 0, 0], p0 / p0.sum())
    # the same argmax as the paper's E-step, with a more decisive gamma
    plain = e_step(bern, x, psi)
    assert torch.equal(gamma.argmax(dim=1), plain.argmax(dim=1))
    assert gamma.max(dim=1).values.min() > plain.max(dim=1).values.min()


def test_e_step_floor_keeps_gamma_finite_when_every_component_says_zero() -> None:
    x = torch.ones(1, 1, 1, 1, 1)
    psi = torch.zeros(1, 3, 1, 1, 1)
    gamma = e_step(bern, x, psi)
    torch.testing.assert_close(gamma.flatten(), torch.full((3,), 1 / 3))


def test_e_step_multiplies_channels() -> None:
    x = torch.tensor([1.0, 0.0]).reshape(1, 1, 1, 1, 2)
    psi = torch.tensor([[0.9, 0.5], [0.5, 0.5]]).reshape(1, 2, 1, 1, 2)
    gamma = e_step(bern, x, psi)
    p = torch.tensor([0.9 * 0.5, 0.5 * 0.5]) + E_STEP_FLOOR
    torch.testing.assert_close(gamma.flatten(), p / p.sum())


def test_step_loss_matches_a_hand_computed_value() -> None:
    # B=2, K=2, one pixel each
    x = torch.tensor([1.0, 0.0]).reshape(2, 1, 1, 1, 1)
    psi = torch.tensor([[0.8, 0.1], [0.3, 0.6]]).reshape(2, 2, 1, 1, 1)
    gamma = torch.tensor([[0.75, 0.25], [0.4, 0.6]]).reshape(2, 2, 1, 1, 1)
    w = 0.5
    expected = 0.0
    for b, xb in enumerate([1.0, 0.0]):
        for k in range(2):
            p, g = float(psi[b, k]), float(gamma[b, k])
            bce = -(xb * math.log(p) + (1 - xb) * math.log(1 - p))
            kl = -math.log(1 - p)  # KL(Bern(0) || Bern(p))
            expected += g * bce + w * (1 - g) * kl
    expected /= 2
    got = step_loss(bern, x, psi, gamma, w)
    assert float(got) == pytest.approx(expected, rel=1e-6)


def test_upper_bound_uses_the_max_over_components() -> None:
    x = torch.tensor([1.0]).reshape(1, 1, 1, 1, 1)
    psi = torch.tensor([0.2, 0.7]).reshape(1, 2, 1, 1, 1)
    assert float(upper_bound(bern, x, psi)) == pytest.approx(-math.log(0.7), rel=1e-6)


def _model(gradient_gamma: bool, steps: int = 2, weights: list[float] | None = None) -> NeuralEM:
    torch.manual_seed(0)
    net = FCNetwork(FCNetwork.Config(hidden=8), NetworkSpec((4, 4, 1)))
    return NeuralEM(RNNEM(RNNEM.Config(), net, bern), bern, 2, steps, weights, gradient_gamma)


def test_stop_gradient_really_stops_the_gradient_through_gamma() -> None:
    """With gradient_gamma=False, loss gradients reach psi only through the intra/inter terms:
    perturbing how gamma depends on psi must not change them. We check it directly: the gradient
    of the step-1 loss w.r.t. the decoder equals the one computed with a detached gamma by hand."""
    x = (torch.rand(3, 3, 4, 4, 1, generator=torch.Generator().manual_seed(1)) > 0.5).float()
    for grad_gamma in (False, True):
        model = _model(grad_gamma, steps=1, weights=[1.0])
        g = torch.Generator().manual_seed(5)
        out = model(x, x, g)
        (grad,) = torch.autograd.grad(out.loss, model.updater.network.decoder.weight)
        # by hand, with gamma detached
        g = torch.Generator().manual_seed(5)
        gamma0 = initial_gamma((3, 2, 4, 4, 1), g, x.device)
        state = model.updater.initial_state(3, 2, x.device, x.dtype)
        u = gamma0 * (x[:, 0, None] - 0.0)
        psi, _ = model.updater(u, state)  # (B, K, H, W, C) in and out
        gamma = e_step(bern, x[:, 1, None], psi)
        loss = step_loss(bern, x[:, 1, None], psi, gamma.detach(), 1.0)
        (by_hand,) = torch.autograd.grad(loss, model.updater.network.decoder.weight)
        if grad_gamma:
            assert not torch.allclose(grad, by_hand)
        else:
            torch.testing.assert_close(grad, by_hand)


def test_stop_gradient_blocks_gamma_in_the_input_mask() -> None:
    """gamma from step 1 masks the input of step 2: with stop-gradient, no gradient of the step-2
    input flows back into step 1's psi through gamma."""
    x = (torch.rand(2, 3, 4, 4, 1, generator=torch.Generator().manual_seed(2)) > 0.5).float()
    grads = {}
    for grad_gamma in (False, True):
        model = _model(grad_gamma, steps=2, weights=[0.0, 1.0])
        out = model(x, x, torch.Generator().manual_seed(3))
        out.loss.backward()
        grads[grad_gamma] = model.updater.network.decoder.weight.grad.clone()
    assert not torch.allclose(grads[False], grads[True])


def test_frame_alignment_input_t_target_t_plus_1() -> None:
    """A model that predicts its (clean, single-component) input frame t is scored against frame
    t + 1: on a hand-made sequence 0, 1, 0, 1 the loss of every step is the BCE of a wrong guess."""

    class Echo(Updater):
        name = "echo"
        description = "test"

        def forward(self, u: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
            # K = 1, gamma = 1, psi starts at 0: u = x_t - psi_prev, so x_t = u + psi_prev.
            psi = (u + state).clamp(0.1, 0.9)
            return psi, psi

    net = IdentityNetwork(PluginConfig(), NetworkSpec((1, 1, 1)))
    model = NeuralEM(Echo(PluginConfig(), net, bern), bern, 1, 3, [1.0, 1.0, 1.0], False)
    model.updater.initial_state = lambda b, k, device, dtype: torch.zeros(b, k, 1, 1, 1)  # type: ignore[method-assign]
    seq = torch.tensor([0.0, 1.0, 0.0, 1.0]).reshape(1, 4, 1, 1, 1)
    out = model(seq, seq, torch.Generator().manual_seed(0))
    # step 0: input 0 -> psi 0.1, target 1: -log 0.1 ; step 1: input 1 -> psi 0.9, target 0: -log 0.1
    # K = 1: gamma = 1, so the inter-cluster term has weight 0
    wrong = -math.log(0.1)
    torch.testing.assert_close(out.losses, torch.full((3,), wrong), rtol=1e-5, atol=1e-5)
    assert out.gamma.shape == (1, 4, 1, 1, 1, 1)
    assert out.psi.shape == (1, 3, 1, 1, 1, 1)


def test_engine_shapes_and_weighted_loss() -> None:
    model = _model(True, steps=3, weights=[0.0, 0.5, 2.0])
    x = (torch.rand(2, 4, 4, 4, 1) > 0.5).float()
    out = model(x, x, torch.Generator().manual_seed(0))
    assert out.psi.shape == (2, 3, 2, 4, 4, 1)
    assert out.gamma.shape == (2, 4, 2, 4, 4, 1)
    torch.testing.assert_close(out.gamma.sum(dim=2), torch.ones(2, 4, 4, 4, 1))
    assert float(out.loss.detach()) == pytest.approx(
        0.5 * float(out.losses[1]) + 2.0 * float(out.losses[2]), rel=1e-5
    )
    # training mode computes the same objective without keeping the per-step tensors
    lean = model(x, x, torch.Generator().manual_seed(0), keep=False)
    torch.testing.assert_close(lean.loss, out.loss)
    assert lean.psi.numel() == 0


def test_too_few_frames_is_an_error() -> None:
    model = _model(True, steps=3, weights=[0.0, 0.0, 1.0])
    x = torch.zeros(1, 3, 4, 4, 1)
    with pytest.raises(ValueError, match="need 4 frames"):
        model(x, x)
