"""N-EM: the generalized EM M-step, one gradient-ascent step on Q through the decoder (spec 2.5).

Each component's state is theta (B, K, S), starting at 0; the decoder reads sigmoid(theta). With
u = gamma * (x_noisy - psi) the step is

    theta <- theta + eta * J(theta)^T u,    J = d decode(sigmoid(theta)) / d theta,

where eta is one learned scalar. For a likelihood whose activation is its canonical link
(``Likelihood.canonical_link``: Bernoulli with sigmoid, Gaussian with identity), d Q / d raw is
gamma * (x - psi) = u (times 1 / sigma^2 for a Gaussian, which eta absorbs), so J^T u is exactly the
gradient of the expected log-likelihood Q (paper eq. 4) and a small positive eta never decreases Q.

Two forms compute J^T u; they agree to float32 precision (tests/test_n_em.py):

* ``closed``: when the network exposes an affine decoder weight W (D, S) through
  ``Network.decoder_weight()`` (the ``fc`` network does), J^T u = sigmoid'(theta) * (W^T u), the
  tied-weight form of the paper: the "encoder" is the transpose of the decoder.
* ``autograd``: any differentiable network; a vector-Jacobian product through
  ``decode(sigmoid(theta))``, with ``create_graph`` while training so backpropagation through time
  reaches the decoder and eta.

``form = "auto"`` (the default) takes ``closed`` when the network offers W, ``autograd`` otherwise.
"""

from __future__ import annotations

import math
from typing import ClassVar, Literal

import torch
from pydantic import Field
from torch import Tensor, nn

from grouping.plugins import Likelihood, Network, PluginConfig, Updater, hookimpl

#: TF's default Glorot-uniform initialiser on eta's (1, 1) shape draws from U(-sqrt(6/2), +sqrt(6/2))
#: = U(-sqrt 3, sqrt 3) (spec 2.5, pitfall 6).
GLOROT_SCALAR_LIMIT = math.sqrt(3.0)


class NEM(Updater):
    """theta <- theta + eta * J^T u; psi = activation(decode(sigmoid(theta))) (spec 2.5)."""

    name = "n-em"
    description = "N-EM: a learned-step gradient-ascent M-step on Q through the decoder (eq. 4)"
    needs_encoder: ClassVar[bool] = False

    class Config(PluginConfig):
        eta_init: Literal["glorot"] | float = Field(
            default="glorot",
            description="initial step size: 'glorot' = U(-sqrt3, sqrt3) as the original (may "
            "start negative), or a number such as 1.0",
        )
        form: Literal["auto", "closed", "autograd"] = Field(
            default="auto",
            description="how J^T u is computed: 'closed' (tied decoder weight), 'autograd' "
            "(any network) or 'auto' (closed when the network offers its decoder weight)",
        )

    config: Config

    def __init__(self, config: Config, network: Network, likelihood: Likelihood) -> None:
        super().__init__(config, network, likelihood)
        if not likelihood.canonical_link:
            raise ValueError(
                f"n-em needs a likelihood whose activation is its canonical link, so that "
                f"gamma * (x - psi) is the gradient of Q; {likelihood.name!r} does not declare "
                f"canonical_link (bernoulli does)"
            )
        has_weight = network.decoder_weight() is not None
        if config.form == "closed" and not has_weight:
            raise ValueError(
                f"form 'closed' needs a network with an affine decoder weight; "
                f"{network.name!r} has none (use form 'autograd' or 'auto')"
            )
        self.closed = config.form == "closed" or (config.form == "auto" and has_weight)
        self.eta = nn.Parameter(torch.empty(()))
        if config.eta_init == "glorot":
            nn.init.uniform_(self.eta, -GLOROT_SCALAR_LIMIT, GLOROT_SCALAR_LIMIT)
        else:
            nn.init.constant_(self.eta, float(config.eta_init))

    @property
    def form(self) -> Literal["closed", "autograd"]:
        """The form that runs: ``closed`` or ``autograd``."""
        return "closed" if self.closed else "autograd"

    def ascent_direction(self, u: Tensor, theta: Tensor) -> Tensor:
        """J(theta)^T u (N, S): the gradient of Q with respect to theta (spec 2.5)."""
        if self.closed:
            weight = self.network.decoder_weight()
            assert weight is not None  # checked in __init__
            s = torch.sigmoid(theta)  # (N, S)
            back = u.reshape(u.shape[0], -1) @ weight  # (N, D) @ (D, S) -> (N, S)
            return s * (1.0 - s) * back
        building_graph = torch.is_grad_enabled()
        with torch.enable_grad():
            # theta is a leaf without gradient at step 1 and at evaluation; autograd needs one.
            th = theta if theta.requires_grad else theta.detach().requires_grad_(True)
            raw = self.network.decode(torch.sigmoid(th))  # (N, H, W, C)
            (grad,) = torch.autograd.grad(raw, th, grad_outputs=u, create_graph=building_graph)
        return grad if building_graph else grad.detach()

    def forward(self, u: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        b, k = u.shape[:2]
        flat = state.flatten(0, 1)  # the K components are independent: B*K rows
        theta = flat + self.eta * self.ascent_direction(u.flatten(0, 1), flat)  # (B*K, S)
        raw = self.network.decode(torch.sigmoid(theta))  # (B*K, H, W, C)
        return self.likelihood.activation(raw).unflatten(0, (b, k)), theta.unflatten(0, (b, k))


@hookimpl
def register_updaters(register):  # type: ignore[no-untyped-def]
    register(NEM)
