"""``lstm-em``: RNN-EM with an LSTM as the M-step.

As in RNN-EM (the built-in ``rnn-em``), each component's new prediction and state come from one
recurrent step on its gamma-masked difference, psi, state = f(gamma * (x - psi), state); here f is
an LSTM, so the state the core carries between EM steps is (h, c), as one (N, 2S) tensor
``[h | c]``. It is written for the ``lstm-fc`` network of this package, whose state has that layout.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from pydantic import Field
from torch import Tensor

from grouping.plugins import Likelihood, Network, PluginConfig, RegisterUpdater, Updater, hookimpl
from grouping_lstm.network import join_state, split_state


class LSTMEM(Updater):
    """psi, [h | c] = f(gamma * (x - psi), [h | c]) with f an LSTM cell and a decoder.

    Base-class attributes it uses: ``self.network`` (the component network; it owns the weights, so
    ``updater.parameters()`` are all the trainable ones), ``self.likelihood`` (its ``activation``
    maps the network's raw output to psi) and ``self.config`` (its validated :class:`Config`).
    """

    name = "lstm-em"
    description = "LSTM-EM: an LSTM replaces the M-step (state: h and c; network lstm-fc)"
    #: The engine builds the network as a recurrent cell (``NetworkSpec.recurrent = True``).
    recurrent: ClassVar[bool] = True

    class Config(PluginConfig):
        cell_clip: float | None = Field(
            default=None,
            gt=0.0,
            description="bound the cell state c carried to the next EM step to [-clip, clip] "
            "(None: no bound)",
        )

    config: Config  # narrows the base class's PluginConfig, for type checkers and readers

    def __init__(self, config: Config, network: Network, likelihood: Likelihood) -> None:
        super().__init__(config, network, likelihood)  # sets self.config, network, likelihood
        size = network.state_size
        if size % 2:
            # Checked here so that a wrong --network fails when the run is built, not mid-epoch.
            raise ValueError(
                f"lstm-em carries [h | c] and needs a network with an even state size, such as "
                f"lstm-fc; network {network.name!r} has state size {size}"
            )
        self.hidden = size // 2  # S, the size of h and of c

    def initial_state(self, n: int, device: torch.device, dtype: torch.dtype) -> Tensor:
        """h = c = 0 for all N copies (spec 2.6), as one (N, 2S) tensor: the core requires N rows."""
        zeros = torch.zeros(n, self.hidden, device=device, dtype=dtype)
        return join_state(zeros, zeros.clone())

    def forward(self, u: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        """u = gamma * (x - psi) (N, H, W, C), [h | c] (N, 2S) -> psi (N, H, W, C), new [h | c]."""
        raw, state = self.network(u, state)  # raw (N, H, W, C), state (N, 2S)
        clip = self.config.cell_clip
        if clip is not None:
            h, c = split_state(state)
            state = join_state(h, c.clamp(-clip, clip))
        return self.likelihood.activation(raw), state


@hookimpl
def register_updaters(register: RegisterUpdater) -> None:
    register(LSTMEM)
