"""Publication figures of Grad-CAM overlays with matplotlib (no pyplot, no GUI backend).

The layout follows Fig. 2 of Khademi et al. (2018): one row per street view, the photo in the
first column and one column per model with its CAM overlaid, the model names as column titles,
under each panel the class explained and (optionally) the model's prediction and probability,
and one colour bar for the whole figure.

* **Exact geometry.** Every axes is placed in inches: the columns share one width, computed from
  the figure width (``SINGLE_COLUMN_IN`` = 3.5 in, ``DOUBLE_COLUMN_IN`` = 7.16 in, or any width),
  and each row is as tall as its photo's aspect ratio asks, so nothing is letterboxed or
  distorted and panels line up. The figure's height follows from the grid.
* **Text that fits.** Captions are measured with matplotlib's font metrics (DejaVu Sans, bundled
  with matplotlib, so every machine lays a figure out the same) and shortened or set a little
  smaller, for the whole figure at once, until every one fits its panel.
* **Vector output as it should be.** PDF and SVG embed every image unsampled at its full native
  resolution (``interpolation="none"``), keep text as text (``svg.fonttype = "none"``,
  ``pdf.fonttype = 42``: TrueType fonts embedded, so text stays selectable and editable), and PNG
  carries its DPI.
* **Same bytes every time.** The PDF has no creation date, the SVG no date and a fixed hash
  salt for its ids, so an export re-created from its sidecar is byte-identical.
* **Wrong predictions marked**, as the viewer's panes mark them: a panel whose model predicts
  another class than the photo's true label gets a red frame and its prediction line reads
  "✗ pred. tokyo (0.93)" in red (``FigurePanel.wrong``; unknown without a true label).

matplotlib's ``rcParams`` are global; the few this module needs are set with ``rc_context``
under a lock, so two exports in two threads never see each other's settings.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import IO, Sequence

import numpy as np

from geocam_gui.core.errors import BadArgument

SINGLE_COLUMN_IN = 3.5
DOUBLE_COLUMN_IN = 7.16
MIN_WIDTH_IN = 1.5
MAX_WIDTH_IN = 40.0
FIGURE_FORMATS: tuple[str, ...] = ("pdf", "svg", "png")
FONT_FAMILY = "DejaVu Sans"
MIN_CAPTION_PT = 5.0
WRONG_COLOR = "#c62828"  # frame and caption of a wrong prediction
WRONG_MARK = "✗ "

_RC = {
    "pdf.fonttype": 42,
    "ps.fonttype": 42,
    "svg.fonttype": "none",
    "svg.hashsalt": "geocam",
    "svg.image_inline": True,
    "image.composite_image": False,
    "font.family": "sans-serif",
    "font.sans-serif": [FONT_FAMILY],
    "axes.unicode_minus": False,
    "path.simplify": False,
}
_LOCK = threading.RLock()


@dataclass
class FigurePanel:
    """One model's panel: the overlay (H, W, 3) uint8 at the photo's resolution and its captions."""

    overlay: np.ndarray | None
    class_name: str = ""
    predicted: str = ""
    probability: float | None = None
    error: str = ""
    wrong: bool | None = None  # the prediction differs from the true label (None: no label known)


@dataclass
class FigureRow:
    """One street view: the photo (H, W, 3) uint8, its true label (or None) and one panel per model."""

    image: np.ndarray
    label: str | None
    panels: list[FigurePanel] = field(default_factory=list)


def parse_width(text: str | float | int) -> float:
    """``single`` -> 3.5, ``double`` -> 7.16, or a number of inches (``"5"``, ``"5in"``)."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        value = float(text)
    else:
        s = str(text).strip().lower()
        if s in ("single", "single-column"):
            return SINGLE_COLUMN_IN
        if s in ("double", "double-column"):
            return DOUBLE_COLUMN_IN
        s = s.removesuffix("in").removesuffix('"').strip()
        try:
            value = float(s)
        except ValueError:
            raise BadArgument(
                f"The figure width {text!r} is not understood: give single, double or a width in inches."
            ) from None
    if not MIN_WIDTH_IN <= value <= MAX_WIDTH_IN:
        raise BadArgument(f"The figure width must be between {MIN_WIDTH_IN} and {MAX_WIDTH_IN} inches, got {value}.")
    return value


