"""The fully connected component network of the static-shapes experiments (spec 5.2).

RNN-EM: u (D) -> RNN (hidden, sigmoid) -> fc D. N-EM uses only the decoder: h (hidden) -> fc D.
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import Tensor, nn

from grouping.plugins.hookspecs import hookimpl
from grouping.plugins.interfaces import Network, NetworkSpec, PluginConfig

#: TF 1.2 layer norm epsilon (spec 5.1).
LN_EPS = 1e-12


class FCNetwork(Network):
    """A sigmoid RNN cell on the flat masked difference, and one linear decoder to the pixels."""

    name = "fc"
    description = "fully connected RNN + linear decoder (spec 5.2, static shapes)"

    class Config(PluginConfig):
        hidden: int = Field(default=250, ge=1, description="RNN / theta size")
        layer_norm: bool = Field(default=False, description="layer norm on the decoder path")
        decoder_bias: bool = Field(default=True, description="bias in the decoder (N-EM: none)")

    config: Config

    def __init__(self, config: Config, spec: NetworkSpec) -> None:
        super().__init__(config, spec)
        h, w, c = spec.image_shape
        self.pixels = h * w * c
        hidden = config.hidden
        # One affine map on [u; h_prev], as TF's BasicRNNCell (spec 5.1).
        self.cell = nn.Linear(self.pixels + hidden, hidden) if spec.recurrent else None
        self.norm = nn.LayerNorm(hidden, eps=LN_EPS) if config.layer_norm else None
        self.decoder = nn.Linear(hidden, self.pixels, bias=config.decoder_bias)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Glorot-uniform weights and zero biases, as TF/slim (spec 5.1, pitfall 6)."""
        for layer in (self.cell, self.decoder):
            if layer is not None:
                nn.init.xavier_uniform_(layer.weight)
                if layer.bias is not None:
                    nn.init.zeros_(layer.bias)

    @property
    def state_size(self) -> int:
        return self.config.hidden

    def decode(self, h: Tensor) -> Tensor:
        n = h.shape[0]
        return self.decoder(h).reshape(n, *self.spec.image_shape)  # (N, H, W, C)

    def decoder_weight(self) -> Tensor:
        return self.decoder.weight  # (D, S): decode is the affine map W h + b

    def forward(self, u: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        if self.cell is None:
            raise RuntimeError("this fc network was built without its recurrent cell (N-EM only)")
        n = u.shape[0]
        a = self.cell(torch.cat([u.reshape(n, self.pixels), state], dim=1))  # (N, S)
        h = torch.sigmoid(a)
        out = torch.sigmoid(self.norm(a)) if self.norm is not None else h
        return self.decode(out), h


@hookimpl
def register_networks(register):  # type: ignore[no-untyped-def]
    register(FCNetwork)
