"""The fully connected component network of the static-shapes experiments (spec 5.2).

The encoder is the identity on the flat masked difference (D = H*W*C values), the decoder one
linear map from the representation to the pixels. RNN-EM's sigmoid recurrent layer on [u; h] is the
updater's (``rnn-em``); N-EM uses only the decoder.
"""

from __future__ import annotations

from pydantic import Field
from torch import Tensor, nn

from grouping.plugins import Network, NetworkSpec, PluginConfig, hookimpl


class FCNetwork(Network):
    """Identity encoder (the flat pixels) and one linear decoder to the pixels."""

    name = "fc"
    description = "fully connected: flat-pixel encoder, linear decoder (spec 5.2, static shapes)"

    class Config(PluginConfig):
        hidden: int = Field(default=250, ge=1, description="representation size S (RNN / theta)")
        layer_norm: bool = Field(
            default=False, description="layer norm on the representation the decoder reads"
        )
        decoder_bias: bool = Field(default=True, description="bias in the decoder (N-EM: none)")

    config: Config

    def __init__(self, config: Config, spec: NetworkSpec) -> None:
        super().__init__(config, spec)
        h, w, c = spec.image_shape
        self.pixels = h * w * c
        self.layer_norm = config.layer_norm
        self.decoder = nn.Linear(config.hidden, self.pixels, bias=config.decoder_bias)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Glorot-uniform weight and zero bias, as TF/slim (spec 5.1, pitfall 6)."""
        nn.init.xavier_uniform_(self.decoder.weight)
        if self.decoder.bias is not None:
            nn.init.zeros_(self.decoder.bias)

    @property
    def state_size(self) -> int:
        return self.config.hidden

    def decode(self, h: Tensor) -> Tensor:
        return self.decoder(h).reshape(h.shape[0], *self.spec.image_shape)  # (N, H, W, C)

    def decoder_weight(self) -> Tensor:
        return self.decoder.weight  # (D, S): decode is the affine map W h + b


@hookimpl
def register_networks(register):  # type: ignore[no-untyped-def]
    register(FCNetwork)
