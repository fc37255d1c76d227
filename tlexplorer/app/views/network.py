"""The network relation view (paper §5.3.3, Fig. 1 C, Fig. 4): similarity matrices and weights.

The neuron similarity matrices of the shown layers sit on the diagonal of one Bokeh figure; the
domains of their rows and columns alternate from layer to layer (layer 1: target rows, source
columns; layer 2: source rows, target columns; ...), so each corner between two consecutive
matrices has the rows and columns of ONE model and holds that model's weights between the two
layers (design.md, "The network relation view's layout"):

```
                 cols: L1 source        cols: L2 target        cols: L3 source
rows: L1 target  [ S1  tgt x src ]      [ W target L1->L2 ]
rows: L2 source  [ W source L1->L2 ]    [ S2  src x tgt ]      [ W source L2->L3 ]
rows: L3 target                         [ W target L2->L3 ]    [ S3  tgt x src ]
```

Every block orders its rows and columns important neurons first; the important x important part
(region 1) shows one cell per pair, the three other regions are summaries drawn in a fixed-size
band: histograms of similarities, box plots (thickness = number of weights, pie = share without a
source correspondence) and a weight histogram. Each corner is captioned with its model ("target
weights", "L1 → L2"); a corner without weights (a residual sum between the layers, ...) is drawn
hatched with the reason. Each layer's name, CKA and A-distance (bars on a track that is the
metric's full scale, with the value) sit in the empty upper-right triangle, on the layer's rows.

The view shows a *window* of consecutive layers (``session.layers``) and fits it to its panel:
cells stay square, the wheel zooms, drag pans, the reset tool fits again; text is sized in cells
(it grows and shrinks with the zoom), so every label keeps to the box it was laid out in. The
default window holds as many layers as fit the plot at :data:`READABLE_UNIT_PX` pixels per cell;
it follows the plot's size until the user moves it.

:func:`layout_network` turns :class:`tlexplorer.aggregates.NetworkBlockData` into plain data frames of
glyph geometry in data units (one unit = one cell; y grows downwards), so the geometry is tested
without a browser; :class:`NetworkView` draws them with one Bokeh figure and keeps the figure
while the session's focus class, layers and switches change only its data sources.
"""
from __future__ import annotations

import logging
import math
import threading
from typing import Any, Sequence

import numpy as np
import pandas as pd
import panel as pn
import param
from bokeh.models import (BoxZoomTool, ColumnDataSource, CustomJS, HoverTool, Label, PanTool,
                          Range1d, ResetTool, SaveTool, TapTool, WheelZoomTool)
from bokeh.core.property.descriptors import UnsetValueError
from bokeh.plotting import figure

from tlexplorer.aggregates import (BoundedMemo, BoxStats, Histogram, NetworkBlockData,
                                   aggregates_for)
from tlexplorer.app.links import batched, held_link, set_shown
from tlexplorer.app.loading import bundle_identity
from tlexplorer.app.state import Session
from tlexplorer.app.text import escape
from tlexplorer.app.wire import json_columns
from tlexplorer.app.views import SOURCE_COLOR, TARGET_COLOR

log = logging.getLogger(__name__)

__all__ = ["FRAME_COLUMNS", "NetworkView", "col_model", "default_layer_window", "layout_network",
           "overflowing_text", "row_model", "short_skip_reason", "similarity_range",
           "window_extent"]

DOMAIN_COLOR = {"source": SOURCE_COLOR, "target": TARGET_COLOR}
#: Light tints of the domain colours (pie wedges without correspondence, label backgrounds).
DOMAIN_TINT = {"source": "#f6d5d5", "target": "#d4e4f3"}
#: Outlines of the blocks: similarity matrices gray, weight corners in their model's colour.
BLOCK_LINE = {"both": "#cfcfcf", "source": "#e9a3a3", "target": "#9dc0e0"}
REGION_FILL = "#f2f2f2"
BAR_FILL = "#8c8c8c"
TRACK_FILL = "#e8e8e8"
SKIPPED_FILL = "#f5f5f5"
NOTE_COLOR = "#333333"
MUTED_COLOR = "#6b6b6b"

# ----------------------------------------------------------------------------- text in cells
#: Text on the canvas is sized in cells (font height = EM x cell), so that it scales with the zoom
#: and stays inside the box the layout gave it. CHAR_EM is a generous average advance of a
#: character of the sans-serif canvas font (digits and lower case are 0.50-0.56 em).
CHAR_EM = 0.6
LINE_EM = 1.25
LABEL_EM = 0.72  # neuron indices
TITLE_EM = 0.95  # "L3" in the corner of each matrix
NOTE_EM = 0.7  # layer names, captions, metric values, notes on skipped pairs
#: Pixels per cell below which canvas text is hidden (unreadable) and above which it stops growing.
TEXT_UNIT_PX = (6.0, 22.0)
#: The default layer window holds as many layers as fit the plot at this many pixels per cell
#: (neuron indices at LABEL_EM are then 8 px: the demo's first three layers at 1440 px wide).
READABLE_UNIT_PX = 11.0
#: ... but at most this many (the paper's Fig. 4 shows five layers) and at least two (one pair).
MAX_WINDOW_LAYERS = 5
#: The plot's size assumed until the browser reports it (px).
ASSUMED_PLOT_PX = (700, 900)
#: The plot area is never taller than what a window shows below the page's header and the view's
#: title bar (CSS), so that the fitted matrices and the detail panels are on screen.
PLOT_MAX_HEIGHT = "max(360px, calc(100vh - 220px))"
#: Margin (cells) around the window when it is fitted to the plot.
FIT_PAD = 0.6

# the layer info block (name, CKA, A-distance) in the empty upper-right triangle
INFO_LABEL_W = 2.9
INFO_TRACK_W = 5.0
INFO_VALUE_W = 2.4
INFO_W = INFO_LABEL_W + INFO_TRACK_W + 0.25 + INFO_VALUE_W
INFO_ROW = 0.8
INFO_H = 4.9
INFO_GAP = 0.8
#: Each metric row: (title, scale text, scale maximum, bars (column, colour, what it measures)).
METRIC_ROWS = (
    ("CKA", "0–1", 1.0, (("cka_target_data", TARGET_COLOR, "on target data"),
                         ("cka_source_data", SOURCE_COLOR, "on source data"))),
    ("A-dist", "0–2", 2.0, (("a_distance_source_model", SOURCE_COLOR, "in the source model"),
                            ("a_distance_target_model", TARGET_COLOR, "in the target model"))),
)

#: Columns of every frame :func:`layout_network` returns (frames keep them even when empty, so that
#: the view's data sources always have the fields its glyphs and tooltips refer to). Text frames
#: carry the box their text must stay in (x0, y0, x1, y1; see :func:`overflowing_text`).
FRAME_COLUMNS: dict[str, list[str]] = {
    "blocks": ["x", "y", "w", "h", "x0", "y0", "x1", "y1", "kind", "model", "layer", "layer_from",
               "layer_to", "row_index", "col_index", "row_model", "col_model", "transposed",
               "cells_x0", "cells_y0", "cells_x1", "cells_y1", "sim_lo", "sim_hi", "line_color"],
    "cells": ["x", "y", "w", "h", "color", "similarity", "layer", "row_model", "row_neuron",
              "col_model", "col_neuron", "row_rank", "col_rank"],
    "regions": ["x", "y", "w", "h", "kind", "region", "model", "layer", "description", "n"],
    "bars": ["x", "y", "w", "h", "kind", "region", "layer", "model", "lo", "hi", "count",
             "description"],
    "squares": ["x", "y", "w", "h", "color", "model", "layer_from", "layer_to", "n1", "n2",
                "value", "count", "rank", "inherited", "inherited_text"],
    "dots": ["x", "y", "radius", "model", "layer_from", "layer_to", "n1", "n2"],
    "boxes": ["x", "y", "w", "h", "model", "layer_from", "layer_to", "region", "side_layer",
              "neuron", "orientation", "q1", "median", "q3", "low", "high", "count", "share_text"],
    "whiskers": ["x0", "y0", "x1", "y1"],
    "medians": ["x0", "y0", "x1", "y1"],
    "wedges": ["x", "y", "radius", "start", "end", "color", "model", "layer_from", "layer_to",
               "side_layer", "neuron", "share_no_source", "count", "part"],
    "labels": ["x", "y", "w", "h", "tx", "ty", "text", "angle", "align", "color", "fill", "model",
               "layer", "neuron", "rank", "axis", "layer_index"],
    "titles": ["x", "y", "text", "layer", "x0", "y0", "x1", "y1"],
    "notes": ["x", "y", "text", "align", "color", "style", "kind", "layer", "model", "layer_from",
              "layer_to", "x0", "y0", "x1", "y1"],
    "hotspots": ["x", "y", "w", "h", "text"],
    "skipped": ["x", "y", "w", "h", "model", "layer_from", "layer_to", "reason", "short"],
    "tracks": ["x", "y", "w", "h", "layer", "metric"],
    "metric_bars": ["x", "y", "w", "h", "color", "layer", "metric", "value", "text"],
    "extent": ["x", "y", "w", "h", "x0", "y0", "x1", "y1"],
}


def row_model(i: int) -> str:
    """Model on the rows of the ``i``-th shown matrix (0-based): target, source, target, ..."""
    return "target" if i % 2 == 0 else "source"


def col_model(i: int) -> str:
    """Model on the columns of the ``i``-th shown matrix: source, target, source, ..."""
    return "source" if i % 2 == 0 else "target"


def text_width(text: str, em: float) -> float:
    """Estimated width (cells) of ``text`` set in a font ``em`` cells high."""
    return len(text) * CHAR_EM * em


def fit_text(variants: Sequence[str], width: float, em: float) -> str:
    """The first of ``variants`` (longest first) that fits ``width`` cells, else ``""``."""
    for text in variants:
        if text_width(text, em) <= width:
            return text
    return ""


