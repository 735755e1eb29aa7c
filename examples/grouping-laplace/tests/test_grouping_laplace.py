"""Tests of the example plugins: exact likelihood values, the data set's ground truth, and that the
installed entry points register both plugins with grouping.

Run them with ``python -m pytest examples/grouping-laplace/tests`` (or plain ``python -m pytest``
from the grouping repository, whose test paths include this folder).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from grouping.config.loading import build_config
from grouping.engine.assembly import build_dataset, resolve
from grouping.engine.em import e_step
from grouping.plugins import SplitSizes, get_registry

grouping_laplace = pytest.importorskip(
    "grouping_laplace",
    reason="the example is not installed: pip install -e examples/grouping-laplace",
)
from grouping_laplace.colour_sprites import PALETTE, ColourSpritesDataset  # noqa: E402
from grouping_laplace.laplace import LaplaceLikelihood  # noqa: E402

F64 = torch.float64  # exact comparisons below


def t(value: object) -> torch.Tensor:
    return torch.tensor(value, dtype=F64)


def laplace(scale: float = 0.25, prior: float = 0.0) -> LaplaceLikelihood:
    return LaplaceLikelihood(LaplaceLikelihood.Config(scale=scale, prior=prior))


def test_the_density_integrates_to_one_and_intra_is_its_negative_log() -> None:
    lik = laplace(scale=0.3)
    x = torch.linspace(-12.0, 12.0, 240_001, dtype=F64)
    for psi in (0.0, 0.4, 1.0):
        p = lik.pixel_prob(x, t(psi))
        assert torch.trapezoid(p, x).item() == pytest.approx(1.0, abs=1e-6)
        assert torch.allclose(lik.intra(x, t(psi)), -torch.log(p), atol=1e-12)
    assert lik.intra(t(0.7), t(0.7)).item() == pytest.approx(math.log(0.6))


def test_inter_is_the_kl_divergence_from_the_prior() -> None:
    lik = laplace(scale=0.25, prior=0.1)
    x = torch.linspace(-10.0, 10.0, 400_001, dtype=F64)
    prior = lik.pixel_prob(x, t(0.1))
    for psi in (0.1, 0.35, 0.9):
        q = lik.pixel_prob(x, t(psi))
        numeric = torch.trapezoid(prior * torch.log(prior / q), x).item()
        assert lik.inter(t(psi)).item() == pytest.approx(numeric, abs=1e-6)
    assert lik.inter(t(0.1)).item() == 0.0


def test_the_gradient_of_intra_is_the_sign_over_the_scale() -> None:
    lik = laplace(scale=0.5)
    psi = torch.tensor([0.2, 0.8], dtype=F64, requires_grad=True)
    lik.intra(t([0.5, 0.5]), psi).sum().backward()
    assert psi.grad is not None
    assert psi.grad.tolist() == [-2.0, 2.0]


def test_responsibilities_over_rgb_channels_sum_to_one_and_pick_the_matching_colour() -> None:
    lik = laplace()
    x = torch.tensor(PALETTE[0], dtype=torch.float64).reshape(1, 1, 1, 1, 3)  # (B, 1, H, W, C)
    psi = torch.tensor(PALETTE[:3], dtype=torch.float64).reshape(1, 3, 1, 1, 3)  # (B, K, H, W, C)
    gamma = e_step(lik, x, psi)  # (B, K, H, W, 1)
    assert gamma.sum(dim=1).item() == pytest.approx(1.0, abs=1e-12)
    assert gamma.argmax(dim=1).item() == 0 and gamma[0, 0].item() > 0.99


def test_sprites_have_exact_per_pixel_ground_truth() -> None:
    dataset = ColourSpritesDataset(
        ColourSpritesDataset.Config(objects=3, size=16), SplitSizes(8, 4, 4), frames=2, seed=5
    )
    features, groups = dataset.split("train").get(np.arange(8))
    assert features.shape == (8, 1, 16, 16, 3) and groups.shape == (8, 1, 16, 16)
    assert features.min().item() >= 0.0 and features.max().item() <= 1.0
    lit = features.amax(dim=-1) > 0
    assert not torch.any((groups > 0) & ~lit)  # every labelled pixel is drawn
    assert set(groups.unique().tolist()) <= {0, 1, 2, 3}
    for i in range(8):  # a group's pixels share one palette colour
        for g in groups[i].unique().tolist():
            if g:
                colours = features[i][groups[i] == g].unique(dim=0)
                assert len(colours) == 1
                assert any(np.allclose(colours[0].numpy(), c) for c in PALETTE)
    again, _ = (
        ColourSpritesDataset(
            ColourSpritesDataset.Config(objects=3, size=16), SplitSizes(99, 4, 4), frames=2, seed=5
        )
        .split("test")
        .get(np.arange(4))
    )
    assert torch.equal(again, dataset.split("test").get(np.arange(4))[0])  # test split is stable


def test_the_entry_points_register_both_plugins_under_the_package() -> None:
    registry = get_registry()
    for kind, name in (("likelihood", "laplace"), ("dataset", "colour-sprites")):
        info = registry.get(kind, name)  # type: ignore[arg-type]
        assert info.provider.package == "grouping-laplace"
        assert info.provider.version == grouping_laplace.__version__


def test_the_data_set_picks_the_laplace_likelihood_by_default() -> None:
    # The quickstart preset names bernoulli and bitflip; "auto" lets the data set choose.
    names = ["dataset.name=colour-sprites", "likelihood.name=auto", "noise.name=auto"]
    config = resolve(build_config(assignments=names))
    assert config.likelihood.name == "laplace" and config.noise.name == "none"
    assert build_dataset(config).image_shape == (24, 24, 3)
