"""``lstm-fc``: an LSTM cell on the flat masked difference, and one linear decoder to the pixels.

The fully connected network of the static-shapes experiments (``fc``) with its sigmoid RNN cell
replaced by an ``nn.LSTMCell``. An LSTM has two state vectors, the output h and the cell c; the core
carries one state tensor with a row per component copy, so the state here is their concatenation
``[h | c]`` (N, 2 * hidden). :func:`split_state` and :func:`join_state` are the one place that
layout is written down; the ``lstm-em`` updater uses them too.
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import Tensor, nn

from grouping.plugins import Network, NetworkSpec, PluginConfig, RegisterNetwork, hookimpl


def split_state(state: Tensor) -> tuple[Tensor, Tensor]:
    """(N, 2S) -> h (N, S), c (N, S): the state's first half is h, its second half c."""
    h, c = state.chunk(2, dim=1)
    return h, c


def join_state(h: Tensor, c: Tensor) -> Tensor:
    """h (N, S), c (N, S) -> the state (N, 2S) the core carries between EM steps."""
    return torch.cat([h, c], dim=1)


class LSTMNetwork(Network):
    """u (N, H, W, C) -> LSTMCell(D, hidden) -> h -> Linear(hidden, D) -> raw (N, H, W, C).

    Base-class attributes it reads: ``self.config`` (its validated :class:`Config`) and
    ``self.spec`` (the :class:`NetworkSpec` the engine built it with: the image shape, and whether
    the updater drives it as a recurrent cell).
    """

    name = "lstm-fc"
    description = "fully connected LSTM cell + linear decoder (state: h and c, for lstm-em)"

    class Config(PluginConfig):
        hidden: int = Field(default=100, ge=1, description="LSTM size S (the state is 2S)")
        forget_bias: float = Field(
            default=1.0, description="initial forget-gate bias (TF's LSTMCell default: 1.0)"
        )

    config: Config  # narrows the base class's PluginConfig, for type checkers and readers

    def __init__(self, config: Config, spec: NetworkSpec) -> None:
        super().__init__(config, spec)  # sets self.config and self.spec
        if not spec.recurrent:
            # N-EM (recurrent=False) asks only for a decoder of a state vector; this network's
            # decoder reads h, half of its state, so it cannot serve there: say so at build time.
            raise ValueError(
                "lstm-fc is a recurrent cell; an updater that only decodes (n-em) needs a network "
                "whose decoder reads its whole state, such as fc"
            )
        h, w, c = spec.image_shape
        self.pixels = h * w * c  # D
        self.cell = nn.LSTMCell(self.pixels, config.hidden)
        self.decoder = nn.Linear(config.hidden, self.pixels)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Glorot-uniform weights and zero biases, as the built-in ``fc``, plus the forget bias."""
        hidden = self.config.hidden
        for weight in (self.cell.weight_ih, self.cell.weight_hh, self.decoder.weight):
            nn.init.xavier_uniform_(weight)
        for bias in (self.cell.bias_ih, self.cell.bias_hh, self.decoder.bias):
            nn.init.zeros_(bias)
        with torch.no_grad():  # LSTMCell's gates are stacked in the order i, f, g, o
            self.cell.bias_ih[hidden : 2 * hidden].fill_(self.config.forget_bias)

    @property
    def state_size(self) -> int:
        """2 * hidden: h and c side by side (the zero initial state of the base class fits)."""
        return 2 * self.config.hidden

    def decode(self, h: Tensor) -> Tensor:
        """Raw pixels (N, H, W, C) from the LSTM output h (N, hidden), not the whole state."""
        return self.decoder(h).reshape(h.shape[0], *self.spec.image_shape)

    # decoder_weight() stays the base class's None: it is only for N-EM, which this network refuses.

    def forward(self, u: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        """One LSTM step: u (N, H, W, C), [h | c] (N, 2S) -> raw (N, H, W, C), new [h | c]."""
        n = u.shape[0]
        h, c = self.cell(u.reshape(n, self.pixels), split_state(state))
        return self.decode(h), join_state(h, c)


@hookimpl
def register_networks(register: RegisterNetwork) -> None:
    register(LSTMNetwork)
