"""Instance view (paper §5.2, Fig. 1 B): class selector, class details, projection scatter.

The scatter is one ``hv.DynamicMap`` driven by a viewport stream (the range and pixel size it
draws, fed by the plot's ``RangeXY`` and ``PlotSize`` streams only when what they report changes
the drawing) and by :attr:`InstanceView.revision` (bumped when the shown point set changes). Each
render counts the points inside the visible range: above :attr:`InstanceView.raster_threshold` it
returns a datashader raster (``rasterize`` with ``ds.count_cat("class_name")``, shaded with the
class palette, spread so that sparse points stay visible, with a dark gray halo where mispredicted
instances are); at or below it returns real Bokeh glyphs (colour = class, cross = source, circle = target, dark gray
border = mispredicted by the target model) with a hover tooltip that shows the thumbnail.
Both kinds of layer are always in the returned overlay (one of them empty), so the plot is built
once. Box and lasso selections set ``session.selected_instances``; a tap shows the nearest
instance in the detail pane; "Re-project selection" runs ``analysis.embedding.project_subset`` in
a background job and then shows the selection in its own projection.
"""
from __future__ import annotations

import base64
import html
import io
import itertools
import json
import threading
from collections import OrderedDict
from typing import Any

import datashader as ds
import holoviews as hv
import holoviews.plotting.bokeh  # noqa: F401  (registers the Bokeh backend outside notebooks)
import numpy as np
import pandas as pd
import panel as pn
import param
import polars as pl
from bokeh.models import CustomJSHover, HoverTool
from holoviews.operation.datashader import rasterize

from tlexplorer import class_layouts
from tlexplorer.app import jobs, thumbnails
from tlexplorer.app.export import PLOT_TOOLS, csv_download
from tlexplorer.aggregates import BoundedMemo
from tlexplorer.app.loading import bundle_identity, derived
from tlexplorer.app.links import batched, held_link, set_shown
from tlexplorer.app.state import Session
from tlexplorer.app.text import escaped_options
from tlexplorer.app.views import (CANVAS_BACKEND, DOMAIN_COLORS, DOMAIN_MARKERS, MISPREDICTED_COLOR,
                                  SOURCE_COLOR, TABLE_CONFIGURATION, TABLE_STYLESHEETS,
                                  TARGET_COLOR, class_colors)

DEFAULT_RASTER_THRESHOLD = 5000
DEFAULT_HOVER_THUMBNAILS = 1000
DEFAULT_SIZE = (600, 420)
#: Columns of the instance frame kept per row for plotting (shared, read-only, per bundle).
PLOT_COLUMNS = ("row", "x", "y", "class_name", "role", "mispredicted")

TOOLTIP = """
<div class="tlx-tooltip" style="display:flex;gap:8px;align-items:center;max-width:260px;">
  <div>{image}</div>
  <div style="font-size:11px;line-height:1.35;">
    <div><b>@instance_id</b></div>
    <div>domain: @marker{domain}</div>
    <div>label: @class_name</div>
    <div>target model: @prediction</div>
  </div>
</div>
"""


class _Viewport(hv.streams.LinkedStream):
    """What the scatter draws: the data range and (for a raster) the pixel size. Set by the view
    only; linked, because HoloViews connects the plot's own streams (range, size, tap, selection)
    only to a map that has a linked stream."""

    x_range = param.Tuple(default=None, length=2, constant=True)
    y_range = param.Tuple(default=None, length=2, constant=True)
    width = param.Integer(default=None, allow_None=True, constant=True)
    height = param.Integer(default=None, allow_None=True, constant=True)


# ---------------------------------------------------------------------- shared, per bundle
def instance_frame(bundle: Any) -> pd.DataFrame:
    """Per-instance plotting columns as pandas (shared read-only, built once per bundle).

    Columns: row (int64), x, y (float64), class_name (categorical over all classes, so datashader's
    ``count_cat`` keeps one colour per class), role (categorical source/target), mispredicted
    (bool: the target model's prediction differs from the label).
    """
    def build() -> pd.DataFrame:
        table = bundle.table("instances")
        classes = [str(c) for c in bundle.classes]
        names = table["class_name"].cast(pl.String).to_numpy()
        return pd.DataFrame({
            "row": table["row"].to_numpy().astype(np.int64),
            "x": table["x"].to_numpy().astype(np.float64),
            "y": table["y"].to_numpy().astype(np.float64),
            "class_name": pd.Categorical(names, categories=classes),
            "role": pd.Categorical(table["role"].cast(pl.String).to_numpy(),
                                   categories=["source", "target"]),
            "mispredicted": (table["target_pred"].to_numpy() != table["label"].to_numpy()),
        })
    return derived(bundle, "app.instances.frame", build)


def class_details(bundle: Any) -> pl.DataFrame:
    """Per class: instances per domain, accuracies of both models per domain, mispredictions."""
    def build() -> pl.DataFrame:
        t = bundle.table("instances").with_columns(
            (pl.col("target_pred") == pl.col("label")).alias("_t_ok"),
            (pl.col("source_pred") == pl.col("label")).alias("_s_ok"),
            pl.col("class_name").cast(pl.String))
        classes = [str(c) for c in bundle.classes]
        rows = []
        for name in classes:
            sub = t.filter(pl.col("class_name") == name)
            entry: dict[str, Any] = {"class": name}
            for role, short in (("source", "S"), ("target", "T")):
                part = sub.filter(pl.col("role") == role)
                n = part.height
                entry[f"n_{short}"] = n
                entry[f"target_acc_{short}"] = float(part["_t_ok"].mean()) if n else None
                entry[f"source_acc_{short}"] = float(part["_s_ok"].mean()) if n else None
                entry[f"mispredicted_{short}"] = int(n - part["_t_ok"].sum()) if n else 0
            rows.append(entry)
        return pl.DataFrame(rows, schema={
            "class": pl.String, "n_S": pl.Int64, "source_acc_S": pl.Float64,
            "target_acc_S": pl.Float64, "mispredicted_S": pl.Int64, "n_T": pl.Int64,
            "source_acc_T": pl.Float64, "target_acc_T": pl.Float64, "mispredicted_T": pl.Int64})
    return derived(bundle, "app.instances.class_details", build)


