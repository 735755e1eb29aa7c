"""Adam in one fused kernel where torch has one for the device, the plain loop elsewhere.

torch's default Adam on the CPU walks the parameters one by one in Python, a dozen small
elementwise operations each. ``fused=True`` (CPU since torch 2.4, CUDA since 2.0) does the whole
update in one kernel per parameter: about 3x less time in the optimizer step (0.4 against 1.1 ms for
the fc network's 455k parameters, 4 against 12 ms for the flying-shapes network's 3.4M, one
thread). The update is the same Adam (default betas, epsilon, no weight decay), equal to the loop's
to float rounding.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

__all__ = ["make_adam"]


def make_adam(params: Iterable[nn.Parameter], lr: float) -> torch.optim.Adam:
    """Adam with torch's defaults at ``lr``: fused where this torch and device support it."""
    params = list(params)
    try:
        return torch.optim.Adam(params, lr=lr, fused=True)
    except (RuntimeError, ValueError, TypeError):
        # an older torch, or a device without a fused kernel: the plain per-parameter loop
        return torch.optim.Adam(params, lr=lr)
