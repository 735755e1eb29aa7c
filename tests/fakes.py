"""Small stand-in plugins shared by several test modules."""

from __future__ import annotations

from torch import Tensor

from grouping.plugins.interfaces import Network


class IdentityNetwork(Network):
    """Passes the masked difference through unchanged: lets a test updater see its raw input."""

    name = "identity"
    description = "test network: output = input"

    @property
    def state_size(self) -> int:
        return 1

    def decode(self, h: Tensor) -> Tensor:
        return h

    def forward(self, u: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        return u, state
