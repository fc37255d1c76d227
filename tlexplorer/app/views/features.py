"""The feature view (paper §5.4.2, Fig. 1 D): feature ranking list and domain discriminability plot.

* The ranking list shows the neurons of the scope's domain classifier (Algorithm 1) ordered by
  domain discriminability (|coefficient|), descending or ascending (``session.feature_order``): layer,
  neuron index, feature visualization (a placeholder while it is computed in the background) and a
  mirrored histogram of the target model's Layer Conductance, source instances above the axis in
  red and target instances below in blue. A checkbox per row activates the neuron's biplot axis
  (``session.checked_neurons``).
* The discriminability plot projects the attributions with ``[u, g]`` (classifier weights, first
  principal component): red crosses are source instances, blue circles target ones; the decision
  boundary is the vertical line x = 0; biplot axes (arrows from the origin labelled ``L5#173``) for
  the top five rows in the current order plus the checked ones. Beyond
  :data:`DATASHADE_THRESHOLD` points the scatter is rasterized by datashader, coloured by domain.
"""
from __future__ import annotations

import html
import logging
from typing import Any

import numpy as np
import pandas as pd
import panel as pn
import param

from tlexplorer.aggregates import ALL, BoundedMemo, aggregates_for, short_layer_names
from tlexplorer.app.links import batched, held_link
from tlexplorer.app.state import Session
from tlexplorer.app.thumbnails import feature_image_url
from tlexplorer.app.views import (CANVAS_BACKEND, SOURCE_COLOR, TABLE_CONFIGURATION,
                                  TABLE_STYLESHEETS, TARGET_COLOR)
from tlexplorer.app.views.neuron_detail import (_call_in_session, _session_doc, feature_vis_service,
                                                img_html, placeholder_html, unavailable_html)

log = logging.getLogger(__name__)

__all__ = ["DATASHADE_THRESHOLD", "FeatureView", "active_axes", "mirrored_histogram_svg",
           "place_labels"]

#: Scatter points beyond which the discriminability plot is rasterized with datashader.
DATASHADE_THRESHOLD = 5000
#: Rows whose biplot axes are drawn without being checked (paper: the top five).
TOP_AXES = 5
THUMB_PX = 38
#: One label character and one line of 9 pt text as shares of the plot's shown x and y ranges
#: (about 6.5 px of a ~360 px wide, 15 px of a ~300 px high data area).
CHAR_WIDTH, LINE_HEIGHT = 0.018, 0.05
#: Rows (from the top of the current order) whose missing feature visualizations are computed.
PREFETCH_ROWS = 60
#: Plots (scope and axes) a view keeps to show again without recomputing them.
RECENT_PLOTS = 12


def mirrored_histogram_svg(source_counts, target_counts, *, width: int = 112, height: int = 38,
                           lo: float | None = None, hi: float | None = None) -> str:
    """A small inline SVG: source distribution above the axis (red), target below (blue).

    Each domain is normalised to its own total (a share per bin), both on one scale, so that domains
    of different size compare.
    """
    s = np.asarray(source_counts, dtype=np.float64)
    t = np.asarray(target_counts, dtype=np.float64)
    bins = max(len(s), len(t), 1)
    ps = s / s.sum() if s.sum() > 0 else np.zeros(bins)
    pt = t / t.sum() if t.sum() > 0 else np.zeros(bins)
    peak = max(ps.max(initial=0), pt.max(initial=0)) or 1.0
    # drawn in integer units (10 per bin across, tenths of a pixel up and down) and stretched to
    # the size, one path per domain of "M x y h w v h h -w z" boxes: a ranking list of many rows
    # sends these on every scope change, so they stay short
    mid = height * 5
    above, below = [], []
    for i in range(bins):
        hs = round(ps[i] / peak * (mid - 10)) if i < len(ps) else 0
        ht = round(pt[i] / peak * (mid - 10)) if i < len(pt) else 0
        if hs > 0:
            above.append(f"M{i * 10} {mid - hs}h9v{hs}h-9z")
        if ht > 0:
            below.append(f"M{i * 10} {mid}h9v{ht}h-9z")
    title = ""
    if lo is not None and hi is not None:
        title = (f"<title>conductance {lo:.3g} to {hi:.3g}; source {int(s.sum())} (above), "
                 f"target {int(t.sum())} (below)</title>")
    paths = "".join(f"<path fill='{color}' d='{''.join(boxes)}'/>"
                    for color, boxes in ((SOURCE_COLOR, above), (TARGET_COLOR, below)) if boxes)
    return (f"<svg class='tlx-mirror-hist' width='{width}' height='{height}' "
            f"viewBox='0 0 {bins * 10} {height * 10}' preserveAspectRatio='none'>{title}"
            f"<path d='M0 {mid}H{bins * 10}' stroke='#666' stroke-width='0.7' "
            f"vector-effect='non-scaling-stroke'/>{paths}</svg>")


