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
source correspondence) and a weight histogram.

:func:`layout_network` turns :class:`tlexplorer.aggregates.NetworkBlockData` into plain data frames of
glyph geometry in data units (one unit = one cell; y grows downwards), so the geometry is tested
without a browser; :class:`NetworkView` draws them with one Bokeh figure and keeps the figure
while the session's focus class, layers and switches change only its data sources.
"""
from __future__ import annotations

import logging
import math
import threading
from typing import Any

import numpy as np
import pandas as pd
import panel as pn
import param
from bokeh.models import (ColumnDataSource, HoverTool, PanTool, Range1d, ResetTool, TapTool,
                          WheelZoomTool, SaveTool)
from bokeh.plotting import figure

from tlexplorer.aggregates import BoxStats, Histogram, NetworkBlockData, aggregates_for
from tlexplorer.app.state import Session
from tlexplorer.app.views import SOURCE_COLOR, TARGET_COLOR

log = logging.getLogger(__name__)

__all__ = ["FRAME_COLUMNS", "NetworkView", "col_model", "layout_network", "row_model"]

DOMAIN_COLOR = {"source": SOURCE_COLOR, "target": TARGET_COLOR}
#: Light tints of the domain colours (pie wedges without correspondence, label backgrounds).
DOMAIN_TINT = {"source": "#f6d5d5", "target": "#d4e4f3"}
REGION_FILL = "#f2f2f2"
BAR_FILL = "#8c8c8c"

#: Columns of every frame :func:`layout_network` returns (frames keep them even when empty, so that
#: the view's data sources always have the fields its glyphs and tooltips refer to).
FRAME_COLUMNS: dict[str, list[str]] = {
    "blocks": ["x", "y", "w", "h", "x0", "y0", "x1", "y1", "kind", "model", "layer", "layer_from",
               "layer_to", "row_index", "col_index", "row_model", "col_model", "transposed",
               "cells_x0", "cells_y0", "cells_x1", "cells_y1", "sim_lo", "sim_hi"],
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
    "titles": ["x", "y", "text", "layer"],
    "metric_bars": ["x", "y", "w", "h", "color", "layer", "metric", "value", "text"],
    "metric_text": ["x", "y", "text", "layer"],
    "extent": ["x0", "y0", "x1", "y1"],
}


def row_model(i: int) -> str:
    """Model on the rows of the ``i``-th shown matrix (0-based): target, source, target, ..."""
    return "target" if i % 2 == 0 else "source"


def col_model(i: int) -> str:
    """Model on the columns of the ``i``-th shown matrix: source, target, source, ..."""
    return "source" if i % 2 == 0 else "target"


# ----------------------------------------------------------------------------- colour helpers
_GRAY = np.array([f"#{v:02x}{v:02x}{v:02x}" for v in range(256)], dtype=object)


#: Percentiles of a layer's similarities drawn brightest and darkest when stretched: robust to a
#: few outliers (one fc6 pair at 0.37 among 676 at 0.7-0.99 would otherwise keep the rest dark).
STRETCH_PERCENTILES = (2.0, 98.0)


def similarity_range(cells: np.ndarray, stretch: bool) -> tuple[float, float]:
    """The similarities of one matrix drawn brightest and darkest: 0 and 1 as in the paper, or
    with ``stretch`` the matrix's own 2nd and 98th percentile (conductance cosines often all lie
    in 0.8-1, which the paper's scale draws nearly black)."""
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


def similarity_legend(stretched: bool) -> str:
    """HTML of the cells' gray scale, brightest on the left: 0 to 1 (the paper), or each layer's
    own range (named next to the layer's CKA bars)."""
    ramp = ", ".join(brightness_color(np.array([0.0, 1.0])))
    lo, hi = ("low", "high (per layer)") if stretched else ("0", "1")
    return (f"<span title='similarity of the region-1 cells' style='white-space:nowrap'>"
            f"similarity {lo} <span style='display:inline-block;width:60px;height:10px;"
            f"vertical-align:middle;border:1px solid #bbb;background:linear-gradient(to right, "
            f"{ramp})'></span> {hi}</span>")


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


# ----------------------------------------------------------------------------- layout
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


