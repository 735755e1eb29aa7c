"""The unrolled, differentiable EM procedure of Neural EM (Greff et al., NIPS 2017, section 2).

Equation numbers are the paper's; ``docs/method.md`` writes them out.

* Eq. (3), the E-step: gamma_ik = P(x_i | psi_ik) / sum_j P(x_i | psi_ij)  -> :func:`e_step`;
* Eq. (4), the M-step: each component's state moves given its gamma-masked difference
  gamma_k * (x~ - psi_k); N-EM takes a gradient step on Q, RNN-EM a learned recurrent step
  -> :meth:`NeuralEM.m_step` (the updater plugin);
* Eq. (5), the training loss of one step: the gamma-weighted intra-cluster loss plus the
  (1 - gamma)-weighted inter-cluster KL -> :func:`step_loss`.

One engine serves static and sequential data: a static image is a sequence whose frame repeats.
Step t takes the noisy frame t as input and is scored against the clean frame t + 1 (spec 4.3).
The engine returns what the steps computed and nothing else: no metrics, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from grouping.engine.checked import CheckedUpdater, checked_probabilities
from grouping.plugins.guard import blame
from grouping.plugins.interfaces import Likelihood, Updater

#: Added to every pixel's likelihood before normalising over K, so gamma is never 0/0 when all
#: components predict a pixel with probability 0 (spec 2.3, pitfall 2).
E_STEP_FLOOR = 1e-6


def initial_gamma(
    shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device
) -> Tensor:
    """gamma^(0): |N(0, 1)| per pixel and component, normalised over K (axis 1) (spec 2.6).

    The only symmetry breaker between the K weight-sharing copies, so it is drawn afresh every pass.
    """
    if shape[1] == 1:
        return torch.ones(shape, device=device)
    g = torch.randn(shape, generator=generator, device=device).abs()
    return g / g.sum(dim=1, keepdim=True)


#: How sharply a smooth gamma^(0) splits the image: the coarse logits are scaled by this.
SMOOTH_SHARPNESS = 4.0


def smooth_gamma(
    shape: tuple[int, ...], grid: int, generator: torch.Generator | None, device: torch.device
) -> Tensor:
    """A spatially coherent gamma^(0) (``model.gamma_init = "smooth"``, not the paper's):
    softmax over K of N(0, 1) logits drawn on a grid x grid lattice and upsampled bilinearly.

    Each component starts out owning a few random regions of the frame instead of a random third
    of every pixel, so the copies differ from step 1 on (docs/reproduction.md, issue 14).
    """
    b, k, h, w, _ = shape
    if k == 1:
        return torch.ones(shape, device=device)
    z = torch.randn((b, k, grid, grid), generator=generator, device=device)
    z = F.interpolate(z, size=(h, w), mode="bilinear", align_corners=False)
    return torch.softmax(SMOOTH_SHARPNESS * z, dim=1).unsqueeze(-1)


def e_step(likelihood: Likelihood, target: Tensor, psi: Tensor) -> Tensor:
    """Eq. (3): gamma_k = P(x | psi_k) / sum_j P(x | psi_j), in linear space with a floor.

    target (B, 1, H, W, C), psi (B, K, H, W, C) -> gamma (B, K, H, W, 1). Channels combine as a
    product of per-channel likelihoods (the original summed them, which is only right for C = 1).
    """
    p = likelihood.pixel_prob(target, psi)
    p = (p if p.shape[-1] == 1 else p.prod(dim=-1, keepdim=True)) + E_STEP_FLOOR
    return p / p.sum(dim=1, keepdim=True)


def step_loss(
    likelihood: Likelihood, target: Tensor, psi: Tensor, gamma: Tensor, inter_weight: float
) -> Tensor:
    """Eq. (5): L_t = [sum gamma * intra + w * sum (1 - gamma) * inter] / B, a scalar.

    intra is -log P(x | psi_k), inter is KL(prior || P(. | psi_k)); summed over pixels, channels
    and K, averaged over the batch (spec 3.1, 3.2).
    """
    intra = (gamma * likelihood.intra(target, psi)).sum()
    inter = ((1.0 - gamma) * likelihood.inter(psi)).sum()
    return (intra + inter_weight * inter) / psi.shape[0]


def upper_bound(likelihood: Likelihood, target: Tensor, psi: Tensor) -> Tensor:
    """Next-step loss of max_k psi_k (spec 3.3): an upper bound that leaks nothing through gamma."""
    best = psi.max(dim=1, keepdim=True).values
    return likelihood.intra(target, best).sum() / psi.shape[0]


@dataclass
class EMResult:
    """What one unrolled pass produced.

    ``loss`` is the trained objective sum_t w_t L_t (spec 3.2). With ``keep`` (evaluation, figures)
    the pass also monitors every step t = 1..T: psi (B, T, K, H, W, C), gamma (B, T + 1, K, H, W, 1)
    with gamma[:, 0] the random init, losses (T,) every step's L_t and upper_bounds (T,) the
    next-step upper bound, all detached. Without ``keep`` (training) those four are empty.
    """

    psi: Tensor
    gamma: Tensor
    loss: Tensor
    losses: Tensor
    upper_bounds: Tensor


class NeuralEM(nn.Module):
    """K weight-sharing components fitted to each input by T unrolled (RNN-)EM steps."""

    def __init__(
        self,
        updater: Updater,
        likelihood: Likelihood,
        components: int,
        steps: int,
        step_weights: list[float] | None = None,
        gradient_gamma: bool = True,
        inter_weight: float = 1.0,
        pred_init: float = 0.0,
        gamma_grid: int | None = None,
    ) -> None:
        super().__init__()
        self.updater = updater
        self.checked_updater = CheckedUpdater(updater)
        self.likelihood = likelihood
        self.components = components
        self.steps = steps
        self.step_weights = step_weights or [0.0] * (steps - 1) + [1.0]
        if len(self.step_weights) != steps:
            raise ValueError(f"need {steps} step weights, got {len(self.step_weights)}")
        self.gradient_gamma = gradient_gamma
        self.inter_weight = inter_weight
        self.pred_init = pred_init
        #: None: the paper's per-pixel gamma^(0); an int: :func:`smooth_gamma` on that grid.
        self.gamma_grid = gamma_grid
        #: Recompute each EM step in the backward pass instead of keeping its activations, so that
        #: memory no longer grows with the network's activations times T (``train.checkpoint_steps``).
        self.checkpoint_steps = False

    def through(self, gamma: Tensor) -> Tensor:
        """gamma as the mask and the loss weights see it: stopped unless ``gradient_gamma``
        (paper section 2.4: with it stopped, the conflicting gradients through gamma vanish)."""
        return gamma if self.gradient_gamma else gamma.detach()

    def m_step(self, u: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        """Eq. (4): each component's new psi and state from its masked difference u (B, K, H, W, C),
        through the updater plugin on the B * K flat copies; psi and state come back in fp32
        whatever precision the network multiplied in (``grouping.accel.precision``)."""
        b, k, h, w, c = u.shape
        flat_psi, state = self.checked_updater(u.reshape(b * k, h, w, c), state)
        return flat_psi.reshape(b, k, h, w, c).to(u.dtype), state.to(u.dtype)

    def e_step(self, target: Tensor, psi: Tensor) -> Tensor:
        """Eq. (3) against the clean target; with gamma's gradient stopped it builds no graph."""
        grad = self.gradient_gamma and torch.is_grad_enabled()
        with torch.set_grad_enabled(grad), blame(self.likelihood, "pixel_prob"):
            gamma = e_step(self.likelihood, target, psi)
        return checked_probabilities(self.likelihood, gamma, psi)

    def em_step(
        self, noisy_t: Tensor, target: Tensor, psi: Tensor, gamma: Tensor, state: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        """One unrolled step (spec 2.2): the M-step on gamma * (x~_t - psi), then the E-step
        against x_{t+1}. noisy_t, target (B, 1, H, W, C) -> psi (B, K, H, W, C), state, gamma."""
        u = self.through(gamma) * (noisy_t - psi)
        psi, state = self.m_step(u, state)
        return psi, state, self.e_step(target, psi)

    def loss_at(self, target: Tensor, psi: Tensor, gamma: Tensor) -> Tensor:
        """Eq. (5) at one step, with gamma as the loss weights see it."""
        return step_loss(self.likelihood, target, psi, self.through(gamma), self.inter_weight)

    @torch.no_grad()
    def monitor(self, target: Tensor, psi: Tensor, gamma: Tensor) -> tuple[Tensor, Tensor]:
        """What evaluation watches at every step, without gradients: L_t and the upper bound."""
        loss = step_loss(self.likelihood, target, psi, gamma, self.inter_weight)
        return loss, upper_bound(self.likelihood, target, psi)

    def start(self, targets: Tensor, generator: torch.Generator | None) -> tuple[Tensor, ...]:
        """The state before step 1 (spec 2.6): random gamma^(0), psi = pred_init, zero state."""
        b, _, h, w, c = targets.shape
        k, device = self.components, targets.device
        shape = (b, k, h, w, 1)
        if self.gamma_grid is None:
            gamma = initial_gamma(shape, generator, device)
        else:
            gamma = smooth_gamma(shape, self.gamma_grid, generator, device)
        psi = torch.full((b, k, h, w, c), self.pred_init, device=device, dtype=targets.dtype)
        state = self.checked_updater.initial_state(b * k, device, targets.dtype)
        return psi, gamma, state

    def forward(
        self,
        inputs: Tensor,
        targets: Tensor,
        generator: torch.Generator | None = None,
        steps: int | None = None,
        weights: list[float] | None = None,
        keep: bool = True,
    ) -> EMResult:
        """inputs: noisy frames (B, T+1, H, W, C); targets: clean frames of the same shape.

        ``steps`` and ``weights`` override T and the loss step weights (evaluation may unroll longer
        than training); ``keep=False`` computes only what training needs: the weighted loss.
        """
        steps = self.steps if steps is None else steps
        weights = weights if weights is not None else self.step_weights
        if len(weights) != steps:
            raise ValueError(f"need {steps} step weights, got {len(weights)}")
        if targets.shape[1] < steps + 1:
            raise ValueError(f"{steps} EM steps need {steps + 1} frames, got {targets.shape[1]}")
        psi, gamma, state = self.start(targets, generator)
        recompute = self.checkpoint_steps and torch.is_grad_enabled()
        step = self._recomputed_step if recompute else self.em_step
        kept: list[list[Tensor]] = [[], [gamma], [], []]  # psi, gamma, L_t, upper bound
        total = targets.new_zeros(())
        for t in range(steps):
            target = targets[:, t + 1, None]  # (B, 1, H, W, C)
            psi, state, gamma = step(inputs[:, t, None], target, psi, gamma, state)
            if weights[t] != 0.0:
                total = total + weights[t] * self.loss_at(target, psi, gamma)
            if keep:
                for store, value in zip(kept, (psi, gamma, *self.monitor(target, psi, gamma))):
                    store.append(value)
        return self._result(total, kept, keep)

    def _recomputed_step(self, *args: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """:meth:`em_step`, recomputed in the backward pass (``train.checkpoint_steps``)."""
        out: tuple[Tensor, Tensor, Tensor] = checkpoint(self.em_step, *args, use_reentrant=False)
        return out

    @staticmethod
    def _result(total: Tensor, kept: list[list[Tensor]], keep: bool) -> EMResult:
        if not keep:
            empty = total.new_zeros(0)
            return EMResult(empty, empty, total, empty, empty)
        psis, gammas, losses, bounds = kept
        return EMResult(
            psi=torch.stack(psis, dim=1),
            gamma=torch.stack(gammas, dim=1),
            loss=total,
            losses=torch.stack(losses),
            upper_bounds=torch.stack(bounds),
        )