def _text_width_pt(text: str, size: float, weight: str = "normal") -> float:
    from matplotlib.font_manager import FontProperties

    if not text:
        return 0.0
    prop = FontProperties(family=FONT_FAMILY, size=size, weight=weight)
    w, _h, _d = _text_to_path().get_text_width_height_descent(text, prop, ismath=False)
    return float(w)


@lru_cache(maxsize=1)
def _text_to_path():
    """matplotlib's font-metrics helper (used under ``_LOCK``: FreeType objects are not thread-safe)."""
    from matplotlib.textpath import TextToPath

    return TextToPath()


def _shorten(name: str, keep: int) -> str:
    return name if len(name) <= keep else name[: max(1, keep - 1)] + "…"


def _captions(row: FigureRow, level: int, show_predictions: bool, explains_predicted: bool,
              keep: int = 1000) -> list[list[str]]:
    """Caption lines of every panel of a row (photo first) at an abbreviation level 0..2;
    class names longer than ``keep`` characters are cut with an ellipsis (last resort).

    When every panel explains its model's predicted class, each panel says "pred. tokyo (0.93)".
    Otherwise the class explained is the same for the whole row (the true label or a named
    class), so it is said once under the photo ("CAM: tokyo") and each panel gives the
    prediction.
    """
    photo = [("true: " if level < 2 else "") + _shorten(row.label, keep)] if row.label else []
    shown = {p.class_name for p in row.panels if p.overlay is not None}
    per_row = not explains_predicted and len(shown) == 1
    if per_row:
        photo.append("CAM: " + _shorten(shown.pop(), keep))
    out = [photo]
    for p in row.panels:
        if p.overlay is None:
            out.append([p.error or "n/a"])
            continue
        prob = "" if p.probability is None else (f" ({p.probability:.2f})" if level < 2 else f" {p.probability:.2f}")
        lines = []
        if not per_row and not (explains_predicted and show_predictions):
            lines.append("CAM: " + _shorten(p.class_name, keep))
        if show_predictions and p.predicted:
            lines.append((WRONG_MARK if p.wrong else "") + ("pred. " if level < 1 else "")
                         + _shorten(p.predicted, keep) + prob)
        out.append(lines)
    return out


def build_figure(
    rows: Sequence[FigureRow],
    column_titles: Sequence[str],
    *,
    width_in: float = SINGLE_COLUMN_IN,
    cmap: str = "jet",
    show_predictions: bool = True,
    colorbar_label: str = "Grad-CAM",
    vector: bool = True,
    explains_predicted: bool = False,
):
    """A ``matplotlib.figure.Figure`` (Agg canvas attached) of the grid (see ``_build_figure``),
    built under the module's lock and rc settings, so it is safe from any thread."""
    import matplotlib

    with _LOCK, matplotlib.rc_context(_RC):
        return _build_figure(rows, column_titles, width_in=width_in, cmap=cmap, show_predictions=show_predictions,
                             colorbar_label=colorbar_label, vector=vector, explains_predicted=explains_predicted)


