"""Vectorised AMI / ARI (spec 8.1) against scikit-learn, image by image, special cases included."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import adjusted_mutual_info_score, adjusted_rand_score

from grouping.evaluation import metrics
from grouping.evaluation.metrics import adjusted_mutual_info, adjusted_rand_index, summarize

TOL = 1e-9
Score = Callable[..., np.ndarray]


def sklearn_scores(
    true: np.ndarray, pred: np.ndarray, ignore: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """The reference: scikit-learn once per image on the scored pixels (the original N-EM)."""
    ami, ari = [], []
    for t, p in zip(true, pred):
        keep = t != ignore
        ami.append(adjusted_mutual_info_score(t[keep], p[keep], average_method="max"))
        ari.append(adjusted_rand_score(t[keep], p[keep]))
    return np.array(ami), np.array(ari)


def assert_matches_sklearn(true: np.ndarray, pred: np.ndarray, ignore: int = 0) -> None:
    ami, ari = adjusted_mutual_info(true, pred, ignore), adjusted_rand_index(true, pred, ignore)
    ref_ami, ref_ari = sklearn_scores(true, pred, ignore)
    assert ami.dtype == ari.dtype == np.float64
    assert ami.shape == ari.shape == (len(true),)
    np.testing.assert_allclose(ami, ref_ami, rtol=0, atol=TOL)
    np.testing.assert_allclose(ari, ref_ari, rtol=0, atol=TOL)


@pytest.mark.parametrize(
    ("n_pixels", "n_true", "k"),
    [(1, 2, 2), (3, 4, 3), (6, 6, 5), (20, 2, 1), (20, 4, 3), (50, 6, 5), (200, 4, 4)],
)
def test_random_images_match_sklearn(n_pixels: int, n_true: int, k: int) -> None:
    # Labels 0..n_true-1 with 0 ignored: tiny images give many all-ignored, single-cluster
    # and all-singleton images, larger ones the general case.
    rng = np.random.default_rng(n_pixels * 100 + n_true * 10 + k)
    true = rng.integers(0, n_true, (60, n_pixels))
    pred = rng.integers(0, k, (60, n_pixels))
    assert_matches_sklearn(true, pred)


def test_structured_and_unbalanced_images_match_sklearn() -> None:
    """Near-perfect groupings and tiny objects next to a huge one (small entropies)."""
    rng = np.random.default_rng(7)
    n, d = 40, 784
    frac = rng.random((n, 1)) ** 4
    true = np.where(rng.random((n, d)) < frac, rng.integers(1, 4, (n, d)), 9)
    noisy = np.where(rng.random((n, d)) < 0.05, rng.integers(0, 4, (n, d)), true % 4)
    assert_matches_sklearn(true, noisy)
    pred = np.where(rng.random((n, d)) < frac, rng.integers(0, 4, (n, d)), 2)
    assert_matches_sklearn(true, pred)


def test_larger_images_match_sklearn() -> None:
    rng = np.random.default_rng(8)
    true = np.where(rng.random((4, 4096)) < 0.995, 5, rng.integers(1, 5, (4, 4096)))
    true[2:] = rng.integers(0, 6, (2, 4096))
    pred = rng.integers(0, 5, (4, 4096))
    assert_matches_sklearn(true, pred)


@given(
    st.integers(1, 12).flatmap(
        lambda d: st.tuples(
            st.lists(st.lists(st.integers(0, 4), min_size=d, max_size=d), min_size=1, max_size=4),
            st.lists(st.lists(st.integers(0, 3), min_size=d, max_size=d), min_size=1, max_size=4),
        )
    )
)
@settings(max_examples=60, deadline=None)
def test_tiny_images_match_sklearn(images: tuple[list[list[int]], list[list[int]]]) -> None:
    n = min(len(images[0]), len(images[1]))
    assert_matches_sklearn(np.array(images[0][:n]), np.array(images[1][:n]))


def test_special_cases() -> None:
    true = np.array(
        [
            [0, 0, 0, 0, 0, 0],  # nothing scored
            [0, 1, 1, 1, 0, 0],  # one object, one cluster
            [0, 1, 1, 1, 0, 0],  # one object, two clusters
            [0, 1, 2, 3, 4, 0],  # one pixel per object and per cluster
            [0, 0, 0, 2, 0, 0],  # a single scored pixel
        ]
    )
    pred = np.array(
        [
            [0, 1, 2, 0, 1, 2],
            [0, 2, 2, 2, 1, 0],
            [0, 2, 2, 1, 0, 0],
            [0, 3, 1, 2, 0, 0],
            [1, 1, 1, 0, 1, 1],
        ]
    )
    np.testing.assert_array_equal(adjusted_mutual_info(true, pred), [1.0, 1.0, 0.0, 1.0, 1.0])
    np.testing.assert_array_equal(adjusted_rand_index(true, pred), [1.0, 1.0, 0.0, 1.0, 1.0])
    assert_matches_sklearn(true, pred)


@pytest.mark.parametrize("score", [adjusted_mutual_info, adjusted_rand_index])
def test_perfect_and_permuted_grouping_score_one(score: Score) -> None:
    rng = np.random.default_rng(3)
    true = rng.integers(0, 5, (30, 784))
    pred = np.where(true == 0, rng.integers(0, 4, true.shape), true - 1)  # background: anything
    np.testing.assert_allclose(score(true, pred), 1.0, rtol=0, atol=1e-12)
    permuted = np.array([2, 0, 3, 1])[pred]
    np.testing.assert_allclose(score(true, permuted), 1.0, rtol=0, atol=1e-12)
    np.testing.assert_allclose(score(true, 10 * permuted + 7), 1.0, rtol=0, atol=1e-12)


@pytest.mark.parametrize("score", [adjusted_mutual_info, adjusted_rand_index])
def test_ignored_pixels_do_not_count(score: Score) -> None:
    rng = np.random.default_rng(4)
    true = rng.integers(0, 4, (50, 100))
    pred = rng.integers(0, 3, (50, 100))
    other = np.where(true == 0, rng.integers(0, 7, true.shape), pred)
    # Equal up to rounding: the extra pred labels only change the layout of the tables.
    np.testing.assert_allclose(score(true, pred), score(true, other), rtol=0, atol=1e-12)
    # Another ignore value: the background becomes a scored object, label 3 is dropped.
    assert not np.array_equal(score(true, pred, 3), score(true, pred))
    assert_matches_sklearn(true, pred, ignore=3)


def test_label_values_are_arbitrary() -> None:
    rng = np.random.default_rng(5)
    true = rng.integers(0, 4, (40, 60))
    pred = rng.integers(0, 3, (40, 60))
    expected = adjusted_mutual_info(true, pred), adjusted_rand_index(true, pred)
    # Wide ranges go through a look-up table, huge ones through np.unique; also int8/float32.
    for t, p in [
        (true * 1000, pred * 77 - 50),
        (true * 10**12, pred - 10**15),
        (true.astype(np.int8), pred.astype(np.uint8)),
        (true.astype(np.float32), pred.astype(np.float64)),
        (torch.from_numpy(true), torch.from_numpy(pred)),
    ]:
        np.testing.assert_array_equal(adjusted_mutual_info(t, p), expected[0])
        np.testing.assert_array_equal(adjusted_rand_index(t, p), expected[1])
    assert_matches_sklearn(true * 10**12, pred - 10**15)


def test_small_chunks_give_identical_results(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(6)
    true = rng.integers(0, 5, (64, 300))
    pred = rng.integers(0, 4, (64, 300))
    expected = adjusted_mutual_info(true, pred), adjusted_rand_index(true, pred)
    monkeypatch.setattr(metrics, "_TABLE_CELLS", 50)  # two images per table chunk
    monkeypatch.setattr(metrics, "_PIXELS", 700)  # two images per bincount
    monkeypatch.setattr(metrics, "_BLOCK", 64)  # a few label pairs per EMI block
    np.testing.assert_allclose(adjusted_mutual_info(true, pred), expected[0], rtol=0, atol=1e-13)
    np.testing.assert_array_equal(adjusted_rand_index(true, pred), expected[1])


def test_empty_batch_and_bad_input() -> None:
    empty = np.zeros((0, 784), dtype=np.int64)
    assert adjusted_mutual_info(empty, empty).shape == (0,)
    assert adjusted_rand_index(empty, empty).shape == (0,)
    with pytest.raises(ValueError, match="n_images, n_pixels"):
        adjusted_mutual_info(np.zeros((2, 5), int), np.zeros((2, 4), int))
    with pytest.raises(ValueError, match="n_images, n_pixels"):
        adjusted_rand_index(np.zeros(5, int), np.zeros(5, int))
    with pytest.raises(ValueError, match="integers"):
        adjusted_mutual_info(np.full((1, 3), 0.5), np.zeros((1, 3)))


def test_summarize() -> None:
    values = np.array([1.0, 0.5, 0.0, 0.5])
    assert summarize(values) == {"mean": 0.5, "std": pytest.approx(np.sqrt(0.125))}
    assert summarize(np.array([0.25])) == {"mean": 0.25, "std": 0.0}
    with pytest.raises(ValueError):
        summarize(np.array([]))
