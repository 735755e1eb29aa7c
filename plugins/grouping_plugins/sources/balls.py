"""Balls with mass in a box: elastic collisions, disc rendering and collision neighbourhoods.

The physics of the ``bouncing-balls`` data set (R-NEM, ICLR 2018). The original generator was not
published (its HDF5 files were), so the rule is ours, chosen to be simple and exactly conservative:

* the box is the unit square; a ball is a disc of radius ``r`` whose centre stays in
  ``[r, 1 - r]`` on both axes (row, column). Between frames a ball moves in a straight line;
* a frame is ``substeps`` equal sub-steps. In each: every ball moves by ``v dt``; a ball past a
  wall is mirrored back and its velocity component across that wall points inwards again (speed
  and kinetic energy unchanged); then every pair of overlapping balls that still approach each
  other exchanges an impulse along the line of centres, ``J = 2 m_a m_b / (m_a + m_b) u`` where
  ``u`` is their closing speed. That is the elastic collision of two discs: momentum and kinetic
  energy are conserved exactly (up to float rounding), and the closing speed is reversed. Pairs
  are resolved one after the other, so a ball that touches two others in one sub-step still
  conserves both;
* ``substeps`` is chosen (:func:`substeps_for`) so that two balls at the fastest speed the
  energy allows close in by at most half a radius per sub-step: no ball passes through another.

A collision is recorded on the transition it happens in: ``hits[n, t, b]`` is true when ball b of
sequence n hits another ball between frame t and frame t + 1 (the last frame has none).
"""

from __future__ import annotations

import math

import numpy as np

#: How many times the sampler may redraw a ball that overlaps one placed before it.
PLACEMENT_TRIES = 1000


def place(
    rng: np.random.Generator, present: np.ndarray, radius: float, tries: int = PLACEMENT_TRIES
) -> np.ndarray:
    """Centres (N, B, 2) uniform in [r, 1 - r], no two present balls overlapping.

    Balls are placed one at a time; a ball that overlaps one placed before it is redrawn. Raises
    ``ValueError`` when some ball finds no room in ``tries`` draws.
    """
    n, balls = present.shape
    pos = np.full((n, balls, 2), 0.5)
    for b in range(balls):
        todo = np.flatnonzero(present[:, b])
        for _ in range(tries):
            if todo.size == 0:
                break
            pos[todo, b] = radius + rng.random((todo.size, 2)) * (1.0 - 2.0 * radius)
            gap = np.linalg.norm(pos[todo, :b] - pos[todo, b : b + 1], axis=-1)  # (m, b)
            clash = ((gap < 2.0 * radius) & present[todo, :b]).any(axis=1)
            todo = todo[clash]
        if todo.size:
            raise ValueError(f"no room for ball {b + 1} of radius {radius} after {tries} draws")
    return pos


def sample_velocity(rng: np.random.Generator, shape: tuple[int, int], speed: float) -> np.ndarray:
    """Velocities (*shape, 2) of the given speed in uniformly random directions."""
    angle = rng.random(shape) * 2.0 * np.pi
    return np.stack([np.sin(angle), np.cos(angle)], axis=-1) * speed


def substeps_for(speed: float, radius: float, balls: int, mass_ratio: float) -> int:
    """Sub-steps per frame so that no ball tunnels through another.

    A ball can at most reach ``speed * sqrt(balls * mass_ratio)``: the speed it has when it holds
    all the kinetic energy, the heaviest balls' masses being ``mass_ratio`` times its own.
    """
    fastest = speed * math.sqrt(balls * mass_ratio)
    return max(8, math.ceil(4.0 * fastest / radius))


def _walls(pos: np.ndarray, vel: np.ndarray, radius: float) -> None:
    """Mirror every centre that left [r, 1 - r] back inside and point its velocity inwards."""
    low, high = pos < radius, pos > 1.0 - radius
    pos[low] = 2.0 * radius - pos[low]
    vel[low] = np.abs(vel[low])
    pos[high] = 2.0 * (1.0 - radius) - pos[high]
    vel[high] = -np.abs(vel[high])


