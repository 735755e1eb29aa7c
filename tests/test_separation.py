"""The AMI-by-separation breakdown: centroid distances and quartile means on hand-made labels."""

from __future__ import annotations

import numpy as np
import pytest

from grouping.evaluation.separation import by_quartile, object_separation


def test_the_separation_is_the_distance_between_the_two_centroids() -> None:
    groups = np.zeros((2, 8, 8), dtype=np.int64)
    groups[0, 0:2, 0:2] = 1  # centroid (0.5, 0.5)
    groups[0, 3:5, 4:6] = 2  # centroid (3.5, 4.5): 3 down, 4 across
    groups[1, 0, 0] = 1
    groups[1, 0, 7] = 2
    groups[1, 7, 0] = 3  # the nearest pair is 7 apart, the farthest 7 sqrt(2)
    assert object_separation(groups) == pytest.approx([5.0, 7.0])


def test_an_image_with_fewer_than_two_objects_has_no_separation() -> None:
    groups = np.zeros((2, 4, 4), dtype=np.int64)
    groups[1, 1, 1] = 2
    assert np.isnan(object_separation(groups)).all()


def test_overlap_and_background_pixels_are_not_an_object() -> None:
    groups = np.zeros((1, 4, 4), dtype=np.int64)
    groups[0, 0, 0], groups[0, 0, 3] = 1, 2
    groups[0, 3, :] = 0  # label 0: background and overlaps, whatever lies there
    assert object_separation(groups) == pytest.approx([3.0])


def test_the_quartile_means_sort_each_image_by_its_key() -> None:
    key = np.arange(8, dtype=np.float64)  # quartiles {0, 1}, {2, 3}, {4, 5}, {6, 7}
    values = np.array([0.0, 0.2, 0.4, 0.6, 0.8, 1.0, 1.0, 1.0])
    out = by_quartile(values, key)
    assert out["edges"] == pytest.approx([0.0, 1.75, 3.5, 5.25, 7.0])
    assert out["mean"] == pytest.approx([0.1, 0.5, 0.9, 1.0])
    assert out["images"] == [2, 2, 2, 2]


def test_images_without_a_score_or_a_key_are_left_out() -> None:
    out = by_quartile(np.array([1.0, np.nan, 0.5]), np.array([np.nan, 2.0, 3.0]))
    assert out["images"] == [1, 0, 0, 0] and out["mean"][0] == 0.5
    assert by_quartile(np.array([np.nan]), np.array([1.0])) == {
        "edges": [],
        "mean": [],
        "images": [],
    }
