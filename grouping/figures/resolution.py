"""The resolution of the drawn (matplotlib) figures: the default dots per inch and the check of a
user's ``dpi``. Kept apart from :mod:`grouping.figures.drawing` so that the command line can show
the default without importing matplotlib.

Every figure's size is a whole number of quarter inches, so at :data:`DPI` (a multiple of 4) its
pixel size is exact: (LABEL_IN + columns * CELL_IN) * dpi wide. 200 dpi prints a panel's 8-point
labels sharply at the figure's own size (1 inch per image panel) and keeps a four-sample grouping
figure at 950 x 1250 pixels; 300 or 600 suit a journal's print requirements.
"""

from __future__ import annotations

from grouping.errors import ConfigError

#: Dots per inch of the PNG figures unless ``dpi`` says otherwise (``grouping visualize``,
#: ``grouping plot`` and the run's own figure.png).
DPI = 200
#: The most dots per inch accepted: a print's line-art resolution; more only costs memory.
MAX_DPI = 1200
#: matplotlib's Agg canvas draws at most this many pixels per side.
MAX_SIDE_PX = 2**16
#: The most EM steps a sequential figure draws side by side unless told (evenly spaced, the last
#: included): 20 steps at 1 inch each made a 4150-pixel-wide figure whose labels no one could read
#: once it was fitted to a screen.
MAX_STEP_COLUMNS = 10


def check_dpi(dpi: int) -> int:
    """``dpi`` if it is a whole number from 1 to :data:`MAX_DPI`, else one line (exit 2)."""
    if isinstance(dpi, bool) or not isinstance(dpi, int) or not 1 <= dpi <= MAX_DPI:
        raise ConfigError(f"dpi must be a whole number from 1 to {MAX_DPI}, got {dpi!r}")
    return dpi


def check_pixels(width_in: float, height_in: float, dpi: int) -> None:
    """One line when a figure of that size in inches would be too large to draw at ``dpi``."""
    width, height = round(width_in * dpi), round(height_in * dpi)
    if max(width, height) >= MAX_SIDE_PX:
        raise ConfigError(
            f"the figure would be {width} x {height} pixels at {dpi} dpi, more than the "
            f"{MAX_SIDE_PX - 1} per side matplotlib draws; use a lower dpi or fewer samples or steps"
        )
