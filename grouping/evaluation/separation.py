"""Where a grouping fails: its AMI against how far apart the objects are.

A mean AMI mixes frames whose objects lie far apart with frames whose objects touch, where a
component must draw the boundary between two objects pixel by pixel. Grouping the scores by the
objects' separation shows which of the two a model gets wrong:

* ``object_separation``: per image, the smallest distance (in pixels) between the centroids of
  two labelled objects;
* ``by_quartile``: the mean of a score within each quartile of another value;
* ``format_quartiles``: that breakdown as one line of text.
"""

from __future__ import annotations

import numpy as np

__all__ = ["by_quartile", "format_quartiles", "object_separation"]


def object_separation(groups: np.ndarray, ignore: int = 0) -> np.ndarray:
    """groups (N, H, W) integer labels of one frame -> (N,) smallest distance between the
    centroids of two objects (labels other than ``ignore``); NaN where fewer than two show."""
    n, height, width = groups.shape
    ys, xs = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    out = np.full(n, np.nan)
    for i in range(n):
        labels = [k for k in np.unique(groups[i]) if k != ignore]
        centroids = np.array(
            [(ys[groups[i] == k].mean(), xs[groups[i] == k].mean()) for k in labels]
        ).reshape(-1, 2)
        if len(centroids) < 2:
            continue
        gaps = np.linalg.norm(centroids[:, None] - centroids[None], axis=-1)
        out[i] = gaps[np.triu_indices(len(centroids), 1)].min()
    return out


def by_quartile(values: np.ndarray, key: np.ndarray) -> dict[str, list[float]]:
    """The mean of ``values`` within each quartile of ``key`` (images where either is NaN are
    left out): ``edges`` (5 floats, min to max) and ``mean`` and ``images`` per quartile."""
    keep = np.isfinite(values) & np.isfinite(key)
    values, key = values[keep], key[keep]
    if key.size == 0:
        return {"edges": [], "mean": [], "images": []}
    edges = np.quantile(key, [0.0, 0.25, 0.5, 0.75, 1.0])
    bins = np.digitize(key, edges[1:-1], right=True)  # 0..3; a value on an edge goes below it
    masks = [bins == b for b in range(4)]
    return {
        "edges": [float(e) for e in edges],
        "mean": [float(values[m].mean()) if m.any() else float("nan") for m in masks],
        "images": [int(m.sum()) for m in masks],
    }


def format_quartiles(breakdown: dict[str, list[float]]) -> str:
    """``by_quartile``'s result as "lo-hi px: mean" per quartile ("" when it is empty)."""
    edges, means = breakdown["edges"], breakdown["mean"]
    return ", ".join(f"{lo:.1f}-{hi:.1f} px: {m:.3f}" for lo, hi, m in zip(edges, edges[1:], means))