def ellipsize(text: str, width: float, em: float) -> str:
    """``text``, or as much of it as fits ``width`` cells followed by "…"."""
    if text_width(text, em) <= width:
        return text
    keep = int(width / (CHAR_EM * em)) - 1
    return text[:keep].rstrip() + "…" if keep > 0 else ""


def wrap_text(text: str, width: float, em: float, max_lines: int) -> list[str]:
    """``text`` broken into at most ``max_lines`` lines of ``width`` cells (the last one ends in
    "…" when the text is longer)."""
    lines: list[str] = []
    line = ""
    for word in text.split():
        candidate = f"{line} {word}".strip()
        if text_width(candidate, em) <= width:
            line = candidate
            continue
        if line:
            lines.append(line)
        line = ellipsize(word, width, em)
    if line:
        lines.append(line)
    if max_lines <= 0:
        return []
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        last = lines[-1]
        while last and text_width(last + "…", em) > width:
            last = last[:-1]
        lines[-1] = last.rstrip() + "…"
    return lines


def short_skip_reason(reason: str) -> str:
    """A few words for a skipped pair's box (the full reason is in its tooltip)."""
    for needle, short in (("residual sum", "residual sum"), ("a sum of several", "residual sum"),
                          ("concatenation", "concatenation"),
                          ("parallel branches", "parallel branches"),
                          ("network's input", "takes the input"),
                          ("channels mix", "channels mix"),
                          ("does not run before", "parallel branches"),
                          ("never reached", "not on the forward path"),
                          ("grouped convolution", "grouped convolution"),
                          ("not consecutive", "not consecutive")):
        if needle in reason:
            return short
    return "not computed"


# ----------------------------------------------------------------------------- colour helpers
_GRAY = np.array([f"#{v:02x}{v:02x}{v:02x}" for v in range(256)], dtype=object)


#: Percentiles of the shown similarities drawn brightest and darkest when stretched: robust to a
#: few outliers (one fc6 pair at 0.37 among 676 at 0.7-0.99 would otherwise keep the rest dark).
STRETCH_PERCENTILES = (2.0, 98.0)


def similarity_range(cells: np.ndarray, stretch: bool) -> tuple[float, float]:
    """The similarities drawn brightest and darkest: 0 and 1 as in the paper, or with ``stretch``
    the 2nd and 98th percentile of ``cells`` (conductance cosines often all lie in 0.8-1, which
    the paper's scale draws nearly black)."""
    values = np.asarray(cells, dtype=np.float64).ravel()
    values = values[np.isfinite(values)]
    if not stretch or values.size == 0:
        return 0.0, 1.0
    lo, hi = (float(v) for v in np.percentile(values, STRETCH_PERCENTILES))
    return (lo, hi) if hi > lo else (lo - 0.5, lo + 0.5)


def brightness_color(frac: np.ndarray) -> np.ndarray:
    """Gray hex colours: 0 -> brightest (near white), 1 -> darkest (paper: similarity 0 brightest)."""
    frac = np.clip(np.nan_to_num(np.asarray(frac, dtype=np.float64), nan=0.0), 0.0, 1.0)
    level = np.round(250 - frac * 225).astype(int)  # 250 .. 25
    return _GRAY[level]


def similarity_legend(lo: float, hi: float, stretched: bool) -> str:
    """HTML of the cells' gray scale with its range, brightest on the left."""
    ramp = ", ".join(brightness_color(np.array([0.0, 1.0])))
    what = ("shown range: 2nd–98th percentile of the similarities in view" if stretched
            else "the paper's linear scale: similarity 0 brightest, 1 darkest")
    digits = 2 if hi - lo >= 0.05 else min(6, 1 + math.ceil(-math.log10(max(hi - lo, 1e-6))))
    return (f"<span title='{escape(what)}' style='white-space:nowrap;font-size:12px'>"
            f"similarity {lo:.{digits}f} <span style='display:inline-block;width:56px;height:10px;"
            f"vertical-align:middle;border:1px solid #bbb;background:linear-gradient(to right, "
            f"{ramp})'></span> {hi:.{digits}f}</span>")


# ----------------------------------------------------------------------------- layer window
def _band_width(hide_unimportant: bool, summary: float, pad: float) -> float:
    return 0.0 if hide_unimportant else pad + summary


def _segments(k: Sequence[int], gap: float, band: float, *, rows: bool) -> list[float]:
    """Length (cells) of each shown layer's rows or columns: labels, region 1, summary band.
    A layer's rows are at least as tall as its info block (name, CKA, A-distance)."""
    seg = [gap + int(n) + band for n in k]
    return [max(s, INFO_H + 0.6) for s in seg] if rows else seg


def window_extent(important: Sequence[int], *, hide_unimportant: bool = False,
                  summary: float = 4.0, gap: float = 2.6, pad: float = 0.35) -> tuple[float, float]:
    """Width and height (cells) of :func:`layout_network` for consecutive layers with
    ``important`` important neurons each (without the fitting margin)."""
    if not len(important):
        return 0.0, 0.0
    band = _band_width(hide_unimportant, summary, pad)
    width = sum(_segments(important, gap, band, rows=False)) + INFO_GAP + INFO_W
    height = sum(_segments(important, gap, band, rows=True))
    return width, height


def default_layer_window(important: Sequence[int], plot_px: tuple[float, float] = ASSUMED_PLOT_PX,
                         *, start: int = 0, unit_px: float = READABLE_UNIT_PX,
                         max_layers: int = MAX_WINDOW_LAYERS, **geometry: Any) -> tuple[int, int]:
    """The layers the network view shows by default: from ``start``, as many as fit.

    Parameters
    ----------
    important : sequence of int
        Important neurons of each of the bundle's layers, in network order.
    plot_px : (float, float)
        Width and height of the plot's drawing area in pixels.
    start : int
        First layer of the window.
    unit_px : float
        Pixels per cell the window must keep (readable neuron indices).
    max_layers : int
        Upper bound on the window's size (at least two layers are shown: one pair of weights).
    **geometry
        ``hide_unimportant``, ``summary``, ``gap``, ``pad`` as for :func:`window_extent`.

    Returns
    -------
    (int, int)
        ``start`` and ``stop``: the window is ``layers[start:stop]``.
    """
    n = len(important)
    start = max(0, min(int(start), max(n - 1, 0)))
    stop = min(n, start + 2)
    while stop < min(n, start + max(int(max_layers), 2)):
        width, height = window_extent(important[start:stop + 1], **geometry)
        if ((width + 2 * FIT_PAD) * unit_px > plot_px[0]
                or (height + 2 * FIT_PAD) * unit_px > plot_px[1]):
            break
        stop += 1
    return start, stop


# ----------------------------------------------------------------------------- overflow check
def _text_box(text: str, x: float, y: float, em: float, align: str, angle: float = 0.0):
    """(x0, y0, x1, y1) the text covers (cells; y downwards), vertically centred on y."""
    w, h = text_width(text, em), em * LINE_EM / 2
    if abs(angle) > 1e-9:  # a column label: rotated, reading upwards from (x, y)
        return x - h, y - w, x + h, y
    x0 = {"left": x, "center": x - w / 2, "right": x - w}[align]
    return x0, y - h, x0 + w, y + h


def overflowing_text(frames: dict[str, pd.DataFrame], tolerance: float = 1e-6) -> list[str]:
    """Texts of the layout that leave the box they were laid out in (empty when all fit).

    Every text frame row carries its box: labels their coloured background, titles the corner of
    their matrix, notes the region they describe (a caption strip, a skipped corner, an info
    block). Widths are estimated with :data:`CHAR_EM`, which errs on the wide side; the canvas
    sizes the text in cells, so what fits here fits at every zoom (below the size cap).

    Parameters
    ----------
    frames : dict of str -> pandas.DataFrame
        From :func:`layout_network`.
    tolerance : float
        Slack in cells.

    Returns
    -------
    list of str
        The texts that overflow, or that lie outside the window (``extent``).
    """
    out = []

    def check(text, box, limits):
        if text and not (box[0] >= limits[0] - tolerance and box[1] >= limits[1] - tolerance
                         and box[2] <= limits[2] + tolerance and box[3] <= limits[3] + tolerance):
            out.append(str(text))

    for r in frames["labels"].itertuples():
        limits = (r.x - r.w / 2, r.y - r.h / 2, r.x + r.w / 2, r.y + r.h / 2)
        check(r.text, _text_box(r.text, r.tx, r.ty, LABEL_EM, r.align, r.angle), limits)
    for r in frames["titles"].itertuples():
        check(r.text, _text_box(r.text, r.x, r.y, TITLE_EM, "center"), (r.x0, r.y0, r.x1, r.y1))
    for r in frames["notes"].itertuples():
        check(r.text, _text_box(r.text, r.x, r.y, NOTE_EM, r.align), (r.x0, r.y0, r.x1, r.y1))
    ext = frames["extent"]
    if len(ext):
        e = ext.iloc[0]
        for name in ("titles", "notes"):
            for r in frames[name].itertuples():
                check(r.text, (r.x0, r.y0, r.x1, r.y1), (e.x0, e.y0, e.x1, e.y1))
    return out


