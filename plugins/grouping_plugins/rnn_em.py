"""RNN-EM: the M-step is a learned recurrent layer fed the gamma-masked difference (spec 2.4).

For each component, with e = encode(u) the network's encoding of its masked difference:

    a = W [e; h_prev] + b,    h = sigmoid(a),    psi = activation(decode(sigmoid(LN(a))))

the TF 1.2 "rnn" layer of spec 5.1: the state h is never layer-normalised and starts at zero; the
representation the decoder reads is layer-normalised when the network asks for it
(``Network.layer_norm``: the conv networks do, ``fc`` by option) and is h itself otherwise.
The K components share every weight; they are flattened to B * K rows around the network.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from grouping.plugins import Likelihood, Network, PluginConfig, Updater, hookimpl

#: TF 1.2 layer norm epsilon (spec 5.1).
LN_EPS = 1e-12


class RNNEM(Updater):
    """psi, h = f(gamma * (x - psi), h): a recurrent layer replaces the EM M-step."""

    name = "rnn-em"
    description = "RNN-EM: a recurrent network replaces the M-step (unconstrained update)"

    def __init__(self, config: PluginConfig, network: Network, likelihood: Likelihood) -> None:
        super().__init__(config, network, likelihood)
        size = network.state_size
        # One affine map on [e; h_prev], as TF's BasicRNNCell (spec 5.1).
        self.cell = nn.Linear(network.encoding_size + size, size)
        self.norm = nn.LayerNorm(size, eps=LN_EPS) if network.layer_norm else None
        nn.init.xavier_uniform_(self.cell.weight)  # Glorot-uniform, zero bias (pitfall 6)
        nn.init.zeros_(self.cell.bias)

    def forward(self, u: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        b, k = u.shape[:2]
        e = self.network.encode(u.flatten(0, 1))  # (B*K, E)
        a = self.cell(torch.cat([e, state.flatten(0, 1)], dim=1))  # (B*K, S)
        h = torch.sigmoid(a)
        shown = torch.sigmoid(self.norm(a)) if self.norm is not None else h
        psi = self.likelihood.activation(self.network.decode(shown))  # (B*K, H, W, C)
        return psi.unflatten(0, (b, k)), h.unflatten(0, (b, k))


@hookimpl
def register_updaters(register):  # type: ignore[no-untyped-def]
    register(RNNEM)