def _build_figure(
    rows: Sequence[FigureRow],
    column_titles: Sequence[str],
    *,
    width_in: float = SINGLE_COLUMN_IN,
    cmap: str = "jet",
    show_predictions: bool = True,
    colorbar_label: str = "Grad-CAM",
    vector: bool = True,
    explains_predicted: bool = False,
):
    """The figure with the grid described in the module docstring (caller holds ``_LOCK``).

    ``column_titles``: the photo column's title, then one per model (len = 1 + panels per row).
    ``vector``: True for PDF/SVG (images embedded unsampled), False for PNG (images resampled
    with antialiasing at the output DPI). ``explains_predicted``: every panel shows the CAM of
    its model's predicted class, so one caption line ("pred. tokyo (0.93)") says both.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colorbar import Colorbar
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure

    from geocam_gui.core.explain.render import COLORMAPS

    if not rows:
        raise BadArgument("A figure needs at least one image.")
    ncols = 1 + len(rows[0].panels)
    if len(column_titles) != ncols or any(len(r.panels) != ncols - 1 for r in rows):
        raise BadArgument("Every row of a figure needs one panel per model and one title per column.")
    if cmap not in COLORMAPS:
        raise BadArgument(f"Unknown colormap {cmap!r}: choose one of {', '.join(COLORMAPS)}.")
    W = float(width_in)

    base = 7.0 if W < 5 else 8.0
    title_pt = base
    # Horizontal geometry (inches).
    left, right_pad, top, bottom = 0.02, 0.02, 0.03, 0.03
    gap = 0.04 if W < 5 else 0.06
    cb_gap, cb_w = 0.06, 0.08
    tick_w = _text_width_pt("1.0", base - 1) / 72 + 0.06  # tick marks + labels
    cb_label_w = (base - 1) * 1.4 / 72
    right = cb_gap + cb_w + tick_w + cb_label_w + right_pad
    cell = (W - left - right - (ncols - 1) * gap) / ncols
    if cell < 0.25:
        raise BadArgument(
            f"A {W:g}-inch figure is too narrow for {ncols} columns; make it wider (e.g. --width double)."
        )

    # Captions: one size and abbreviation level for the whole figure, the largest that fits.
    cell_pt = cell * 72 - 1.0
    chosen = None
    sizes = [base - 1 - 0.5 * k for k in range(int((base - 1 - MIN_CAPTION_PT) / 0.5) + 1)]

    def fits(caps, size: float) -> bool:
        return all(_text_width_pt(line, size) <= cell_pt for rc in caps for pc in rc for line in pc)

    for size in sizes:
        for level in range(3):
            caps = [_captions(r, level, show_predictions, explains_predicted) for r in rows]
            if fits(caps, size):
                chosen = (size, caps)
                break
        if chosen:
            break
    if chosen is None:  # last resort: cut long class names
        size = sizes[-1]
        for keep in range(24, 2, -1):
            caps = [_captions(r, 2, show_predictions, explains_predicted, keep) for r in rows]
            if fits(caps, size) or keep == 3:
                chosen = (size, caps)
                break
    cap_pt, caps = chosen
    line_in = cap_pt * 1.25 / 72

    title_h = title_pt * 1.6 / 72
    heights = []
    for r, rc in zip(rows, caps):
        h, w = r.image.shape[:2]
        nlines = max((len(pc) for pc in rc), default=0)
        heights.append((cell * h / w, nlines * line_in + (0.04 if nlines else 0.02)))
    H = top + title_h + sum(a + b for a, b in heights) + bottom

    fig = Figure(figsize=(W, H))
    FigureCanvasAgg(fig)
    fig.patch.set_facecolor("white")

    def rect(x, y_top, w, h):  # inches from the top-left corner -> figure fraction
        return [x / W, (H - y_top - h) / H, w / W, h / H]

    interp = "none" if vector else "antialiased"
    for j, title in enumerate(column_titles):
        x = left + j * (cell + gap) + cell / 2
        fig.text(x / W, (H - top - title_h * 0.45) / H, title, ha="center", va="center",
                 fontsize=title_pt, fontweight="bold")
    y = top + title_h
    from matplotlib.patches import Rectangle

    for r, rc, (img_h, cap_h) in zip(rows, caps, heights):
        pictures = [r.image] + [p.overlay for p in r.panels]
        wrong = [False] + [bool(p.wrong) for p in r.panels]
        for j, (pic, lines) in enumerate(zip(pictures, rc)):
            x = left + j * (cell + gap)
            ax = fig.add_axes(rect(x, y, cell, img_h))
            ax.set_axis_off()
            if pic is not None:
                ax.imshow(pic, interpolation=interp, aspect="auto", resample=False)
            else:
                ax.set_facecolor("#eeeeee")
                ax.set_axis_on()
                ax.set_xticks([])
                ax.set_yticks([])
            if wrong[j]:
                ax.add_patch(Rectangle((0, 0), 1, 1, transform=ax.transAxes, fill=False, edgecolor=WRONG_COLOR,
                                       linewidth=1.2, clip_on=False, gid="wrong-prediction"))
            for k, line in enumerate(lines):
                fig.text((x + cell / 2) / W, (H - y - img_h - 0.02 - (k + 0.5) * line_in) / H, line,
                         ha="center", va="center", fontsize=cap_pt,
                         color=WRONG_COLOR if line.startswith(WRONG_MARK) else "black")
        y += img_h + cap_h

    # One colour bar beside the image rows.
    grid_top = top + title_h
    grid_h = y - grid_top - heights[-1][1]
    cax = fig.add_axes(rect(W - right + cb_gap, grid_top, cb_w, grid_h))
    cb = Colorbar(cax, cmap=_mpl_cmap(cmap), norm=Normalize(0.0, 1.0), orientation="vertical")
    cb.set_ticks([0.0, 0.5, 1.0])
    cb.ax.tick_params(labelsize=base - 1, length=2, width=0.5, pad=1.5)
    cb.outline.set_linewidth(0.5)
    label = colorbar_label
    if _text_width_pt(label, base - 1) > grid_h * 72:
        label = label.split(",")[0].split("(")[0].strip()
    cb.set_label(label, fontsize=base - 1, labelpad=2)
    return fig


def _mpl_cmap(name: str):
    import matplotlib

    return matplotlib.colormaps[name].resampled(256)


def save_figure(fig, target: str | Path | IO[bytes], fmt: str, *, dpi: int = 300) -> None:
    """Write ``fig`` as ``fmt`` (pdf, svg or png) with deterministic metadata and embedded fonts."""
    import matplotlib

    from geocam_gui import __version__

    if fmt not in FIGURE_FORMATS:
        raise BadArgument(f"Unknown figure format {fmt!r}: choose one of {', '.join(FIGURE_FORMATS)}.")
    creator = f"GeoCAM {__version__}"
    metadata = {
        "pdf": {"Creator": creator, "CreationDate": None, "ModDate": None},
        "svg": {"Creator": creator, "Date": None},
        "png": {"Software": creator},
    }[fmt]
    with _LOCK, matplotlib.rc_context(_RC):
        fig.savefig(target, format=fmt, dpi=int(dpi), metadata=metadata, facecolor="white")


def render_figure(
    rows: Sequence[FigureRow],
    column_titles: Sequence[str],
    target: str | Path | IO[bytes],
    fmt: str,
    *,
    dpi: int = 300,
    width_in: float = SINGLE_COLUMN_IN,
    cmap: str = "jet",
    show_predictions: bool = True,
    colorbar_label: str = "Grad-CAM",
    explains_predicted: bool = False,
) -> tuple[float, float]:
    """Build and save a figure in one step (under the rc lock); returns its size in inches."""
    import matplotlib

    with _LOCK, matplotlib.rc_context(_RC):
        fig = _build_figure(rows, column_titles, width_in=width_in, cmap=cmap, show_predictions=show_predictions,
                           colorbar_label=colorbar_label, vector=fmt != "png",
                           explains_predicted=explains_predicted)
        save_figure(fig, target, fmt, dpi=dpi)
        size = tuple(float(v) for v in fig.get_size_inches())
    return size  # type: ignore[return-value]