DETAIL_TITLES = {
    "class": "class", "n_S": "n", "n_T": "n",
    "source_acc_S": "S acc", "source_acc_T": "S acc",
    "target_acc_S": "T acc", "target_acc_T": "T acc",
    "mispredicted_S": "T wrong", "mispredicted_T": "T wrong",
}
DETAIL_GROUPS = {
    "source domain": ["n_S", "source_acc_S", "target_acc_S", "mispredicted_S"],
    "target domain": ["n_T", "source_acc_T", "target_acc_T", "mispredicted_T"],
}
DETAIL_TOOLTIPS = {
    "source_acc_S": "source model's accuracy on this class's source instances",
    "target_acc_S": "target model's accuracy on this class's source instances",
    "mispredicted_S": "source instances the target model mispredicts",
    "source_acc_T": "source model's accuracy on this class's target instances",
    "target_acc_T": "target model's accuracy on this class's target instances",
    "mispredicted_T": "target instances the target model mispredicts",
}

#: Instances up to which a class set is laid out on its own (t-SNE of ~2,400 takes ~3 s here).
MAX_CACHED_LAYOUTS = 64
#: Point sets and rendered frames a view keeps, so that a revisited class draws at once.
RECENT_FRAMES = 16
_REPROJECTIONS = itertools.count()
# (bundle identity, class set) -> layout: shared by every session of the process, read-only
_LAYOUT_LOCK = threading.Lock()
_CLASS_LAYOUTS: "OrderedDict[tuple, np.ndarray]" = OrderedDict()

_THUMB_LOCK = threading.Lock()
_THUMB_CACHE: "OrderedDict[tuple[str, int], str]" = OrderedDict()
MAX_THUMBNAILS = 50_000


def tooltip_template(bundle_key: "str | None") -> str:
    """The hover card: with ``bundle_key`` its image comes from the server's thumbnail URL of the
    point's row (nothing per point in the data), else from the data's ``thumb`` column."""
    if bundle_key is None:
        return TOOLTIP.replace("{image}", "@thumb{safe}")
    url = thumbnails.thumbnail_url(bundle_key, 0).replace("/0.png", "/@row.png")
    return TOOLTIP.replace("{image}", f'<img src="{url}" width="48" height="48" '
                                      'style="image-rendering:pixelated;border:1px solid #ccc;">')


def domain_formatter(bundle: Any) -> CustomJSHover:
    """The hover card's domain line, from the point's marker (one per domain) in the browser:
    a column of domain names would repeat one of two texts for every point on every update."""
    table = bundle.table("instances").select("role", "domain").unique()
    names = {DOMAIN_MARKERS.get(str(role), "circle"): f"{domain} ({role})"
             for role, domain in table.iter_rows()}
    # json: a safe JS literal whatever the dataset calls its domains (Bokeh escapes the output)
    return CustomJSHover(code=f"const names = {json.dumps(names)}; return names[value] ?? value;")


def thumbnail_uri(bundle: Any, row: int) -> str:
    """``data:image/png;base64,...`` of instance ``row``'s thumbnail (process-wide LRU, bounded)."""
    key = (bundle_identity(bundle), int(row))
    with _THUMB_LOCK:
        if key in _THUMB_CACHE:
            _THUMB_CACHE.move_to_end(key)
            return _THUMB_CACHE[key]
    from PIL import Image

    try:
        arr = np.asarray(bundle.array("thumbnails")[int(row)])
    except Exception:  # a bundle without thumbnails still shows everything else
        return ""
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(arr.astype(np.uint8))).save(buf, format="PNG")
    uri = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
    with _THUMB_LOCK:
        _THUMB_CACHE[key] = uri
        while len(_THUMB_CACHE) > MAX_THUMBNAILS:
            _THUMB_CACHE.popitem(last=False)
    return uri


def thumbnail_img(uri: str, size: int = 64) -> str:
    if not uri:
        return ""
    return (f'<img src="{uri}" width="{size}" height="{size}" '
            'style="image-rendering:pixelated;border:1px solid #ccc;">')


# ---------------------------------------------------------------------- rasterization
def _hex_rgb(color: str) -> tuple[int, int, int]:
    c = color.lstrip("#")
    return int(c[0:2], 16), int(c[2:4], 16), int(c[4:6], 16)


def _spread(alpha_rgba: np.ndarray, px: int) -> np.ndarray:
    """Grow every non-transparent pixel into a disc of radius ``px``, keeping the most opaque
    pixel where discs overlap (datashader's ``spread`` with ``shape="circle"``)."""
    if px <= 0:
        return alpha_rgba
    out = alpha_rgba.copy()
    h, w = alpha_rgba.shape[:2]
    for dy in range(-px, px + 1):
        for dx in range(-px, px + 1):
            if (dx == 0 and dy == 0) or dx * dx + dy * dy > px * px + px // 2:
                continue
            src = alpha_rgba[max(0, -dy):h - max(0, dy), max(0, -dx):w - max(0, dx)]
            dst = out[max(0, dy):h - max(0, -dy), max(0, dx):w - max(0, -dx)]
            better = src[..., 3] > dst[..., 3]
            dst[better] = src[better]
    return out


