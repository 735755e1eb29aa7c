"""The bouncing-balls data set (R-NEM) and its physics (grouping_plugins.sources.balls)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from grouping_plugins.bouncing_balls import BallsSplit, BouncingBallsDataset
from grouping_plugins.sources.balls import advance, near_collision, place, render, simulate

from grouping.cli.main import cli
from grouping.plugin_api.interfaces import SplitSizes

Config = BouncingBallsDataset.Config


def make(frames: int = 12, seed: int = 0, **options: object) -> BouncingBallsDataset:
    config = Config.model_validate({"size": 32, **options})
    return BouncingBallsDataset(config, SplitSizes(40, 8, 12), frames=frames, seed=seed)


def momentum(vel: np.ndarray, mass: np.ndarray) -> np.ndarray:
    return (mass[..., None] * vel).sum(axis=1)  # (N, 2)


def energy(vel: np.ndarray, mass: np.ndarray) -> np.ndarray:
    return 0.5 * (mass * (vel**2).sum(-1)).sum(axis=1)  # (N,)


def covering(split: BallsSplit, index: np.ndarray, size: int, radius: float) -> np.ndarray:
    """(b, F, B, H, W) bool by brute force: which ball covers which pixel centre."""
    centres = split.centres[index].astype(np.float64) * size
    grid = np.arange(size) + 0.5
    dy = (grid[None, None, None, :, None] - centres[..., 0, None, None]) ** 2
    dx = (grid[None, None, None, None, :] - centres[..., 1, None, None]) ** 2
    present = split.present[index][:, None, :, None, None]
    return (dy + dx <= (radius * size) ** 2) & present


def covering_discs(centres: list[tuple[float, float]], radius: float, size: int) -> np.ndarray:
    """(B, H, W) bool by brute force: pixel centres within ``radius`` of each centre."""
    grid = np.arange(size) + 0.5
    return np.array(
        [(grid[:, None] - y) ** 2 + (grid[None, :] - x) ** 2 <= radius**2 for y, x in centres]
    )


# --------------------------------------------------------------------------------------------------
# physics


def test_a_head_on_collision_of_unequal_masses_gives_the_closed_form_velocities() -> None:
    m1, m2, u1, u2 = 1.0, 3.0, 0.05, -0.02
    pos = np.array([[[0.5, 0.3], [0.5, 0.7]]])
    vel = np.array([[[0.0, u1], [0.0, u2]]])
    mass = np.array([[m1, m2]])
    present = np.ones((1, 2), dtype=bool)
    p0, e0 = momentum(vel, mass), energy(vel, mass)
    hit_frames = [t for t in range(7) if advance(pos, vel, mass, present, 0.05, 16).any()]
    assert hit_frames == [4]  # they close 0.07 per frame over a gap of 0.3
    v1 = ((m1 - m2) * u1 + 2 * m2 * u2) / (m1 + m2)
    v2 = ((m2 - m1) * u2 + 2 * m1 * u1) / (m1 + m2)
    np.testing.assert_allclose(vel[0, :, 1], [v1, v2], rtol=1e-12)
    assert (vel[0, :, 0] == 0).all() and (pos[0, :, 0] == 0.5).all()  # nothing off the line
    np.testing.assert_allclose(momentum(vel, mass), p0, rtol=0, atol=1e-16)
    np.testing.assert_allclose(energy(vel, mass), e0, rtol=1e-14)


def test_collisions_conserve_momentum_and_kinetic_energy() -> None:
    """Three balls of masses 1 to 3 crowded in the middle, too slow to reach a wall in 6 frames:
    whatever hits whom (pairs and triples), the total momentum and energy do not change."""
    rng = np.random.default_rng(0)
    present = np.ones((300, 3), dtype=bool)
    pos = 0.5 + (place(rng, present, 0.06) - 0.5) * 0.3  # in [0.36, 0.64], some overlapping
    vel = (rng.random((300, 3, 2)) - 0.5) * 0.02
    mass = rng.choice([1.0, 2.0, 3.0], size=(300, 3))
    p0, e0 = momentum(vel, mass), energy(vel, mass)
    hits = np.zeros((300, 3), dtype=bool)
    for _ in range(6):
        hits |= advance(pos, vel, mass, present, 0.06, 8)
    assert hits.any(axis=1).mean() > 0.5 and hits.all(axis=1).any()
    assert (pos > 0.06).all() and (pos < 0.94).all()
    np.testing.assert_allclose(momentum(vel, mass), p0, rtol=0, atol=1e-15)
    np.testing.assert_allclose(energy(vel, mass), e0, rtol=1e-12)


def test_balls_stay_inside_the_frame_keep_their_energy_and_do_not_pass_through() -> None:
    ds = make(frames=150, masses="random", balls=5, radius=0.07, speed=0.05)
    split = ds.simulated("train")
    r = 0.07
    assert split.centres.min() >= r - 1e-6 and split.centres.max() <= 1 - r + 1e-6
    gaps = np.linalg.norm(split.centres[:, :, :, None] - split.centres[:, :, None, :], axis=-1)
    gaps[:, :, np.arange(5), np.arange(5)] = np.inf
    assert gaps.min() > 1.5 * r  # overlaps stay shallow: no ball passes through another
    assert split.hits.any(axis=(1, 2)).all()  # every sequence has collisions
    # energy over 150 frames of wall and ball collisions, from the simulator directly
    rng = np.random.default_rng(3)
    present = np.ones((50, 5), dtype=bool)
    pos, vel = place(rng, present, r), (rng.random((50, 5, 2)) - 0.5) * 0.1
    mass = rng.choice([1.0, 2.0, 3.0], size=(50, 5))
    e0 = energy(vel, mass)
    for _ in range(150):
        advance(pos, vel, mass, present, r, 16)
    np.testing.assert_allclose(energy(vel, mass), e0, rtol=1e-12)


def test_simulation_of_a_sequence_does_not_depend_on_its_company_or_length() -> None:
    rng = np.random.default_rng(1)
    present = np.ones((20, 4), dtype=bool)
    pos, vel = place(rng, present, 0.08), (rng.random((20, 4, 2)) - 0.5) * 0.06
    mass = rng.choice([1.0, 3.0], size=(20, 4))
    every, hits = simulate(pos, vel, mass, present, 0.08, 30, 10)
    some, some_hits = simulate(pos[[7, 3]], vel[[7, 3]], mass[[7, 3]], present[:2], 0.08, 20, 10)
    assert (some == every[[7, 3], :20]).all() and (some_hits[:, :19] == hits[[7, 3], :19]).all()
    assert (every[:, 0] == pos.astype(np.float32)).all()


# --------------------------------------------------------------------------------------------------
# the data set


def test_frames_and_groups_agree_with_the_balls() -> None:
    """A pixel is lit iff some ball covers it; its label is that ball's (b + 1) when exactly one
    does, and 0 for background and overlap."""
    ds = make(balls=6, radius=0.1, size=24)
    split = ds.simulated("train")
    index = np.arange(len(split))
    features, groups = split.get(index)
    assert features.shape == (40, 12, 24, 24, 1) and groups.shape == (40, 12, 24, 24)
    cover = covering(split, index, 24, 0.1)  # (b, F, B, H, W)
    count = cover.sum(axis=2)
    lit = features[..., 0].numpy() == 1
    assert set(np.unique(features.numpy())) == {0.0, 1.0}
    assert (lit == (count > 0)).all()
    label = (cover * np.arange(1, 7)[None, None, :, None, None]).sum(axis=2)
    assert (groups.numpy() == np.where(count == 1, label, 0)).all()
    assert set(np.unique(groups.numpy())) == set(range(7))
    # balls touch only briefly, so overlap is drawn on purpose: two discs 3 px apart, radius 4
    images, labels = render(np.array([[[10.0, 10.0], [10.0, 13.0]]]), np.ones((1, 2), bool), 4, 24)
    both = covering_discs([(10.0, 10.0), (10.0, 13.0)], 4.0, 24)
    assert (images[0] == both.any(0)).all() and (both.sum(0) == 2).sum() > 20
    assert (labels[0] == np.where(both.sum(0) == 1, both.argmax(0) + 1, 0)).all()


def test_same_seed_same_data_other_seeds_and_splits_differ() -> None:
    a = make(seed=4).simulated("test").get(np.arange(12))
    b = make(seed=4).simulated("test").get(np.arange(12))
    assert (a[0] == b[0]).all() and (a[1] == b[1]).all()
    assert not (make(seed=5).simulated("test").get(np.arange(12))[0] == a[0]).all()
    assert not (make(seed=4).simulated("valid").get(np.arange(8))[0] == a[0][:8]).all()
    split = make(seed=4).simulated("test")
    assert (split.get(np.array([9, 2]))[0] == a[0][[9, 2]]).all()  # the batch does not matter
    assert (make(seed=4, frames=20).simulated("test").get(np.arange(12))[0][:, :12] == a[0]).all()
    # the 64 x 64 and the 32 x 32 set show the same motion
    big = make(seed=4, size=64).simulated("test")
    assert np.array_equal(big.centres, split.centres)


def test_the_curtain_hides_exactly_the_covered_pixels() -> None:
    plain = make(seed=2, balls=3, radius=0.12).simulated("train")
    shaded = make(seed=2, balls=3, radius=0.12, curtain=0.4).simulated("train")
    index = np.arange(len(plain))
    (x, g), (xc, gc) = plain.get(index), shaded.get(index)
    hidden = shaded.curtain_mask(index)  # (b, H, W)
    grid = np.arange(32) + 0.5  # pixel centres; the square is 0.4 * 32 = 12.8 px wide
    corner = shaded.curtain
    assert corner is not None and (corner >= 0).all() and (corner <= 0.6).all()
    top, left = np.transpose(corner * 32)[:, :, None]  # (b, 1) each
    rows, cols = (grid >= top) & (grid < top + 12.8), (grid >= left) & (grid < left + 12.8)
    assert (hidden.numpy() == rows[:, :, None] & cols[:, None, :]).all()
    assert set(rows.sum(1)) | set(cols.sum(1)) <= {12, 13}
    keep = ~hidden[:, None]
    assert (xc[..., 0] == x[..., 0] * keep).all() and (gc == g * keep).all()
    assert ((x[..., 0] == 1) & ~keep).any()  # balls did pass behind it
    assert not plain.curtain_mask(index).any()
    assert np.array_equal(plain.centres, shaded.centres)  # the curtain does not move the balls


def test_ball_counts_masses_and_options() -> None:
    split = make(balls=6, max_balls=8, radius=0.06).simulated("train")
    assert set(split.present.sum(axis=1)) == {6, 7, 8}
    groups = split.get(np.arange(len(split)))[1]
    assert groups.max() == 8
    equal = make(masses=[2.0, 2.0, 2.0, 2.0]).simulated(
        "train"
    )  # all equal masses: same as "equal"
    assert np.array_equal(equal.centres, make(masses="equal").simulated("train").centres)
    for bad in ({"balls": 4, "max_balls": 3}, {"masses": [1.0, 2.0]}, {"radius": 0.2, "balls": 4}):
        with pytest.raises(ValueError):
            Config(**bad)
    assert BouncingBallsDataset.run_defaults["model"] == {"loss_step_weights": "all"}
    assert BouncingBallsDataset.default_likelihood == "bernoulli"


def test_the_collision_mask_marks_the_pixels_around_colliding_balls() -> None:
    ds = make(frames=30, balls=5, radius=0.08, speed=0.04, collision_window=1)
    split = ds.simulated("train")
    index = np.arange(len(split))
    mask = split.collision_mask(index).numpy()  # (b, F, H, W)
    assert mask.shape == (40, 30, 32, 32) and split.hits.any()
    # by hand: ball b is near frame f when it hits another on a transition t, |t - f| <= 1
    hits = split.hits
    near = hits | np.roll(hits, 1, axis=1) | np.roll(hits, -1, axis=1)
    near[:, 0] = hits[:, 0] | hits[:, 1]
    near[:, -1] = hits[:, -1] | hits[:, -2]
    assert (near == near_collision(hits, 1)).all()
    around = covering(split, index, 32, 2.0 * 0.08)  # within two radii of each centre
    assert (mask == (around & near[..., None, None]).any(axis=2)).all()
    assert mask.any(axis=(2, 3)).sum() == near.any(axis=2).sum()
    # a recorded hit is real: at that frame the ball is within reach of another hit ball
    n, t, b = np.nonzero(hits)
    gaps = np.linalg.norm(split.centres[n, t] - split.centres[n, t, b][:, None], axis=-1)
    partner = hits[n, t] & (gaps > 0) & (gaps < 2 * 0.08 + 0.04 * math.sqrt(15))
    assert partner.any(axis=1).all()


# --------------------------------------------------------------------------------------------------
# command line


def test_a_model_trains_one_epoch_on_it_through_the_cli(tmp_path: Path) -> None:
    out = tmp_path / "balls"
    args = ["run", "--dataset", "bouncing-balls", "--updater", "rnn-em", "--network", "fc"]
    args += ["--epochs", "1", "--steps", "3", "--batch-size", "8", "-k", "3", "--out", str(out)]
    args += ["--train-size", "16", "--valid-size", "8", "--test-size", "8"]
    for item in (
        "dataset.size=16",
        "dataset.balls=2",
        "dataset.radius=0.15",
        "network.hidden=16",
        "train.threads=1",
        "train.valid_samples=8",
        "eval.batch_size=8",
        "train.max_minutes=null",
    ):
        args += ["--set", item]
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["data_source"]["dataset"] == "bouncing-balls"
    assert summary["config"]["dataset"]["size"] == 16
    assert summary["config"]["model"]["loss_step_weights"] == "all"  # the data set's run default
    assert math.isfinite(summary["test"]["loss"]) and -1 <= summary["test"]["ami"] <= 1


def test_list_plugins_shows_it_with_described_options() -> None:
    result = CliRunner().invoke(cli, ["list-plugins", "dataset", "bouncing-balls", "--json"])
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.output)
    assert row["name"] == "bouncing-balls" and "elastic" in row["description"]
    own = {o["option"]: o for o in row["options"] if not o["core"]}
    assert {"balls", "max_balls", "size", "radius", "masses", "speed", "curtain"} <= set(own)
    assert all(o["description"] for o in own.values())
    assert own["size"]["default"] == 64
