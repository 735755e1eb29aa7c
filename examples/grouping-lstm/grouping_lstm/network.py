"""``lstm-fc``: the flat masked difference as the encoding, one linear decoder to the pixels.

The network ``lstm-em`` was first written for, kept so that its runs keep loading. A network is
an encoder and a decoder and holds no recurrence: the LSTM cell is the updater's
(:mod:`grouping_lstm.updater`), which reads ``encode`` (here the D = H*W*C flat pixels, the base
class's default) and decodes its output h, of length ``hidden``, with :meth:`LSTMNetwork.decode`.
``lstm-em`` drives any network (``fc``, ``conv``, this one); ``lstm-fc`` differs from ``fc`` only in
its defaults.
"""

from __future__ import annotations

from pydantic import Field
from torch import Tensor, nn

from grouping.plugins import Network, NetworkSpec, PluginConfig, RegisterNetwork, hookimpl


class LSTMNetwork(Network):
    """u (N, H, W, C) -> encoding: flat u (N, D); h (N, hidden) -> Linear(hidden, D) -> (N, H, W, C).

    Base-class attributes it reads: ``self.config`` (its validated :class:`Config`) and
    ``self.spec`` (the :class:`NetworkSpec` the engine built it with: the image shape).
    """

    name = "lstm-fc"
    description = "flat-pixel encoder + linear decoder from the LSTM output h (for lstm-em)"

    class Config(PluginConfig):
        hidden: int = Field(default=100, ge=1, description="LSTM size S (lstm-em's state is 2S)")
        forget_bias: float | None = Field(
            default=None,
            description="moved to updater.forget_bias; accepted (and ignored) so that run "
            "folders saved with it still load",
        )

    config: Config  # narrows the base class's PluginConfig, for type checkers and readers

    def __init__(self, config: Config, spec: NetworkSpec) -> None:
        super().__init__(config, spec)  # sets self.config and self.spec
        h, w, c = spec.image_shape
        self.decoder = nn.Linear(config.hidden, h * w * c)
        nn.init.xavier_uniform_(self.decoder.weight)  # Glorot-uniform, zero bias, as ``fc``
        nn.init.zeros_(self.decoder.bias)

    @property
    def state_size(self) -> int:
        """S = hidden: the length of the h that ``decode`` reads."""
        return self.config.hidden

    # encoding_size and encode stay the base class's: the D = H*W*C flat pixels.

    def decode(self, h: Tensor) -> Tensor:
        """Raw pixels (N, H, W, C) from the LSTM output h (N, hidden)."""
        return self.decoder(h).reshape(h.shape[0], *self.spec.image_shape)

    def decoder_weight(self) -> Tensor:
        """W (D, hidden): ``decode`` is the affine map W h + b, so N-EM can take it too."""
        return self.decoder.weight


@hookimpl
def register_networks(register: RegisterNetwork) -> None:
    register(LSTMNetwork)
