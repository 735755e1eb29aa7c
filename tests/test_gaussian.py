"""The Gaussian likelihood (spec 2.3, 3.1, 10) and masked-uniform noise (spec 4.1)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from grouping_plugins.gaussian import GaussianLikelihood
from grouping_plugins.noise import MaskedUniformNoise
from pydantic import ValidationError

from grouping.config.loading import build_config
from grouping.engine.em import E_STEP_FLOOR, e_step, step_loss, upper_bound
from grouping.plugin_api.registry import get_registry
from grouping.training.api import train
from tests.conftest import TINY

GAUSS = GaussianLikelihood(GaussianLikelihood.Config())


def test_e_step_equals_a_hand_computation() -> None:
    # one pixel, x = 0.5, two components predicting 0.5 and 0.75, sigma = 0.25 (a std)
    x = torch.tensor([0.5], dtype=torch.float64).reshape(1, 1, 1, 1, 1)
    psi = torch.tensor([0.5, 0.75], dtype=torch.float64).reshape(1, 2, 1, 1, 1)
    norm = 1.0 / (0.25 * math.sqrt(2.0 * math.pi))  # 1.5957691...
    p0 = norm * math.exp(0.0)  # at the mean
    p1 = norm * math.exp(-(0.25**2) / (2 * 0.25**2))  # one sigma away: exp(-1/2)
    torch.testing.assert_close(
        GAUSS.pixel_prob(x, psi).flatten(), torch.tensor([p0, p1], dtype=torch.float64)
    )
    gamma = e_step(GAUSS, x, psi).flatten()
    expected = torch.tensor([p0, p1], dtype=torch.float64) + E_STEP_FLOOR
    torch.testing.assert_close(gamma, expected / expected.sum())
    # gamma_0 = 1 / (1 + exp(-1/2)) up to the floor: 0.6224593...
    assert gamma[0].item() == pytest.approx(1.0 / (1.0 + math.exp(-0.5)), abs=1e-6)


def test_sigma_is_a_temperature() -> None:
    x = torch.zeros(1, 1, 1, 1, 1)
    psi = torch.tensor([0.1, 0.3]).reshape(1, 2, 1, 1, 1)
    hard = GaussianLikelihood(GaussianLikelihood.Config(sigma=0.1))
    soft = GaussianLikelihood(GaussianLikelihood.Config(sigma=1.0))
    assert e_step(hard, x, psi)[0, 0].item() > e_step(GAUSS, x, psi)[0, 0].item()
    assert e_step(GAUSS, x, psi)[0, 0].item() > e_step(soft, x, psi)[0, 0].item() > 0.5


def test_density_integrates_to_one() -> None:
    grid = torch.linspace(-3.0, 4.0, 70_001, dtype=torch.float64)
    density = GAUSS.pixel_prob(grid, torch.tensor(0.4, dtype=torch.float64))
    assert torch.trapezoid(density, grid).item() == pytest.approx(1.0, abs=1e-9)


def test_losses_are_half_squared_errors_with_sigma_one() -> None:
    x = torch.tensor([0.0, 1.0, 0.3])
    psi = torch.tensor([0.5, -1.0, 0.3])
    torch.testing.assert_close(GAUSS.intra(x, psi), 0.5 * (psi - x) ** 2)
    torch.testing.assert_close(GAUSS.inter(psi), 0.5 * psi**2)
    assert torch.equal(GAUSS.activation(psi), psi)  # identity: psi is the mean itself


def test_configured_loss_sigma_and_prior_mean() -> None:
    lik = GaussianLikelihood(GaussianLikelihood.Config(loss_sigma=2.0, prior_mean=0.5))
    x, psi = torch.tensor([1.0]), torch.tensor([0.0])
    # (psi - x)^2 / (2 s^2) + log s, and KL(N(psi, s) || N(mu, s)) = (psi - mu)^2 / (2 s^2)
    assert lik.intra(x, psi).item() == pytest.approx(1.0 / 8.0 + math.log(2.0))
    assert lik.inter(psi).item() == pytest.approx(0.25 / 8.0)


def test_step_loss_and_upper_bound_with_gaussian_pixels() -> None:
    x = torch.tensor([[1.0, 0.0]]).reshape(1, 1, 1, 2, 1)
    psi = torch.tensor([[0.8, 0.1], [0.2, 0.0]]).reshape(1, 2, 1, 2, 1)
    gamma = torch.tensor([[1.0, 0.25], [0.0, 0.75]]).reshape(1, 2, 1, 2, 1)
    loss = step_loss(GAUSS, x, psi, gamma, inter_weight=0.2).item()
    intra = 1.0 * 0.5 * 0.2**2 + 0.25 * 0.5 * 0.1**2 + 0.0 + 0.75 * 0.0
    inter = 0.0 * 0.5 * 0.8**2 + 0.75 * 0.5 * 0.1**2 + 1.0 * 0.5 * 0.2**2 + 0.25 * 0.0
    assert loss == pytest.approx(intra + 0.2 * inter)
    # max over K: (0.8, 0.1) against (1, 0)
    assert upper_bound(GAUSS, x, psi).item() == pytest.approx(0.5 * 0.2**2 + 0.5 * 0.1**2)


@pytest.mark.parametrize("bad", [{"sigma": 0.0}, {"sigma": -1.0}, {"loss_sigma": 0}, {"x": 1}])
def test_config_rejects_bad_values(bad: dict[str, float]) -> None:
    with pytest.raises(ValidationError):
        GaussianLikelihood.Config(**bad)


def test_registered_with_its_defaults() -> None:
    info = get_registry().get("likelihood", "gaussian")
    assert info.cls is GaussianLikelihood
    assert GaussianLikelihood.default_noise == "masked-uniform"
    assert get_registry().get("noise", "masked-uniform").cls is MaskedUniformNoise


# ------------------------------------------------------------------------------ masked uniform


def noisy(p: float, x: torch.Tensor, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return MaskedUniformNoise(MaskedUniformNoise.Config(probability=p))(x, g)


def test_masked_uniform_replaces_a_fraction_p_by_uniform_values() -> None:
    x = torch.full((200_000,), 2.0)  # outside [0, 1], so replaced pixels are easy to tell
    out = noisy(0.2, x)
    replaced = out != 2.0
    assert replaced.float().mean().item() == pytest.approx(0.2, abs=0.005)
    values = out[replaced]
    assert values.min() >= 0.0 and values.max() < 1.0
    assert values.mean().item() == pytest.approx(0.5, abs=0.01)
    assert values.var().item() == pytest.approx(1.0 / 12.0, abs=0.005)


def test_masked_uniform_edges_and_reproducibility() -> None:
    x = torch.rand(4, 3, 24, 24, 1)
    assert torch.equal(noisy(0.0, x), x)
    assert not torch.isclose(noisy(1.0, x), x).all()
    assert torch.equal(noisy(0.3, x, seed=5), noisy(0.3, x, seed=5))
    assert not torch.equal(noisy(0.3, x, seed=5), noisy(0.3, x, seed=6))
    assert noisy(0.3, x).shape == x.shape and noisy(0.3, x).dtype == x.dtype


def test_n_em_accepts_gaussian_pixels(tmp_path: Path) -> None:
    config = build_config(
        "quickstart-flying-mnist",
        assignments=[*TINY, "updater.name=n-em", "updater.eta_init=1.0", "train.threads=1"],
    )
    result = train(config, tmp_path / "nem")
    assert GaussianLikelihood.canonical_link
    assert result.summary["config"]["updater"]["name"] == "n-em"
    assert math.isfinite(result.summary["best_valid_loss"])