def spread_px(visible: int, width: int, height: int) -> int:
    """How far to spread points so that sparse ones stay visible (datashader's dynspread idea)."""
    density = visible / max(width * height, 1)
    if density < 0.005:
        return 2
    if density < 0.05:
        return 1
    return 0


def shade_categorical(counts: np.ndarray, colors: np.ndarray, *, min_alpha: int = 90) -> np.ndarray:
    """RGBA uint8 (H, W, 4) from per-category counts (H, W, C): colours blended by count,
    opacity by log total count (empty pixels transparent)."""
    counts = counts.astype(np.float32, copy=False)
    total = counts.sum(axis=-1)
    rgb = (counts @ colors) / np.maximum(total, 1.0)[..., None]
    logt = np.log1p(total)
    top = float(logt.max()) if logt.size else 0.0
    alpha = np.where(total > 0, min_alpha + (255 - min_alpha) * logt / max(top, 1e-9), 0.0)
    out = np.empty(total.shape + (4,), dtype=np.uint8)
    out[..., :3] = np.clip(rgb, 0, 255)
    out[..., 3] = alpha
    return out


def rasterize_points(points: hv.Points, mispredicted: "hv.Points | None", *, x_range, y_range,
                     width: int, height: int, colors: np.ndarray, visible: int) -> np.ndarray:
    """RGBA image (rows top→bottom) of ``points`` coloured by class, with gray halos under the
    mispredicted ones. Aggregation is HoloViews' datashader ``rasterize`` with ``count_cat``."""
    width, height = max(int(width), 10), max(int(height), 10)
    agg = rasterize(points, dynamic=False, x_range=tuple(x_range), y_range=tuple(y_range),
                    width=width, height=height, aggregator=ds.count_cat("class_name"))
    counts = np.asarray(agg.data.values if hasattr(agg.data, "values") else agg.data)
    if counts.ndim == 2:  # one category
        counts = counts[..., None]
    px = spread_px(visible, width, height)
    img = _spread(shade_categorical(counts, colors), px)
    if mispredicted is not None and len(mispredicted):
        magg = rasterize(mispredicted, dynamic=False, x_range=tuple(x_range),
                         y_range=tuple(y_range), width=width, height=height,
                         aggregator=ds.count())
        mcount = np.asarray(magg.dimension_values(2, flat=False)).reshape(height, width)
        halo = np.zeros((height, width, 4), dtype=np.uint8)
        halo[..., :3] = _hex_rgb(MISPREDICTED_COLOR)
        halo[..., 3] = np.where(np.nan_to_num(mcount) > 0, 230, 0)
        halo = _spread(halo, px + 1)
        img = _over(img, halo)
    return img[::-1]  # datashader rows go bottom→top; hv.RGB wants top→bottom


def _over(top: np.ndarray, bottom: np.ndarray) -> np.ndarray:
    """Porter-Duff "over" of two RGBA uint8 images."""
    at = top[..., 3:4].astype(np.float32) / 255
    ab = bottom[..., 3:4].astype(np.float32) / 255
    ao = at + ab * (1 - at)
    rgb = (top[..., :3] * at + bottom[..., :3] * ab * (1 - at)) / np.maximum(ao, 1e-6)
    out = np.empty_like(top)
    out[..., :3] = np.clip(rgb, 0, 255)
    out[..., 3] = np.clip(ao[..., 0] * 255, 0, 255)
    return out


_WARM_LOCK = threading.Lock()
_WARMED = [False]


def warm_up() -> None:
    """Compile datashader's numba kernels once per process (seconds), before the first user waits."""
    with _WARM_LOCK:
        if _WARMED[0]:
            return
        frame = pd.DataFrame({"x": [0.0, 1.0], "y": [0.0, 1.0],
                              "class_name": pd.Categorical(["a", "b"])})
        pts = hv.Points(frame, ["x", "y"], ["class_name"])
        rasterize_points(pts, pts, x_range=(0, 1), y_range=(0, 1), width=20, height=20,
                         colors=np.zeros((2, 3), np.float32), visible=2)
        _WARMED[0] = True


def details_height(rows: int) -> int:
    """The class details table's height: the same for one and two classes (a focus class alone or
    with its most confused), since a new height makes the browser lay the page out again."""
    return min(75 + 30 * max(rows, 2), 200)