def _fmt(v: float) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3g}"


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

    Parameters
    ----------
    data : NetworkBlockData
        From :meth:`tlexplorer.aggregates.BundleAggregates.network_block_data`.
    hide_unimportant : bool
        Leave out regions 2-4 of every block (only important x important cells remain).
    hide_source_weights : bool
        Leave out the source model's weight blocks.
    stretch_similarity : bool
        Spread each matrix's gray scale over its own similarity range (:func:`similarity_range`)
        instead of the paper's 0 (brightest) to 1 (darkest); each layer's label names its range.
    summary : float
        Width of the band that holds regions 2-4 (in cells).
    gap : float
        Width of the band before each block that holds the neuron indices.
    pad : float
        Space between region 1 and the summary band.

    Returns
    -------
    dict of str -> pandas.DataFrame
        Frames named as in :data:`FRAME_COLUMNS`: ``blocks`` (one row per matrix / weight block,
        with its grid position ``row_index`` / ``col_index``), ``cells``, ``regions``, ``bars``,
        ``squares``, ``dots``, ``boxes``, ``whiskers``, ``medians``, ``wedges``, ``labels``,
        ``titles``, ``metric_bars``, ``metric_text`` and ``extent`` (one row: x0, y0, x1, y1).
        Similarity blocks carry the similarities drawn brightest and darkest (sim_lo, sim_hi).
    """
    F = {name: _Frame(cols) for name, cols in FRAME_COLUMNS.items()}
    layers = list(data.layers)
    n = len(layers)
    band = 0.0 if hide_unimportant else pad + summary
    scale_notes: dict[str, str] = {}

    def imp(model: str, layer: str) -> np.ndarray:
        return np.asarray(data.rankings[(model, layer)].important, dtype=np.int64)

    k_row = [len(imp(row_model(i), l)) for i, l in enumerate(layers)]
    k_col = [len(imp(col_model(i), l)) for i, l in enumerate(layers)]
    seg_y = [gap + k + band for k in k_row]
    seg_x = [gap + k + band for k in k_col]
    y_start = np.concatenate([[0.0], np.cumsum(seg_y)])
    x_start = np.concatenate([[0.0], np.cumsum(seg_x)])
    cy = [y_start[i] + gap for i in range(n)]  # top of region-1 rows of matrix i
    cx = [x_start[i] + gap for i in range(n)]  # left of region-1 columns of matrix i

    # ------------------------------------------------------------------ similarity matrices
    for i, layer in enumerate(layers):
        rm, cm = row_model(i), col_model(i)
        sb = data.similarity[layer]
        rows_n, cols_n = imp(rm, layer), imp(cm, layer)
        cells = sb.cells.T if rm == "target" else sb.cells
        kr, kc = len(rows_n), len(cols_n)
        rank_r = data.rankings[(rm, layer)].rank
        rank_c = data.rankings[(cm, layer)].rank
        sim_lo, sim_hi = similarity_range(cells, stretch_similarity)
        F["blocks"].add(
            _n=1, x=cx[i] + (kc + band) / 2, y=cy[i] + (kr + band) / 2, w=kc + band, h=kr + band,
            x0=cx[i], y0=cy[i], x1=cx[i] + kc + band, y1=cy[i] + kr + band, kind="similarity",
            model="both", layer=layer, layer_from=layer, layer_to=layer, row_index=i, col_index=i,
            row_model=rm, col_model=cm, transposed=False, cells_x0=cx[i], cells_y0=cy[i],
            cells_x1=cx[i] + kc, cells_y1=cy[i] + kr, sim_lo=sim_lo, sim_hi=sim_hi)
        if kr and kc:
            R, C = np.meshgrid(np.arange(kr), np.arange(kc), indexing="ij")
            R, C = R.ravel(), C.ravel()
            sim = np.asarray(cells, dtype=np.float64)[R, C]
            F["cells"].add(
                x=cx[i] + C + 0.5, y=cy[i] + R + 0.5, w=np.full(R.size, 0.94),
                h=np.full(R.size, 0.94), color=brightness_color((sim - sim_lo) / (sim_hi - sim_lo)),
                similarity=sim, layer=layer,
                row_model=rm, row_neuron=rows_n[R], col_model=cm, col_neuron=cols_n[C],
                row_rank=rank_r[rows_n[R]], col_rank=rank_c[cols_n[C]])
        # neuron indices: rows on the left, columns on top, coloured by domain
        li = data.layer_index.get(layer, i)
        F["labels"].add(
            x=np.full(kr, cx[i] - gap / 2 - 0.05), y=cy[i] + np.arange(kr) + 0.5,
            w=np.full(kr, gap - 0.3), h=np.full(kr, 0.9), tx=np.full(kr, cx[i] - 0.25),
            ty=cy[i] + np.arange(kr) + 0.5, text=[str(int(v)) for v in rows_n], angle=0.0,
            align="right", color=DOMAIN_COLOR[rm], fill=DOMAIN_TINT[rm], model=rm, layer=layer,
            neuron=rows_n, rank=rank_r[rows_n], axis="row", layer_index=li)
        F["labels"].add(
            x=cx[i] + np.arange(kc) + 0.5, y=np.full(kc, cy[i] - gap / 2 - 0.05),
            w=np.full(kc, 0.9), h=np.full(kc, gap - 0.3), tx=cx[i] + np.arange(kc) + 0.5,
            ty=np.full(kc, cy[i] - 0.25), text=[str(int(v)) for v in cols_n], angle=math.pi / 2,
            align="left", color=DOMAIN_COLOR[cm], fill=DOMAIN_TINT[cm], model=cm, layer=layer,
            neuron=cols_n, rank=rank_c[cols_n], axis="col", layer_index=li)
        F["titles"].add(_n=1, x=x_start[i] + gap / 2 - 0.1, y=y_start[i] + gap / 2 - 0.1,
                        text=f"L{li + 1}", layer=layer)
        if stretch_similarity:  # named next to the layer's metric bars
            scale_notes[layer] = f" · gray {sim_lo:.2f}–{sim_hi:.2f}"
        if band:
            s0x, s0y = cx[i] + kc + pad, cy[i] + kr + pad
            h_r2 = sb.hist_os_it if rm == "target" else sb.hist_is_ot
            h_r3 = sb.hist_is_ot if rm == "target" else sb.hist_os_it
            regions = [
                ("2", h_r2, s0x, cy[i], summary, kr, f"important {rm} x other {cm} neurons"),
                ("3", h_r3, cx[i], s0y, kc, summary, f"other {rm} x important {cm} neurons"),
                ("4", sb.hist_os_ot, s0x, s0y, summary, summary,
                 f"other {rm} x other {cm} neurons"),
            ]
            for region, hist, x0, y0, w, h, what in regions:
                if w <= 0 or h <= 0:
                    continue
                F["regions"].add(_n=1, x=x0 + w / 2, y=y0 + h / 2, w=w, h=h, kind="similarity",
                                 region=region, model="both", layer=layer, n=int(hist.n),
                                 description=f"similarities of {what}")
                _hist_bars(F["bars"], hist, x0, y0, w, h, kind="similarity", region=region,
                           layer=layer, model="both")

    # ------------------------------------------------------------------ weight blocks
    for i in range(n - 1):
        lf, lt = layers[i], layers[i + 1]
        for model, transposed in ((row_model(i), False), (row_model(i + 1), True)):
            if hide_source_weights and model == "source":
                continue
            wb = data.weights.get((model, lf, lt))
            if wb is None:
                continue
            if not transposed:  # right of matrix i: rows = layer i (n1), cols = layer i+1 (n2)
                rx0, ry0 = cx[i + 1], cy[i]
                row_idx, col_idx = i, i + 1
            else:  # below matrix i: rows = layer i+1 (n2), cols = layer i (n1)
                rx0, ry0 = cx[i], cy[i + 1]
                row_idx, col_idx = i + 1, i
            k1, k2 = len(wb.imp_from), len(wb.imp_to)
            kr, kc = (k2, k1) if transposed else (k1, k2)
            F["blocks"].add(
                _n=1, x=rx0 + (kc + band) / 2, y=ry0 + (kr + band) / 2, w=kc + band, h=kr + band,
                x0=rx0, y0=ry0, x1=rx0 + kc + band, y1=ry0 + kr + band, kind="weights",
                model=model, layer=f"{lf}->{lt}", layer_from=lf, layer_to=lt, row_index=row_idx,
                col_index=col_idx, row_model=model, col_model=model, transposed=transposed,
                cells_x0=rx0, cells_y0=ry0, cells_x1=rx0 + kc, cells_y1=ry0 + kr)
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
                continue
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

    # ------------------------------------------------------------------ layer metrics
    x_end = float(x_start[-1])
    for i, layer in enumerate(layers):
        m = data.metrics.get(layer) or {}
        # right of the weight block right of matrix i (or of matrix i itself for the last layer)
        j = min(i + 1, n - 1)
        mx = cx[j] + k_col[j] + band + 0.8
        my = y_start[i] + 0.9
        li = data.layer_index.get(layer, i)
        F["metric_text"].add(_n=1, x=mx, y=my, text=f"L{li + 1} {layer}{scale_notes.get(layer, '')}",
                             layer=layer)
        rows = [("CKA", [("cka_target_data", TARGET_COLOR, "target data"),
                         ("cka_source_data", SOURCE_COLOR, "source data")], 1.0),
                ("A-dist", [("a_distance_source_model", SOURCE_COLOR, "source model"),
                            ("a_distance_target_model", TARGET_COLOR, "target model")], 2.0)]
        for r, (title, metrics, scale) in enumerate(rows):
            ty = my + 1.1 + r * 1.1
            values = [(k, c, what, m.get(k)) for k, c, what in metrics]
            if all(v is None for *_, v in values):
                continue
            F["metric_text"].add(_n=1, x=mx, y=ty, text=title, layer=layer)
            for b, (key, color, what, v) in enumerate(values):
                if v is None or (isinstance(v, float) and math.isnan(v)):
                    continue
                length = max(min(float(v) / scale, 1.0), 0.0) * 5.0
                F["metric_bars"].add(
                    _n=1, x=mx + 3.2 + length / 2, y=ty - 0.22 + b * 0.45, w=max(length, 0.05),
                    h=0.38, color=color, layer=layer, metric=key, value=float(v),
                    text=f"{title} ({what}): {float(v):.3f}")
        x_end = max(x_end, mx + 9.0)
    y_end = float(y_start[-1]) if n else 0.0
    F["extent"].add(_n=1, x0=0.0, y0=0.0, x1=x_end, y1=y_end)
    return {name: fr.frame() for name, fr in F.items()}


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


def _cds_data(frame: pd.DataFrame) -> dict:
    return {c: frame[c].to_numpy() for c in frame.columns}


class NetworkView(pn.viewable.Viewer):
    """The network relation view of the session's focus class (paper §5.3.3).

    Build it with ``NetworkView(session=session)``. Its title bar has the class and layer
    selectors and the two switches; the figure shows the zig-zag layout of :func:`layout_network`;
    clicking a neuron index sets ``session.selected_neuron`` and opens the neuron detail panel,
    clicking a weight square sets ``session.selected_weight`` and opens the weight detail panel
    (both ``css_classes=["tlx-neuron-detail"]`` / ``["tlx-weight-detail"]``).
    """

    session = param.ClassSelector(class_=Session, doc="The browser session's state")
    unit_px = param.Integer(default=12, bounds=(6, 40), doc="Pixels per cell of region 1")
    max_height = param.Integer(default=760, doc="Height of the scrollable plot area (px)")
    data = param.Parameter(default=None, constant=True,
                           doc="The NetworkBlockData drawn now (None before the first update)")
    frames = param.Dict(default={}, constant=True, doc="The layout frames drawn now")
    updating = param.Boolean(default=False, constant=True,
                             doc="True while aggregates are computed in the background")

    def __init__(self, **params: Any):
        super().__init__(**params)
        if self.session is None or self.session.bundle is None:
            raise ValueError("NetworkView needs a session with a bundle: NetworkView(session=s)")
        self._agg = aggregates_for(self.session.bundle)
        self._generation = 0
        self._lock = threading.Lock()
        self._job = None
        self._sources = {name: ColumnDataSource(data={c: [] for c in cols})
                         for name, cols in FRAME_COLUMNS.items()}
        self._figure = self._build_figure()
        self._plot_pane = pn.pane.Bokeh(self._figure, sizing_mode="fixed")
        self._scale_legend = pn.pane.HTML(similarity_legend(False), margin=(18, 5, 5, 5),
                                          css_classes=["tlx-similarity-scale"])
        self._layout = None
        from tlexplorer.app.views.neuron_detail import NeuronDetail, WeightDetail
        self.neuron_detail = NeuronDetail(session=self.session)
        self.weight_detail = WeightDetail(session=self.session)
        self.session.param.watch(self._on_data_params, ["focus_class", "layers"])
        self.session.param.watch(self._on_toggles, ["hide_unimportant", "hide_source_weights",
                                                    "stretch_similarity"])
        self._update_data()

    # ------------------------------------------------------------------ bokeh figure
    def _build_figure(self):
        p = figure(
            tools=[PanTool(), WheelZoomTool(), ResetTool(), SaveTool()], toolbar_location="above",
            x_range=Range1d(0, 10), y_range=Range1d(10, 0), min_border=4,
            width=400, height=400, output_backend="canvas", match_aspect=True)
        p.toolbar.logo = None
        p.axis.visible = False
        p.grid.visible = False
        p.outline_line_color = None
        S = self._sources
        # block outlines (region 1) and summary regions
        p.rect("x", "y", "w", "h", source=S["blocks"], fill_color=None, line_color="#cfcfcf",
               line_width=1)
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
        fs = f"{max(7, round(self.unit_px * 0.72))}px"
        p.text("tx", "ty", text="text", angle="angle", text_align="align",
               text_baseline="middle", text_color="color", text_font_size=fs,
               source=S["labels"])
        p.text("x", "y", text="text", text_align="center", text_baseline="middle",
               text_font_size=f"{max(9, round(self.unit_px * 0.9))}px", text_font_style="bold",
               text_color="#333333", source=S["titles"])
        r_mbars = p.rect("x", "y", "w", "h", source=S["metric_bars"], fill_color="color",
                         line_color=None, fill_alpha=0.85)
        p.text("x", "y", text="text", text_align="left", text_baseline="middle",
               text_font_size=fs, text_color="#333333", source=S["metric_text"])

        def hover(renderer, tooltips):
            p.add_tools(HoverTool(renderers=[renderer], tooltips=tooltips, point_policy="follow_mouse"))

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
        tap = TapTool(renderers=[r_labels, r_squares])
        p.add_tools(tap)
        S["labels"].selected.on_change("indices", self._on_label_tap)
        S["squares"].selected.on_change("indices", self._on_square_tap)
        return p

    # ------------------------------------------------------------------ updates
    def _on_data_params(self, *events: Any) -> None:
        self._update_data()

    def _on_toggles(self, *events: Any) -> None:
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

        Served, a background job computes both; the event loop only swaps the data sources.
        """
        cls, layers = self._request()
        with self._lock:
            self._generation += 1
            gen = self._generation
        if cls is None:
            return
        toggles = self._toggles()
        if not _in_server_session():
            data = self._agg.network_block_data(cls, layers)
            self._apply(gen, (data, toggles, self._frames_for(data, toggles)))
            return
        from tlexplorer.app import jobs

        with param.edit_constant(self):
            self.updating = True

        def compute(callback=None):
            data = self._agg.network_block_data(cls, layers)
            return data, toggles, self._frames_for(data, toggles)

        self._job = jobs.submit(self.session, compute, label=f"Network view: class {cls}",
                                on_done=lambda result: self._apply(gen, result),
                                on_error=lambda exc: self._failed(gen, exc))

    def _failed(self, gen: int, exc: BaseException) -> None:
        if gen == self._generation:
            with param.edit_constant(self):
                self.updating = False

    def _apply(self, gen: int, result: tuple) -> None:
        if gen != self._generation:
            return  # a newer request superseded this one
        data, toggles, frames = result
        with param.edit_constant(self):
            self.data = data
            self.updating = False
        # the switches may have moved while the job ran: lay out again then
        self._redraw(frames if toggles == self._toggles() else None)

    def wait(self, timeout: float = 30.0) -> None:
        """Block until a background update started by the view has ended (tests, scripts)."""
        job = self._job
        if job is not None:
            job.wait(timeout)

    def _redraw(self, frames: dict | None = None) -> None:
        if self.data is None:
            return
        if frames is None:
            frames = self._frames_for(self.data, self._toggles())
        with param.edit_constant(self):
            self.frames = frames
        ext = frames["extent"].iloc[0]
        self._scale_legend.object = similarity_legend(bool(self.session.stretch_similarity))
        p = self._figure
        margin = 0.5
        x0, x1 = float(ext.x0) - margin, float(ext.x1) + margin
        y0, y1 = float(ext.y0) - margin, float(ext.y1) + margin
        width = int(round((x1 - x0) * self.unit_px)) + 10
        height = int(round((y1 - y0) * self.unit_px)) + 40
        with pn.io.hold():  # one message to the browser for all sources and ranges
            for name, frame in frames.items():
                self._sources[name].data = _cds_data(frame)
            p.x_range.update(start=x0, end=x1, reset_start=x0, reset_end=x1)
            p.y_range.update(start=y1, end=y0, reset_start=y1, reset_end=y0)
            # min_* keep Bokeh from shrinking the figure to the card; the card scrolls instead
            # (the pane's own width/height are left alone: updating them after rendering makes
            # Panel copy the figure's stylesheets into a str-only parameter and fail)
            p.update(width=width, height=height, min_width=width, min_height=height)
        self._push()

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
        src.selected.indices = []
        self.select_neuron(str(model), str(layer), int(neuron))

    def _on_square_tap(self, attr: str, old: list, new: list) -> None:
        if not new:
            return
        i = int(new[0])
        d = self._sources["squares"].data
        key = (str(d["model"][i]), str(d["layer_from"][i]), str(d["layer_to"][i]),
               int(d["n1"][i]), int(d["n2"][i]))
        self._sources["squares"].selected.indices = []
        self.select_weight(*key)

    def select_neuron(self, model: str, layer: str, neuron: int) -> None:
        """What a click on a neuron index does: select it and open its detail panel."""
        self.session.param.update(selected_neuron=(model, layer, int(neuron)))

    def select_weight(self, model: str, layer_from: str, layer_to: str, n1: int, n2: int) -> None:
        """What a click on a weight square does: select it and open its detail panel."""
        self.session.param.update(selected_weight=(model, layer_from, layer_to, int(n1), int(n2)))

    # ------------------------------------------------------------------ panel
    def _title_bar(self):
        s = self.session
        names = s.layer_names
        cls = pn.widgets.Select.from_param(s.param.focus_class, name="Class", width=140)
        n = len(names)
        current = [names.index(l) for l in (s.layers or names) if l in names] or [0, max(n - 1, 0)]
        rng = pn.widgets.IntRangeSlider(
            name="Layers", start=1, end=max(n, 2), value=(min(current) + 1, max(current) + 1),
            step=1, width=200, disabled=n < 2)

        def to_session(event):
            a, b = event.new
            s.layers = names[a - 1:b]
        rng.param.watch(to_session, "value_throttled")

        def from_session(event):
            idx = [names.index(l) for l in (event.new or names) if l in names]
            if idx:
                rng.value = (min(idx) + 1, max(idx) + 1)
        s.param.watch(from_session, "layers")
        hide_unimp = pn.widgets.Switch.from_param(s.param.hide_unimportant, name="", width=40)
        hide_src = pn.widgets.Switch.from_param(s.param.hide_source_weights, name="", width=40)
        stretch = pn.widgets.Switch.from_param(s.param.stretch_similarity, name="", width=40)
        legend = pn.pane.HTML(
            f"<span style='color:{SOURCE_COLOR};font-weight:600'>■ source</span>&nbsp; "
            f"<span style='color:{TARGET_COLOR};font-weight:600'>■ target</span>&nbsp; "
            f"<span style='display:inline-block;width:9px;height:9px;border-radius:5px;"
            f"background:{SOURCE_COLOR}'></span> inherited weight",
            margin=(18, 5, 5, 5))
        return pn.FlexBox(
            pn.pane.HTML("<b>Network relation</b>", margin=(18, 10, 5, 5)), cls, rng,
            pn.Row(hide_unimp, pn.pane.HTML("hide non-important", margin=(18, 2, 5, 0)),
                   margin=(10, 5)),
            pn.Row(hide_src, pn.pane.HTML("hide source weights", margin=(18, 2, 5, 0)),
                   margin=(10, 5)),
            pn.Row(stretch, pn.pane.HTML("stretch similarity", margin=(18, 2, 5, 0)),
                   margin=(10, 5), css_classes=["tlx-stretch-similarity"]),
            self._scale_legend, legend, pn.indicators.LoadingSpinner(value=self.param.updating, size=20,
                                                 margin=(18, 5)),
            flex_wrap="wrap", sizing_mode="stretch_width", css_classes=["tlx-network-titlebar"])

    def __panel__(self):
        if self._layout is None:
            plot = pn.Column(self._plot_pane, scroll=True, height=self.max_height,
                             sizing_mode="stretch_width", min_width=300,
                             css_classes=["tlx-network-plot"])
            details = pn.Column(self.neuron_detail, self.weight_detail, width=340,
                                css_classes=["tlx-network-details"])

            def show(*_events: Any) -> None:  # the detail column takes room only when open
                details.visible = (self.session.selected_neuron is not None
                                   or self.session.selected_weight is not None)
            self.session.param.watch(show, ["selected_neuron", "selected_weight"])
            show()
            self._layout = pn.Column(
                self._title_bar(), pn.Row(plot, details, sizing_mode="stretch_width"),
                sizing_mode="stretch_width", css_classes=["tlx-network-view"])
        return self._layout
