"""The plugins as the EM loop calls them: every call blamed on its plugin, every output checked.

Keeping these checks here lets :mod:`grouping.engine.em` read as the paper's equations. Shapes are
asserted where a plugin's output enters the core and nowhere else (``grouping.plugins.guard``).
"""

from __future__ import annotations

import torch
from torch import Tensor

from grouping.errors import PluginError
from grouping.plugins.guard import blame, check_batch, check_tensor, label
from grouping.plugins.interfaces import Likelihood, Updater


class CheckedUpdater:
    """An updater whose ``initial_state`` and ``forward`` are blamed and checked.

    Not an ``nn.Module``: it holds a reference to the updater, so the model's parameters and
    state-dict keys stay the updater's own.
    """

    def __init__(self, updater: Updater) -> None:
        self.updater = updater
        network = getattr(updater, "network", None)
        self._action = f"forward (with {label(network)})" if network is not None else "forward"

    def initial_state(self, n: int, device: torch.device, dtype: torch.dtype) -> Tensor:
        """The updater's state for ``n`` copies, checked to have one row per copy."""
        with blame(self.updater, "initial_state"):
            state = self.updater.initial_state(n, device, dtype)
        return check_batch(self.updater, "an initial state", state, n)

    def __call__(self, u: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        """u (N, H, W, C), state (N, ...) -> (psi (N, H, W, C), new state (N, ...)), checked."""
        with blame(self.updater, self._action):
            out = self.updater(u, state)
        if not (isinstance(out, tuple) and len(out) == 2):
            raise PluginError(
                f"{label(self.updater)} returned {type(out).__name__} from forward; "
                "expected a tuple (psi, state)"
            )
        psi, new_state = out
        check_tensor(self.updater, "psi", psi, tuple(u.shape), "(N, H, W, C)")
        check_batch(self.updater, "a state", new_state, u.shape[0])
        return psi, new_state


def checked_probabilities(likelihood: Likelihood, gamma: Tensor, psi: Tensor) -> Tensor:
    """The E-step's output, checked to be one responsibility per pixel and component."""
    b, k, h, w, _ = psi.shape
    return check_tensor(likelihood, "probabilities", gamma, (b, k, h, w, 1), "(B, K, H, W, 1)")
