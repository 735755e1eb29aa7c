"""The static shapes generator and data set (spec 6.3)."""

from __future__ import annotations

import numpy as np
import pytest
from grouping_plugins.shapes import ShapesDataset
from grouping_plugins.sources.sprites import (
    INVERTED_TRIANGLE,
    SPRITES,
    SQUARE,
    TRIANGLE,
    render,
    static_shapes,
)

from grouping.plugin_api.interfaces import SplitSizes


def test_sprites_are_those_of_the_spec() -> None:
    assert SQUARE.shape == (7, 7) and SQUARE.sum() == 49 - 9
    assert TRIANGLE.shape == (7, 12)
    assert (TRIANGLE[::-1] == INVERTED_TRIANGLE).all()
    assert len(SPRITES) == 3


def test_render_labels_overlap_and_background_zero() -> None:
    kinds = np.array([[0, 0]])
    images, groups = render(kinds, np.array([[0, 3]]), np.array([[0, 3]]), (12, 12))
    a = np.zeros((12, 12), bool)
    a[:7, :7] = SQUARE
    b = np.zeros((12, 12), bool)
    b[3:10, 3:10] = SQUARE
    assert (images[0] == (a | b)).all()
    assert (groups[0][a & ~b] == 1).all() and (groups[0][b & ~a] == 2).all()
    assert (groups[0][a & b] == 0).all() and (groups[0][~(a | b)] == 0).all()


def test_static_shapes_is_seeded_and_inside_the_canvas() -> None:
    x1, g1 = static_shapes(500, np.random.default_rng(3))
    x2, g2 = static_shapes(500, np.random.default_rng(3))
    assert (x1 == x2).all() and (g1 == g2).all()
    assert x1.shape == (500, 28, 28) and g1.dtype == np.uint8
    assert set(np.unique(x1)) == {0.0, 1.0}
    assert g1.max() == 3
    # every labelled pixel is on, and labelled objects are at most 3
    assert (x1[g1 > 0] == 1).all()
    # each image holds between 40 (one square, fully covered others) and 3 * 60 pixels
    on = x1.reshape(500, -1).sum(1)
    assert on.min() >= 40 and on.max() <= 3 * max(int(s.sum()) for s in SPRITES)


def test_dataset_splits_have_the_interface_shapes() -> None:
    ds = ShapesDataset(ShapesDataset.Config(), SplitSizes(20, 5, 7), frames=16, seed=1)
    assert ds.image_shape == (28, 28, 1) and ds.binary
    train = ds.split("train")
    assert len(train) == 20 and train.frames == 1
    f, g = train.get(np.array([3, 0]))
    assert f.shape == (2, 1, 28, 28, 1) and g.shape == (2, 1, 28, 28)
    assert len(ds.split("test")) == 7
    # splits are independent streams: the test split does not depend on the training size
    other = ShapesDataset(ShapesDataset.Config(), SplitSizes(40, 5, 7), frames=16, seed=1)
    assert (other.split("test").get(np.arange(7))[0] == ds.split("test").get(np.arange(7))[0]).all()


def test_each_split_is_generated_once_per_data_set(monkeypatch: pytest.MonkeyPatch) -> None:
    """``@cached_split``: the same object on every request, built on the first one only."""
    import grouping_plugins.shapes as shapes

    calls: list[int] = []

    def counting(n: int, *args: object) -> tuple[np.ndarray, np.ndarray]:
        calls.append(n)
        return static_shapes(n, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(shapes, "static_shapes", counting)
    ds = ShapesDataset(ShapesDataset.Config(), SplitSizes(6, 4, 5), frames=16, seed=1)
    first = ds.split("valid")
    assert ds.split("valid") is first and calls == [4]
    assert ds.split("test") is not first and calls == [4, 5]
    again = ShapesDataset(ShapesDataset.Config(), SplitSizes(6, 4, 5), frames=16, seed=1)
    assert again.split("valid") is not first and calls == [4, 5, 4]  # one cache per data set
