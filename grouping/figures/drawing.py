"""Drawing: the paper-style grouping figures and the training curves, from plain numpy arrays.

Nothing here touches a model, a run folder or the registry; :mod:`grouping.inspection` feeds it.
Figures are drawn on matplotlib's Agg canvas directly: no display, no ``pyplot`` state, and no change
to the backend a notebook user has chosen. Every panel is placed at a fixed position, so a figure's
pixel size follows from its rows and columns and the dots per inch (default
:data:`grouping.figures.resolution.DPI`): ``(LABEL_IN + columns * CELL_IN) * dpi`` wide and
``(TITLE_IN + rows * CELL_IN + gaps) * dpi`` high.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle
from matplotlib.ticker import MaxNLocator

from grouping.figures.resolution import DPI, MAX_STEP_COLUMNS, check_dpi, check_pixels

# Sizes below are in quarter inches, so pixel sizes are integers at a dpi that is a multiple of 4.

#: One image panel, in inches.
CELL_IN = 1.0
#: The row-label strip on the left of a grouping figure.
LABEL_IN = 0.75
#: The title strip at the top.
TITLE_IN = 0.25
#: Space between the blocks of two samples of a sequential figure.
GAP_IN = 0.25
#: Grey of pixels whose true group is 0 (background or overlap) in the ground-truth row.
BACKGROUND_GREY = 0.15
#: Side of the colour square beside a row label "ψ k": gamma shows component k in that colour.
SWATCH_IN = 0.12


def component_colours(k: int) -> np.ndarray:
    """K distinct RGB colours (K, 3): tab10 for up to 10 components, evenly spaced hues beyond."""
    if k <= 10:
        return np.asarray(colormaps["tab10"](np.arange(k))[:, :3], dtype=np.float64)
    return np.asarray(colormaps["hsv"](np.linspace(0.0, 1.0, k, endpoint=False))[:, :3])


def image_rgb(image: np.ndarray) -> np.ndarray:
    """An image (H, W, C) as RGB (H, W, 3) in [0, 1]: grey for C = 1, as is for C = 3, and the
    channel mean for any other C. Values outside [0, 1] (a Gaussian mean, say) are clipped."""
    c = image.shape[-1]
    if c == 3:
        rgb = image
    else:
        grey = image[..., :1] if c == 1 else image.mean(axis=-1, keepdims=True)
        rgb = np.repeat(grey, 3, axis=-1)
    return np.clip(rgb, 0.0, 1.0)


def gamma_rgb(gamma: np.ndarray, colours: np.ndarray) -> np.ndarray:
    """Soft assignments gamma (K, H, W) as a blend of the component colours (H, W, 3)."""
    return np.clip(np.einsum("khw,kc->hwc", gamma, colours), 0.0, 1.0)


def groups_rgb(groups: np.ndarray, colours: np.ndarray) -> np.ndarray:
    """True groups (H, W), 0 = background or overlap, as colours (H, W, 3). Group g > 0 takes
    colour g - 1 (cycling); which colour a group gets carries no meaning beyond telling them apart."""
    out = np.full((*groups.shape, 3), BACKGROUND_GREY)
    fg = groups > 0
    out[fg] = colours[(groups[fg] - 1) % len(colours)]
    return out


@dataclass
class GroupingPanels:
    """What a grouping figure shows, per sample and step, as numpy arrays.

    frames (N, T, H, W, C): the clean frame each step is scored against; psi (N, T, K, H, W, C):
    the components' predictions; gamma (N, T, K, H, W): the soft assignments; groups (N, T, H, W).
    Step index 0 here is EM step 1 (the random gamma^(0) is not shown).
    """

    frames: np.ndarray
    psi: np.ndarray
    gamma: np.ndarray
    groups: np.ndarray
    title: str = ""
    step_numbers: list[int] = field(default_factory=list)


def _show(ax: Axes, rgb: np.ndarray) -> None:
    ax.imshow(rgb, interpolation="nearest", vmin=0.0, vmax=1.0)
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_linewidth(0.5)


def _new_figure(width_in: float, height_in: float) -> Figure:
    fig = Figure(figsize=(width_in, height_in), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def _axes_at(fig: Figure, left_in: float, top_in: float) -> Axes:
    """One image panel whose top-left corner lies ``left_in`` and ``top_in`` inches from the figure's
    top-left corner, with a small margin inside the cell."""
    w, h = fig.get_size_inches()
    pad = 0.04 * CELL_IN
    size = CELL_IN - 2 * pad
    rect = ((left_in + pad) / w, 1.0 - (top_in + pad + size) / h, size / w, size / h)
    return fig.add_axes(rect)


def _row_label(fig: Figure, top_in: float, text: str, colour: np.ndarray | None = None) -> None:
    """A row's name in the label strip; a component's row gets a square of its colour in front,
    the legend of the gamma row's colours."""
    w, h = fig.get_size_inches()
    y = 1.0 - (top_in + CELL_IN / 2) / h
    left = 0.04
    if colour is not None:
        corner = (left / w, y - SWATCH_IN / 2 / h)
        fig.add_artist(
            Rectangle(corner, SWATCH_IN / w, SWATCH_IN / h, transform=fig.transFigure, color=colour)
        )
        left += SWATCH_IN + 0.05
    fig.text(left / w, y, text, ha="left", va="center", fontsize=8)


