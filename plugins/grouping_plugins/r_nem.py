"""R-NEM: RNN-EM whose components interact (van Steenkiste et al., "Relational Neural Expectation
Maximization", ICLR 2018; the ``R_NEM`` cell of the original ``network.py``).

Each component k of a sample has a state theta_k (S), its masked difference u_k = gamma_k * (x - psi_k)
and the network's encoding of it, e_k = encode(u_k). With LN a learned layer norm and every FC
followed by LN and then its activation, as the original's hidden layers:

    (R1) h_k    = ReLU(LN(W_enc theta_k + b_enc))                    the encoded state
    (R2) c_kj   = ReLU(LN(W_core [h_k; h_j] + b_core))                each ordered pair j != k
    (R3) f_kj   = ReLU(LN(W_eff c_kj + b_eff))                        the effect of j on k
    (R4) a_kj   = sigmoid(w_att . tanh(LN(W_hid c_kj + b_hid)) + b_att)   attention (1 without)
    (R5) E_k    = sum_{j != k} a_kj f_kj                              the total effect on k
    (R6) z_k    = W_new [h_k; g E_k; e_k] + b_new                     g: the gate (1 without)
    (R7) theta_k' = sigmoid(z_k),   psi_k = activation(decode(sigmoid(LN(z_k))))

The state carried to the next step is sigmoid(z_k), never normalised; the representation the decoder
reads is layer-normalised when the network asks for it (``Network.layer_norm``), as in ``rnn-em``.

Differences from the original, chosen on purpose (docs/method.md section 2.7):

* ``gate`` (default on): g in (R6) is one learned scalar that starts at 0, so training starts as
  plain RNN-EM and lets the interaction in as it helps; without it all components collapsed into
  one on CPU budgets (issue 38). ``gate = false`` is the original's form (g = 1).
* K is read from the shape, and no weight depends on it (the original fixed K when it built the
  cell), so a model trained with K = 5 runs with K = 8; with K = 1 there are no pairs and E = 0
  (the original refused K = 1).

Weights are Glorot-uniform with zero biases, layer norms gain 1 and bias 0 (TF/slim defaults).
"""

from __future__ import annotations

from typing import Annotated

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from grouping.plugins import Likelihood, Network, PluginConfig, Updater, hookimpl

#: TF 1.x layer norm epsilon (spec 5.1), as ``rnn-em``.
LN_EPS = 1e-12

PositiveInt = Annotated[int, Field(gt=0)]


class Dense(nn.Module):
    """FC -> layer norm: the original's hidden layer, before its activation."""

    def __init__(self, n_in: int, n_out: int) -> None:
        super().__init__()
        self.linear = nn.Linear(n_in, n_out)
        self.norm = nn.LayerNorm(n_out, eps=LN_EPS)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(self.linear(x))


def others_index(k: int, device: torch.device) -> Tensor:
    """(K, K-1) indices: row k lists the components j != k in increasing order. Arithmetic, not a
    boolean mask, so that building it never waits for the device."""
    j = torch.arange(k - 1, device=device).unsqueeze(0)  # (1, K-1)
    row = torch.arange(k, device=device).unsqueeze(1)  # (K, 1)
    return j + (j >= row).long()


class RNEM(Updater):
    """RNN-EM plus an interaction term E_k over the other components (eqs. R1-R7)."""

    name = "r-nem"
    description = "R-NEM: RNN-EM whose components interact in pairs (docs/method.md section 2.7)"

    class Config(PluginConfig):
        attention: bool = Field(
            default=True,
            description="weigh each pair's effect by a learned attention in (0, 1); false: a "
            "plain sum over the other components",
        )
        gate: bool = Field(
            default=True,
            description="scale the total effect by a learned scalar that starts at 0 (not in the "
            "original; false gives the original's form)",
        )
        encoder_size: PositiveInt = Field(default=250, description="width of the state encoder")
        core_size: PositiveInt = Field(
            default=250, description="width of the pair core on [h_k; h_j]"
        )
        effect_size: PositiveInt = Field(default=250, description="width of a pair's effect")
        attention_size: PositiveInt = Field(
            default=100, description="hidden width of the attention MLP"
        )

    config: Config

    def __init__(self, config: Config, network: Network, likelihood: Likelihood) -> None:
        super().__init__(config, network, likelihood)
        size = network.state_size
        self.encoder = Dense(size, config.encoder_size)
        self.core = Dense(2 * config.encoder_size, config.core_size)
        self.effect = Dense(config.core_size, config.effect_size)
        self.attend: Dense | None = None
        self.attend_out: nn.Linear | None = None
        if config.attention:
            self.attend = Dense(config.core_size, config.attention_size)
            self.attend_out = nn.Linear(config.attention_size, 1)
        inputs = config.encoder_size + config.effect_size + network.encoding_size
        self.cell = nn.Linear(inputs, size)
        self.gate = nn.Parameter(torch.zeros(())) if config.gate else None
        self.norm = nn.LayerNorm(size, eps=LN_EPS) if network.layer_norm else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Glorot-uniform weights, zero biases (slim's defaults); the gate at 0. The network's
        weights are the network's own, and layer norms start at gain 1, bias 0."""
        own = [self.encoder, self.core, self.effect, self.attend, self.attend_out, self.cell]
        for module in (m for part in own if part is not None for m in part.modules()):
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
        if self.gate is not None:
            nn.init.zeros_(self.gate)

    def encode_state(self, state: Tensor) -> Tensor:
        """(R1): state (B, K, S) -> h (B, K, encoder_size)."""
        return torch.relu(self.encoder(state))

    def pairs(self, h: Tensor) -> Tensor:
        """(R2): c (B, K, K-1, core_size), row k over the others j != k in increasing order.

        W_core [h_k; h_j] = W_focus h_k + W_other h_j: the FC runs once per component, not once
        per pair, and the pairs are sums (exactly the FC on the concatenation)."""
        linear = self.core.linear
        focus_w, other_w = linear.weight.split(h.shape[-1], dim=1)
        focus = F.linear(h, focus_w, linear.bias)  # (B, K, C)
        other = F.linear(h, other_w)  # (B, K, C)
        idx = others_index(h.shape[1], h.device)  # (K, K-1)
        return torch.relu(self.core.norm(focus.unsqueeze(2) + other[:, idx]))

    def interaction(self, h: Tensor) -> Tensor:
        """(R2)-(R5): the total effect E (B, K, effect_size) on each component of its sample."""
        c = self.pairs(h)
        f = torch.relu(self.effect(c))  # (R3)
        if self.attend is not None and self.attend_out is not None:
            f = f * torch.sigmoid(self.attend_out(torch.tanh(self.attend(c))))  # (R4)
        return f.sum(dim=2)  # (R5); K = 1: an empty sum, zeros

    def forward(self, u: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        b, k = u.shape[:2]
        h = self.encode_state(state)
        effect = self.interaction(h)
        if self.gate is not None:
            effect = self.gate * effect
        e = self.network.encode(u.flatten(0, 1)).unflatten(0, (b, k))  # (B, K, E)
        z = self.cell(torch.cat([h, effect, e], dim=-1))  # (R6), (B, K, S)
        shown = torch.sigmoid(self.norm(z)) if self.norm is not None else torch.sigmoid(z)
        psi = self.likelihood.activation(self.network.decode(shown.flatten(0, 1)))
        return psi.unflatten(0, (b, k)), torch.sigmoid(z)  # (R7)


@hookimpl
def register_updaters(register):  # type: ignore[no-untyped-def]
    register(RNEM)