def _resolve(
    vel: np.ndarray,
    mass: np.ndarray,
    rows: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    normal: np.ndarray,
    hit: np.ndarray,
) -> None:
    """Elastic impulses for contacts (rows, a, b) whose balls still approach along ``normal`` (from
    a to b). No (row, ball) may appear twice in one call: the updates are applied at once."""
    closing = ((vel[rows, a] - vel[rows, b]) * normal).sum(-1)
    keep = closing > 0
    rows, a, b, normal, closing = rows[keep], a[keep], b[keep], normal[keep], closing[keep]
    ma, mb = mass[rows, a], mass[rows, b]
    impulse = (2.0 * ma * mb / (ma + mb) * closing)[:, None] * normal
    vel[rows, a] -= impulse / ma[:, None]
    vel[rows, b] += impulse / mb[:, None]
    hit[rows, a] = True
    hit[rows, b] = True


def _collide(
    pos: np.ndarray,
    vel: np.ndarray,
    mass: np.ndarray,
    present: np.ndarray,
    radius: float,
    hit: np.ndarray,
) -> None:
    """Resolve every overlapping pair of present balls that still approach each other.

    Sequences where each ball touches at most one other are resolved at once; in the others (a
    ball touching two) the pairs are resolved one after the other, each seeing the last's result.
    """
    n, balls = present.shape
    dy = pos[:, None, :, 0] - pos[:, :, None, 0]  # (N, B, B): from ball a (axis 1) to b (axis 2)
    dx = pos[:, None, :, 1] - pos[:, :, None, 1]
    dist2 = dy * dy + dx * dx
    close = (dist2 < (2.0 * radius) ** 2) & np.triu(np.ones((balls, balls), dtype=bool), k=1)
    close &= present[:, :, None] & present[:, None, :]
    rows, a, b = np.nonzero(close)
    if rows.size == 0:
        return
    normal = np.stack([dy[rows, a, b], dx[rows, a, b]], axis=-1)
    normal /= np.sqrt(dist2[rows, a, b])[:, None]
    touches = np.bincount(np.concatenate([rows * balls + a, rows * balls + b]), minlength=n * balls)
    crowded: np.ndarray = np.any(touches.reshape(n, balls) > 1, axis=1)
    crowded = crowded[rows]
    alone = ~crowded
    _resolve(vel, mass, rows[alone], a[alone], b[alone], normal[alone], hit)
    for k in np.flatnonzero(crowded):  # rows are sorted, so each row's pairs come in order
        one = slice(k, k + 1)
        _resolve(vel, mass, rows[one], a[one], b[one], normal[one], hit)


def advance(
    pos: np.ndarray,
    vel: np.ndarray,
    mass: np.ndarray,
    present: np.ndarray,
    radius: float,
    substeps: int,
) -> np.ndarray:
    """Move the balls by one frame, in place; returns which balls hit another (N, B) bool.

    pos, vel: (N, B, 2) float64; mass: (N, B) > 0; present: (N, B) bool (an absent ball is never
    hit, and its own motion is meaningless).
    """
    hit = np.zeros(present.shape, dtype=bool)
    dt = 1.0 / substeps
    for _ in range(substeps):
        pos += vel * dt
        _walls(pos, vel, radius)
        _collide(pos, vel, mass, present, radius, hit)
    return hit