def row_labels(k: int) -> list[str]:
    """The rows of one sample's block: the frame, one row per component, gamma, the true groups."""
    return ["input", *[f"ψ {i + 1}" for i in range(k)], "γ\n(ψ colours)", "truth"]


def _label_rows(fig: Figure, top_in: float, colours: np.ndarray) -> None:
    """The row labels of one sample's block, starting ``top_in`` inches from the top."""
    for row, label in enumerate(row_labels(len(colours))):
        colour = colours[row - 1] if 1 <= row <= len(colours) else None
        _row_label(fig, top_in + row * CELL_IN, label, colour)


def step_columns(t: int, columns: int | None = MAX_STEP_COLUMNS) -> list[int]:
    """Which of T steps (0-based) a sequential figure draws: all of them when ``columns`` is None
    or at least T, else ``columns`` evenly spaced ones from the first to the last."""
    if columns is None or columns >= t:
        return list(range(t))
    if columns <= 1:
        return [t - 1]
    return sorted({round(i * (t - 1) / (columns - 1)) for i in range(columns)})


def step_cells(p: GroupingPanels, i: int, s: int, colours: np.ndarray) -> list[np.ndarray]:
    """What a sequential figure shows of sample i at step s, top to bottom: the input frame,
    psi of each component, gamma coloured by component and the true groups (RGB each)."""
    k = p.psi.shape[2]
    return [
        image_rgb(p.frames[i, s]),
        *[image_rgb(p.psi[i, s, j]) for j in range(k)],
        gamma_rgb(p.gamma[i, s], colours),
        groups_rgb(p.groups[i, s], colours),
    ]


def static_figure(p: GroupingPanels) -> Figure:
    """The layout of the paper's Figure 3: one column per sample; rows input, psi_1..psi_K, gamma
    and ground truth, all at the last step shown."""
    n, _t, k = p.psi.shape[:3]
    labels = row_labels(k)
    fig = _new_figure(LABEL_IN + n * CELL_IN, TITLE_IN + len(labels) * CELL_IN)
    colours = component_colours(k)
    _label_rows(fig, TITLE_IN, colours)
    for i in range(n):
        panels = [
            image_rgb(p.frames[i, -1]),
            *[image_rgb(p.psi[i, -1, j]) for j in range(k)],
            gamma_rgb(p.gamma[i, -1], colours),
            groups_rgb(p.groups[i, -1], colours),
        ]
        for row, rgb in enumerate(panels):
            _show(_axes_at(fig, LABEL_IN + i * CELL_IN, TITLE_IN + row * CELL_IN), rgb)
    fig.suptitle(p.title, y=1.0 - 0.02 / fig.get_size_inches()[1], va="top", fontsize=9)
    return fig


def sequential_figure(p: GroupingPanels) -> Figure:
    """The layout of the paper's Figures 4 and 7: frames across time (one column per EM step);
    per sample a block of rows: the frame, one row per component, gamma and ground truth."""
    n, t, k = p.psi.shape[:3]
    labels = row_labels(k)
    block = len(labels) * CELL_IN
    height = TITLE_IN + n * block + (n - 1) * GAP_IN
    fig = _new_figure(LABEL_IN + t * CELL_IN, height)
    colours = component_colours(k)
    for i in range(n):
        top = TITLE_IN + i * (block + GAP_IN)
        _label_rows(fig, top, colours)
        for s in range(t):
            for row, rgb in enumerate(step_cells(p, i, s, colours)):
                ax = _axes_at(fig, LABEL_IN + s * CELL_IN, top + row * CELL_IN)
                _show(ax, rgb)
                if i == 0 and row == 0 and p.step_numbers:
                    ax.set_title(f"t={p.step_numbers[s]}", fontsize=7, pad=1)
    fig.suptitle(p.title, y=1.0 - 0.02 / height, va="top", fontsize=9)
    return fig


# --------------------------------------------------------------------------------------------------
# curves


@dataclass
class Curves:
    """One run's (or one evaluation's) curves, as read from its files."""

    label: str
    records: list[dict[str, object]] = field(default_factory=list)  # metrics.jsonl
    ami_per_step: list[float] = field(default_factory=list)
    ami_quartiles: dict[str, list[float]] | None = None  # q25, median, q75 per step


CURVE_WIDTH_IN = 14.0
CURVE_HEIGHT_IN = 7.5
#: Line styles of a run's component shares, from the largest share down, and their legend.
SHARE_STYLES = ("-", "--", ":", "-.")
SHARE_NAMES = ("largest share", "2nd", "3rd", "4th and smaller")


