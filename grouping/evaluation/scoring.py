"""Scoring: argmax-gamma groupings against the true groups, per image and per step (spec 8.1).

Only pixels whose true label is not 0 (background and overlap) are scored. Step 0, the random
initial gamma, is never scored; gamma after step t is scored against the groups of frame t.
The last step's AMI is also given by quartile of how far apart the objects of the last frame lie
(:mod:`grouping.evaluation.separation`): where objects touch, a component must draw their boundary.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from grouping.accel.precision import Precision, matmul_context
from grouping.data.batches import iterate_batches
from grouping.engine.em import NeuralEM
from grouping.evaluation.collapse import component_shares, summarize_shares
from grouping.evaluation.metrics import adjusted_mutual_info, adjusted_rand_index
from grouping.evaluation.separation import by_quartile, object_separation
from grouping.plugin_api.interfaces import Noise, Split


def score_groupings(gamma: Tensor, groups: Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Per image and step AMI and ARI. gamma (B, T+1, K, H, W, 1), groups (B, T+1, H, W) ->
    two arrays (B, T) for steps 1..T."""
    pred = gamma[:, 1:].argmax(dim=2).squeeze(-1)  # (B, T, H, W)
    true = groups[:, 1:]
    b, t = pred.shape[:2]
    pred_np = pred.reshape(b * t, -1).cpu().numpy()
    true_np = true.reshape(b * t, -1).cpu().numpy()
    ami = adjusted_mutual_info(true_np, pred_np).reshape(b, t)
    ari = adjusted_rand_index(true_np, pred_np).reshape(b, t)
    return ami, ari


def shares_of(gamma: Tensor, groups: Tensor) -> np.ndarray:
    """Component shares (B, T, K) of steps 1..T (:mod:`grouping.evaluation.collapse`)."""
    pred = gamma[:, 1:].argmax(dim=2).squeeze(-1)  # (B, T, H, W)
    b, t = pred.shape[:2]
    return component_shares(pred.reshape(b, t, -1), groups[:, 1:].reshape(b, t, -1), gamma.shape[2])


def quartiles_per_step(values: np.ndarray) -> dict[str, list[float]]:
    """The 25th, 50th and 75th percentile over images of per-image, per-step scores (N, T)."""
    q25, median, q75 = np.percentile(values, [25.0, 50.0, 75.0], axis=0)
    return {
        "q25": [float(v) for v in q25],
        "median": [float(v) for v in median],
        "q75": [float(v) for v in q75],
    }


@dataclass
class Scores:
    """Per-image, per-step scores of one pass over a split."""

    ami: np.ndarray  # (N, T)
    ari: np.ndarray  # (N, T)
    losses: list[float] = field(default_factory=list)  # per batch, the trained objective
    upper_bounds: list[np.ndarray] = field(default_factory=list)  # per batch, (T,)
    batch_sizes: list[int] = field(default_factory=list)
    #: (N, T, K) share of each image's labelled pixels per component, sorted high to low
    shares: np.ndarray = field(default_factory=lambda: np.zeros((0, 0, 0)))
    #: (N,) smallest distance between two objects' centroids in the last frame (NaN: < 2 objects)
    separation: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @property
    def loss(self) -> float:
        """Mean trained objective per image over the split."""
        w = np.asarray(self.batch_sizes, dtype=np.float64)
        return float(np.dot(self.losses, w) / w.sum())

    def upper_bound_per_step(self) -> np.ndarray:
        w = np.asarray(self.batch_sizes, dtype=np.float64)[:, None]
        return np.asarray((np.stack(self.upper_bounds) * w).sum(0) / w.sum())

    def summary(self) -> dict[str, Any]:
        """Last-step and mean-over-steps scores (mean and std over images), plus per-step AMI."""
        last_ami, last_ari = self.ami[:, -1], self.ari[:, -1]
        mean_ami, mean_ari = self.ami.mean(axis=1), self.ari.mean(axis=1)
        ub = self.upper_bound_per_step()
        return {
            "ami": float(last_ami.mean()),
            "ami_std": float(last_ami.std()),
            "ari": float(last_ari.mean()),
            "ari_std": float(last_ari.std()),
            "ami_mean_over_steps": float(mean_ami.mean()),
            "ami_mean_over_steps_std": float(mean_ami.std()),
            "ari_mean_over_steps": float(mean_ari.mean()),
            "ari_mean_over_steps_std": float(mean_ari.std()),
            "ami_per_step": [float(v) for v in self.ami.mean(axis=0)],
            "ami_per_step_quartiles": quartiles_per_step(self.ami),
            "upper_bound": float(ub[-1]),
            "upper_bound_per_step": [float(v) for v in ub],
            "loss": self.loss,
            "images": int(self.ami.shape[0]),
            **summarize_shares(self.shares),
            "ami_by_separation": by_quartile(last_ami, self.separation),
        }


