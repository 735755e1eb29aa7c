"""The plugins' contracts, checked once when a run is assembled, so the EM loop runs bare.

:func:`check_model` runs the network, the updater, the likelihood and the noise once on a tiny
batch and checks what the loop relies on: shapes, dtypes, a tuple where one is due, and a tensor
with one row per sample and component. :func:`check_split` checks a split's type and its first
batch (shapes, dtypes, values). A failure is a one-line :class:`PluginError` or :class:`DataError`
that names the plugin; nothing is checked per batch after that.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from grouping.engine.em import NeuralEM, e_step, initial_gamma
from grouping.errors import DataError, PluginError
from grouping.plugin_api.guard import blame, check_tensor, label
from grouping.plugin_api.interfaces import Dataset, Likelihood, Noise, Split, SplitName

#: The tiny batch the contracts run on: B samples of T + 1 = 2 frames.
CHECK_BATCH = 2


def check_model(model: NeuralEM, noise: Noise, image_shape: tuple[int, int, int]) -> None:
    """Run every model plugin once on a tiny batch (no RNG of the run's is drawn)."""
    b, k = CHECK_BATCH, model.components
    generator = torch.Generator().manual_seed(0)
    x = torch.rand((b, 2, *image_shape), generator=generator).round()  # (B, 2, H, W, C)
    check_noise(noise, x, generator)
    check_network(model, x.shape[0] * k, image_shape)
    updater = model.updater
    with blame(updater, "initial_state"):
        state = updater.initial_state(b, k, torch.device("cpu"), x.dtype)
    if not (isinstance(state, Tensor) and state.ndim >= 2 and tuple(state.shape[:2]) == (b, k)):
        shape = tuple(state.shape) if isinstance(state, Tensor) else type(state).__name__
        raise PluginError(
            f"{label(updater)} returned an initial state of shape {shape}; expected "
            f"(B, K, ...) = ({b}, {k}, ...), one row per sample and component"
        )
    gamma = initial_gamma((b, k, *image_shape[:2], 1), generator, x.device)
    u = gamma * (x[:, :1] - torch.full((b, k, *image_shape), model.pred_init))
    network = label(updater.network)
    with blame(updater, f"forward (with {network})"):
        out = updater(u, state)
    if not (isinstance(out, tuple) and len(out) == 2):
        raise PluginError(
            f"{label(updater)} returned {type(out).__name__} from forward; "
            "expected a tuple (psi, state)"
        )
    psi, new_state = out
    check_tensor(updater, "psi", psi, tuple(u.shape), "(B, K, H, W, C)")
    check_tensor(updater, "a state", new_state, tuple(state.shape), "the initial state's shape")
    for what, value in (("psi", psi), ("a state", new_state)):
        if value.dtype != x.dtype:
            raise PluginError(
                f"{label(updater)} returned {what} of {value.dtype}; expected {x.dtype}"
            )
    check_likelihood(model.likelihood, x[:, 1:], psi.detach())


def check_network(model: NeuralEM, n: int, image_shape: tuple[int, int, int]) -> None:
    """``decode`` gives (N, H, W, C) pixels and, where the updater reads it, ``encode`` (N, E)."""
    network = model.updater.network
    with blame(network, "state_size"):
        size = int(network.state_size)
    with blame(network, "decode"):
        raw = network.decode(torch.full((n, size), 0.5))
    check_tensor(network, "a decoding", raw, (n, *image_shape), "(N, H, W, C)")
    if model.updater.needs_encoder:
        with blame(network, "encode"):
            e = network.encode(torch.zeros((n, *image_shape)))
        check_tensor(network, "an encoding", e, (n, network.encoding_size), "(N, encoding_size)")


def check_likelihood(likelihood: Likelihood, target: Tensor, psi: Tensor) -> None:
    """The E-step gives one responsibility per pixel and component; the losses psi's shape."""
    b, k, h, w, c = psi.shape
    with blame(likelihood, "pixel_prob"):
        gamma = e_step(likelihood, target, psi)
    check_tensor(likelihood, "probabilities", gamma, (b, k, h, w, 1), "(B, K, H, W, 1)")
    with blame(likelihood, "intra"):
        intra = likelihood.intra(target, psi)
    check_tensor(likelihood, "an intra loss", intra, (b, k, h, w, c), "(B, K, H, W, C)")
    with blame(likelihood, "inter"):
        inter = likelihood.inter(psi)
    check_tensor(likelihood, "an inter loss", inter, (b, k, h, w, c), "(B, K, H, W, C)")


def check_noise(noise: Noise, x: Tensor, generator: torch.Generator) -> None:
    """The noise keeps the input's shape and dtype."""
    with blame(noise, "__call__"):
        out = noise(x, generator)
    check_tensor(noise, "noisy inputs", out, tuple(x.shape), "the input's shape")
    if out.dtype != x.dtype:
        raise PluginError(f"{label(noise)} returned {out.dtype} inputs; expected {x.dtype}")


def check_split(dataset: Dataset, name: SplitName, likelihood: Likelihood | None = None) -> Split:
    """The data set's split, its type and first batch checked (shapes, dtypes, values)."""
    with blame(dataset, f"split({name!r})"):
        split = dataset.split(name)
    if not isinstance(split, Split):
        raise PluginError(
            f"{label(dataset)} returned {type(split).__name__} from split({name!r}); "
            "expected a grouping.plugin_api.interfaces.Split"
        )
    where = f"split({name!r}).get"
    with blame(dataset, where):
        frames, image = int(split.frames), tuple(dataset.image_shape)
        index = np.arange(min(len(split), CHECK_BATCH))
        out = split.get(index)
    if not (isinstance(out, tuple) and len(out) == 2):
        raise PluginError(
            f"{label(dataset)} returned {type(out).__name__} from {where}; "
            "expected a tuple (features, groups)"
        )
    features, groups = out
    b = len(index)
    check_tensor(
        dataset, f"features from {where}", features, (b, frames, *image), "(batch, frames, H, W, C)"
    )
    check_tensor(
        dataset, f"groups from {where}", groups, (b, frames, *image[:2]), "(batch, frames, H, W)"
    )
    if not features.is_floating_point() or groups.is_floating_point():
        raise PluginError(
            f"{label(dataset)} returned features of {features.dtype} and groups of "
            f"{groups.dtype} from {where}; expected floating features and integer groups"
        )
    check_values(dataset, likelihood, features, groups, where)
    return split


def check_values(
    dataset: Dataset, likelihood: Likelihood | None, features: Tensor, groups: Tensor, where: str
) -> None:
    """Features finite and in the likelihood's support (within [0, 1]); groups >= 0."""
    lo, hi = likelihood.support if likelihood is not None else (0.0, 1.0)
    lo, hi = max(lo, 0.0), min(hi, 1.0)
    f_min, f_max = (float(v) for v in torch.aminmax(features)) if features.numel() else (0, 0)
    if not (lo <= f_min and f_max <= hi):  # also false for NaN
        who = f" ({label(likelihood)} needs them)" if likelihood else ""
        raise DataError(
            f"{label(dataset)} returned features from {where} outside [{lo:g}, {hi:g}]"
            f"{who}: min {f_min:g}, max {f_max:g}; scale the data to [0, 1] (0-255 images: "
            "divide by 255) and remove NaN or infinite values"
        )
    g_min = int(groups.min()) if groups.numel() else 0
    if g_min < 0:
        raise DataError(
            f"{label(dataset)} returned groups from {where} below 0 (min {g_min}); "
            "groups are 0 for background and overlap, 1..n for objects"
        )