def simulate(
    pos: np.ndarray,
    vel: np.ndarray,
    mass: np.ndarray,
    present: np.ndarray,
    radius: float,
    frames: int,
    substeps: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Centres at every frame (N, F, B, 2) float32 and collisions ``hits`` (N, F, B) bool.

    Starts from copies of pos and vel (frame 0 is ``pos``); every sequence is computed on its own
    numbers, so a sequence is the same in whatever company it is simulated.
    """
    pos, vel = pos.astype(np.float64), vel.astype(np.float64)
    n, balls = present.shape
    centres = np.empty((n, frames, balls, 2), dtype=np.float32)
    hits = np.zeros((n, frames, balls), dtype=bool)
    for t in range(frames):
        centres[:, t] = pos
        if t + 1 < frames:
            hits[:, t] = advance(pos, vel, mass, present, radius, substeps)
    return centres, hits


def near_collision(hits: np.ndarray, window: int) -> np.ndarray:
    """(N, F, B) bool: ball b took part in a collision on a transition t with |t - f| <= window."""
    frames = hits.shape[1]
    counts = np.concatenate([np.zeros_like(hits[:, :1], dtype=np.int64), hits.cumsum(1)], axis=1)
    f = np.arange(frames)
    lo, hi = np.clip(f - window, 0, frames), np.clip(f + window + 1, 0, frames)
    return (counts[:, hi] - counts[:, lo]) > 0


def _pixel_grid(size: int) -> np.ndarray:
    """Pixel centres along one axis, in pixel units."""
    return np.arange(size, dtype=np.float32) + 0.5


def disc_pixels(centres: np.ndarray, radius: float, size: int) -> np.ndarray:
    """Flat indices into (M, H, W) of the pixels whose centre lies within ``radius`` of ``centres``
    (M, 2), in pixel units, row first. Each pixel comes at most once; only a box around each disc
    is looked at, so the cost does not grow with the frame."""
    box = math.ceil(2.0 * radius) + 3
    corner = np.floor(centres - radius).astype(np.int64) - 1  # (M, 2)
    span = np.arange(box)
    rows = corner[:, :1] + span  # (M, box)
    cols = corner[:, 1:] + span
    dy = (rows + 0.5 - centres[:, :1]) ** 2
    dx = (cols + 0.5 - centres[:, 1:]) ** 2
    inside = dy[:, :, None] + dx[:, None, :] <= radius * radius
    inside &= ((rows >= 0) & (rows < size))[:, :, None] & ((cols >= 0) & (cols < size))[:, None, :]
    m, r, c = np.nonzero(inside)
    return (m * size + rows[m, r]) * size + cols[m, c]


def render(
    centres: np.ndarray, present: np.ndarray, radius: float, size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Binary frames (M, H, W) float32 and groups (M, H, W) uint8 of M scenes of B <= 16 balls.

    centres: (M, B, 2) in pixel units; present: (M, B). Ball b is label b + 1; background and pixels
    that two or more balls cover are 0.
    """
    m, balls = present.shape
    cover = np.zeros(m * size * size, dtype=np.uint8)
    labels = np.zeros(m * size * size, dtype=np.uint8)  # sum of the covering balls' labels
    for b in range(balls):
        rows = np.flatnonzero(present[:, b])
        flat = disc_pixels(centres[rows, b], radius, size)
        scene, pixel = np.divmod(flat, size * size)
        flat = rows[scene] * size * size + pixel
        cover[flat] += 1
        labels[flat] += b + 1
    groups = np.where(cover == 1, labels, np.uint8(0)).reshape(m, size, size)
    return (cover > 0).astype(np.float32).reshape(m, size, size), groups


def neighbourhood(
    centres: np.ndarray, selected: np.ndarray, radius: float, size: int
) -> np.ndarray:
    """(M, H, W) bool: pixels within ``radius`` (pixel units) of a selected ball's centre.

    centres: (M, B, 2) in pixel units; selected: (M, B) bool.
    """
    m, balls = selected.shape
    out = np.zeros(m * size * size, dtype=bool)
    for b in range(balls):
        rows = np.flatnonzero(selected[:, b])
        scene, pixel = np.divmod(disc_pixels(centres[rows, b], radius, size), size * size)
        out[rows[scene] * size * size + pixel] = True
    return out.reshape(m, size, size)


def squares(corner: np.ndarray, side: float, size: int) -> np.ndarray:
    """(M, H, W) bool: pixels whose centre lies in the square [corner, corner + side) (pixel units).

    corner: (M, 2) top-left, row first.
    """
    grid = _pixel_grid(size)
    rows = (grid[None] >= corner[:, :1]) & (grid[None] < corner[:, :1] + side)  # (M, H)
    cols = (grid[None] >= corner[:, 1:]) & (grid[None] < corner[:, 1:] + side)  # (M, W)
    return rows[:, :, None] & cols[:, None, :]
