"""The unrolled, differentiable EM procedure of Neural EM (Greff et al., NIPS 2017, section 2).

Equation numbers are the paper's; ``docs/method.md`` writes them out.

* Eq. (3), the E-step: gamma_ik = P(x_i | psi_ik) / sum_j P(x_i | psi_ij)  -> :func:`e_step`;
* Eq. (4), the M-step: each component's state moves given its gamma-masked difference
  gamma_k * (x~ - psi_k); N-EM takes a gradient step on Q, RNN-EM a learned recurrent step
  -> the updater plugin, called on the K components of each sample together, (B, K, ...);
* Eq. (5), the training loss of one step: the gamma-weighted intra-cluster loss plus the
  (1 - gamma)-weighted inter-cluster KL -> :func:`step_loss`.

One engine serves static and sequential data: a static image is a sequence whose frame repeats.
Step t takes the noisy frame t as input and is scored against the clean frame t + 1 (spec 4.3).
The engine returns what the steps computed and nothing else: no metrics, no I/O, no checks. The
plugins' contracts are checked once, when a run is assembled (``grouping.engine.contracts``), so
the loop below calls them bare.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from grouping.plugin_api.interfaces import Likelihood, Updater

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
    """Eq. (5): L = [sum gamma * intra + w * sum (1 - gamma) * inter] / B, a scalar.

    intra is -log P(x | psi_k), inter is KL(prior || P(. | psi_k)); summed over pixels, channels
    and K (and over steps, when psi and gamma hold several), averaged over the batch (spec 3.1, 3.2).
    """
    intra = (gamma * likelihood.intra(target, psi)).sum()
    inter = ((1.0 - gamma) * likelihood.inter(psi)).sum()
    return (intra + inter_weight * inter) / psi.shape[0]


def per_step_loss(
    likelihood: Likelihood, target: Tensor, psi: Tensor, gamma: Tensor, inter_weight: float
) -> Tensor:
    """Eq. (5)'s summand per pixel: gamma * intra + w * (1 - gamma) * inter, psi's shape."""
    return gamma * likelihood.intra(target, psi) + inter_weight * (
        (1.0 - gamma) * likelihood.inter(psi)
    )


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
        checkpoint_steps: bool = False,
    ) -> None:
        super().__init__()
        self.updater = updater
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
        self.checkpoint_steps = checkpoint_steps

    def through(self, gamma: Tensor) -> Tensor:
        """gamma as the mask and the loss weights see it: stopped unless ``gradient_gamma``
        (paper section 2.4: with it stopped, the conflicting gradients through gamma vanish)."""
        return gamma if self.gradient_gamma else gamma.detach()

    def em_step(
        self, noisy_t: Tensor, target: Tensor, psi: Tensor, gamma: Tensor, state: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        """One unrolled step (spec 2.2): noisy_t, target (B, 1, H, W, C) -> psi (B, K, H, W, C),
        state (B, K, S), gamma (B, K, H, W, 1)."""
        u = self.through(gamma) * (noisy_t - psi)  # the gamma-masked difference
        psi, state = self.updater(u, state)  # eq. (4), the M-step
        with torch.set_grad_enabled(self.gradient_gamma and torch.is_grad_enabled()):
            gamma = e_step(self.likelihood, target, psi)  # eq. (3), against the clean x_{t+1}
        return psi, state, gamma

    def initial_gamma(
        self, shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device
    ) -> Tensor:
        """gamma^(0) of ``shape`` (B, K, H, W, 1): the paper's per pixel, or smooth regions."""
        if self.gamma_grid is None:
            return initial_gamma(shape, generator, device)
        return smooth_gamma(shape, self.gamma_grid, generator, device)

    def start(
        self, targets: Tensor, generator: torch.Generator | None, gamma: Tensor | None = None
    ) -> tuple[Tensor, ...]:
        """The state before step 1 (spec 2.6): random gamma^(0) (or the one given), psi =
        pred_init, zero state."""
        b, _, h, w, c = targets.shape
        k, device = self.components, targets.device
        if gamma is None:
            gamma = self.initial_gamma((b, k, h, w, 1), generator, device)
        else:
            k = gamma.shape[1]
        psi = torch.full((b, k, h, w, c), self.pred_init, device=device, dtype=targets.dtype)
        state = self.updater.initial_state(b, k, device, targets.dtype)
        return psi, gamma, state

    def forward(
        self,
        inputs: Tensor,
        targets: Tensor,
        generator: torch.Generator | None = None,
        steps: int | None = None,
        weights: list[float] | None = None,
        keep: bool = True,
        gamma: Tensor | None = None,
    ) -> EMResult:
        """inputs: noisy frames (B, T+1, H, W, C); targets: clean frames of the same shape.

        ``steps`` and ``weights`` override T and the loss step weights (evaluation may unroll longer
        than training); ``keep=False`` computes only what training needs: the weighted loss.
        ``gamma`` is gamma^(0) (B, K, H, W, 1) drawn by the caller (else from ``generator``).
        """
        steps = self.steps if steps is None else steps
        weights = weights if weights is not None else self.step_weights
        if len(weights) != steps:
            raise ValueError(f"need {steps} step weights, got {len(weights)}")
        if targets.shape[1] < steps + 1:
            raise ValueError(f"{steps} EM steps need {steps + 1} frames, got {targets.shape[1]}")
        psi, gamma, state = self.start(targets, generator, gamma)
        recompute = self.checkpoint_steps and torch.is_grad_enabled()
        step = self._recomputed_step if recompute else self.em_step
        psis, gammas = [], [gamma]
        with self.updater.network.unrolled():
            for t in range(steps):
                psi, state, gamma = step(
                    inputs[:, t, None], targets[:, t + 1, None], psi, gamma, state
                )
                psis.append(psi)
                gammas.append(gamma)
        loss = self.loss(targets[:, 1 : steps + 1], psis, gammas[1:], weights)
        if not keep:
            empty = loss.new_zeros(0)
            return EMResult(empty, empty, loss, empty, empty)
        return self._kept(targets[:, 1 : steps + 1], psis, gammas, loss)

    def loss(
        self, targets: Tensor, psis: list[Tensor], gammas: list[Tensor], weights: list[float]
    ) -> Tensor:
        """sum_t w_t L_t (spec 3.2) as one expression over the stacked scored steps.

        targets (B, T, H, W, C); psis and gammas hold T tensors (B, K, ...) each.
        """
        scored = [t for t, w in enumerate(weights) if w != 0.0]
        if not scored:
            return targets.new_zeros(())
        psi = _stacked([psis[t] for t in scored])  # (B, T', K, H, W, C)
        gamma = self.through(_stacked([gammas[t] for t in scored]))
        first, last = scored[0], scored[-1]
        contiguous = last - first + 1 == len(scored)
        target = (targets[:, first : last + 1] if contiguous else targets[:, scored]).unsqueeze(2)
        w = [weights[t] for t in scored]
        if len(set(w)) == 1:  # equal weights: one scalar factor (none for the usual 1)
            loss = step_loss(self.likelihood, target, psi, gamma, self.inter_weight)
            return loss if w[0] == 1.0 else w[0] * loss
        per_pixel = per_step_loss(self.likelihood, target, psi, gamma, self.inter_weight)
        per_step = per_pixel.flatten(2).sum(dim=(0, 2))  # (T',)
        return (per_step * per_step.new_tensor(w)).sum() / psi.shape[0]

    @torch.no_grad()
    def _kept(
        self, targets: Tensor, psis: list[Tensor], gammas: list[Tensor], loss: Tensor
    ) -> EMResult:
        """Every step's psi, gamma, L_t and upper bound, detached (evaluation, figures)."""
        psi = torch.stack(psis, dim=1)  # (B, T, K, H, W, C)
        gamma = torch.stack(gammas, dim=1)  # (B, T + 1, K, H, W, 1)
        target = targets.unsqueeze(2)  # (B, T, 1, H, W, C)
        per_pixel = per_step_loss(self.likelihood, target, psi, gamma[:, 1:], self.inter_weight)
        b = psi.shape[0]
        losses = per_pixel.transpose(0, 1).flatten(1).sum(dim=1) / b  # (T,)
        best = psi.max(dim=2, keepdim=True).values
        bounds = self.likelihood.intra(target, best).transpose(0, 1).flatten(1).sum(dim=1) / b
        return EMResult(psi, gamma, loss, losses, bounds)

    def _recomputed_step(self, *args: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """:meth:`em_step`, recomputed in the backward pass (``train.checkpoint_steps``)."""
        out: tuple[Tensor, Tensor, Tensor] = checkpoint(self.em_step, *args, use_reentrant=False)
        return out


def _stacked(tensors: list[Tensor]) -> Tensor:
    """The tensors stacked on a new axis 1; one tensor is a view, not a copy."""
    return tensors[0].unsqueeze(1) if len(tensors) == 1 else torch.stack(tensors, dim=1)
