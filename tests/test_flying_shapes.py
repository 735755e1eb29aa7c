"""Flying shapes (spec 6.4) and its bounce rule (grouping_plugins.sources.motion)."""

from __future__ import annotations

import numpy as np
import pytest
from grouping_plugins.flying_shapes import FlyingShapesDataset
from grouping_plugins.sources.motion import bounce, pixel_positions, sample_motion
from grouping_plugins.sources.sprites import SPRITES, render

from grouping.config.loading import build_config
from grouping.engine.assembly import resolve
from grouping.errors import ConfigError
from grouping.plugin_api.interfaces import SplitSizes


def make(objects: int = 3, frames: int = 21, seed: int = 0, **sizes: int) -> FlyingShapesDataset:
    n = SplitSizes(sizes.get("train", 40), sizes.get("valid", 8), sizes.get("test", 12))
    return FlyingShapesDataset(
        FlyingShapesDataset.Config(objects=objects), n, frames=frames, seed=seed
    )


def step_by_step(start: float, velocity: float, span: float, frames: int) -> list[float]:
    """The bounce rule as a simulation: move, and mirror the overshoot at a wall."""
    p, v, out = start, velocity, [start]
    for _ in range(frames - 1):
        p += v
        if p < 0:
            p, v = -p, -v
        elif p > span:
            p, v = 2 * span - p, -v
        out.append(p)
    return out


def test_closed_form_bounce_equals_the_step_by_step_reflection() -> None:
    rng = np.random.default_rng(0)
    # spans of 2 or more, so that one step overshoots a wall at most once (sprites give 16 to 21)
    span = rng.integers(2, 22, size=200).astype(float)
    span[:5] = 0.0  # a sprite as large as the canvas cannot move
    start = rng.random(200) * span
    velocity = (rng.random(200) - 0.5) * 4.0  # |v| <= 2
    got = bounce(start, velocity, span, 100)
    for i in range(200):
        if span[i] == 0:
            assert (got[i] == 0).all()
            continue
        np.testing.assert_allclose(got[i], step_by_step(start[i], velocity[i], span[i], 100))


def test_a_wall_reverses_the_velocity_and_keeps_the_speed() -> None:
    p = bounce(np.array(1.0), np.array(-1.5), np.array(10.0), 4)
    np.testing.assert_allclose(p, [1.0, 0.5, 2.0, 3.5])  # hits 0 between frame 0 and 1
    p = bounce(np.array(9.0), np.array(2.0), np.array(10.0), 3)
    np.testing.assert_allclose(p, [9.0, 9.0, 7.0])  # reaches 11 -> mirrored to 9, then back


def test_sampled_motion_has_the_configured_speeds() -> None:
    span = np.full((1000, 3, 2), 16.0)
    start, velocity = sample_motion(np.random.default_rng(1), span, 1.0, 2.0)
    speed = np.linalg.norm(velocity, axis=-1)
    assert speed.min() >= 1.0 and speed.max() <= 2.0
    assert (start >= 0).all() and (start <= 16).all()
    # directions cover all four quadrants
    assert {(a, b) for a, b in np.sign(velocity).reshape(-1, 2)} >= {(1, 1), (1, -1), (-1, 1)}


def test_shapes_stay_inside_the_canvas_for_100_frames() -> None:
    ds = make(objects=1, frames=100, train=300)
    split = ds.split("train")
    index = np.arange(len(split))
    pos = split.positions(index)  # (N, 1, 2, 100)
    assert pos.min() >= 0
    assert (pos <= split.span[index][..., None]).all()
    # rendered alone, a sprite keeps every one of its pixels in every frame (nothing is cut off)
    features, groups = split.get(index)
    on = features.sum(dim=(2, 3, 4)).numpy()  # (N, 100)
    area = np.array([s.sum() for s in SPRITES])[split.kinds[:, 0]]
    assert (on == area[:, None]).all()
    assert (groups.numpy().reshape(300, 100, -1).max(-1) == 1).all()


def test_shapes_move_and_each_frame_is_the_rendered_positions() -> None:
    ds = make(objects=3, frames=21)
    split = ds.split("test")
    features, groups = split.get(np.array([5, 2]))
    assert features.shape == (2, 21, 28, 28, 1) and groups.shape == (2, 21, 28, 28)
    pos = split.positions(np.array([5, 2]))  # (2, 3, 2, 21)
    for t in (0, 7, 20):
        images, labels = render(split.kinds[[5, 2]], pos[:, :, 0, t], pos[:, :, 1, t], (28, 28))
        assert (features[:, t, :, :, 0].numpy() == images).all()
        assert (groups[:, t].numpy() == labels).all()
    assert not (features[:, 0] == features[:, 10]).all()  # they move
    assert set(np.unique(groups.numpy())) <= {0, 1, 2, 3}


def test_generated_from_the_seed_and_independent_of_other_split_sizes() -> None:
    a = make(seed=4).split("test").get(np.arange(12))
    b = make(seed=4, train=100).split("test").get(np.arange(12))
    c = make(seed=5).split("test").get(np.arange(12))
    assert (a[0] == b[0]).all() and (a[1] == b[1]).all()
    assert not (a[0] == c[0]).all()
    # a sample is the same whatever batch it is fetched in, and a longer sequence extends it
    split = make(seed=4).split("test")
    assert (split.get(np.array([7, 1]))[0][0] == a[0][7]).all()
    longer = make(seed=4, frames=40).split("test").get(np.arange(12))
    assert (longer[0][:, :21] == a[0]).all()


def test_objects_option_and_speed_validation() -> None:
    config = resolve(build_config("flying-shapes-5"))
    assert config.dataset.name == "flying-shapes" and config.dataset.model_extra == {
        "objects": 5,
        "size": 28,
        "min_speed": 1.0,
        "max_speed": 2.0,
    }
    ds = make(objects=5)
    assert ds.split("valid").get(np.arange(8))[1].max() == 5
    with pytest.raises(ConfigError, match="min_speed"):
        resolve(build_config("flying-shapes-3", assignments=["dataset.min_speed=3"]))


def test_integer_positions_are_the_rounded_trajectory() -> None:
    start, velocity, span = np.array([0.4]), np.array([0.3]), np.array([5])
    np.testing.assert_array_equal(pixel_positions(start, velocity, span, 4)[0], [0, 1, 1, 1])
