"""``lstm-em``: RNN-EM with an LSTM as the M-step, for any network.

As in RNN-EM (the built-in ``rnn-em``), each component's new prediction and state come from one
recurrent step on its gamma-masked difference, psi, state = f(gamma * (x - psi), state); here f is
an ``nn.LSTMCell`` on the network's encoding of the difference:

    e = encode(u),    h, c = LSTMCell(e, (h_prev, c_prev)),    psi = activation(decode(h))

The updater owns the cell; the network (``fc``, ``conv``, this package's ``lstm-fc``, ...) is the
encoder and the decoder, so S is the network's ``state_size`` (the length ``decode`` reads) and
the cell's input is its ``encoding_size``. An LSTM has two state vectors, the output h and the
cell c; the core carries one state tensor per component, so the state here is their
concatenation ``[h | c]``, (B, K, 2S). :func:`split_state` and :func:`join_state` are the one
place that layout is written down. h is decoded as it is: the network's ``layer_norm`` flag is
for RNN-EM's sigmoid layer, and an LSTM's h is already bounded by its tanh.
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import Tensor, nn

from grouping.plugins import Likelihood, Network, PluginConfig, RegisterUpdater, Updater, hookimpl


def split_state(state: Tensor) -> tuple[Tensor, Tensor]:
    """(..., 2S) -> h (..., S), c (..., S): the state's first half is h, its second half c."""
    h, c = state.chunk(2, dim=-1)
    return h, c


def join_state(h: Tensor, c: Tensor) -> Tensor:
    """h (..., S), c (..., S) -> the state (..., 2S) the core carries between EM steps."""
    return torch.cat([h, c], dim=-1)


class LSTMEM(Updater):
    """psi, [h | c] = f(gamma * (x - psi), [h | c]) with f the network's encoder, an LSTM cell and
    the network's decoder.

    Base-class attributes it uses: ``self.network`` (the encoder and decoder; the updater registers
    it before its own cell, so ``updater.parameters()`` are all the trainable ones),
    ``self.likelihood`` (its ``activation`` maps the decoder's raw output to psi) and
    ``self.config`` (its validated :class:`Config`).
    """

    name = "lstm-em"
    description = "LSTM-EM: an LSTM cell replaces the M-step (state: h and c; any network)"

    class Config(PluginConfig):
        cell_clip: float | None = Field(
            default=None,
            gt=0.0,
            description="bound the cell state c carried to the next EM step to [-clip, clip] "
            "(None: no bound)",
        )
        forget_bias: float = Field(
            default=1.0, description="initial forget-gate bias (TF's LSTMCell default: 1.0)"
        )

    config: Config  # narrows the base class's PluginConfig, for type checkers and readers

    def __init__(self, config: Config, network: Network, likelihood: Likelihood) -> None:
        super().__init__(config, network, likelihood)  # sets self.config, network, likelihood
        self.hidden = network.state_size  # S, the size of h and of c
        #: named ``cell`` so that checkpoints of the earlier ``lstm-fc``, which held it as
        #: ``updater.network.cell``, load (grouping's format upgrade moves it to ``updater.cell``)
        self.cell = nn.LSTMCell(network.encoding_size, self.hidden)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Glorot-uniform weights and zero biases, as the built-ins, plus the forget bias."""
        for weight in (self.cell.weight_ih, self.cell.weight_hh):
            nn.init.xavier_uniform_(weight)
        for bias in (self.cell.bias_ih, self.cell.bias_hh):
            nn.init.zeros_(bias)
        with torch.no_grad():  # LSTMCell's gates are stacked in the order i, f, g, o
            self.cell.bias_ih[self.hidden : 2 * self.hidden].fill_(self.config.forget_bias)

    @property
    def state_size(self) -> int:
        """2S: h and c side by side (the base class's zero initial state, (B, K, 2S), fits)."""
        return 2 * self.hidden

    def forward(self, u: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        """u = gamma * (x - psi) (B, K, H, W, C), [h | c] (B, K, 2S) -> psi (B, K, H, W, C),
        the new [h | c] (B, K, 2S). The K components are independent: B*K rows of one cell."""
        b, k = u.shape[:2]
        e = self.network.encode(u.flatten(0, 1))  # (B*K, E)
        h, c = self.cell(e, split_state(state.flatten(0, 1)))  # (B*K, S) each
        psi = self.likelihood.activation(self.network.decode(h))  # (B*K, H, W, C)
        clip = self.config.cell_clip
        if clip is not None:  # only what is carried on: this step's h already used c
            c = c.clamp(-clip, clip)
        return psi.unflatten(0, (b, k)), join_state(h, c).unflatten(0, (b, k))


@hookimpl
def register_updaters(register: RegisterUpdater) -> None:
    register(LSTMEM)