def sample_base(generator: torch.Generator) -> int:
    """The seed base of one pass over a split: one draw of the run's generator."""
    return int(torch.randint(0, 2**62, (), generator=generator, device=generator.device))


def per_sample_draws(
    model: NeuralEM, noise: Noise | None, features: Tensor, base: int, start: int
) -> tuple[Tensor, Tensor]:
    """The noisy inputs (clean without ``noise``) and gamma^(0) of samples ``start``,
    ``start + 1``, ... of a split, each drawn from a generator seeded by ``base`` and the sample's
    index: a sample gets the same draws whatever the batch it falls in, so scores do not depend on
    ``eval.batch_size``."""
    b, _, h, w, _ = features.shape
    device = features.device
    noisy, gammas = [], []
    for i in range(b):
        g = torch.Generator(device=device).manual_seed(base + start + i)
        noisy.append(noise(features[i : i + 1], g) if noise is not None else features[i : i + 1])
        gammas.append(model.initial_gamma((1, model.components, h, w, 1), g, device))
    return torch.cat(noisy), torch.cat(gammas)


@torch.no_grad()
def score_split(
    model: NeuralEM,
    noise: Noise,
    split: Split,
    *,
    samples: int | None,
    batch_size: int,
    device: torch.device,
    generator: torch.Generator,
    steps: int | None = None,
    weights: list[float] | None = None,
    precision: Precision = "fp32",
) -> Scores:
    """Run the model over the first ``samples`` of a split with fresh noise and gamma^(0), as the
    original evaluation does (spec 8.1), and score every step. The draws are per sample
    (:func:`per_sample_draws`): the same images score the same whatever the batch size. The
    trainer scores in its training ``precision``, so validation sees the model as it trains."""
    steps = model.steps if steps is None else steps
    n = len(split) if samples is None else min(samples, len(split))
    was_training = model.training
    model.eval()
    amis, aris, shares, separations = [], [], [], []
    scores = Scores(np.zeros((0, steps)), np.zeros((0, steps)))
    try:
        base = sample_base(generator)
        start = 0
        for features, groups in iterate_batches(split, np.arange(n), batch_size, steps + 1, device):
            inputs, gamma = per_sample_draws(model, noise, features, base, start)
            start += features.shape[0]
            with matmul_context(device, precision):
                out = model(inputs, features, steps=steps, weights=weights, gamma=gamma)
            ami, ari = score_groupings(out.gamma, groups)
            amis.append(ami)
            aris.append(ari)
            shares.append(shares_of(out.gamma, groups))
            separations.append(object_separation(groups[:, -1].cpu().numpy()))
            scores.losses.append(float(out.loss))
            scores.upper_bounds.append(out.upper_bounds.cpu().numpy())
            scores.batch_sizes.append(features.shape[0])
    finally:
        model.train(was_training)
    scores.ami = np.concatenate(amis)
    scores.ari = np.concatenate(aris)
    scores.shares = np.concatenate(shares)
    scores.separation = np.concatenate(separations)
    return scores
