"""RNN-EM: the M-step is a learned recurrent network fed the gamma-masked difference (spec 2.4)."""

from __future__ import annotations

from torch import Tensor

from grouping.plugins.hookspecs import hookimpl
from grouping.plugins.interfaces import Updater


class RNNEM(Updater):
    """psi, h = f(gamma * (x - psi), h): the network's recurrent step replaces the EM M-step."""

    name = "rnn-em"
    description = "RNN-EM: a recurrent network replaces the M-step (unconstrained update)"

    def forward(self, u: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        raw, state = self.network(u, state)  # (N, H, W, C), (N, S)
        return self.likelihood.activation(raw), state


@hookimpl
def register_updaters(register):  # type: ignore[no-untyped-def]
    register(RNNEM)