def active_axes(ranking: pd.DataFrame | Any, checked: list, top: int = TOP_AXES) -> list[tuple[str, int]]:
    """Neurons whose biplot axes are drawn: the first ``top`` rows of the ranking, then the checked.

    Parameters
    ----------
    ranking : frame with ``layer`` and ``neuron`` columns, in the displayed order
    checked : list of (layer, neuron)
    """
    layers = list(ranking["layer"])
    neurons = [int(n) for n in ranking["neuron"]]
    out = list(zip(layers[:top], neurons[:top]))
    present = set(zip(layers, neurons))
    for layer, neuron in checked:
        key = (str(layer), int(neuron))
        if key in present and key not in out:
            out.append(key)
    return out


def place_labels(ends: np.ndarray, texts: "list[str]", *, span_x: float, span_y: float,
                 char_width: float = 0.025, line_height: float = 0.06
                 ) -> "list[tuple[float, float, str]]":
    """Positions ``(x, y, align)`` for biplot labels at the arrow ends ``ends`` (K, 2), none over
    another.

    Works in plot fractions (``span_x``, ``span_y``: the data ranges shown): a label sits just past
    its arrow's end, on the outer side (left-aligned right of the origin, right-aligned left of
    it); when it would cover a label placed before (longer arrows first), it moves up or down by
    whole lines until it does not.
    """
    ends = np.asarray(ends, dtype=np.float64).reshape(-1, 2)
    boxes: "list[tuple[float, float, float, float]]" = []
    out: "list[tuple[float, float, str] | None]" = [None] * len(ends)
    order = np.argsort(-np.hypot(ends[:, 0] / span_x, ends[:, 1] / span_y), kind="stable")
    for i in order:
        x, y = ends[i, 0] / span_x, ends[i, 1] / span_y
        align = "left" if x >= 0 else "right"
        width = char_width * max(len(texts[i]), 1)
        pad = 0.012 if align == "left" else -0.012
        for step in [0, 1, -1, 2, -2, 3, -3, 4, -4, 5, -5, 6, -6]:
            cy = y + step * line_height
            x0 = x + pad if align == "left" else x + pad - width
            box = (x0, cy - line_height / 2, x0 + width, cy + line_height / 2)
            if not any(box[0] < b[2] and b[0] < box[2] and box[1] < b[3] and b[1] < box[3]
                       for b in boxes):
                break
        boxes.append(box)
        out[i] = ((x + pad) * span_x, cy * span_y, align)
    return [o for o in out if o is not None]


