"""The unrolled, differentiable EM procedure shared by every updater and likelihood (spec 2, 3).

One engine serves static and sequential data: a static image is a sequence whose frame repeats.
Step t takes the noisy frame t as input and is scored against the clean frame t + 1 (spec 4.3).
The engine returns what the steps computed, and nothing else: no metrics, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from grouping.errors import PluginError
from grouping.guard import blame, check_batch, check_tensor, label
from grouping.interfaces import Likelihood, Updater

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


def e_step(likelihood: Likelihood, target: Tensor, psi: Tensor) -> Tensor:
    """gamma_k = P(x | psi_k) / sum_j P(x | psi_j) (spec 2.2, 2.3).

    target (B, 1, H, W, C), psi (B, K, H, W, C) -> gamma (B, K, H, W, 1). Channels combine as a
    product of per-channel likelihoods (the original summed them, which is only right for C = 1).
    """
    p = likelihood.pixel_prob(target, psi)
    p = (p if p.shape[-1] == 1 else p.prod(dim=-1, keepdim=True)) + E_STEP_FLOOR
    return p / p.sum(dim=1, keepdim=True)


def step_loss(
    likelihood: Likelihood, target: Tensor, psi: Tensor, gamma: Tensor, inter_weight: float
) -> Tensor:
    """L_t = [sum gamma * intra + w * sum (1 - gamma) * inter] / B (spec 3.1, 3.2), a scalar.

    Summed over pixels, channels and K; averaged over the batch.
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
    """What one unrolled pass produced, per step t = 1..T.

    psi (B, T, K, H, W, C), gamma (B, T + 1, K, H, W, 1) with gamma[:, 0] the random init,
    loss the trained objective sum_t w_t L_t (spec 3.2), losses (T,) the per-step L_t (detached),
    upper_bounds (T,) the next-step upper bound (detached). Without ``keep``, psi, gamma and
    upper_bounds are empty and losses holds only the steps of non-zero weight.
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
        #: Recompute each EM step in the backward pass instead of keeping its activations, so that
        #: memory no longer grows with the network's activations times T (``train.checkpoint_steps``).
        self.checkpoint_steps = False

    def em_step(
        self, inputs_t: Tensor, target: Tensor, psi: Tensor, gamma: Tensor, state: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        """One step (spec 2.4, 2.2): the M-step on gamma * (x~_t - psi), then the E-step against
        x_{t+1}. inputs_t, target (B, 1, H, W, C) -> psi (B, K, H, W, C), state (B*K, S), gamma."""
        b, k, h, w, c = psi.shape
        mask = gamma if self.gradient_gamma else gamma.detach()
        u = mask * (inputs_t - psi)  # (B, K, H, W, C)
        flat_psi, state = self._update(u.reshape(b * k, h, w, c), state)
        # fp32 at the boundary whatever precision the network multiplied in (grouping.precision)
        psi = flat_psi.reshape(b, k, h, w, c).to(target.dtype)
        state = state.to(target.dtype)
        # With gamma's gradient stopped, the E-step needs no autograd graph.
        with (
            torch.set_grad_enabled(self.gradient_gamma and torch.is_grad_enabled()),
            blame(self.likelihood, "pixel_prob"),
        ):
            gamma = e_step(self.likelihood, target, psi)
        check_tensor(self.likelihood, "probabilities", gamma, (b, k, h, w, 1), "(B, K, H, W, 1)")
        return psi, state, gamma

    def _update(self, u: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        """One M-step through the updater plugin, its output checked: u (N, H, W, C) ->
        (psi (N, H, W, C), state (N, ...))."""
        network = getattr(self.updater, "network", None)
        action = f"forward (with {label(network)})" if network is not None else "forward"
        with blame(self.updater, action):
            out = self.updater(u, state)
        if not (isinstance(out, tuple) and len(out) == 2):
            raise PluginError(
                f"{label(self.updater)} returned {type(out).__name__} from forward; "
                "expected a tuple (psi, state)"
            )
        psi, new_state = out
        check_tensor(self.updater, "psi", psi, tuple(u.shape), "(N, H, W, C)")
        check_batch(self.updater, "a state", new_state, u.shape[0])
        return psi, new_state

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
        b, frames, h, w, c = targets.shape
        if frames < steps + 1:
            raise ValueError(f"{steps} EM steps need {steps + 1} frames, got {frames}")
        k = self.components
        device = targets.device
        gamma = initial_gamma((b, k, h, w, 1), generator, device)
        psi = torch.full((b, k, h, w, c), self.pred_init, device=device, dtype=targets.dtype)
        with blame(self.updater, "initial_state"):
            state = self.updater.initial_state(b * k, device, targets.dtype)
        check_batch(self.updater, "an initial state", state, b * k)

        psis, gammas, losses, bounds = [], [gamma], [], []
        total = targets.new_zeros(())
        recompute = self.checkpoint_steps and torch.is_grad_enabled()
        for t in range(steps):
            target = targets[:, t + 1, None]  # (B, 1, H, W, C)
            args = (inputs[:, t, None], target, psi, gamma, state)
            if recompute:
                psi, state, gamma = checkpoint(self.em_step, *args, use_reentrant=False)
            else:
                psi, state, gamma = self.em_step(*args)
            if weights[t] != 0.0:
                weight = gamma if self.gradient_gamma else gamma.detach()
                loss_t = step_loss(self.likelihood, target, psi, weight, self.inter_weight)
                total = total + weights[t] * loss_t
                losses.append(loss_t.detach())
            if keep:  # monitoring only: every step's loss and upper bound, without gradients
                with torch.no_grad():
                    if weights[t] == 0.0:
                        losses.append(
                            step_loss(self.likelihood, target, psi, gamma, self.inter_weight)
                        )
                    bounds.append(upper_bound(self.likelihood, target, psi))
                psis.append(psi)
                gammas.append(gamma)

        empty = targets.new_zeros(0)
        return EMResult(
            psi=torch.stack(psis, dim=1) if keep else empty,
            gamma=torch.stack(gammas, dim=1) if keep else empty,
            loss=total,
            losses=torch.stack(losses),
            upper_bounds=torch.stack(bounds) if keep else empty,
        )
