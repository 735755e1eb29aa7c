"""Small stand-in plugins shared by several test modules."""

from __future__ import annotations

from torch import Tensor

from grouping.plugin_api.interfaces import Network


class IdentityNetwork(Network):
    """Encodes the masked difference as its flat pixels and decodes them back unchanged:
    ``decode(encode(u)) == u``, so a test updater sees its raw input."""

    name = "identity"
    description = "test network: decode(encode(u)) = u"

    @property
    def state_size(self) -> int:
        return self.encoding_size  # H*W*C: the representation is the flat image

    def decode(self, h: Tensor) -> Tensor:
        return h.reshape(h.shape[0], *self.spec.image_shape)
