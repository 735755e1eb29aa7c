"""Sequential mode: input frame t, E-step and loss against clean frame t + 1, and the scoring of the
gamma of step t against the groups of frame t + 1 (spec 4.3, pitfall 11)."""

from __future__ import annotations

import numpy as np
import torch
from grouping_plugins.bernoulli import BernoulliLikelihood
from grouping_plugins.flying_shapes import FlyingShapesDataset
from grouping_plugins.noise import BitflipNoise
from torch import Tensor

from grouping.data.batches import frames_for
from grouping.engine.em import NeuralEM
from grouping.evaluation.scoring import score_groupings
from grouping.plugin_api.interfaces import NetworkSpec, PluginConfig, SplitSizes, Updater
from tests.fakes import IdentityNetwork

bern = BernoulliLikelihood(BernoulliLikelihood.Config())
LOW, HIGH = 0.1, 0.9  # the copy model's prediction for an off and an on pixel


class Copy(Updater):
    """K = 1 (gamma = 1): recovers its input frame x_t = u + psi_prev and predicts it, clamped."""

    name = "copy"
    description = "test"

    def initial_state(
        self, batch: int, components: int, device: torch.device, dtype: torch.dtype
    ) -> Tensor:
        return torch.zeros(batch, components, 28, 28, 1, device=device, dtype=dtype)  # psi_0

    def forward(self, u: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        psi = (u + state).clamp(LOW, HIGH)
        return psi, psi


def copy_model(steps: int) -> NeuralEM:
    net = IdentityNetwork(PluginConfig(), NetworkSpec((28, 28, 1)))
    return NeuralEM(Copy(PluginConfig(), net, bern), bern, 1, steps, [1.0] * steps, False)


def expected_copy_losses(inputs: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Per step t: the BCE of predicting clamp(input t) for target t + 1, summed over pixels,
    averaged over the batch. inputs, targets (B, F, H, W, 1) -> (F - 1,)."""
    psi = np.where(inputs[:, :-1] > 0.5, HIGH, LOW)
    x = targets[:, 1:]
    bce = -(x * np.log(psi) + (1 - x) * np.log(1 - psi))
    return bce.sum(axis=(2, 3, 4)).mean(axis=0)


def sequence(frames: int = 6, n: int = 3) -> tuple[Tensor, Tensor]:
    ds = FlyingShapesDataset(
        FlyingShapesDataset.Config(objects=3), SplitSizes(n, 1, 1), frames=frames, seed=2
    )
    return ds.split("train").get(np.arange(n))


def test_a_copy_model_scores_the_loss_of_predicting_frame_t_for_frame_t_plus_1() -> None:
    features, _ = sequence()
    out = copy_model(5)(features, features, torch.Generator().manual_seed(0))
    expected = expected_copy_losses(features.numpy(), features.numpy())
    torch.testing.assert_close(out.losses, torch.from_numpy(expected).float(), rtol=1e-5, atol=1e-3)
    # the shapes move, so copying frame t is wrong for frame t + 1 and costs more than 784 * -log .9
    assert (expected > 784 * -np.log(HIGH) + 1.0).all()


def test_noisy_input_clean_target() -> None:
    """The network sees noisy frame t; the E-step and the loss see clean frame t + 1 (pitfall 10)."""
    features, _ = sequence()
    noise = BitflipNoise(BitflipNoise.Config(probability=0.2))
    noisy = noise(features, torch.Generator().manual_seed(1))
    out = copy_model(5)(noisy, features, torch.Generator().manual_seed(0))
    expected = expected_copy_losses(noisy.numpy(), features.numpy())
    torch.testing.assert_close(out.losses, torch.from_numpy(expected).float(), rtol=1e-5, atol=1e-3)


def test_static_data_repeat_the_frame_so_copying_is_right() -> None:
    features, groups = sequence(frames=1)
    x, g = frames_for(features, groups, 5)
    assert x.shape[1] == 5 and (x == features).all() and (g == groups).all()
    out = copy_model(4)(x, x, torch.Generator().manual_seed(0))
    # every pixel predicted right with probability 0.9
    torch.testing.assert_close(out.losses, torch.full((4,), 784 * -float(np.log(HIGH))))


def test_gamma_of_step_t_is_scored_against_the_groups_of_frame_t_plus_1() -> None:
    _, groups = sequence(frames=8)  # (B, F, H, W), the shapes move
    one_hot = torch.nn.functional.one_hot(groups, 4).permute(0, 1, 4, 2, 3)[..., None].float()
    # gamma (B, T + 1, K, H, W, 1); index 0 is the random init, never scored
    aligned = one_hot.clone()
    aligned[:, 0] = torch.rand(aligned[:, 0].shape)
    ami, _ = score_groupings(aligned, groups)
    assert ami.shape == (3, 7)
    np.testing.assert_allclose(ami, 1.0)
    # an off-by-one (gamma of frame t scored against frame t + 1) is visibly worse
    shifted = torch.cat([aligned[:, :1], one_hot[:, :-1]], dim=1)
    wrong, _ = score_groupings(shifted, groups)
    assert wrong.mean() < 0.95