class FeatureView(pn.viewable.Viewer):
    """Feature ranking list and domain discriminability plot of ``session.feature_scope``.

    Build it with ``FeatureView(session=session)``; everything it shows follows the session's
    ``feature_scope``, ``feature_order`` and ``checked_neurons``.
    """

    session = param.ClassSelector(class_=Session, doc="The browser session's state")
    ranking = param.DataFrame(default=None, constant=True,
                              doc="The ranking list as displayed (pandas, in display order)")
    axes = param.List(default=[], constant=True,
                      doc="(layer, neuron) of the biplot axes drawn now")
    plot_height = param.Integer(default=420, doc="Height of the discriminability plot (px)")
    plot_revision = param.Integer(default=0, doc="Bumped when the plot's data change")
    points = param.Array(default=None, constant=True,
                         doc="The plot's points now: (M_s + M_t, 2), source rows first, "
                             "projected over the active neurons (``axes``)")

    def __init__(self, **params: Any):
        super().__init__(**params)
        if self.session is None or self.session.bundle is None:
            raise ValueError("FeatureView needs a session with a bundle: FeatureView(session=s)")
        import holoviews as hv

        hv.renderer("bokeh")  # the bokeh plotting backend, loaded once per process
        self._agg = aggregates_for(self.session.bundle)
        self._service = feature_vis_service(self.session.bundle)
        self._syncing = False
        self._images: dict[tuple[str, int], str] = {}
        self._base: dict[str, pd.DataFrame] = {}
        self._table = pn.widgets.Tabulator(
            pd.DataFrame(), selectable="checkbox", disabled=True, show_index=False,
            sortable=False, layout="fit_columns", height=360, sizing_mode="stretch_width",
            widths={"feature": 50, "histogram": 122, "coef": 64, "axis": 44},
            configuration=TABLE_CONFIGURATION, stylesheets=TABLE_STYLESHEETS,
            formatters={"feature": {"type": "html"}, "histogram": {"type": "html"}},
            text_align={"coef": "right", "axis": "center"},
            titles={"label": "neuron", "feature": "feature", "histogram":
                    "conductance: source ▲ / target ▼", "coef": "discrim.", "axis": "axis"},
            hidden_columns=["layer", "neuron", "rank"], row_height=THUMB_PX + 8, pagination=None,
            css_classes=["tlx-feature-ranking"])
        self._table.param.watch(self._on_selection, "selection")
        self._summary = pn.pane.HTML("", margin=(0, 5, 5, 10))
        # linked_axes=False: Panel would otherwise tie these axes to other views' "x"/"y" axes
        self._plot = pn.pane.HoloViews(None, sizing_mode="stretch_width", height=self.plot_height,
                                       linked_axes=False, css_classes=["tlx-discriminability-plot"])
        self._plot_caption = pn.pane.HTML("", margin=(0, 5, 0, 10))
        self._shown: dict = {}
        self._recent_plots = BoundedMemo(RECENT_PLOTS)  # (scope, axes) -> what the plot showed
        self._shade = False
        self.session.param.watch(self._on_scope, ["feature_scope"])
        self.session.param.watch(self._on_order, ["feature_order"])
        self.session.param.watch(self._on_checked, ["checked_neurons"])
        self._layout = None
        self._on_scope()

    # ------------------------------------------------------------------ data
    @property
    def scope(self) -> str:
        return self.session.feature_scope or ALL

    def _image_html(self, layer: str, neuron: int) -> str:
        key = (layer, int(neuron))
        if key in self._images:
            return self._images[key]
        image = self._service.get("target", layer, neuron)
        if image is not None:
            out = self._computed_image_html(key, image)
            self._images[key] = out
            return out
        if self._service.unavailable:
            return unavailable_html(THUMB_PX, self._service.unavailable)
        return placeholder_html(THUMB_PX)

    def _computed_image_html(self, key: tuple[str, int], image: np.ndarray) -> str:
        """A computed image as a URL when served (a few bytes per row, cached by the browser),
        else inline."""
        layer, neuron = key
        title = f"target {layer} #{neuron}"
        names = self._agg.layer_names
        if not (self.session.thumbnail_urls and layer in names):
            return img_html(image, THUMB_PX, title, TARGET_COLOR)
        url = feature_image_url(self.session.bundle.key, "target", names.index(layer), neuron)
        return (f"<img src='{url}' width='{THUMB_PX}' height='{THUMB_PX}' "
                f"title='{html.escape(title)}' style='image-rendering:pixelated;"
                f"border:1px solid {TARGET_COLOR};display:block'>")

    def _base_frame(self, scope: str) -> pd.DataFrame:
        """The scope's rows with their histogram SVGs, most discriminative first (built once)."""
        cached = self._base.get(scope)
        if cached is not None:
            return cached
        fr = self._agg.feature_ranking(scope, "descending")
        hists = [mirrored_histogram_svg(s, t, lo=lo, hi=hi) for s, t, lo, hi in zip(
            fr["hist_source"].to_list(), fr["hist_target"].to_list(), fr["bin_lo"].to_list(),
            fr["bin_hi"].to_list())]
        base = pd.DataFrame({
            "label": fr["label"].to_list(), "layer": fr["layer"].to_list(),
            "neuron": fr["neuron"].to_list(), "rank": fr["rank"].to_list(),
            "layer_index": fr["layer_index"].to_list(), "histogram": hists,
            "coef": [f"{c:.3g}" for c in fr["coef"].to_list()],  # 3 significant digits
        })
        self._base = {scope: base}  # one scope at a time: the frames hold SVG text
        return base

    def _frame(self) -> pd.DataFrame:
        """The ranking list in the session's order (``descending``: rank 1 first)."""
        base = self._base_frame(self.scope)
        desc = self.session.feature_order == "descending"
        frame = base.sort_values(["rank", "layer_index", "neuron"], ascending=[desc, True, True],
                                 kind="stable").reset_index(drop=True)
        frame.insert(4, "feature", [self._image_html(l, n) for l, n in
                                    zip(frame["layer"], frame["neuron"])])
        frame["axis"] = ""
        return frame.drop(columns=["layer_index"])

    def _request_images(self, frame: pd.DataFrame) -> None:
        """Compute missing feature visualizations in the background and patch their cells."""
        if self._service.unavailable:
            return
        doc = _session_doc()
        head = frame.head(PREFETCH_ROWS)
        missing: dict[str, list[int]] = {}
        for layer, neuron in zip(head["layer"], head["neuron"]):
            key = (str(layer), int(neuron))
            if key in self._images or self._service.get("target", layer, neuron) is not None:
                continue
            missing.setdefault(str(layer), []).append(int(neuron))

        def patch(key: tuple[str, int], result: Any) -> None:
            if isinstance(result, BaseException):
                value = unavailable_html(THUMB_PX, f"{type(result).__name__}: {result}")
            else:
                value = self._computed_image_html(key, result)
                self._images[key] = value

            def apply() -> None:
                df = self._table.value
                if df is None or df.empty:
                    return
                hit = np.flatnonzero((df["layer"].to_numpy() == key[0])
                                     & (df["neuron"].to_numpy() == key[1]))
                if hit.size:
                    self._table.patch({"feature": [(int(hit[0]), value)]})
            _call_in_session(doc, apply)

        for layer, neurons in missing.items():  # one batched optimisation per layer
            futures = self._service.request_many("target", layer, neurons)
            for neuron, fut in zip(neurons, futures):
                fut.add_done_callback(lambda f, key=(layer, neuron): patch(
                    key, f.exception() if f.exception() is not None else f.result()))

    # ------------------------------------------------------------------ reactions
    # each reaction sends its table and plot changes to the browser as one message
    def _on_scope(self, *events: Any) -> None:
        with batched():
            self._refresh_table()
            self._refresh_plot()

    def _on_order(self, *events: Any) -> None:
        with batched():
            self._refresh_table()
            self._refresh_plot()

    def _on_checked(self, *events: Any) -> None:
        with batched():
            if not self._syncing:
                self._sync_selection()
            self._refresh_plot()

    def _refresh_table(self) -> None:
        frame = self._frame()
        axes = active_axes(frame, self.session.checked_neurons)
        shown = set(axes)
        frame["axis"] = ["●" if (str(l), int(n)) in shown else "" for l, n in
                         zip(frame["layer"], frame["neuron"])]
        self._syncing = True
        try:
            self._table.value = frame
            with param.edit_constant(self):
                self.ranking = self._table.value
                self.axes = axes
            self._sync_selection()
        finally:
            self._syncing = False
        self._request_images(frame)
        summary = self._agg.discriminability_summary(self.scope)
        cv = summary.get("cv_accuracy")
        scope = "all classes" if self.scope == ALL else f"class {html.escape(str(self.scope))}"
        self._summary.object = (
            f"<span style='font-size:13px'>Domain classifier on {scope}: CV accuracy "
            f"<b>{'–' if cv is None else f'{cv:.3f}'}</b>"
            + (f" · {summary.get('n_source')} source / {summary.get('n_target')} target instances"
               if summary else "") + "</span>")

    def _sync_selection(self) -> None:
        frame = self.ranking
        if frame is None or frame.empty:
            return
        checked = {(str(l), int(n)) for l, n in self.session.checked_neurons}
        sel = [i for i, key in enumerate(zip(frame["layer"], frame["neuron"]))
               if (str(key[0]), int(key[1])) in checked]
        old = self._syncing
        self._syncing = True
        try:
            self._table.selection = sel
        finally:
            self._syncing = old

    def _on_selection(self, event: Any) -> None:
        if self._syncing:
            return
        frame = self.ranking
        if frame is None:
            return
        chosen = [(str(frame["layer"].iloc[i]), int(frame["neuron"].iloc[i])) for i in event.new
                  if i < len(frame)]
        self._syncing = True
        try:
            self.session.checked_neurons = chosen
        finally:
            self._syncing = False

    def _mark_axes(self) -> None:
        """Recompute which axes are drawn and patch the table's ``axis`` column."""
        frame = self.ranking
        if frame is None or frame.empty:
            with param.edit_constant(self):
                self.axes = []
            return
        axes = active_axes(frame, self.session.checked_neurons)
        with param.edit_constant(self):
            self.axes = axes
        shown = set(axes)
        marks = ["●" if (str(l), int(n)) in shown else "" for l, n in
                 zip(frame["layer"], frame["neuron"])]
        changed = [(i, m) for i, (m, old) in enumerate(zip(marks, frame["axis"])) if m != old]
        if changed:
            self._table.patch({"axis": changed})

    # ------------------------------------------------------------------ plot
    # The plot is built once: DynamicMaps whose elements keep their kind and number whatever is
    # shown, so that a scope change or a check updates the figure's data in place (one message)
    # instead of sending and laying out a new figure.
    def _build_plot(self):
        import datashader as ds
        import holoviews as hv
        from holoviews.operation.datashader import datashade, dynspread

        stream = hv.streams.Params(self, ["plot_revision"])
        # rasterized when the largest scope (all classes) has more points than the threshold
        self._shade = len(self._agg.discriminability_projection(ALL, [])["x"]) \
            > DATASHADE_THRESHOLD
        points = hv.DynamicMap(self._points_frame, streams=[stream])
        if self._shade:
            points = dynspread(datashade(
                points, aggregator=ds.count_cat("domain"),
                color_key={"source": SOURCE_COLOR, "target": TARGET_COLOR}, min_alpha=60),
                threshold=0.6, max_px=3)
        axes = hv.DynamicMap(self._axes_frame, streams=[stream])
        boundary = hv.VLine(0).opts(color="#555555", line_dash="dashed", line_width=1)
        # styles by group, given once here rather than on each frame's elements (HoloViews
        # processes options per call: a fifth of an update); framewise on each element: the
        # ranges follow each update (a scope's points, the labels' room)
        label = {"text_font_size": "9pt", "text_color": "#111111", "text_baseline": "middle",
                 "framewise": True}
        return (points * boundary * axes).opts({
            "Points.Source": {"marker": "x", "color": SOURCE_COLOR, "size": 6, "alpha": 0.7,
                              "line_width": 1.2, "framewise": True},
            "Points.Target": {"marker": "circle", "fill_color": None, "line_color": TARGET_COLOR,
                              "size": 6, "alpha": 0.7, "framewise": True},
            "Points.Shaded": {"framewise": True},
            "Segments.Arrows": {"color": "#333333", "line_width": 1.5, "framewise": True},
            "Segments.Leaders": {"color": "#999999", "line_width": 0.8, "line_dash": "dotted",
                                 "framewise": True},
            "Labels.Left": dict(label, text_align="left"),
            "Labels.Right": dict(label, text_align="right"),
            # invisible: the ends of the longest labels, so that the ranges make room for them
            "Points.Room": {"alpha": 0, "size": 1, "framewise": True},
            "Overlay": {
                "title": "Domain discriminability",
                "xlabel": "classifier direction u (decision boundary at 0)",
                "ylabel": "first principal component g", "show_legend": True,
                "legend_position": "top", "legend_opts": {"orientation": "horizontal"},
                "framewise": True, "responsive": True, "height": self.plot_height,
                "toolbar": "above", "backend_opts": CANVAS_BACKEND},
        })

    def _points_frame(self, plot_revision: int = 0):
        import holoviews as hv

        shown = self._shown
        if "points_frame" not in shown:  # built once per scope and axes (a revisit reuses it)
            proj = shown["points"]
            df = pd.DataFrame({"x": proj["x"], "y": proj["y"],
                               "domain": proj["domain"].astype(str)})
            if self._shade:
                shown["points_frame"] = hv.Points(df, ["x", "y"], ["domain"], group="Shaded")
            else:
                src = hv.Points(df[df["domain"] == "source"], ["x", "y"], ["domain"],
                                group="Source", label="source")
                tgt = hv.Points(df[df["domain"] == "target"], ["x", "y"], ["domain"],
                                group="Target", label="target")
                shown["points_frame"] = src * tgt
        return shown["points_frame"]

    def _axes_frame(self, plot_revision: int = 0):
        import holoviews as hv

        shown = self._shown
        if "axes_frame" not in shown:
            parts = shown["axes"]
            xy = ["x0", "y0", "x1", "y1"]
            arrows = hv.Segments(parts["arrows"], xy, ["label"], group="Arrows")
            leaders = hv.Segments(parts["leaders"], xy, group="Leaders")
            left = hv.Labels(parts["labels_left"], ["x", "y"], ["label"], group="Left")
            right = hv.Labels(parts["labels_right"], ["x", "y"], ["label"], group="Right")
            room = hv.Points(parts["room"], ["x", "y"], group="Room")
            shown["axes_frame"] = arrows * leaders * left * right * room
        return shown["axes_frame"]

    def _axes_parts(self, proj: dict, axes: list[tuple[str, int]]) -> dict:
        """The arrows, heads, labels and leader lines of the biplot's axes, as frames."""
        sel = self._agg.discriminability_projection(self.scope, axes)
        vec = np.asarray(sel["axes"], dtype=np.float64).reshape(-1, 2)
        extent = max(float(np.abs(proj["x"]).max(initial=1e-9)),
                     float(np.abs(proj["y"]).max(initial=1e-9)))
        norm = float(np.abs(vec).max(initial=0.0))
        scale = 0.85 * extent / norm if norm > 0 else 1.0
        end = vec * scale
        xy = ["x0", "y0", "x1", "y1"]
        arrows = pd.DataFrame({"x0": 0.0, "y0": 0.0, "x1": end[:, 0], "y1": end[:, 1],
                               "label": list(sel["axis_label"])})
        # arrow heads: two short strokes per arrow, built in coordinates scaled to the plot's
        # extents so that they look alike whatever the axes' aspect
        sx = max(float(np.ptp(proj["x"])) if len(proj["x"]) else 1.0, 1e-9)
        sy = max(float(np.ptp(proj["y"])) if len(proj["y"]) else 1.0, 1e-9)
        heads = []
        for x1, y1 in end:
            u = np.array([x1 / sx, y1 / sy])
            norm_u = float(np.hypot(*u))
            if norm_u == 0:
                continue
            u /= norm_u
            for turn in (0.45, -0.45):
                c, s_ = np.cos(turn), np.sin(turn)
                back = -np.array([c * u[0] - s_ * u[1], s_ * u[0] + c * u[1]]) * 0.025
                heads.append((x1, y1, x1 + back[0] * sx, y1 + back[1] * sy))
        short = short_layer_names(self._agg.layer_names)
        texts = [f"{short.get(str(l), l)} #{int(n)}" for l, n in
                 zip(sel["axis_layer"], sel["axis_neuron"])]
        # label sizes as shares of the shown ranges (points and arrows), not of the points alone
        shown_x = np.concatenate([np.asarray(proj["x"], np.float64), end[:, 0], [0.0]])
        shown_y = np.concatenate([np.asarray(proj["y"], np.float64), end[:, 1], [0.0]])
        span_x = max(float(np.ptp(shown_x)), 1e-9)
        span_y = max(float(np.ptp(shown_y)), 1e-9)
        placed = place_labels(end, texts, span_x=span_x, span_y=span_y, char_width=CHAR_WIDTH,
                              line_height=LINE_HEIGHT)
        labels = {align: pd.DataFrame(
            [(px, py, text) for (px, py, a), text in zip(placed, texts) if a == align],
            columns=["x", "y", "label"]) for align in ("left", "right")}
        # a label moved off its arrow's end (crowded arrows) keeps a thin leader line to it
        leaders = pd.DataFrame(
            [(x1, y1, px, py) for (x1, y1), (px, py, _a) in zip(end, placed)
             if abs(py - y1) > 1e-9 * max(span_y, 1.0)], columns=xy)
        # room for the labels: the plot's x range reaches past the longest one
        room = pd.DataFrame(
            [(px + (1 if a == "left" else -1) * (CHAR_WIDTH * len(t) + 0.03) * span_x, py)
             for (px, py, a), t in zip(placed, texts)], columns=["x", "y"])
        # the heads' strokes drawn with the arrows (one glyph)
        heads = pd.DataFrame(heads, columns=xy).assign(label="")
        return {"arrows": pd.concat([arrows, heads], ignore_index=True), "leaders": leaders,
                "labels_left": labels["left"], "labels_right": labels["right"], "room": room}

    def _refresh_plot(self) -> None:
        self._mark_axes()
        scope, axes = self.scope, list(self.axes)

        def compute() -> dict:
            proj = self._agg.discriminability_projection(scope, [])
            # §5.4.2: the points are projected over the active neurons (top five or checked)
            active = self._agg.active_projection(scope, axes)
            if active is not None:
                proj = dict(proj, x=active[:, 0], y=active[:, 1])
            return {"points": proj, "axes": self._axes_parts(proj, axes),
                    "active": active is not None}
        shown = self._recent_plots.get((scope, tuple(axes)), compute)
        self._shown = shown
        proj, active = shown["points"], shown["active"]
        with param.edit_constant(self):
            self.points = np.column_stack([proj["x"], proj["y"]])
        # what the points are (the classifier's accuracy is in the summary above the list)
        self._plot_caption.object = (
            "<span style='font-size:12px;color:#555'>"
            + (f"Points projected over the {len(self.axes)} neurons drawn as arrows "
               "(the top five and the checked ones)." if active else
               "Points projected over all neurons.") + "</span>")
        if self._plot.object is None:
            self._plot.object = self._build_plot()
        else:
            self.plot_revision += 1

    def plot_elements(self):
        """The elements the plot shows now (points, or the points to rasterize, and axes)."""
        return self._points_frame() * self._axes_frame()

    # ------------------------------------------------------------------ panel
    def __panel__(self):
        if self._layout is None:
            s = self.session
            labels = {("All classes" if c == ALL else str(c)): c for c in s.param.feature_scope.objects}
            scope = held_link(pn.widgets.Select(name="Scope", options=labels, width=150), s,
                              "feature_scope")
            order = held_link(pn.widgets.RadioButtonGroup(
                name="Order", options=list(s.param.feature_order.objects), button_type="default",
                margin=(22, 5, 5, 5)), s, "feature_order")
            clear = pn.widgets.Button(name="Clear checks", width=100, margin=(22, 5, 5, 5))
            clear.on_click(lambda _e: setattr(s, "checked_neurons", []))
            # Fig. 1 D: the ranking list above the discriminability plot (fits a narrow column)
            self._layout = pn.Column(
                pn.FlexBox(pn.pane.HTML("<b>Features</b>", margin=(22, 10, 5, 5)), scope, order,
                           clear, flex_wrap="wrap", sizing_mode="stretch_width"),
                self._summary, self._table, self._plot_caption, self._plot,
                sizing_mode="stretch_width", css_classes=["tlx-feature-view"])
        return self._layout