def _series(records: Sequence[dict[str, object]], key: str) -> tuple[list[float], list[float]]:
    xs, ys = [], []
    for r in records:
        value = r.get(key)
        if isinstance(value, int | float) and isinstance(r.get("epoch"), int | float):
            xs.append(float(r["epoch"]))  # type: ignore[arg-type]
            ys.append(float(value))
    return xs, ys


def _last_step_shares(records: Sequence[dict[str, object]]) -> tuple[list[float], np.ndarray]:
    """Epochs and the validation component shares (E, K) at the last EM step of each epoch."""
    xs, rows = [], []
    for r in records:
        shares = r.get("component_shares")
        if isinstance(shares, list) and shares and isinstance(r.get("epoch"), int | float):
            xs.append(float(r["epoch"]))  # type: ignore[arg-type]
            rows.append([float(v) for v in shares[-1]])
    return xs, np.asarray(rows)


def _plot_records(axes: dict[str, Axes], run: Curves, colour: np.ndarray) -> None:
    """The per-epoch panels of one run."""
    for key, name, style in (
        ("train_loss", "loss", "-"),
        ("valid_loss", "loss", "--"),
        ("valid_ami", "ami", "-"),
        ("images_per_s", "speed", "-"),
        ("live_components", "live", "-"),
    ):
        xs, ys = _series(run.records, key)
        if xs:
            suffix = f" {key.split('_')[0]}" if name == "loss" else ""
            axes[name].plot(xs, ys, color=colour, ls=style, marker=".", label=run.label + suffix)
    xs, shares = _last_step_shares(run.records)
    for j in range(shares.shape[1] if shares.size else 0):
        style = SHARE_STYLES[min(j, len(SHARE_STYLES) - 1)]
        axes["shares"].plot(xs, shares[:, j], color=colour, ls=style, marker=".")


def _share_styles(ax: Axes) -> None:
    """The component-shares panel's legend: which line style is which share (the colours are the
    runs', named in the other panels)."""
    used = {line.get_linestyle() for line in ax.get_lines()}
    styles = [
        Line2D([], [], color="grey", ls=ls, label=name)
        for ls, name in zip(SHARE_STYLES, SHARE_NAMES)
        if ls in used
    ]
    if styles:
        ax.legend(handles=styles, fontsize=7, title="component", title_fontsize=7)


def _plot_steps(ax: Axes, run: Curves, colour: np.ndarray) -> None:
    """Test AMI per EM step with its quartile band."""
    if not run.ami_per_step:
        return
    steps = np.arange(1, len(run.ami_per_step) + 1)
    ax.plot(steps, run.ami_per_step, color=colour, marker=".", label=run.label)
    q = run.ami_quartiles
    if q and len(q.get("q25", [])) == len(steps) == len(q.get("q75", [])):
        ax.fill_between(steps, q["q25"], q["q75"], color=colour, alpha=0.2, lw=0)


PANELS = (
    ("loss", "loss (train solid, validation dashed)", "epoch", "loss per image"),
    ("ami", "validation AMI", "epoch", "AMI"),
    ("shares", "validation component shares, last EM step", "epoch", "share"),
    ("speed", "training throughput", "epoch", "images (or sequences) / s"),
    ("live", "live components (>= 5% of the objects), last EM step", "epoch", "components"),
    ("steps", "test AMI per EM step (mean, band: quartiles)", "EM step", "AMI"),
)


def curves_figure(runs: Sequence[Curves]) -> Figure:
    """Six panels, each run overlaid in its own colour: losses, validation AMI, component shares,
    images/s and live components against epoch, and test AMI per EM step with its quartiles."""
    fig = _new_figure(CURVE_WIDTH_IN, CURVE_HEIGHT_IN)
    axes = dict(zip([p[0] for p in PANELS], fig.subplots(2, 3).ravel()))
    for run, colour in zip(runs, component_colours(max(len(runs), 1))):
        _plot_records(axes, run, colour)
        _plot_steps(axes["steps"], run, colour)
    last = max((len(run.records) for run in runs), default=0)
    for key, title, xlabel, ylabel in PANELS:
        ax = axes[key]
        if xlabel == "epoch" and last:  # whole epochs, even for a one-epoch run
            ax.set_xlim(0.5, last + 0.5)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel(xlabel, fontsize=8)
        ax.set_ylabel(ylabel, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if key == "shares":
            _share_styles(ax)
        elif ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def save(fig: Figure, path: Path, dpi: int = DPI) -> Path:
    """Write a figure as PNG at ``dpi`` dots per inch, creating the folder; returns the path."""
    width_in, height_in = fig.get_size_inches()
    check_pixels(float(width_in), float(height_in), check_dpi(dpi))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, format="png")
    return path