# ----------------------------------------------------------------------------- frames
class _Frame:
    """Column-wise accumulator: ``add(col=array_or_scalar, ...)`` then ``frame()``.

    Scalars are kept as ``(value, n)`` and expanded once at the end, and text columns become
    object columns (pandas' Arrow strings cost more to build than the whole layout).
    """

    def __init__(self, columns: list[str]):
        self.columns = columns
        self.parts: dict[str, list] = {c: [] for c in columns}

    def add(self, _n: int | None = None, **cols: Any) -> None:
        n = _n
        if n is None:
            n = max((len(v) for v in cols.values() if isinstance(v, (np.ndarray, list))), default=1)
        if n == 0:
            return
        for c in self.columns:
            v = cols.get(c, None)
            if isinstance(v, (np.ndarray, list)):
                if len(v) != n:
                    raise ValueError(f"column {c}: {len(v)} values, expected {n}")
                self.parts[c].append(v)
            else:
                self.parts[c].append((v, n))

    def frame(self) -> pd.DataFrame:
        data = {}
        for c in self.columns:
            runs: list = []  # merge consecutive equal scalars: one np.full per run
            for p in self.parts[c]:
                if (isinstance(p, tuple) and runs and isinstance(runs[-1], tuple)
                        and type(runs[-1][0]) is type(p[0]) and runs[-1][0] == p[0]):
                    runs[-1] = (p[0], runs[-1][1] + p[1])
                else:
                    runs.append(p)
            arrays = [np.full(p[1], p[0], dtype=object if p[0] is None else None)
                      if isinstance(p, tuple) else np.asarray(p) for p in runs]
            arr = np.concatenate(arrays) if arrays else np.array([], dtype=object)
            if arr.dtype.kind in "US":
                arr = arr.astype(object)
            data[c] = pd.Series(arr, dtype=arr.dtype, copy=False)
        return pd.DataFrame(data, columns=self.columns, copy=False)


def _hist_bars(out: _Frame, hist: Histogram, x0: float, y0: float, w: float, h: float,
               **meta: Any) -> None:
    """Bars of ``hist`` inside the box (x0, y0, w, h); bins along the box's longer side.

    Horizontal (bins along x): bars grow upwards from the box's bottom edge. Vertical (bins along
    y, value increasing downwards like the rows): bars grow rightwards from the left edge.
    """
    counts = np.asarray(hist.counts, dtype=np.float64)
    bins = counts.size
    if bins == 0:
        return
    m = 0.12
    peak = counts.max() if counts.size and counts.max() > 0 else 1.0
    frac = counts / peak
    lo, hi = hist.edges[:-1], hist.edges[1:]
    keep = counts > 0
    if w >= h:
        bw = (w - 2 * m) / bins
        bh = frac * (h - 2 * m)
        xs = x0 + m + (np.arange(bins) + 0.5) * bw
        ys = y0 + h - m - bh / 2
        ws, hs = np.full(bins, bw * 0.92), bh
    else:
        bh_ = (h - 2 * m) / bins
        bw_ = frac * (w - 2 * m)
        ys = y0 + m + (np.arange(bins) + 0.5) * bh_
        xs = x0 + m + bw_ / 2
        ws, hs = bw_, np.full(bins, bh_ * 0.92)
    desc = [f"{a:.3g} to {b:.3g}: {int(c)}" for a, b, c in zip(lo[keep], hi[keep], counts[keep])]
    out.add(x=xs[keep], y=ys[keep], w=ws[keep], h=hs[keep], lo=lo[keep], hi=hi[keep],
            count=counts[keep].astype(int), description=desc, **meta)


# ----------------------------------------------------------------------------- layout
def layout_network(data: NetworkBlockData, *, hide_unimportant: bool = False,
                   hide_source_weights: bool = False, stretch_similarity: bool = False,
                   summary: float = 4.0, gap: float = 2.6,
                   pad: float = 0.35) -> dict[str, pd.DataFrame]:
    """Glyph geometry of the zig-zag network relation view, in data units.

    One unit is one cell of region 1; x grows to the right and y downwards (the view flips its
    y range). Matrix ``i`` (0-based among the shown layers) has :func:`row_model` ``(i)`` on its rows
    and :func:`col_model` ``(i)`` on its columns; the weight block of the pair ``(i, i+1)`` right of
    matrix ``i`` belongs to ``row_model(i)`` (rows = layer i, columns = layer i+1), the block below
    matrix ``i`` to ``row_model(i+1)`` (rows = layer i+1, columns = layer i, i.e. transposed).
    A corner whose weights the bundle lacks is drawn as a hatched box with the reason
    (``data.skipped``); the strip above every corner names its model and layers.

    Parameters
    ----------
    data : NetworkBlockData
        From :meth:`tlexplorer.aggregates.BundleAggregates.network_block_data`.
    hide_unimportant : bool
        Leave out regions 2-4 of every block (only important x important cells remain).
    hide_source_weights : bool
        Leave out the source model's weight blocks.
    stretch_similarity : bool
        Spread the gray scale over the shown similarities (:func:`similarity_range` of all
        region-1 cells in view) instead of the paper's 0 (brightest) to 1 (darkest).
    summary : float
        Width of the band that holds regions 2-4 (in cells).
    gap : float
        Width of the band before each block that holds the neuron indices (and the captions).
    pad : float
        Space between region 1 and the summary band.

    Returns
    -------
    dict of str -> pandas.DataFrame
        Frames named as in :data:`FRAME_COLUMNS`: ``blocks`` (one row per matrix / weight block,
        with its grid position ``row_index`` / ``col_index``), ``cells``, ``regions``, ``bars``,
        ``squares``, ``dots``, ``boxes``, ``whiskers``, ``medians``, ``wedges``, ``labels``
        (neuron indices), ``titles`` ("L3"), ``notes`` (layer names, captions, metric labels and
        values, skipped-pair notes), ``hotspots`` (hover areas with a full text), ``skipped``,
        ``tracks`` and ``metric_bars`` (CKA / A-distance) and ``extent`` (one row: the window,
        x0, y0, x1, y1). Similarity blocks carry the similarities drawn brightest and darkest
        (sim_lo, sim_hi).
    """
    F = {name: _Frame(cols) for name, cols in FRAME_COLUMNS.items()}
    layers = list(data.layers)
    n = len(layers)
    band = _band_width(hide_unimportant, summary, pad)

    def imp(model: str, layer: str) -> np.ndarray:
        return np.asarray(data.rankings[(model, layer)].important, dtype=np.int64)

    k_row = [len(imp(row_model(i), l)) for i, l in enumerate(layers)]
    k_col = [len(imp(col_model(i), l)) for i, l in enumerate(layers)]
    x_start = np.concatenate([[0.0], np.cumsum(_segments(k_col, gap, band, rows=False))])
    y_start = np.concatenate([[0.0], np.cumsum(_segments(k_row, gap, band, rows=True))])
    cx = [x_start[i] + gap for i in range(n)]  # left of region-1 columns of matrix i
    cy = [y_start[i] + gap for i in range(n)]  # top of region-1 rows of matrix i
    shown = [np.asarray(data.similarity[l].cells, dtype=np.float64).ravel() for l in layers]
    sim_range = similarity_range(np.concatenate(shown) if shown else np.empty(0),
                                 stretch_similarity)
    geometry = dict(band=band, summary=summary, gap=gap, pad=pad)

    for i, layer in enumerate(layers):
        _similarity_matrix(F, data, i, layer, cx[i], cy[i], x_start[i], y_start[i], sim_range,
                           imp(row_model(i), layer), imp(col_model(i), layer), **geometry)

    for i in range(n - 1):
        lf, lt = layers[i], layers[i + 1]
        li = (data.layer_index.get(lf, i), data.layer_index.get(lt, i + 1))
        corners = ((row_model(i), False, cx[i + 1], cy[i], k_row[i], k_col[i + 1], i, i + 1),
                   (row_model(i + 1), True, cx[i], cy[i + 1], k_row[i + 1], k_col[i], i + 1, i))
        for model, transposed, rx0, ry0, kr, kc, row_idx, col_idx in corners:
            if hide_source_weights and model == "source":
                continue
            _corner_caption(F, model, lf, lt, li, rx0, ry0, kc + band, gap)
            wb = data.weights.get((model, lf, lt))
            if wb is None:
                reason = data.skipped.get((lf, lt), "the bundle has no weights for this pair")
                _skipped_corner(F, model, lf, lt, reason, rx0, ry0, kc + band, kr + band)
                continue
            _weight_block(F, wb, model, lf, lt, transposed, rx0, ry0, row_idx, col_idx,
                          **geometry)

    x_end = float(x_start[-1])
    for i, layer in enumerate(layers):
        # right of the weight block right of matrix i (right of matrix i for the last layer)
        mx = float(x_start[min(i + 2, n)]) + INFO_GAP
        _layer_info(F, layer, data.layer_index.get(layer, i), data.metrics.get(layer) or {},
                    mx, float(y_start[i]) + 0.3)
        x_end = max(x_end, mx + INFO_W)
    y_end = float(y_start[-1]) if n else 0.0
    F["extent"].add(_n=1, x=x_end / 2, y=y_end / 2, w=x_end, h=y_end, x0=0.0, y0=0.0, x1=x_end,
                    y1=y_end)
    return {name: fr.frame() for name, fr in F.items()}


