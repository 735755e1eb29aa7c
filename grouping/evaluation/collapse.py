"""Collapse diagnostics: how the objects' pixels are shared among the K components.

"Slots spread over all objects" is the failure a researcher of this field looks for first: one
component takes every object while the others predict background. These numbers show it per
EM step, without labels for which component should own what:

* ``component_shares``: per step, K fractions sorted high to low, each the share of an image's
  labelled pixels (label != 0) whose argmax gamma is that component, averaged over images;
* ``live_components``: at the last step, the mean number of components owning at least
  :data:`LIVE_SHARE` of an image's labelled pixels.

One component owning everything gives shares (1, 0, 0) and 1 live component; an even three-way
split gives 3.
"""

from __future__ import annotations

import numpy as np
from torch import Tensor

#: A component is alive in an image when it owns at least this share of the labelled pixels.
LIVE_SHARE = 0.05
#: Below this many live components (with K >= 2), a run warns that its components collapsed.
COLLAPSED_BELOW = 1.5


def component_shares(pred: Tensor, true: Tensor, components: int) -> np.ndarray:
    """pred (B, T, P) argmax components, true (B, T, P) labels -> shares (B, T, K), each row
    sorted high to low and summing to 1; NaN rows where an image has no labelled pixel."""
    scored = (true != 0).float()  # (B, T, P)
    counts = torch_one_hot_sum(pred, scored, components)  # (B, T, K)
    total = counts.sum(axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        shares = np.where(total > 0, counts / np.maximum(total, 1), np.nan)
    return -np.sort(-shares, axis=-1)


def torch_one_hot_sum(pred: Tensor, weight: Tensor, components: int) -> np.ndarray:
    """sum over pixels of weight * one_hot(pred): labelled pixels per component (B, T, K)."""
    b, t, p = pred.shape
    flat = pred.reshape(b * t, p).long()
    out = weight.new_zeros(b * t, components)
    out.scatter_add_(1, flat, weight.reshape(b * t, p))
    return np.asarray(out.reshape(b, t, components).cpu().numpy(), dtype=np.float64)


def live_components(shares: np.ndarray, threshold: float = LIVE_SHARE) -> np.ndarray:
    """Per image, the components owning at least ``threshold`` of its labelled pixels, from
    shares (N, K) of one step; NaN for an image without labelled pixels."""
    alive = (shares >= threshold).sum(axis=-1).astype(np.float64)
    return np.where(np.isnan(shares).all(axis=-1), np.nan, alive)


def summarize_shares(shares: np.ndarray) -> dict[str, object]:
    """``component_shares`` (T lists of K floats) and ``live_components`` from shares (N, T, K);
    images without labelled pixels are left out of both means."""
    if shares.size == 0 or np.isnan(shares).all():
        return {"component_shares": [], "live_components": float("nan")}
    mean = np.nanmean(shares, axis=0)  # (T, K)
    live = np.nanmean(live_components(shares[:, -1]))
    return {
        "component_shares": [[float(v) for v in step] for step in mean],
        "live_components": float(live),
    }


def collapse_warning(live: float, components: int, epoch: int) -> str | None:
    """The one-line warning of a run whose components collapsed into one, else None."""
    if components < 2 or not np.isfinite(live) or live >= COLLAPSED_BELOW:
        return None
    return (
        f"warning: epoch {epoch}: the components have collapsed: at the last EM step "
        f"{live:.2f} of {components} components own >= {LIVE_SHARE:.0%} of an image's objects "
        "on average (see component_shares in metrics.jsonl)"
    )