# ---------------------------------------------------------------------- the view
class InstanceView(pn.viewable.Viewer):
    """Class selector, class details and the projection scatter of one session."""

    session = param.ClassSelector(class_=Session, doc="The session this view shows and drives")
    raster_threshold = param.Integer(
        DEFAULT_RASTER_THRESHOLD, bounds=(0, None),
        doc="Visible points above which the scatter is a datashader raster instead of glyphs")
    hover_thumbnails = param.Integer(
        DEFAULT_HOVER_THUMBNAILS, bounds=(0, None),
        doc="Visible points up to which hover tooltips carry thumbnails (tap always shows one)")
    domain = param.Selector(objects=["both", "source", "target"], default="both",
                            doc="Which domains' instances the scatter shows")
    revision = param.Integer(0, doc="Bumped when the shown point set changes (drives the plot)")
    progress = param.Number(0.0, bounds=(0, 1), doc="Re-projection progress")
    tapped_row = param.Integer(None, allow_None=True, doc="Instance row last tapped, or None")
    reprojected = param.Boolean(False, doc="True while the scatter shows a re-projected subset")
    reprojecting = param.Boolean(False, doc="True while a re-projection job runs")
    mode = param.Selector(objects=["", "raster", "glyphs"], default="",
                          doc="What the last render drew (read-only for tests and benchmarks)")
    visible_count = param.Integer(0, doc="Points inside the range of the last render")
    project_classes = param.Boolean(
        True, doc="Lay the selected classes' instances out on their own (t-SNE in the background,"
                  " cached per class set, as the paper's §5.2); the global layout shows meanwhile")

    def __init__(self, **params):
        super().__init__(**params)
        bundle = self.session.bundle
        self._classes = [str(c) for c in bundle.classes]
        self._colors = class_colors(self._classes)
        self._color_array = np.array([_hex_rgb(self._colors[c]) for c in self._classes],
                                     dtype=np.float32).reshape(len(self._classes), 3)
        self._override: "tuple[np.ndarray, np.ndarray] | None" = None
        self._last_revision = -1
        self._rendered_range: "tuple | None" = None
        self._last_frame: "tuple | None" = None  # (render arguments, overlay) of the last render
        self._shown_classes = tuple(sorted(self.session.selected_classes))
        self._class_job: "jobs.Job | None" = None
        self._override_kind = ""  # "classes" (their own layout) or "selection" (re-projected)
        self._override_token: "tuple | None" = None  # names the override's positions
        self._frame_token: tuple = ()  # names the shown point set (see _compute_subset)
        self._recent = BoundedMemo(RECENT_FRAMES)  # shown point sets and frames
        self._size = DEFAULT_SIZE
        self._job: "jobs.Job | None" = None
        self._layout = None
        self._panes: dict[str, Any] = {}
        # one card, for the instance nearest the pointer, not a list of all under it
        self._urls = bool(self.session.thumbnail_urls and bundle.has("thumbnails"))
        self._hover = HoverTool(tooltips=tooltip_template(bundle.key if self._urls else None),
                                formatters={"@marker": domain_formatter(bundle)},
                                name="tlx-instance-hover", limit=1)
        self._compute_subset()
        self._viewport = _Viewport()
        self._dmap = hv.DynamicMap(
            self._render, streams=[self._viewport, hv.streams.Params(self, ["revision"])])
        # what the browser reports goes to the viewport only when it changes the drawing: the
        # range and size it reports once the plot is laid out would otherwise make HoloViews
        # update the whole scatter again (half a second on every page)
        self._range = hv.streams.RangeXY(source=self._dmap)
        self._range.add_subscriber(self._on_range)
        self._plotsize = hv.streams.PlotSize(source=self._dmap)
        self._plotsize.add_subscriber(self._on_plot_size)
        self._tap = hv.streams.Tap(source=self._dmap, transient=True)
        self._tap.add_subscriber(self._on_tap)
        self._bounds = hv.streams.BoundsXY(source=self._dmap)
        self._bounds.add_subscriber(self._on_bounds)
        self._lasso = hv.streams.Lasso(source=self._dmap)
        self._lasso.add_subscriber(self._on_lasso)
        self._start_class_layout()

    # ------------------------------------------------------------------ data
    @property
    def bundle(self):
        return self.session.bundle

    @param.depends("session.selected_classes", "domain", watch=True)
    def _on_filter(self) -> None:
        classes = tuple(sorted(self.session.selected_classes))
        with batched():  # one message to the browser for the whole class change
            if classes != self._shown_classes:  # another class set: its layout, no old selection
                self._shown_classes = classes
                self._override = None
                self.session.selected_instances = []
                if self._start_class_layout():
                    return  # a stored layout: drawn already, once
                self.reprojected = False
            self._compute_subset()
            self.revision += 1

    # ------------------------------------------------------------------ the classes' own layout
    def _class_rows(self, classes: "tuple[str, ...]") -> np.ndarray:
        names = instance_frame(self.bundle)["class_name"].astype(str).to_numpy()
        return class_layouts.class_rows(names, classes)

    def _start_class_layout(self) -> bool:
        """Lay the selected classes' instances out on their own (paper §5.2). A focus class's set
        was laid out by ``analyze`` into the bundle's cache; other sets are laid out in the
        background (the global layout shows meanwhile) and kept in memory and in the cache.

        Returns True when a stored layout was drawn at once."""
        if self._class_job is not None:
            self._class_job.cancel()
            self._class_job = None
        classes = self._shown_classes
        if not self.project_classes or not self.bundle.has("embedding"):
            return False
        rows = self._class_rows(classes)
        if not class_layouts.wants_own_layout(len(rows), len(classes), len(self._classes)):
            return False
        key = (bundle_identity(self.bundle), classes)
        with _LAYOUT_LOCK:
            cached = _CLASS_LAYOUTS.get(key)
            if cached is not None:
                _CLASS_LAYOUTS.move_to_end(key)
        if cached is None:
            cached = class_layouts.cached_layout(self.bundle, classes, len(rows))
            if cached is not None:
                self._remember_layout(key, cached)
        if cached is not None:
            self._show_class_layout(classes, rows, cached)
            return True

        def done(xy) -> None:
            self.reprojecting = False
            if job.cancelled.is_set():
                return  # stopped early for another class set: neither cached nor shown
            xy = np.asarray(xy, dtype=np.float32)
            self._remember_layout(key, xy)
            self._show_class_layout(classes, rows, xy)

        def compute(callback=None):
            xy = class_layouts.lay_out(self.bundle, rows, callback=callback)
            if not job.cancelled.is_set():
                class_layouts.store_layout(self.bundle, classes, xy)  # False: read-only bundle
            return xy

        def failed(_exc: BaseException) -> None:
            self.reprojecting = False

        def progress(fraction: float) -> None:
            self.progress = float(fraction)

        self.reprojecting = True
        names = ", ".join(classes)
        job = jobs.submit(self.session, compute, label=f"Laying out classes {names}",
                          on_progress=progress, on_done=done, on_error=failed, min_interval=0.5)
        self._class_job = job
        return False

    @staticmethod
    def _remember_layout(key: tuple, xy: np.ndarray) -> None:
        with _LAYOUT_LOCK:
            _CLASS_LAYOUTS[key] = xy
            while len(_CLASS_LAYOUTS) > MAX_CACHED_LAYOUTS:
                _CLASS_LAYOUTS.popitem(last=False)

    def _show_class_layout(self, classes: "tuple[str, ...]", rows: np.ndarray,
                           xy: np.ndarray) -> None:
        if classes != self._shown_classes:
            return  # the user moved on meanwhile
        self._override = (rows, np.asarray(xy, dtype=np.float64))
        self._override_kind = "classes"
        self._override_token = ("classes", classes)
        self._compute_subset()
        self.reprojected = True
        self.revision += 1

    def _compute_subset(self) -> None:
        """The rows the scatter shows (selected classes, domain filter, re-projection); a set
        shown before (a revisited class) comes from the view's recent ones."""
        token = (tuple(sorted(self.session.selected_classes)), self.domain,
                 self._override_token if self._override is not None else None)
        self._frame_token = token
        (self._sub, self._sx, self._sy, self._points,
         self._mis_points) = self._recent.get(("subset", token), self._subset)

    def _subset(self) -> tuple:
        """(rows shown, their x, their y, their points, the mispredicted ones' points)."""
        base = instance_frame(self.bundle)
        if self._override is not None:
            rows, xy = self._override
            frame = base.iloc[rows].reset_index(drop=True)
            frame["x"], frame["y"] = xy[:, 0].astype(np.float64), xy[:, 1].astype(np.float64)
        else:
            frame = base
        codes = frame["class_name"].cat.codes.to_numpy()
        wanted = [self._classes.index(c) for c in self.session.selected_classes
                  if c in self._classes]
        mask = np.isin(codes, wanted)
        if self.domain != "both":
            mask &= frame["role"].to_numpy() == self.domain
        sub = frame.loc[mask, list(PLOT_COLUMNS)].reset_index(drop=True)
        mis = sub[sub["mispredicted"].to_numpy()]
        return (sub, sub["x"].to_numpy(), sub["y"].to_numpy(),
                hv.Points(sub, ["x", "y"], ["class_name", "role", "mispredicted", "row"]),
                hv.Points(mis, ["x", "y"], ["class_name"]))

    @property
    def shown_rows(self) -> np.ndarray:
        """Instance rows the scatter currently shows (all of them, not just the visible range)."""
        return self._sub["row"].to_numpy()

    def extent(self) -> tuple[tuple[float, float], tuple[float, float]]:
        """Padded data extent of the shown points."""
        if len(self._sx) == 0:
            return (0.0, 1.0), (0.0, 1.0)
        x0, x1 = float(np.nanmin(self._sx)), float(np.nanmax(self._sx))
        y0, y1 = float(np.nanmin(self._sy)), float(np.nanmax(self._sy))
        px = (x1 - x0) * 0.05 or 1.0
        py = (y1 - y0) * 0.05 or 1.0
        return (x0 - px, x1 + px), (y0 - py, y1 + py)

    def _in_range(self, x_range, y_range) -> np.ndarray:
        return ((self._sx >= x_range[0]) & (self._sx <= x_range[1])
                & (self._sy >= y_range[0]) & (self._sy <= y_range[1]))

    # ------------------------------------------------------------------ rendering
    def _empty_points(self, group: str, vdims: list[str]) -> hv.Points:
        frame = pd.DataFrame({c: pd.Series([], dtype=object) for c in ["x", "y", *vdims]})
        frame["x"] = frame["x"].astype(float)
        frame["y"] = frame["y"].astype(float)
        return hv.Points(frame, ["x", "y"], vdims, group=group)

    def _glyph_frame(self, sub: pd.DataFrame, thumbs: bool) -> pd.DataFrame:
        table = self.bundle.table("instances")
        rows = sub["row"].to_numpy()
        info = table[rows] if len(rows) else table.head(0)
        preds = info["target_pred"].to_numpy()
        labels = info["label"].to_numpy()
        names = self._classes
        frame = sub[["x", "y", "class_name", "role", "mispredicted", "row"]].copy()
        # colours and markers as plain columns: HoloViews maps them as they are, where a
        # dim().categorize() transform would look at every point's category (a third of a render)
        # markers as a plain column: HoloViews maps them as they are, where a dim().categorize()
        # transform would look at every point's category (a third of a render); colours come
        # from a colour mapper in the browser (class name -> colour), the domain from the marker
        frame["marker"] = frame["role"].map(DOMAIN_MARKERS).astype(object).fillna("circle")
        frame["class_name"] = frame["class_name"].astype(str)
        frame["instance_id"] = info["instance_id"].to_list()
        frame["prediction"] = [
            (names[p] if 0 <= p < len(names) else str(p)) + ("" if p == lab else " ✗")
            for p, lab in zip(preds, labels)]
        if not self._urls:  # notebooks, panel serve: the images themselves, while there are few
            frame["thumb"] = ([thumbnail_img(thumbnail_uri(self.bundle, r), 48) for r in rows]
                              if thumbs else [""] * len(rows))
        # served, the hover card asks the server for the row's image (no column for it)
        return frame

    #: What the glyphs carry to the browser: style and hover card only (every column is sent on
    #: each class switch, so nothing else: the role is in ``domain``, mispredictions have their
    #: own glyph).
    GLYPH_VDIMS = ["class_name", "row", "marker", "instance_id", "prediction"]

    @property
    def glyph_vdims(self) -> list[str]:
        return self.GLYPH_VDIMS + ([] if self._urls else ["thumb"])

    def _render(self, x_range=None, y_range=None, width=None, height=None, revision=0,
                **_ignored):
        if revision != self._last_revision or x_range is None or y_range is None:
            first = x_range is None or y_range is None
            x_range, y_range = self.extent()
            self._last_revision = revision
            if not first:  # a later size change draws this range, not the one zoomed before
                self._viewport.update(x_range=x_range, y_range=y_range)
        if width and height:
            self._size = (int(width), int(height))
        mask = self._in_range(x_range, y_range)
        visible = int(mask.sum())
        # the plot's pixel size only matters to a raster: glyphs stay as they are when the
        # browser reports its size (else the whole scatter would be sent twice on every load)
        key = ("frame", self._frame_token, tuple(x_range), tuple(y_range), self.raster_threshold,
               self.hover_thumbnails, self._size if visible > self.raster_threshold else None)
        if self._last_frame is not None and self._last_frame[0] == key:
            return self._last_frame[1]  # HoloViews asks again once it set the range stream
        # a point set shown before at the same range (a revisit) is not drawn again
        mode, overlay = self._recent.get(key, lambda: self._draw(x_range, y_range, mask, visible))
        self.param.update(mode=mode, visible_count=visible)
        self._rendered_range = (tuple(x_range), tuple(y_range))
        self._last_frame = (key, overlay)
        return overlay

    def _on_range(self, x_range=None, y_range=None, **_ignored) -> None:
        """The browser's range: drawn again only when it is not the range drawn last."""
        if x_range is None or y_range is None:
            return
        if self._rendered_range is not None and np.allclose(
                np.ravel(self._rendered_range), np.ravel((x_range, y_range)), rtol=1e-9, atol=0):
            return
        self._viewport.event(x_range=tuple(x_range), y_range=tuple(y_range))

    def _on_plot_size(self, width=None, height=None, **_ignored) -> None:
        """The plot's pixel size: it only matters to a raster (glyphs stay as they are)."""
        if not (width and height) or (int(width), int(height)) == self._size:
            return
        self._size = (int(width), int(height))
        if self.mode == "raster":
            self._viewport.event(width=self._size[0], height=self._size[1])

    def _draw(self, x_range, y_range, mask: np.ndarray, visible: int) -> tuple:
        """(mode, overlay) of the shown points inside the range: a raster or glyphs."""
        w, h = self._size
        bounds = (x_range[0], y_range[0], x_range[1], y_range[1])
        if visible > self.raster_threshold:
            img = rasterize_points(self._points, self._mis_points, x_range=x_range,
                                   y_range=y_range, width=w, height=h,
                                   colors=self._color_array, visible=visible)
            raster = hv.RGB(img, bounds=bounds, vdims=list("RGBA"), group="Density")
            glyphs = self._empty_points("Instances", self.glyph_vdims)
            mis = self._empty_points("Mispredicted", ["marker"])
            mode = "raster"
        else:
            raster = hv.RGB(np.zeros((1, 1, 4), np.uint8), bounds=bounds, vdims=list("RGBA"),
                            group="Density")
            vis = self._sub[mask]
            frame = self._glyph_frame(vis, thumbs=visible <= self.hover_thumbnails)
            glyphs = hv.Points(frame, ["x", "y"], self.glyph_vdims, group="Instances")
            mis = hv.Points(frame[frame["mispredicted"].to_numpy()][["x", "y", "marker"]],
                            ["x", "y"], ["marker"], group="Mispredicted")
            mode = "glyphs"
        return mode, hv.Overlay([raster, mis, glyphs]).redim.range(x=tuple(x_range),
                                                                    y=tuple(y_range))

    def plot(self) -> hv.DynamicMap:
        """The scatter's DynamicMap with its options (built once per view)."""
        # dict specs work with the backend merely imported (hv.opts.* builders need hv.extension)
        return self._dmap.opts({
            # framewise: every frame's ranges come from its elements (set to the view's range)
            "RGB.Density": {"alpha": 1.0, "framewise": True},
            "Points.Instances": {
                "color": "class_name", "cmap": dict(self._colors), "marker": "marker", "size": 9,
                "line_width": 1.8, "fill_alpha": 0.8,
                # an overlay's own "tools" option is not used by HoloViews: tools go on a layer
                "tools": [self._hover, "box_select", "lasso_select", "tap"],
                "nonselection_alpha": 0.25, "framewise": True},
            "Points.Mispredicted": {
                "color": MISPREDICTED_COLOR, "marker": "marker", "size": 13, "line_width": 3.5,
                "nonselection_alpha": 0.25, "framewise": True},
            "Overlay": {
                "responsive": True, "min_height": 300, "framewise": True, "xaxis": None,
                "yaxis": None,
                "default_tools": ["pan", "wheel_zoom", "box_zoom", "reset", *PLOT_TOOLS],
                "active_tools": ["pan", "wheel_zoom"], "toolbar": "above",
                "title": "Projection (t-SNE)", "show_legend": False,
                "backend_opts": CANVAS_BACKEND},
        })

    # ------------------------------------------------------------------ interaction
    def _on_tap(self, x=None, y=None) -> None:
        if x is None or y is None or not len(self._sx):
            return
        (x0, x1), (y0, y1) = self._rendered_range or self.extent()
        w, h = self._size
        dx = (self._sx - x) * (w / max(x1 - x0, 1e-12))
        dy = (self._sy - y) * (h / max(y1 - y0, 1e-12))
        d2 = dx * dx + dy * dy
        i = int(np.argmin(d2))
        if d2[i] <= 12 ** 2:  # within 12 px
            self.tapped_row = int(self._sub["row"].iloc[i])

    def select_rows_in_bounds(self, bounds) -> list[int]:
        """Rows of shown points inside ``(left, bottom, right, top)``."""
        if bounds is None:
            return []
        x0, y0, x1, y1 = bounds
        mask = self._in_range((min(x0, x1), max(x0, x1)), (min(y0, y1), max(y0, y1)))
        return [int(r) for r in self._sub["row"].to_numpy()[mask]]

    def select_rows_in_polygon(self, geometry) -> list[int]:
        """Rows of shown points inside the lasso polygon (``(N, 2)`` array)."""
        if geometry is None or len(geometry) < 3:
            return []
        from matplotlib.path import Path

        geometry = np.asarray(geometry, dtype=float)
        (gx0, gy0), (gx1, gy1) = geometry.min(axis=0), geometry.max(axis=0)
        box = self._in_range((gx0, gx1), (gy0, gy1))
        idx = np.flatnonzero(box)
        inside = Path(geometry).contains_points(np.column_stack([self._sx[idx], self._sy[idx]]))
        return [int(r) for r in self._sub["row"].to_numpy()[idx[inside]]]

    def _on_bounds(self, bounds=None) -> None:
        self.session.selected_instances = self.select_rows_in_bounds(bounds)

    def _on_lasso(self, geometry=None) -> None:
        self.session.selected_instances = self.select_rows_in_polygon(geometry)

    def reproject_selection(self) -> "jobs.Job | None":
        """Start re-projecting ``session.selected_instances`` in a background job."""
        rows = np.array(sorted(set(self.session.selected_instances)), dtype=np.int64)
        if len(rows) < 5:
            self.session.status = "Select at least 5 instances (box or lasso) to re-project."
            return None
        if self.reprojecting:
            self.session.status = "A re-projection is still running."
            return None
        try:
            from tlexplorer.analysis.embedding import project_subset
        except ImportError as exc:
            self.session.status = f"Re-projection is not available: {exc}"
            return None
        embeddings = np.asarray(self.bundle.array("embedding"))
        layout = np.asarray(self.bundle.array("tsne"))

        def done(xy) -> None:
            self.reprojecting = False
            self.show_reprojection(rows, np.asarray(xy))

        def failed(_exc: BaseException) -> None:
            self.reprojecting = False

        def progress(fraction: float) -> None:
            self.progress = float(fraction)

        self.reprojecting = True
        # one thread: a shared server keeps its other cores for the other sessions
        self._job = jobs.submit(self.session, project_subset, embeddings, layout, rows,
                                label=f"Re-projecting {len(rows)} instances",
                                on_progress=progress, on_done=done, on_error=failed,
                                random_state=0, n_jobs=1)
        return self._job

    def show_reprojection(self, rows: np.ndarray, xy: np.ndarray) -> None:
        """Show only ``rows`` at positions ``xy`` (a re-projection result)."""
        rows = np.asarray(rows, dtype=np.int64)
        xy = np.asarray(xy, dtype=np.float64)
        if xy.shape != (len(rows), 2):
            self.session.status = f"Re-projection returned shape {xy.shape}, not ({len(rows)}, 2)"
            return
        self._override = (rows, xy)
        self._override_kind = "selection"
        self._override_token = ("selection", next(_REPROJECTIONS))
        self._compute_subset()
        self.reprojected = True
        self.revision += 1

    def reset_projection(self) -> None:
        """Back to the bundle's projection of all instances."""
        self._override = None
        self._compute_subset()
        self.reprojected = False
        self.revision += 1

    # ------------------------------------------------------------------ panes (HTML / values)
    def legend_html(self) -> str:
        """Class swatches of the selected classes and the marker key."""
        items = []
        for c in self.session.selected_classes:
            color = self._colors.get(c, "#999")
            items.append(f'<span style="display:inline-flex;align-items:center;margin-right:10px;">'
                         f'<span style="width:11px;height:11px;border-radius:2px;'
                         f'background:{color};display:inline-block;margin-right:4px;"></span>'
                         f'{html.escape(c)}</span>')
        marks = (f'<span style="margin-left:8px;color:{SOURCE_COLOR};">✕ source</span> '
                 f'<span style="margin-left:6px;color:{TARGET_COLOR};">○ target</span> '
                 f'<span style="margin-left:6px;">'
                 f'<span style="display:inline-block;width:10px;height:10px;border-radius:50%;'
                 f'border:3px solid {MISPREDICTED_COLOR};vertical-align:middle;"></span>'
                 f' mispredicted (target model)</span>')
        return (f'<div class="tlx-instance-legend" style="font-size:12px;">'
                f'{"".join(items)}{marks}</div>')

    def details_frame(self) -> pl.DataFrame:
        """Per selected class: counts per domain, both models' accuracies, mispredictions."""
        table = class_details(self.bundle)
        return table.filter(pl.col("class").is_in(list(self.session.selected_classes)))

    def tap_detail_html(self) -> str:
        """The detail pane: thumbnail, domain, label and predictions of the tapped instance."""
        row = self.tapped_row
        if row is None:
            return ('<div class="tlx-instance-detail" style="color:#777;font-size:12px;">'
                    'Hover a point for details; click one to pin it here.</div>')
        info = self.bundle.table("instances").row(int(row), named=True)
        names = self._classes

        def name(i: int) -> str:
            return html.escape(names[i] if 0 <= i < len(names) else str(i))
        pred, spred = int(info["target_pred"]), int(info["source_pred"])
        ok = pred == int(info["label"])
        role = str(info["role"])
        img = thumbnail_img(thumbnail_uri(self.bundle, row), 96)
        return (f'<div class="tlx-instance-detail" style="display:flex;gap:10px;font-size:12px;">'
                f'<div>{img}</div><div>'
                f'<div><b>{html.escape(str(info["instance_id"]))}</b></div>'
                f'<div>domain: <span style="color:{DOMAIN_COLORS.get(role, "#333")}">'
                f'{html.escape(str(info["domain"]))} ({role})</span></div>'
                f'<div>label: {html.escape(str(info["class_name"]))}</div>'
                f'<div>target model: {name(pred)} {"✓" if ok else "✗"}</div>'
                f'<div>source model: {name(spred)}</div>'
                f'</div></div>')

    def selection_html(self) -> str:
        n = len(self.session.selected_instances)
        text = f"{n} selected" if n else "Box/lasso-select points to re-project them"
        if self.reprojected and self._override_kind == "classes":
            text += " · layout of the selected classes on their own"
        elif self.reprojected:
            text += " · showing the re-projected subset"
        elif self.reprojecting:
            text += " · global layout while the classes' own is computed"
        return f'<span class="tlx-selection-info" style="font-size:12px;">{text}</span>'

    @param.depends("session.selected_classes", watch=True)
    def _update_class_panes(self) -> None:
        if self._panes:
            self._panes["legend"].object = self.legend_html()
            frame = self.details_frame().to_pandas()
            self._panes["details"].param.update(
                value=frame, height=details_height(len(frame)))

    @param.depends("tapped_row", watch=True)
    def _update_tap_detail(self) -> None:
        if self._panes:
            self._panes["tap"].object = self.tap_detail_html()

    @param.depends("session.selected_instances", "reprojected", "reprojecting", watch=True)
    def _update_selection_info(self) -> None:
        if self._panes:
            self._panes["selection"].object = self.selection_html()

    def __panel__(self):
        if self._layout is not None:
            return self._layout
        # Choices.js renders option labels as HTML: labels escaped, values the class names
        selector = held_link(pn.widgets.MultiChoice(
            name="Classes", sizing_mode="stretch_width",
            options=escaped_options(self.session.classes), css_classes=["tlx-class-selector"]),
            self.session, "selected_classes")
        domain = pn.widgets.RadioButtonGroup.from_param(
            self.param.domain, button_type="light", width=200, margin=(25, 5, 5, 5))
        reproject = pn.widgets.Button(name="Re-project selection", button_type="primary",
                                      width=170, css_classes=["tlx-reproject"])
        reproject.on_click(lambda _e: self.reproject_selection())
        reset = pn.widgets.Button(name="Show full projection", width=170)
        reset.on_click(lambda _e: self.reset_projection())
        progress = pn.indicators.Progress(
            value=(self.param.progress.rx() * 100).rx.pipe(int), max=100, width=150, height=16,
            margin=(12, 5))
        # shown and hidden by CSS (a `visible` change lays the whole page out again)
        for widget, name in ((reset, "reprojected"), (progress, "reprojecting")):
            set_shown(widget, getattr(self, name))
            self.param.watch(lambda e, w=widget: set_shown(w, e.new), name)
        plot = pn.pane.HoloViews(self.plot(), sizing_mode="stretch_both", min_height=300,
                                 css_classes=["tlx-instance-scatter"])
        downloads = pn.Row(
            csv_download(self.details_frame, "class_details.csv", label="Classes CSV",
                         width=110),
            csv_download(self.selected_frame, "selected_instances.csv", label="Selection CSV",
                         width=120),
            margin=0)
        frame = self.details_frame().to_pandas()
        details = pn.widgets.Tabulator(
            frame, show_index=False, disabled=True, selectable=False, titles=DETAIL_TITLES,
            layout="fit_columns", sizing_mode="stretch_width",
            height=details_height(len(frame)),
            configuration=TABLE_CONFIGURATION, stylesheets=TABLE_STYLESHEETS,
            groups=DETAIL_GROUPS, header_tooltips=DETAIL_TOOLTIPS,
            formatters={c: {"type": "money", "precision": 2, "symbol": ""}
                        for c in frame.columns if "acc" in c},
            css_classes=["tlx-class-details"])
        self._panes = {
            "details": details,
            "legend": pn.pane.HTML(self.legend_html(), margin=(0, 5)),
            "tap": pn.pane.HTML(self.tap_detail_html(), margin=(0, 5)),
            "selection": pn.pane.HTML(self.selection_html(), margin=(8, 5)),
        }
        caption = pn.pane.HTML(
            '<div style="font-size:12px;color:#555;">Per selected class, over all its instances '
            'in the projection (training and validation splits of both domains): each model\'s '
            'accuracy and the target model\'s mispredictions.</div>',
            sizing_mode="stretch_width", margin=(0, 5), css_classes=["tlx-details-caption"])
        self._layout = pn.Column(
            pn.Row(selector, domain, sizing_mode="stretch_width"),
            caption, details,
            self._panes["legend"],
            plot,
            pn.Row(reproject, reset, progress, self._panes["selection"],
                   sizing_mode="stretch_width"),
            pn.Row(self._panes["tap"], pn.layout.HSpacer(), downloads,
                   sizing_mode="stretch_width"),
            sizing_mode="stretch_both", css_classes=["tlx-instance-view"])
        return self._layout

    def selected_frame(self) -> pl.DataFrame:
        """The instance table's rows of the current selection."""
        rows = sorted(set(int(r) for r in self.session.selected_instances))
        table = self.bundle.table("instances")
        return table[rows] if rows else table.head(0)


__all__ = ["InstanceView", "class_details", "instance_frame", "rasterize_points",
           "thumbnail_uri", "warm_up"]