def _similarity_matrix(F: dict, data: NetworkBlockData, i: int, layer: str, cx: float, cy: float,
                       x_start: float, y_start: float, sim_range: tuple[float, float],
                       rows_n: np.ndarray, cols_n: np.ndarray, *, band: float, summary: float,
                       gap: float, pad: float) -> None:
    """Matrix ``i``: region-1 cells, neuron indices, the "L3" title and regions 2-4."""
    rm, cm = row_model(i), col_model(i)
    sb = data.similarity[layer]
    cells = sb.cells.T if rm == "target" else sb.cells
    kr, kc = len(rows_n), len(cols_n)
    rank_r = data.rankings[(rm, layer)].rank
    rank_c = data.rankings[(cm, layer)].rank
    sim_lo, sim_hi = sim_range
    F["blocks"].add(
        _n=1, x=cx + (kc + band) / 2, y=cy + (kr + band) / 2, w=kc + band, h=kr + band,
        x0=cx, y0=cy, x1=cx + kc + band, y1=cy + kr + band, kind="similarity",
        model="both", layer=layer, layer_from=layer, layer_to=layer, row_index=i, col_index=i,
        row_model=rm, col_model=cm, transposed=False, cells_x0=cx, cells_y0=cy,
        cells_x1=cx + kc, cells_y1=cy + kr, sim_lo=sim_lo, sim_hi=sim_hi,
        line_color=BLOCK_LINE["both"])
    if kr and kc:
        R, C = np.meshgrid(np.arange(kr), np.arange(kc), indexing="ij")
        R, C = R.ravel(), C.ravel()
        sim = np.asarray(cells, dtype=np.float64)[R, C]
        F["cells"].add(
            x=cx + C + 0.5, y=cy + R + 0.5, w=np.full(R.size, 0.94),
            h=np.full(R.size, 0.94), color=brightness_color((sim - sim_lo) / (sim_hi - sim_lo)),
            similarity=sim, layer=layer,
            row_model=rm, row_neuron=rows_n[R], col_model=cm, col_neuron=cols_n[C],
            row_rank=rank_r[rows_n[R]], col_rank=rank_c[cols_n[C]])
    # neuron indices: rows on the left, columns on top, coloured by domain
    li = data.layer_index.get(layer, i)
    F["labels"].add(
        x=np.full(kr, cx - gap / 2 - 0.05), y=cy + np.arange(kr) + 0.5,
        w=np.full(kr, gap - 0.3), h=np.full(kr, 0.9), tx=np.full(kr, cx - 0.25),
        ty=cy + np.arange(kr) + 0.5, text=[str(int(v)) for v in rows_n], angle=0.0,
        align="right", color=DOMAIN_COLOR[rm], fill=DOMAIN_TINT[rm], model=rm, layer=layer,
        neuron=rows_n, rank=rank_r[rows_n], axis="row", layer_index=li)
    F["labels"].add(
        x=cx + np.arange(kc) + 0.5, y=np.full(kc, cy - gap / 2 - 0.05),
        w=np.full(kc, 0.9), h=np.full(kc, gap - 0.3), tx=cx + np.arange(kc) + 0.5,
        ty=np.full(kc, cy - 0.25), text=[str(int(v)) for v in cols_n], angle=math.pi / 2,
        align="left", color=DOMAIN_COLOR[cm], fill=DOMAIN_TINT[cm], model=cm, layer=layer,
        neuron=cols_n, rank=rank_c[cols_n], axis="col", layer_index=li)
    F["titles"].add(_n=1, x=x_start + gap / 2, y=y_start + gap / 2, text=f"L{li + 1}",
                    layer=layer, x0=x_start, y0=y_start, x1=cx, y1=cy)
    F["hotspots"].add(_n=1, x=x_start + gap / 2, y=y_start + gap / 2, w=gap, h=gap,
                      text=f"L{li + 1}: {layer} (rows {rm}, columns {cm} neurons)")
    if not band:
        return
    s0x, s0y = cx + kc + pad, cy + kr + pad
    h_r2 = sb.hist_os_it if rm == "target" else sb.hist_is_ot
    h_r3 = sb.hist_is_ot if rm == "target" else sb.hist_os_it
    regions = [
        ("2", h_r2, s0x, cy, summary, kr, f"important {rm} x other {cm} neurons"),
        ("3", h_r3, cx, s0y, kc, summary, f"other {rm} x important {cm} neurons"),
        ("4", sb.hist_os_ot, s0x, s0y, summary, summary, f"other {rm} x other {cm} neurons"),
    ]
    for region, hist, x0, y0, w, h, what in regions:
        if w <= 0 or h <= 0:
            continue
        F["regions"].add(_n=1, x=x0 + w / 2, y=y0 + h / 2, w=w, h=h, kind="similarity",
                         region=region, model="both", layer=layer, n=int(hist.n),
                         description=f"similarities of {what}")
        _hist_bars(F["bars"], hist, x0, y0, w, h, kind="similarity", region=region,
                   layer=layer, model="both")


def _corner_caption(F: dict, model: str, lf: str, lt: str, li: tuple[int, int], x0: float,
                    y_top: float, width: float, gap: float) -> None:
    """The strip above a weight corner: which model's weights, between which layers.

    The strip may reach ``gap`` cells left of the corner (empty: the neuron indices there belong
    to other rows); each line starts at the corner's left edge when it fits, further left if not.
    """
    box = dict(x0=x0 - gap, y0=y_top - gap, x1=x0 + width, y1=y_top)
    room = width + gap - 0.2
    meta = dict(model=model, layer_from=lf, layer_to=lt, layer=f"{lf}->{lt}", kind="caption",
                align="left", **box)
    first = fit_text([f"{model} weights", f"{model} W", model[0].upper()], room, NOTE_EM)
    second = fit_text([f"L{li[0] + 1} → L{li[1] + 1}", f"{li[0] + 1}→{li[1] + 1}"], room, NOTE_EM)
    line = NOTE_EM * LINE_EM
    y_first = y_top - gap + (gap - 2 * line) / 2 + line / 2
    for text, y, color, style in ((first, y_first, DOMAIN_COLOR[model], "bold"),
                                  (second, y_first + line, MUTED_COLOR, "normal")):
        if text:
            x = max(box["x0"] + 0.1, min(x0 + 0.1, box["x1"] - 0.1 - text_width(text, NOTE_EM)))
            F["notes"].add(_n=1, x=x, y=y, text=text, color=color, style=style, **meta)
    F["hotspots"].add(_n=1, x=x0 + width / 2, y=y_top - gap / 2, w=width, h=gap,
                      text=f"{model} model's weights from {lf} to {lt}")


