"""Which likelihood fits a file's pixels, shared by the ``hdf5`` and ``arrays`` data sets."""

from __future__ import annotations

#: The likelihood for pixels that are all 0 or 1.
BINARY_LIKELIHOOD = "bernoulli"
#: The likelihood for grey-scale or colour values in [0, 1].
GREY_LIKELIHOOD = "gaussian"


def likelihood_name(binary: bool) -> str:
    """``bernoulli`` for binary pixels, ``gaussian`` for grey ones."""
    return BINARY_LIKELIHOOD if binary else GREY_LIKELIHOOD
