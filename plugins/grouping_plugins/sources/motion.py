"""Straight-line motion that bounces off the walls, for the sequential data sets (spec 6.4, 6.5).

The original generators are lost (spec 12), so the rule is ours, chosen to be simple and exact:

* every object starts at a position drawn uniformly from the range that keeps it inside the canvas,
  and moves with a constant velocity: a direction uniform on the circle and a speed uniform in
  ``[min_speed, max_speed]`` pixels per frame (sub-pixel velocities are allowed);
* a wall reflects it specularly: the velocity component across the wall changes sign, and the
  distance it would have travelled past the wall is travelled back. Per axis this is the triangle
  wave of the unbounded position ``p0 + v t``, which :func:`bounce` evaluates in closed form, so any
  frame of any sequence costs the same and nothing depends on stepping order;
* the object is drawn at the nearest integer position (spec 6.4: integer positions), which is
  inside the range because the range's ends are integers.
"""

from __future__ import annotations

import numpy as np


def bounce(start: np.ndarray, velocity: np.ndarray, span: np.ndarray, frames: int) -> np.ndarray:
    """Positions at frames 0..frames-1 of points moving in [0, span] with specular reflection.

    start, velocity, span: broadcastable arrays (...), start in [0, span], span >= 0. Returns
    (..., frames) float64 positions in [0, span]. A span of 0 pins the point at 0.
    """
    t = np.arange(frames, dtype=np.float64)
    free = start[..., None] + velocity[..., None] * t  # (..., F) unbounded trajectory
    span = np.asarray(span, dtype=np.float64)[..., None]
    period = 2.0 * span
    safe = np.where(period > 0, period, 1.0)
    folded = np.mod(free, safe)  # in [0, 2 span)
    inside = np.where(folded <= span, folded, period - folded)
    return np.where(period > 0, inside, 0.0)


def pixel_positions(
    start: np.ndarray, velocity: np.ndarray, span: np.ndarray, frames: int
) -> np.ndarray:
    """:func:`bounce` rounded to the nearest integer pixel, as int64 (..., frames) in [0, span]."""
    return np.rint(bounce(start, velocity, span, frames)).astype(np.int64)


def sample_motion(
    rng: np.random.Generator, span: np.ndarray, min_speed: float, max_speed: float
) -> tuple[np.ndarray, np.ndarray]:
    """Start positions and velocities for objects whose position ranges are ``span`` (..., 2).

    The last axis is (row, column). Returns start (..., 2) uniform in [0, span] and velocity
    (..., 2) with a uniform direction and a speed uniform in [min_speed, max_speed].
    """
    span = np.asarray(span, dtype=np.float64)
    start = rng.random(span.shape) * span
    angle = rng.random(span.shape[:-1]) * 2.0 * np.pi
    speed = min_speed + rng.random(span.shape[:-1]) * (max_speed - min_speed)
    velocity = np.stack([np.sin(angle), np.cos(angle)], axis=-1) * speed[..., None]
    return start, velocity