def _skipped_corner(F: dict, model: str, lf: str, lt: str, reason: str, x0: float, y0: float,
                    w: float, h: float) -> None:
    """A corner without weights: a hatched box that says why."""
    short = short_skip_reason(reason)
    F["skipped"].add(_n=1, x=x0 + w / 2, y=y0 + h / 2, w=w, h=h, model=model, layer_from=lf,
                     layer_to=lt, reason=reason, short=short)
    line = NOTE_EM * LINE_EM
    lines = wrap_text(f"no weights: {short}", w - 0.4, NOTE_EM, int((h - 0.4) // line))
    top = y0 + (h - len(lines) * line) / 2 + line / 2
    for j, text in enumerate(lines):
        F["notes"].add(_n=1, x=x0 + w / 2, y=top + j * line, text=text, align="center",
                       color=MUTED_COLOR, style="italic", kind="skipped", layer=f"{lf}->{lt}",
                       model=model, layer_from=lf, layer_to=lt, x0=x0, y0=y0, x1=x0 + w,
                       y1=y0 + h)


def _weight_block(F: dict, wb: Any, model: str, lf: str, lt: str, transposed: bool, rx0: float,
                  ry0: float, row_idx: int, col_idx: int, *, band: float, summary: float,
                  gap: float, pad: float) -> None:
    """One model's weights between two layers (Fig. 4 C) at (rx0, ry0)."""
    k1, k2 = len(wb.imp_from), len(wb.imp_to)
    kr, kc = (k2, k1) if transposed else (k1, k2)
    F["blocks"].add(
        _n=1, x=rx0 + (kc + band) / 2, y=ry0 + (kr + band) / 2, w=kc + band, h=kr + band,
        x0=rx0, y0=ry0, x1=rx0 + kc + band, y1=ry0 + kr + band, kind="weights",
        model=model, layer=f"{lf}->{lt}", layer_from=lf, layer_to=lt, row_index=row_idx,
        col_index=col_idx, row_model=model, col_model=model, transposed=transposed,
        cells_x0=rx0, cells_y0=ry0, cells_x1=rx0 + kc, cells_y1=ry0 + kr,
        line_color=BLOCK_LINE[model])
    lo, hi = wb.value_range
    span = hi - lo if hi > lo else 1.0
    if k1 and k2:
        A, B = np.meshgrid(np.arange(k1), np.arange(k2), indexing="ij")
        A, B = A.ravel(), B.ravel()
        vals = wb.values[A, B].astype(np.float64)
        xs = rx0 + (A if transposed else B) + 0.5
        ys = ry0 + (B if transposed else A) + 0.5
        inh = wb.inherited[A, B].astype(int)
        inh_text = np.where(inh == 1, "yes (important in source)",
                            np.where(inh == 0, "no source correspondence",
                                     np.where(wb.count[A, B] > 0, "n/a (source model)",
                                              "not an important weight")))
        F["squares"].add(
            x=xs, y=ys, w=np.full(A.size, 0.78), h=np.full(A.size, 0.78),
            color=brightness_color((vals - lo) / span), model=model, layer_from=lf,
            layer_to=lt, n1=wb.imp_from[A], n2=wb.imp_to[B], value=vals,
            count=wb.count[A, B], rank=wb.rank[A, B], inherited=inh,
            inherited_text=list(inh_text))
        dot = inh == 1
        if model == "target" and dot.any():
            F["dots"].add(x=xs[dot], y=ys[dot], radius=np.full(int(dot.sum()), 0.17),
                          model=model, layer_from=lf, layer_to=lt,
                          n1=wb.imp_from[A[dot]], n2=wb.imp_to[B[dot]])
    if not band:
        return
    s_row_y0 = ry0 + kr + pad  # band below region 1 (rows of non-important neurons)
    s_col_x0 = rx0 + kc + pad  # band right of region 1 (columns of non-important)
    max_count = max(int(wb.box_from.count.max(initial=0)), int(wb.box_to.count.max(initial=0)), 1)
    # box_from: per important n1; box_to: per important n2
    for stats, side_layer, side_neurons, region_other in (
            (wb.box_from, lf, wb.imp_from, lt), (wb.box_to, lt, wb.imp_to, lf)):
        on_rows = (side_layer == lf) != transposed  # the important neuron indexes rows
        if on_rows:  # horizontal boxes in the band right of region 1
            region = "2"
            x0b, y0b, wr, hr = s_col_x0, ry0, summary, kr
        else:  # vertical boxes in the band below region 1
            region = "3"
            x0b, y0b, wr, hr = rx0, s_row_y0, kc, summary
        if wr > 0 and hr > 0:
            F["regions"].add(
                _n=1, x=x0b + wr / 2, y=y0b + hr / 2, w=wr, h=hr, kind="weights",
                region=region, model=model, layer=f"{lf}->{lt}", n=int(stats.count.sum()),
                description=(f"important weights joining each important {side_layer} "
                             f"neuron to other {region_other} neurons"))
        _boxes(F, stats, side_neurons, on_rows=on_rows, band0=s_col_x0 if on_rows
               else s_row_y0, origin=ry0 if on_rows else rx0, summary=summary, lo=lo,
               hi=hi, max_count=max_count, model=model, lf=lf, lt=lt,
               side_layer=side_layer, region=region)
    F["regions"].add(
        _n=1, x=s_col_x0 + summary / 2, y=s_row_y0 + summary / 2, w=summary, h=summary,
        kind="weights", region="4", model=model, layer=f"{lf}->{lt}",
        n=int(wb.hist_other.n),
        description=(f"all weights joining other {lf} to other {lt} neurons "
                     f"({wb.n_important_other} important)"))
    _hist_bars(F["bars"], wb.hist_other, s_col_x0, s_row_y0, summary, summary,
               kind="weights", region="4", layer=f"{lf}->{lt}", model=model)


def _layer_info(F: dict, layer: str, layer_index: int, metrics: dict, x0: float,
                y0: float) -> None:
    """The layer's name, and its CKA and A-distance bars with values and scales, at (x0, y0)."""
    box = dict(x0=x0, y0=y0, x1=x0 + INFO_W, y1=y0 + INFO_H)
    name = f"L{layer_index + 1} {layer}"
    meta = dict(layer=layer, model="both", layer_from=layer, layer_to=layer, **box)
    F["notes"].add(_n=1, x=x0, y=y0 + 0.55, text=ellipsize(name, INFO_W, NOTE_EM), align="left",
                   color=NOTE_COLOR, style="bold", kind="layer-name", **meta)
    F["hotspots"].add(_n=1, x=x0 + INFO_W / 2, y=y0 + 0.55, w=INFO_W, h=1.0, text=name)
    track_x0 = x0 + INFO_LABEL_W
    y = y0 + 1.5
    for title, scale_text, scale, bars in METRIC_ROWS:
        values = [(key, color, what, metrics.get(key)) for key, color, what in bars]
        values = [(k, c, w, float(v)) for k, c, w, v in values
                  if v is not None and not (isinstance(v, float) and math.isnan(v))]
        if values:
            F["notes"].add(_n=1, x=x0, y=y, text=title, align="left", color=NOTE_COLOR,
                           style="normal", kind="metric-label", **meta)
            F["notes"].add(_n=1, x=x0, y=y + INFO_ROW, text=scale_text, align="left",
                           color=MUTED_COLOR, style="normal", kind="metric-scale", **meta)
        for b, (key, color, what, v) in enumerate(values):
            yy = y + b * INFO_ROW
            length = max(min(v / scale, 1.0), 0.0) * INFO_TRACK_W
            F["tracks"].add(_n=1, x=track_x0 + INFO_TRACK_W / 2, y=yy, w=INFO_TRACK_W, h=0.56,
                            layer=layer, metric=key)
            F["metric_bars"].add(
                _n=1, x=track_x0 + length / 2, y=yy, w=max(length, 0.05), h=0.56, color=color,
                layer=layer, metric=key, value=v,
                text=f"{title} {what}: {v:.3f} (scale {scale_text})")
            F["notes"].add(_n=1, x=track_x0 + INFO_TRACK_W + 0.25, y=yy, text=f"{v:.3f}",
                           align="left", color=NOTE_COLOR, style="normal", kind="metric-value",
                           **meta)
        y += 2 * INFO_ROW + 0.35


def _boxes(F: dict, stats: BoxStats, neurons: np.ndarray, *, on_rows: bool, band0: float,
           origin: float, summary: float, lo: float, hi: float, max_count: int, model: str,
           lf: str, lt: str, side_layer: str, region: str) -> None:
    """Box plots (and pies on the target side) of one summary region of a weight block."""
    k = len(neurons)
    if k == 0:
        return
    span = hi - lo if hi > lo else 1.0
    a0, a1 = band0 + 0.15, band0 + summary - 1.15  # value axis inside the band; pie after it

    def pos(v):
        frac = np.clip((np.asarray(v, dtype=np.float64) - lo) / span, 0.0, 1.0)
        return a0 + frac * (a1 - a0) if on_rows else a1 - frac * (a1 - a0)  # vertical: up = high

    has = stats.count > 0
    idx = np.flatnonzero(has)
    if idx.size == 0:
        return
    centre = origin + idx + 0.5
    thick = 0.15 + 0.7 * stats.count[idx] / max_count
    q1, q3 = pos(stats.q1[idx]), pos(stats.q3[idx])
    med, low, high = pos(stats.median[idx]), pos(stats.low[idx]), pos(stats.high[idx])
    box_len = np.maximum(np.abs(q3 - q1), 0.06)
    box_mid = (q1 + q3) / 2
    share = stats.share_no_source[idx]
    share_text = ["–" if np.isnan(s) else f"{s:.0%}" for s in share]
    common = dict(model=model, layer_from=lf, layer_to=lt, region=region, side_layer=side_layer,
                  neuron=neurons[idx], q1=stats.q1[idx], median=stats.median[idx],
                  q3=stats.q3[idx], low=stats.low[idx], high=stats.high[idx],
                  count=stats.count[idx], share_text=share_text)
    if on_rows:
        F["boxes"].add(x=box_mid, y=centre, w=box_len, h=thick, orientation="horizontal", **common)
        F["whiskers"].add(x0=low, y0=centre, x1=high, y1=centre)
        F["medians"].add(x0=med, y0=centre - thick / 2, x1=med, y1=centre + thick / 2)
    else:
        F["boxes"].add(x=centre, y=box_mid, w=thick, h=box_len, orientation="vertical", **common)
        F["whiskers"].add(x0=centre, y0=low, x1=centre, y1=high)
        F["medians"].add(x0=centre - thick / 2, y0=med, x1=centre + thick / 2, y1=med)
    if model != "target":
        return  # the source side has no correspondence pies (§5.3.3)
    pie_c = band0 + summary - 0.55
    ok = ~np.isnan(share)
    if not ok.any():
        return
    j, s, c = idx[ok], share[ok], centre[ok]
    px, py = (np.full(len(j), pie_c), c) if on_rows else (c, np.full(len(j), pie_c))
    turn = 2 * math.pi * (1.0 - s)  # the inherited share, red, from angle 0
    for part, start, end, color in (("inherited", np.zeros(len(j)), turn, SOURCE_COLOR),
                                    ("no source correspondence", turn,
                                     np.full(len(j), 2 * math.pi), DOMAIN_TINT["target"])):
        keep = end - start > 1e-9
        if not keep.any():
            continue
        F["wedges"].add(x=px[keep], y=py[keep], radius=np.full(int(keep.sum()), 0.36),
                        start=start[keep], end=end[keep], color=color, model=model,
                        layer_from=lf, layer_to=lt, side_layer=side_layer,
                        neuron=neurons[j[keep]], share_no_source=s[keep],
                        count=stats.count[j[keep]], part=part)


# ----------------------------------------------------------------------------- the view
def _in_server_session() -> bool:
    doc = pn.state.curdoc
    return doc is not None and getattr(doc, "session_context", None) is not None


#: Fits the window (the one row of the ``extent`` source) into the plot with square cells, centred
#: across and at the top; the reset tool returns to this fit. Runs in the browser when the window
#: or the plot's size change; a new class with the same window keeps the user's zoom.
_FIT_JS = """
const d = win.data;
if (!d.x0 || d.x0.length == 0) { return; }
if (fig.properties.inner_width.is_unset || fig.properties.inner_height.is_unset) { return; }
const W = fig.inner_width, H = fig.inner_height;
if (!(W > 0) || !(H > 0)) { return; }
const x0 = d.x0[0] - pad, x1 = d.x1[0] + pad, y0 = d.y0[0] - pad, y1 = d.y1[0] + pad;
const key = [x0, x1, y0, y1, W, H].join(",");
if (win.__tlx_fitted === key) { return; }
win.__tlx_fitted = key;
const unit = Math.min(W / (x1 - x0), H / (y1 - y0));
const cx = (x0 + x1) / 2, half = W / unit / 2;
const bottom = y0 + H / unit;
xr.setv({start: cx - half, end: cx + half, reset_start: cx - half, reset_end: cx + half});
yr.setv({start: bottom, end: y0, reset_start: bottom, reset_end: y0});
"""

#: Sizes the canvas text in cells: font px = EM x (pixels per cell), hidden below and capped above
#: TEXT_UNIT_PX. Runs in the browser whenever the x range or the plot's width change.
_TEXT_SIZE_JS = """
if (fig.properties.inner_width.is_unset) { return; }
const span = Math.abs(xr.end - xr.start);
const width = fig.inner_width;
if (!(span > 0) || !(width > 0)) { return; }
const unit = width / span;
const alpha = unit >= limits[0] ? 1.0 : 0.0;
const scale = Math.min(unit, limits[1]);
for (let i = 0; i < glyphs.length; i++) {
  const glyph = glyphs[i];
  const size = (Math.round(ems[i] * scale * 10) / 10) + "px";
  if (glyph.__tlx_size === size && glyph.__tlx_alpha === alpha) { continue; }
  glyph.__tlx_size = size;
  glyph.__tlx_alpha = alpha;
  glyph.text_font_size = {value: size};
  glyph.text_alpha = {value: alpha};
}
"""


def _px(em: float) -> str:
    return f"{round(em * READABLE_UNIT_PX, 1)}px"


#: Laid-out classes (with their window and switches) this process keeps for every session: a class
#: shown before, or laid out ahead by :meth:`NetworkView._lay_out_ahead`, costs no computation.
RECENT_LAYOUTS = 48


#: Seconds after a class is shown before the other classes are laid out ahead (a page is built
#: meanwhile: the work would compete with it for the interpreter).
AHEAD_DELAY_S = 3.0
#: Longest wait for the server's page builds to end before the look-ahead is given up.
AHEAD_MAX_WAIT_S = 60.0
_LAYOUTS = BoundedMemo(RECENT_LAYOUTS)  # (bundle, class, layers, switches) -> computed result
_AHEAD: set = set()  # (bundle, layers, switches) being laid out ahead now
_AHEAD_LOCK = threading.Lock()


class NetworkView(pn.viewable.Viewer):
    """The network relation view of the session's focus class (paper §5.3.3).

    Build it with ``NetworkView(session=session)``. Its title bar has the class selector, the layer
    window (a range slider and buttons that move it), the two switches of the paper, the
    similarity scale (the shown range, or the paper's 0 to 1) with its range and a legend. The
    figure shows the zig-zag layout of :func:`layout_network` for the window ``session.layers``,
    fitted to the panel; clicking a neuron index sets ``session.selected_neuron`` and opens the
    neuron detail panel, clicking a weight square sets ``session.selected_weight`` and opens the
    weight detail panel (``css_classes=["tlx-neuron-detail"]`` / ``["tlx-weight-detail"]``), both
    floating over the plot's empty lower-left corner so that the matrix keeps its size.

    While the session shows all layers (its default), the view narrows ``session.layers`` to
    :func:`default_layer_window` and keeps it fitted to the plot's size as the browser reports it
    (``auto_window``), until the user moves the window.
    """

    session = param.ClassSelector(class_=Session, doc="The browser session's state")
    data = param.Parameter(default=None, constant=True,
                           doc="The NetworkBlockData drawn now (None before the first update)")
    frames = param.Dict(default={}, constant=True, doc="The layout frames drawn now")
    updating = param.Boolean(default=False, constant=True,
                             doc="True while aggregates are computed in the background")
    auto_window = param.Boolean(default=True, constant=True,
                                doc="The layer window is the default one and follows the plot's "
                                    "size (False once the user or the URL chose layers)")
    plot_px = param.NumericTuple(default=ASSUMED_PLOT_PX, length=2, constant=True,
                                 doc="Width and height (px) of the plot's drawing area, as the "
                                     "browser last reported them")

    def __init__(self, **params: Any):
        super().__init__(**params)
        if self.session is None or self.session.bundle is None:
            raise ValueError("NetworkView needs a session with a bundle: NetworkView(session=s)")
        self._agg = aggregates_for(self.session.bundle)
        self._generation = 0
        self._lock = threading.Lock()
        self._job = None
        self._setting_window = False
        self._identity = bundle_identity(self.session.bundle)
        self._sent: dict[str, dict] = {}  # the columns each source last sent to the browser
        # named: scripts and benchmarks find them in the browser's document
        self._sources = {name: ColumnDataSource(data={c: [] for c in cols},
                                                name=f"tlx-network-{name}")
                         for name, cols in FRAME_COLUMNS.items()}
        self._figure = self._build_figure()
        self._plot_pane = pn.pane.Bokeh(self._figure, sizing_mode="stretch_both", min_height=360,
                                        margin=0)
        self._scale_legend = pn.pane.HTML(similarity_legend(0.0, 1.0, False), margin=(14, 5, 5, 5),
                                          css_classes=["tlx-similarity-scale"])
        self._layout = None
        from tlexplorer.app.views.neuron_detail import NeuronDetail, WeightDetail
        self.neuron_detail = NeuronDetail(session=self.session)
        self.weight_detail = WeightDetail(session=self.session)
        self._important = self._important_counts()
        self._choose_first_window()
        self.session.param.watch(self._on_layers, ["layers"])
        self.session.param.watch(self._on_data_params, ["focus_class", "layers"])
        self.session.param.watch(self._on_toggles, ["hide_unimportant", "hide_source_weights",
                                                    "stretch_similarity"])
        self._update_data()

    # ------------------------------------------------------------------ the layer window
    def _important_counts(self) -> list[int]:
        """Important neurons of every layer of the bundle (rows or columns of its matrix)."""
        cls = self.session.focus_class or "__all__"
        counts = []
        for layer in self.session.layer_names:
            try:
                counts.append(max(len(self._agg.neuron_ranking(m, cls, layer).important)
                                  for m in ("source", "target")))
            except Exception:  # a layer without rankings: estimate from its size
                size = self._agg.layer_sizes.get(layer, 10)
                counts.append(max(1, math.ceil(size * self._agg.neuron_fraction)))
        return counts

    def window(self) -> tuple[int, int]:
        """The shown layers as ``(start, stop)`` indices into the bundle's layers."""
        names = self.session.layer_names
        index = [names.index(l) for l in (self.session.layers or names) if l in names]
        return (min(index), max(index) + 1) if index else (0, len(names))

    def _set_window(self, start: int, stop: int) -> None:
        names = self.session.layer_names
        if names[start:stop] == list(self.session.layers):
            return
        self._setting_window = True
        try:
            self.session.layers = names[start:stop]
        finally:
            self._setting_window = False

    def _default_window(self, start: int = 0) -> tuple[int, int]:
        return default_layer_window(self._important, self.plot_px, start=start,
                                    hide_unimportant=bool(self.session.hide_unimportant))

    def _choose_first_window(self) -> None:
        s = self.session
        if s.layers and list(s.layers) != s.layer_names:  # chosen (the URL): keep it
            with param.edit_constant(self):
                self.auto_window = False
            return
        self._set_window(*self._default_window())

    def _on_layers(self, *events: Any) -> None:
        if not self._setting_window and self.auto_window:
            with param.edit_constant(self):
                self.auto_window = False  # the user chose: the window stays where they put it

    def fit_window_to(self, width_px: float, height_px: float) -> None:
        """The plot's drawing area is ``width_px`` x ``height_px``: the default window follows it."""
        if not (width_px and height_px and width_px > 0 and height_px > 0):
            return
        with param.edit_constant(self):
            self.plot_px = (float(width_px), float(height_px))
        if self.auto_window:
            self._set_window(*self._default_window(self.window()[0]))

    def move_window(self, step: int) -> None:
        """Move the layer window by ``step`` layers (keeping its size), as the ◀ ▶ buttons do."""
        start, stop = self.window()
        size, names = stop - start, self.session.layer_names
        start = max(0, min(start + int(step), len(names) - size))
        self.session.layers = names[start:start + size]

    def _on_plot_size(self, attr: str, old: Any, new: Any) -> None:
        """Bokeh callback: the browser reported the plot's size (one side may come first)."""
        try:
            width, height = self._figure.inner_width, self._figure.inner_height
        except UnsetValueError:
            return
        self.fit_window_to(width, height)

    # ------------------------------------------------------------------ bokeh figure
    def _build_figure(self):
        # y grows downwards (rows); the browser fits both ranges to the window (_FIT_JS)
        x_range, y_range = Range1d(0, 10), Range1d(10, 0)
        wheel = WheelZoomTool()
        p = figure(
            tools=[PanTool(), wheel, BoxZoomTool(match_aspect=True), ResetTool(), SaveTool()],
            toolbar_location="above", x_range=x_range, y_range=y_range, min_border=4,
            sizing_mode="stretch_both", min_width=280, min_height=300, output_backend="canvas",
            name="tlx-network-figure")
        p.toolbar.logo = None
        p.toolbar.active_scroll = wheel
        p.axis.visible = False
        p.grid.visible = False
        p.outline_line_color = None
        S = self._sources
        fit = CustomJS(args=dict(fig=p, xr=x_range, yr=y_range, win=S["extent"], pad=FIT_PAD),
                       code=_FIT_JS)
        S["extent"].js_on_change("data", fit)
        p.js_on_change("inner_width", fit)
        p.js_on_change("inner_height", fit)
        p.rect("x", "y", "w", "h", source=S["blocks"], fill_color=None, line_color="line_color",
               line_width=1)
        r_skipped = p.rect("x", "y", "w", "h", source=S["skipped"], fill_color=SKIPPED_FILL,
                           line_color="#b0b0b0", line_dash="dashed", hatch_pattern="/",
                           hatch_color="#d0d0d0", hatch_alpha=0.6, hatch_scale=8)
        r_regions = p.rect("x", "y", "w", "h", source=S["regions"], fill_color=REGION_FILL,
                           line_color="#d9d9d9")
        r_bars = p.rect("x", "y", "w", "h", source=S["bars"], fill_color=BAR_FILL,
                        line_color=None)
        r_cells = p.rect("x", "y", "w", "h", source=S["cells"], fill_color="color",
                         line_color=None)
        r_squares = p.rect("x", "y", "w", "h", source=S["squares"], fill_color="color",
                           line_color="#bdbdbd", line_width=0.5,
                           selection_line_color="#000000", nonselection_fill_alpha=1.0,
                           nonselection_line_alpha=1.0)
        p.circle("x", "y", radius="radius", source=S["dots"], fill_color=SOURCE_COLOR,
                 line_color=None)
        p.segment("x0", "y0", "x1", "y1", source=S["whiskers"], line_color="#555555",
                  line_width=1)
        r_boxes = p.rect("x", "y", "w", "h", source=S["boxes"], fill_color="#bdbdbd",
                         line_color="#444444", line_width=0.8)
        p.segment("x0", "y0", "x1", "y1", source=S["medians"], line_color="#111111",
                  line_width=1.5)
        r_wedges = p.wedge("x", "y", radius="radius", start_angle="start", end_angle="end",
                           source=S["wedges"], fill_color="color", line_color="#777777",
                           line_width=0.4)
        r_labels = p.rect("x", "y", "w", "h", source=S["labels"], fill_color="fill",
                          fill_alpha=0.55, line_color=None, nonselection_fill_alpha=0.55,
                          selection_fill_alpha=0.9)
        p.rect("x", "y", "w", "h", source=S["tracks"], fill_color=TRACK_FILL, line_color=None)
        r_mbars = p.rect("x", "y", "w", "h", source=S["metric_bars"], fill_color="color",
                         line_color=None, fill_alpha=0.85)
        r_hot = p.rect("x", "y", "w", "h", source=S["hotspots"], fill_alpha=0, line_alpha=0)
        t_labels = p.text("tx", "ty", text="text", angle="angle", text_align="align",
                          text_baseline="middle", text_color="color",
                          text_font_size=_px(LABEL_EM), source=S["labels"])
        t_titles = p.text("x", "y", text="text", text_align="center", text_baseline="middle",
                          text_font_size=_px(TITLE_EM), text_font_style="bold",
                          text_color=NOTE_COLOR, source=S["titles"])
        t_notes = p.text("x", "y", text="text", text_align="align", text_baseline="middle",
                         text_font_size=_px(NOTE_EM), text_font_style="style",
                         text_color="color", source=S["notes"])
        sizes = CustomJS(args=dict(fig=p, xr=x_range, limits=list(TEXT_UNIT_PX),
                                   glyphs=[t_labels.glyph, t_titles.glyph, t_notes.glyph],
                                   ems=[LABEL_EM, TITLE_EM, NOTE_EM]), code=_TEXT_SIZE_JS)
        x_range.js_on_change("start", sizes)
        x_range.js_on_change("end", sizes)
        p.js_on_change("inner_width", sizes)
        p.on_change("inner_width", self._on_plot_size)
        p.on_change("inner_height", self._on_plot_size)

        def hover(renderer, tooltips):
            p.add_tools(HoverTool(renderers=[renderer], tooltips=tooltips,
                                  point_policy="follow_mouse"))

        hover(r_cells, [("layer", "@layer"), ("row", "@row_model #@row_neuron (rank @row_rank)"),
                        ("column", "@col_model #@col_neuron (rank @col_rank)"),
                        ("similarity", "@similarity{0.000}")])
        hover(r_squares, [("weight", "@model @layer_from #@n1 → @layer_to #@n2"),
                          ("value", "@value{0.0000}"), ("count", "@count"), ("rank", "@rank"),
                          ("inherited", "@inherited_text")])
        hover(r_boxes, [("weights", "@model, @side_layer #@neuron (region @region)"),
                        ("count", "@count"), ("median", "@median{0.000}"),
                        ("quartiles", "@q1{0.000} – @q3{0.000}"),
                        ("whiskers", "@low{0.000} – @high{0.000}"),
                        ("without source correspondence", "@share_text")])
        hover(r_wedges, [("neuron", "@side_layer #@neuron"), ("part", "@part"),
                         ("without source correspondence", "@share_no_source{0%}"),
                         ("weights", "@count")])
        hover(r_bars, [("region", "@region (@kind, @layer)"), ("bin", "@description")])
        hover(r_regions, [("region", "@region (@kind, @layer)"), ("", "@description"),
                          ("values", "@n")])
        hover(r_labels, [("neuron", "@model @layer #@neuron"), ("importance rank", "@rank"),
                         ("", "click for details")])
        hover(r_mbars, [("", "@text")])
        hover(r_skipped, [("no weights", "@model model, @layer_from → @layer_to"),
                          ("why", "@reason")])
        hover(r_hot, [("", "@text")])
        # the busy state: text drawn on the canvas, so that showing it moves nothing on the page
        # (a spinner shown or hidden made the browser lay the page out again: ~0.5 s each)
        self._busy_label = Label(x=6, y=6, x_units="screen", y_units="screen", text="",
                                 text_font_size="12px", text_color="#1f77b4",
                                 background_fill_color="white", background_fill_alpha=0.85,
                                 name="tlx-network-busy")
        p.add_layout(self._busy_label)
        tap = TapTool(renderers=[r_labels, r_squares])
        p.add_tools(tap)
        S["labels"].selected.on_change("indices", self._on_label_tap)
        S["squares"].selected.on_change("indices", self._on_square_tap)
        return p

    # ------------------------------------------------------------------ updates
    def _on_data_params(self, *events: Any) -> None:
        self._update_data()

    def _on_toggles(self, *events: Any) -> None:
        if self.auto_window and any(e.name == "hide_unimportant" for e in events):
            before = self.window()
            self._set_window(*self._default_window(before[0]))
            if self.window() != before:
                return  # the new window's data update redraws with the switches
        self._redraw()

    def _request(self) -> tuple[str | None, list[str]]:
        s = self.session
        layers = list(s.layers) if s.layers else list(s.layer_names)
        return s.focus_class, layers

    def _toggles(self) -> tuple[bool, bool, bool]:
        s = self.session
        return bool(s.hide_unimportant), bool(s.hide_source_weights), bool(s.stretch_similarity)

    def _frames_for(self, data: NetworkBlockData, toggles: tuple[bool, bool, bool]) -> dict:
        return layout_network(data, hide_unimportant=toggles[0], hide_source_weights=toggles[1],
                              stretch_similarity=toggles[2])

    def _update_data(self) -> None:
        """Recompute aggregates and layout of the focus class and layers (off the loop when served).

        Served, a background job computes both and the columns as they go over the websocket; the
        event loop only swaps the data sources. A class shown before comes from the view's cache.
        """
        cls, layers = self._request()
        with self._lock:
            self._generation += 1
            gen = self._generation
        if cls is None:
            return
        toggles = self._toggles()
        cached = _LAYOUTS.peek(self._key(cls, layers, toggles))
        if cached is not None or not _in_server_session():
            self._apply(gen, cached if cached is not None else self._compute(cls, layers, toggles))
            return
        from tlexplorer.app import jobs

        self._set_updating(True, f"updating: class {cls}…")

        def compute(callback=None):
            return self._compute(cls, layers, toggles)

        self._job = jobs.submit(self.session, compute, label=f"Network view: class {cls}",
                                on_done=lambda result: self._apply(gen, result),
                                on_error=lambda exc: self._failed(gen, exc))

    def _key(self, cls: str, layers: Sequence[str], toggles: tuple) -> tuple:
        return (self._identity, cls, tuple(layers), toggles)

    def _compute(self, cls: str, layers: list[str], toggles: tuple[bool, bool, bool]) -> tuple:
        """Aggregates, layout and wire columns of one class (any thread); kept for every session."""
        key = self._key(cls, layers, toggles)

        def compute() -> tuple:
            data = self._agg.network_block_data(cls, layers)
            frames = self._frames_for(data, toggles)
            return key, data, toggles, frames, {n: json_columns(f) for n, f in frames.items()}
        # one computation per key, also when a click and the look-ahead want it at once
        return _LAYOUTS.get(key, compute)

    def _lay_out_ahead(self, layers: list[str], toggles: tuple[bool, bool, bool]) -> None:
        """Lay out the other classes of this window in the background (once per process), so
        that the next class switch finds its layout ready."""
        from tlexplorer.app import jobs
        from tlexplorer.app.builds import build_queue

        # pages being built go first (this runs in a timer thread: waiting here blocks nobody)
        if not build_queue().wait_idle(timeout=AHEAD_MAX_WAIT_S):
            return
        ahead = (self._identity, tuple(layers), toggles)
        todo = [c for c in self.session.classes
                if _LAYOUTS.peek(self._key(c, layers, toggles)) is None]
        with _AHEAD_LOCK:
            if not todo or ahead in _AHEAD:
                return
            _AHEAD.add(ahead)

        def run() -> None:
            try:
                for cls in todo:
                    if not build_queue().idle():  # a page came: the rest when chosen or later
                        break
                    self._compute(cls, layers, toggles)
            except Exception:  # a class that fails now fails again, visibly, when chosen
                log.debug("laying out network classes ahead failed", exc_info=True)
            finally:
                with _AHEAD_LOCK:
                    _AHEAD.discard(ahead)
        jobs.run_quietly(run)

    def _set_updating(self, updating: bool, text: str = "") -> None:
        with param.edit_constant(self):
            self.updating = updating
        self._busy_label.text = text if updating else ""

    def _failed(self, gen: int, exc: BaseException) -> None:
        if gen == self._generation:
            self._set_updating(False)

    def _apply(self, gen: int, result: tuple) -> None:
        if gen != self._generation:
            return  # a newer request superseded this one
        key, data, toggles, frames, wire = result
        with param.edit_constant(self):
            self.data = data
        with batched():  # the busy text goes with the new data, in one message
            self._set_updating(False)
            # the switches may have moved while the job ran: lay out again then
            if toggles == self._toggles():
                self._redraw(frames, wire)
            else:
                self._redraw()
        if _in_server_session():  # after the page is built, not competing with it
            # a timer thread, not the document's timeout callback: this may run in a page
            # build's worker thread, where the document must not be touched
            timer = threading.Timer(AHEAD_DELAY_S, self._lay_out_ahead, (list(key[2]), toggles))
            timer.daemon = True
            timer.start()

    def wait(self, timeout: float = 30.0) -> None:
        """Block until a background update started by the view has ended (tests, scripts)."""
        job = self._job
        if job is not None:
            job.wait(timeout)

    def _redraw(self, frames: dict | None = None, wire: dict | None = None) -> None:
        if self.data is None:
            return
        if frames is None:
            frames = self._frames_for(self.data, self._toggles())
            wire = None
        if wire is None:
            wire = {name: json_columns(frame) for name, frame in frames.items()}
        with param.edit_constant(self):
            self.frames = frames
        sims = frames["blocks"][frames["blocks"]["kind"] == "similarity"]
        lo, hi = (float(sims["sim_lo"].iloc[0]), float(sims["sim_hi"].iloc[0])) if len(sims) \
            else (0.0, 1.0)
        with batched():  # one message to the browser for all sources and ranges
            self._scale_legend.object = similarity_legend(
                lo, hi, bool(self.session.stretch_similarity))
            for name, data in wire.items():
                self._send(name, data)
            if not self._plot_pane._models:  # once shown, the browser fits (and keeps the zoom)
                self._fit_ranges_here(frames["extent"])
        self._push()

    def _send(self, name: str, data: dict) -> None:
        """Give source ``name`` new columns, sending the browser only what it lacks: nothing when
        they are the same, the changed columns when the row count is (one event, no others)."""
        sent = self._sent.get(name)
        self._sent[name] = data
        if sent == data:
            return
        rows = {len(v) for v in data.values()}
        if sent is not None and sent.keys() == data.keys() and rows == {len(v) for v in sent.values()}:
            self._sources[name].data.update({c: v for c, v in data.items() if sent[c] != v})
        else:
            self._sources[name].data = data

    def _fit_ranges_here(self, extent: pd.DataFrame) -> None:
        """Ranges that show the window before any browser fitted it (a first render, an export)."""
        if not len(extent):
            return
        e = extent.iloc[0]
        x0, x1 = float(e.x0) - FIT_PAD, float(e.x1) + FIT_PAD
        y0, y1 = float(e.y0) - FIT_PAD, float(e.y1) + FIT_PAD
        p = self._figure
        p.x_range.update(start=x0, end=x1, reset_start=x0, reset_end=x1)
        p.y_range.update(start=y1, end=y0, reset_start=y1, reset_end=y0)

    def _push(self) -> None:
        if not _in_server_session() and self._plot_pane._models:
            try:
                pn.io.push_notebook(self._plot_pane)
            except Exception:  # no notebook comm: nothing to push
                pass

    # ------------------------------------------------------------------ taps
    def _on_label_tap(self, attr: str, old: list, new: list) -> None:
        if not new:
            return
        i = int(new[0])
        src = self._sources["labels"]
        model, layer, neuron = src.data["model"][i], src.data["layer"][i], src.data["neuron"][i]
        with batched():  # the panel, its images and the cleared highlight in one message
            src.selected.indices = []
            self.select_neuron(str(model), str(layer), int(neuron))

    def _on_square_tap(self, attr: str, old: list, new: list) -> None:
        if not new:
            return
        i = int(new[0])
        d = self._sources["squares"].data
        key = (str(d["model"][i]), str(d["layer_from"][i]), str(d["layer_to"][i]),
               int(d["n1"][i]), int(d["n2"][i]))
        with batched():
            self._sources["squares"].selected.indices = []
            self.select_weight(*key)

    def select_neuron(self, model: str, layer: str, neuron: int) -> None:
        """What a click on a neuron index does: select it and open its detail panel."""
        self.session.param.update(selected_neuron=(model, layer, int(neuron)))

    def select_weight(self, model: str, layer_from: str, layer_to: str, n1: int, n2: int) -> None:
        """What a click on a weight square does: select it and open its detail panel."""
        self.session.param.update(selected_weight=(model, layer_from, layer_to, int(n1), int(n2)))

    # ------------------------------------------------------------------ panel
    def _window_label(self) -> str:
        names = self.session.layer_names
        start, stop = self.window()
        shown = names[start:stop]
        title = escape(" · ".join(f"L{start + i + 1} {n}" for i, n in enumerate(shown)))
        return (f"<span class='tlx-layer-window' title='{title}' style='white-space:nowrap;"
                f"font-size:12px;color:#555'>L{start + 1}–L{stop} of {len(names)}</span>")

    def _window_widgets(self) -> pn.Row:
        """The layer window: ◀, a range slider, ▶ and which layers of how many are shown."""
        s = self.session
        names = s.layer_names
        n = len(names)
        start, stop = self.window()
        rng = pn.widgets.IntRangeSlider(
            name="Layers", start=1, end=max(n, 2), value=(start + 1, stop), step=1, width=150,
            disabled=n < 2, margin=(0, 6), css_classes=["tlx-layer-slider"])
        back = pn.widgets.Button(name="◀", width=30, height=30, margin=(14, 0, 0, 0), css_classes=["tlx-window-back"],
                                 description="Show the previous layer")
        ahead = pn.widgets.Button(name="▶", width=30, height=30, margin=(14, 0, 0, 0), css_classes=["tlx-window-ahead"],
                                  description="Show the next layer")
        label = pn.pane.HTML(self._window_label(), margin=(20, 4, 0, 4))
        back.on_click(lambda _e: self.move_window(-1))
        ahead.on_click(lambda _e: self.move_window(+1))

        def to_session(event):
            a, b = event.new
            s.layers = names[a - 1:b]
        rng.param.watch(to_session, "value_throttled")

        def from_session(*_events):
            a, b = self.window()
            rng.value = (a + 1, b)
            back.disabled, ahead.disabled = a <= 0, b >= n
            label.object = self._window_label()
        s.param.watch(from_session, "layers")
        from_session()
        return pn.Row(back, rng, ahead, label, margin=(0, 4))

    def _similarity_switch(self) -> pn.widgets.RadioButtonGroup:
        """The gray scale of the cells: the shown range (default) or the paper's 0 to 1."""
        s = self.session
        options = {"shown range": True, "0–1 (paper)": False}
        group = pn.widgets.RadioButtonGroup(
            options=options, value=bool(s.stretch_similarity), button_type="default",
            button_style="outline", margin=(12, 4, 4, 4), css_classes=["tlx-similarity-switch"])
        group.param.watch(lambda e: setattr(s, "stretch_similarity", bool(e.new)), "value")
        s.param.watch(lambda e: setattr(group, "value", bool(e.new)), "stretch_similarity")
        return group

    def _title_bar(self):
        s = self.session
        cls = held_link(pn.widgets.Select(name="Class", options=list(s.param.focus_class.objects),
                                          width=120, margin=(0, 6)), s, "focus_class")
        hide_unimp = pn.widgets.Switch.from_param(s.param.hide_unimportant, name="", width=36)
        hide_src = pn.widgets.Switch.from_param(s.param.hide_source_weights, name="", width=36)
        legend = pn.pane.HTML(
            f"<span style='white-space:nowrap;font-size:12px'>"
            f"<span style='color:{SOURCE_COLOR};font-weight:600'>■ source</span>&nbsp; "
            f"<span style='color:{TARGET_COLOR};font-weight:600'>■ target</span>&nbsp; "
            f"<span style='display:inline-block;width:9px;height:9px;border-radius:5px;"
            f"background:{SOURCE_COLOR}'></span> inherited&nbsp; "
            f"<span style='display:inline-block;width:11px;height:9px;border:1px dashed #999;"
            f"background:repeating-linear-gradient(45deg,#f5f5f5 0 2px,#d0d0d0 2px 3px)'></span>"
            f" no weights&nbsp; "
            f"<span title='Right of each layer: CKA, how alike the two models&#39; activations "
            f"are (scale 0–1), on target (blue) and source (red) data; A-dist, the proxy "
            f"A-distance, how well a linear classifier tells the two domains apart (scale 0–2), "
            f"in the source (red) and target (blue) model. Gray tracks are the full scale. "
            f"Hover a hatched corner for why it has no weights.' "
            f"style='border-bottom:1px dotted #888;cursor:help'>CKA / A-dist?</span>"
            f"</span>", margin=(14, 5, 5, 5), css_classes=["tlx-network-legend"])

        def switch(widget, text):
            return pn.Row(widget, pn.pane.HTML(f"<span style='white-space:nowrap;font-size:12px'>"
                                               f"{text}</span>", margin=(4, 2, 0, 0)),
                          margin=(14, 4, 4, 4), css_classes=[f"tlx-{text.replace(' ', '-')}"])
        return pn.FlexBox(
            cls, self._window_widgets(),
            switch(hide_unimp, "hide non-important"), switch(hide_src, "hide source weights"),
            self._similarity_switch(), self._scale_legend, legend,
            flex_wrap="wrap", align_items="flex-start", sizing_mode="stretch_width",
            css_classes=["tlx-network-titlebar"])

    def _details_overlay(self) -> pn.Column:
        """The detail panels float over the plot's lower-left corner (the matrix keeps its size:
        the fit leaves the room below a window that is wider than tall, and the zig-zag's
        lower-left triangle is empty otherwise); shown only while one is open."""
        details = pn.Column(
            self.neuron_detail, self.weight_detail, width=360, scroll=True, margin=0,
            css_classes=["tlx-network-details"],
            styles={"position": "absolute", "left": "8px", "bottom": "8px", "z-index": "10",
                    "max-height": "min(560px, calc(100% - 16px))", "background": "white",
                    "box-shadow": "0 2px 10px rgba(0,0,0,0.25)", "border-radius": "4px"})

        def show(*_events: Any) -> None:
            shown = (self.session.selected_neuron is not None
                     or self.session.selected_weight is not None)
            set_shown(details, shown)
        self.session.param.watch(show, ["selected_neuron", "selected_weight"])
        show()
        return details

    def __panel__(self):
        if self._layout is None:
            # no taller than the window shows (the fit and the detail panels stay on screen)
            plot = pn.Column(self._plot_pane, self._details_overlay(), sizing_mode="stretch_both",
                             min_width=300, min_height=360, margin=0,
                             styles={"position": "relative", "max-height": PLOT_MAX_HEIGHT},
                             css_classes=["tlx-network-plot"])
            self._layout = pn.Column(self._title_bar(), plot, sizing_mode="stretch_both",
                                     min_height=480, css_classes=["tlx-network-view"])
        return self._layout
