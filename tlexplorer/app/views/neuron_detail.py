"""Detail panels of the network relation view (paper §5.3.3, Fig. 1 C.1 and C.2).

* :class:`NeuronDetail`: opened by a click on a neuron index; the neuron's feature visualization, the
  five most similar neurons of the other model with theirs, and the instances that activate the
  neuron most.
* :class:`WeightDetail`: opened by a click on a weight square; the two neurons the weight joins and
  the weight's feature map on the class's top instance.

Feature visualizations come from the bundle's cache (``cache/featurevis/{model}/{layer}/{neuron}``,
filled by the pipeline for important neurons); a missing one is computed by
:class:`FeatureVisService` in a background thread (never on the event loop) and written back to the
cache, with a placeholder meanwhile. The service loads the bundle's models once per process.
"""
from __future__ import annotations

import base64
import html
import io
import logging
import threading
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable

import numpy as np
import panel as pn
import param

from tlexplorer.aggregates import aggregates_for
from tlexplorer.app.links import set_shown
from tlexplorer.app.state import Session
from tlexplorer.app.views import SOURCE_COLOR, TARGET_COLOR

log = logging.getLogger(__name__)

__all__ = ["FeatureVisService", "live_model_problem", "NeuronDetail", "WeightDetail", "feature_vis_service",
           "image_data_uri", "placeholder_html"]

DOMAIN_COLOR = {"source": SOURCE_COLOR, "target": TARGET_COLOR}


# ----------------------------------------------------------------------------- images
def image_data_uri(image: np.ndarray, size: int | None = None) -> str:
    """A ``data:image/png;base64,...`` URI of a uint8 (H, W, 3) or (H, W) image, optionally resized."""
    from PIL import Image

    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        arr = np.clip(arr, 0, 255).astype(np.uint8)
    img = Image.fromarray(arr)
    if size is not None and img.size != (size, size):
        img = img.resize((size, size), Image.NEAREST)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def img_html(image: np.ndarray | None, size: int, title: str = "", border: str = "#cccccc") -> str:
    """An ``<img>`` of ``image`` (or a placeholder box when None)."""
    if image is None:
        return placeholder_html(size, title)
    return (f"<img src='{image_data_uri(image, size)}' width='{size}' height='{size}' "
            f"title='{html.escape(title)}' style='image-rendering:pixelated;border:1px solid "
            f"{border};display:block'>")


def placeholder_html(size: int, text: str = "computing…") -> str:
    """A gray box with a small spinner, shown while a feature visualization is being computed."""
    return (f"<div class='tlx-featurevis-pending' title='{html.escape(text)}' style='width:{size}px;"
            f"height:{size}px;background:#eeeeee;border:1px dashed #bbbbbb;display:flex;"
            f"align-items:center;justify-content:center;font-size:10px;color:#777'>"
            f"<span class='tlx-spin' style='display:inline-block;width:12px;height:12px;"
            f"border:2px solid #bbb;border-top-color:#555;border-radius:50%;"
            f"animation:tlxspin 0.8s linear infinite'></span>"
            f"<style>@keyframes tlxspin{{to{{transform:rotate(360deg)}}}}</style></div>")


def unavailable_html(size: int, reason: str) -> str:
    return (f"<div title='{html.escape(reason)}' style='width:{size}px;height:{size}px;"
            f"background:#f7f7f7;border:1px solid #dddddd;display:flex;align-items:center;"
            f"justify-content:center;font-size:9px;color:#999;text-align:center'>no image</div>")


def heatmap_rgb(values: np.ndarray) -> np.ndarray:
    """A (h, w) map as a uint8 (h, w, 3) image, diverging blue-white-red around 0."""
    v = np.asarray(values, dtype=np.float64)
    m = float(np.nanmax(np.abs(v))) if v.size else 0.0
    t = np.clip(v / m, -1, 1) if m > 0 else np.zeros_like(v)
    red = np.array([214, 39, 40], float)
    blue = np.array([31, 119, 180], float)
    white = np.array([255, 255, 255], float)
    pos = np.clip(t, 0, 1)[..., None]
    neg = np.clip(-t, 0, 1)[..., None]
    rgb = white * (1 - pos - neg) + red * pos + blue * neg
    return rgb.round().astype(np.uint8)


# ----------------------------------------------------------------------------- the service
def recorded_model_spec(bundle: Any) -> Any:
    """The manifest's ``model`` entry (None for a stand-in bundle without a manifest)."""
    try:
        return bundle.manifest.get("model")
    except Exception:
        return None


def live_model_problem(spec: Any) -> "str | None":
    """One line saying why the recorded model ``spec`` cannot be built in this process, or None.

    Precomputed feature visualizations keep working either way; this only decides whether missing
    ones (and weight feature maps) can be computed live.
    """
    from tlexplorer.models.recorded import recorded_model_problem

    problem = recorded_model_problem(spec)
    if problem is None:
        return None
    return f"Live feature visualizations are unavailable: {problem}."


class FeatureVisService:
    """Feature visualizations and weight feature maps of one bundle's models, computed off the loop.

    One per bundle and process (:func:`feature_vis_service`). ``get`` answers from memory or the
    bundle cache; ``request`` computes a missing one in a single background thread (torch already
    uses several cores per operation) and calls back with the image or the exception.
    """

    def __init__(self, bundle: Any, *, memory_items: int = 512):
        self.bundle = bundle
        self._memory: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self._memory_items = memory_items
        self._pending: dict[tuple, Future] = {}
        self._missing: set[tuple] = set()  # known cache misses (a miss costs a file open)
        self._lock = threading.Lock()
        self._models: dict[str, Any] = {}
        self._model_lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tlexplorer-featurevis")
        self._failure: str | None = None  # why building the models failed, once it did
        self._spec = recorded_model_spec(bundle)

    @property
    def unavailable(self) -> "str | None":
        """Why live computations cannot run here (one line), or None. Decided before anything is
        imported or built, and again on every call: an operator may allow a factory later."""
        return self._failure or live_model_problem(self._spec)

    @unavailable.setter
    def unavailable(self, reason: "str | None") -> None:
        self._failure = reason

    # -------------------------------------------------------------- cache
    @staticmethod
    def cache_name(model: str, layer: str, neuron: int) -> str:
        return f"featurevis/{model}/{layer}/{int(neuron)}"

    def _remember(self, key: tuple, value: np.ndarray) -> None:
        with self._lock:
            self._memory[key] = value
            self._memory.move_to_end(key)
            while len(self._memory) > self._memory_items:
                self._memory.popitem(last=False)

    def get(self, model: str, layer: str, neuron: int) -> np.ndarray | None:
        """The feature visualization if already computed (memory or bundle cache), else None."""
        key = ("fv", model, layer, int(neuron))
        with self._lock:
            if key in self._memory:
                self._memory.move_to_end(key)
                return self._memory[key]
            if key in self._missing:
                return None
        try:
            arr = self.bundle.cache_array(self.cache_name(model, layer, neuron))
        except Exception:  # unreadable cache entry: recompute
            arr = None
        if arr is not None:
            arr = np.asarray(arr, dtype=np.uint8)
            self._remember(key, arr)
        else:
            with self._lock:
                self._missing.add(key)
        return arr

    # -------------------------------------------------------------- models
    def _image_options(self) -> dict:
        """The bundle's own feature-visualization settings (as ``analyze --feature-vis``)."""
        from tlexplorer.bundled import feature_vis_settings

        return feature_vis_settings(self.bundle.manifest)

    def model(self, which: str):
        """The bundle's ``which`` model (``models/{which}.pt``), built and loaded once, in eval mode.

        Built only from a built-in architecture or a factory the operator allowed
        (:func:`tlexplorer.models.recorded.build_recorded_model`): the bundle never chooses code.
        """
        with self._model_lock:
            if which in self._models:
                return self._models[which]
            from tlexplorer.models import load_checkpoint
            from tlexplorer.models.recorded import build_recorded_model

            try:
                net = build_recorded_model(self._spec)
                file = getattr(self.bundle, "file", None)
                path = file(f"models/{which}.pt") if file else self.bundle.path / "models" / f"{which}.pt"
                load_checkpoint(net, path)
            except Exception as exc:
                self.unavailable = f"model {which!r} cannot be loaded: {exc}"
                raise
            net.eval()
            self._models[which] = net
            return net

    # -------------------------------------------------------------- background work
    def _submit(self, key: tuple, work: Callable[[], np.ndarray],
                callback: Callable[[Any], None] | None) -> Future:
        with self._lock:
            fut = self._pending.get(key)
            if fut is None:
                fut = self._pending[key] = self._pool.submit(work)

                def forget(_f, key=key):
                    with self._lock:
                        self._pending.pop(key, None)
                fut.add_done_callback(forget)
        if callback is not None:
            def deliver(f: Future) -> None:
                exc = f.exception()
                callback(exc if exc is not None else f.result())
            fut.add_done_callback(deliver)
        return fut

    def request(self, model: str, layer: str, neuron: int,
                callback: Callable[[Any], None] | None = None) -> Future:
        """Compute (or fetch) a feature visualization; ``callback(image_or_exception)`` when ready.

        The callback runs in the worker thread (or right away when cached): callers that touch a
        session wrap it with :func:`tlexplorer.app.jobs.call_in_session`.
        """
        return self.request_many(model, layer, [neuron], callback)[0]

    def request_many(self, model: str, layer: str, neurons: list[int],
                     callback: Callable[[Any], None] | None = None,
                     batch_size: int = 16) -> list[Future]:
        """Like :meth:`request` for several neurons of one layer, optimised together in batches.

        ``callback`` is called once per neuron (with its image or the exception). Returns one
        future per neuron, in the order given.
        """
        futures: list[Future] = []
        todo: list[tuple[int, Future]] = []
        for neuron in neurons:
            neuron = int(neuron)
            cached = self.get(model, layer, neuron)
            key = ("fv", model, layer, neuron)
            if cached is not None:
                fut: Future = Future()
                fut.set_result(cached)
            else:
                with self._lock:
                    fut = self._pending.get(key)
                    if fut is None:
                        fut = self._pending[key] = Future()
                        todo.append((neuron, fut))
            futures.append(fut)
        for start in range(0, len(todo), batch_size):
            self._pool.submit(self._visualize_batch, model, layer, todo[start:start + batch_size])
        if callback is not None:
            for fut in futures:
                fut.add_done_callback(
                    lambda f: callback(f.exception() if f.exception() is not None else f.result()))
        return futures

    def _visualize_batch(self, model: str, layer: str, items: list[tuple[int, Future]]) -> None:
        """Worker: optimise the feature visualizations of ``items`` together, resolve their futures."""
        neurons = [n for n, _f in items]
        try:
            from tlexplorer.analysis import featurevis
            from tlexplorer.config import resolve_device

            if self.unavailable:
                raise RuntimeError(self.unavailable)
            net = self.model(model)
            images = featurevis.visualize_neurons(net, layer, neurons, device=resolve_device(),
                                                  **self._image_options())
        except BaseException as exc:  # delivered to every waiting caller
            for n, fut in items:
                with self._lock:
                    self._pending.pop(("fv", model, layer, n), None)
                fut.set_exception(exc)
            return
        for (n, fut), img in zip(items, images):
            img = np.asarray(img, dtype=np.uint8)
            key = ("fv", model, layer, n)
            self._remember(key, img)
            with self._lock:
                self._missing.discard(key)
                self._pending.pop(key, None)
            try:
                self.bundle.write_cache_array(self.cache_name(model, layer, n), img)
            except Exception:  # read-only bundle: keep it in memory only
                log.debug("could not cache %s", key, exc_info=True)
            fut.set_result(img)

    def input_tensor(self, row: int):
        """The instance ``row``'s thumbnail as a normalised model input (1, 3, S, S) tensor.

        The bundle keeps thumbnails, not full images; they are resized to the model's input size.
        """
        import torch
        from PIL import Image

        opts = self._image_options()
        thumb = np.asarray(self.bundle.array("thumbnails")[int(row)], dtype=np.uint8)
        size = opts["image_size"]
        img = Image.fromarray(thumb)
        if img.size != (size, size):
            img = img.resize((size, size), Image.BILINEAR)
        x = np.asarray(img, dtype=np.float32) / 255.0
        x = (x - np.asarray(opts["mean"], np.float32)) / np.asarray(opts["std"], np.float32)
        return torch.from_numpy(x.transpose(2, 0, 1).copy())[None]

    def request_weight_map(self, model: str, layer_from: str, layer_to: str, n1: int, n2: int,
                           row: int, callback: Callable[[Any], None] | None = None) -> Future:
        """The weight's feature map on instance ``row`` (``featurevis.weight_feature_map``)."""
        key = ("wm", model, layer_from, layer_to, int(n1), int(n2), int(row))
        with self._lock:
            if key in self._memory:
                value = self._memory[key]
                fut: Future = Future()
                fut.set_result(value)
                if callback is not None:
                    callback(value)
                return fut

        def work() -> np.ndarray:
            from tlexplorer.analysis import featurevis

            if self.unavailable:
                raise RuntimeError(self.unavailable)
            net = self.model(model)
            x = self.input_tensor(row)
            fmap = featurevis.weight_feature_map(net, layer_from, layer_to, int(n1), int(n2), x)
            if hasattr(fmap, "detach"):
                fmap = fmap.detach().cpu().numpy()
            fmap = np.asarray(fmap, dtype=np.float32)
            if fmap.ndim == 0:
                fmap = fmap.reshape(1, 1)
            elif fmap.ndim == 1:
                fmap = fmap.reshape(1, -1)
            self._remember(key, fmap)
            return fmap
        return self._submit(key, work, callback)


_SERVICES: "OrderedDict[str, FeatureVisService]" = OrderedDict()
_SERVICES_LOCK = threading.Lock()


def feature_vis_service(bundle: Any) -> FeatureVisService:
    """The process-wide :class:`FeatureVisService` of ``bundle`` (by ``bundle.key``)."""
    key = str(getattr(bundle, "key", None) or getattr(bundle, "path"))
    with _SERVICES_LOCK:
        svc = _SERVICES.get(key)
        if svc is None:
            svc = _SERVICES[key] = FeatureVisService(bundle)
        else:
            svc.bundle = bundle  # same content, maybe reopened elsewhere: use the newest handle
        _SERVICES.move_to_end(key)
        while len(_SERVICES) > 4:
            _SERVICES.popitem(last=False)
        return svc


def _session_doc():
    doc = pn.state.curdoc
    return doc if doc is not None and getattr(doc, "session_context", None) is not None else None


def _call_in_session(doc: Any, fn: Callable[[], None]) -> None:
    from tlexplorer.app.jobs import call_in_session

    call_in_session(doc, fn)


class FeatureVisImage:
    """An HTML pane showing one neuron's feature visualization, filled in when it is ready."""

    def __init__(self, service: FeatureVisService, model: str, layer: str, neuron: int,
                 size: int = 96, title: str = ""):
        self.key = (model, layer, int(neuron))
        self.size = size
        self.title = title or f"{model} {layer} #{neuron}"
        self.pane = pn.pane.HTML(placeholder_html(size), width=size + 4, height=size + 4,
                                 margin=2)
        image = service.get(model, layer, neuron)
        if image is not None:
            self.pane.object = img_html(image, size, self.title, DOMAIN_COLOR.get(model, "#ccc"))
            return
        if service.unavailable:
            self.pane.object = unavailable_html(size, service.unavailable)
            return
        doc = _session_doc()

        def done(result: Any) -> None:
            def apply() -> None:
                if isinstance(result, BaseException):
                    self.pane.object = unavailable_html(size, f"{type(result).__name__}: {result}")
                else:
                    self.pane.object = img_html(result, size, self.title,
                                                DOMAIN_COLOR.get(model, "#ccc"))
            _call_in_session(doc, apply)
        service.request(model, layer, neuron, done)


# ----------------------------------------------------------------------------- panels
class NeuronDetail(pn.viewable.Viewer):
    """Detail panel of ``session.selected_neuron`` (Fig. 1 C.1), hidden while nothing is selected.

    The panel carries ``css_classes=["tlx-neuron-detail"]`` for browser tests.
    """

    session = param.ClassSelector(class_=Session, doc="The browser session's state")
    k = param.Integer(default=5, bounds=(1, 20), doc="Similar neurons / top instances shown")
    image_size = param.Integer(default=112, doc="Pixels of the main feature visualization")

    def __init__(self, **params: Any):
        super().__init__(**params)
        self._agg = aggregates_for(self.session.bundle)
        self._service = feature_vis_service(self.session.bundle)
        self._close = pn.widgets.Button(name="✕", width=34, height=30, button_type="light",
                                        margin=(0, 0))
        self._close.on_click(lambda _e: setattr(self.session, "selected_neuron", None))
        self._title = pn.pane.HTML("", margin=(4, 5), sizing_mode="stretch_width")
        self._body = pn.Column(sizing_mode="stretch_width", margin=0)
        self._panel = pn.Column(
            pn.Row(self._title, self._close, sizing_mode="stretch_width"), self._body,
            css_classes=["tlx-neuron-detail"], sizing_mode="stretch_width",
            styles={"border": "1px solid #dddddd", "border-radius": "4px",
                    "background": "#ffffff"}, margin=(5, 5))
        self.session.param.watch(self._refresh, ["selected_neuron", "focus_class"])
        self._refresh()

    @property
    def panel(self) -> pn.Column:
        return self._panel

    def _refresh(self, *events: Any) -> None:
        sel = self.session.selected_neuron
        if sel is None or self.session.focus_class is None:
            set_shown(self._panel, False)
            self._body.objects = []
            return
        model, layer, neuron = sel
        cls = self.session.focus_class
        ranking = self._agg.neuron_ranking(model, cls, layer)
        rank = int(ranking.rank[neuron]) if neuron < len(ranking.rank) else None
        color = DOMAIN_COLOR.get(model, "#333")
        li = self._agg.layer_names.index(layer) + 1 if layer in self._agg.layer_names else "?"
        self._title.object = (
            f"<b style='color:{color}'>{html.escape(model)}</b> "
            f"<b>L{li} {html.escape(layer)} #{int(neuron)}</b>"
            f"<span style='color:#666'> · rank {rank} for class {html.escape(str(cls))}</span>")
        main = FeatureVisImage(self._service, model, layer, neuron, self.image_size)
        other = "source" if model == "target" else "target"
        similar = self._agg.top_similar(model, layer, neuron, cls, k=self.k)
        if not self._service.unavailable:  # one batched optimisation for the five
            self._service.request_many(other, layer, similar["neuron"].to_list())
        cards = []
        for row in similar.iter_rows(named=True):
            img = FeatureVisImage(self._service, other, layer, row["neuron"], 52)
            btn = pn.widgets.Button(name=f"#{row['neuron']}", width=56, height=26, margin=(0, 2),
                                    button_type="light")
            btn.on_click(lambda _e, n=row["neuron"]: setattr(
                self.session, "selected_neuron", (other, layer, int(n))))
            cards.append(pn.Column(
                img.pane, btn,
                pn.pane.HTML(f"<span style='font-size:10px'>sim {row['similarity']:.3f}<br>"
                             f"rank {row['rank']}</span>", margin=(0, 2)),
                width=60, margin=1))
        rows = self._agg.top_activating(model, layer, neuron, k=self.k, domain="target", cls=cls)
        thumbs = ""
        try:
            thumbnails = self.session.bundle.array("thumbnails")
            for r in rows:
                thumbs += img_html(np.asarray(thumbnails[int(r)]), 48, f"instance row {int(r)}")
        except Exception:  # bundle without thumbnails
            thumbs = "<i>no thumbnails</i>"
        self._body.objects = [
            pn.Row(main.pane, pn.pane.HTML(
                f"<div style='font-size:12px'>Feature visualization of the neuron.<br>"
                f"Similar {other} neurons below (cosine of conductance over class "
                f"{html.escape(str(cls))}).</div>", width=180)),
            pn.pane.HTML(f"<b style='font-size:12px'>Top {self.k} similar "
                         f"<span style='color:{DOMAIN_COLOR[other]}'>{other}</span> neurons</b>",
                         margin=(2, 5)),
            pn.Row(*cards, margin=0),
            pn.pane.HTML(f"<b style='font-size:12px'>Target instances of class "
                         f"{html.escape(str(cls))} that activate it most</b>"
                         f"<div style='display:flex;gap:3px'>{thumbs}</div>", margin=(2, 5)),
        ]
        set_shown(self._panel, True)

    def __panel__(self):
        return self._panel


class WeightDetail(pn.viewable.Viewer):
    """Detail panel of ``session.selected_weight`` (Fig. 1 C.2): connected neurons, feature map.

    The panel carries ``css_classes=["tlx-weight-detail"]``.
    """

    session = param.ClassSelector(class_=Session, doc="The browser session's state")

    def __init__(self, **params: Any):
        super().__init__(**params)
        self._agg = aggregates_for(self.session.bundle)
        self._service = feature_vis_service(self.session.bundle)
        self._close = pn.widgets.Button(name="✕", width=34, height=30, button_type="light",
                                        margin=(0, 0))
        self._close.on_click(lambda _e: setattr(self.session, "selected_weight", None))
        self._title = pn.pane.HTML("", margin=(4, 5), sizing_mode="stretch_width")
        self._body = pn.Column(sizing_mode="stretch_width", margin=0)
        self._map = pn.pane.HTML("", margin=2)
        self._panel = pn.Column(
            pn.Row(self._title, self._close, sizing_mode="stretch_width"), self._body,
            css_classes=["tlx-weight-detail"], sizing_mode="stretch_width",
            styles={"border": "1px solid #dddddd", "border-radius": "4px",
                    "background": "#ffffff"}, margin=(5, 5))
        self._request_key = None
        self.session.param.watch(self._refresh, ["selected_weight", "focus_class"])
        self._refresh()

    def _refresh(self, *events: Any) -> None:
        sel = self.session.selected_weight
        cls = self.session.focus_class
        if sel is None or cls is None:
            set_shown(self._panel, False)
            self._body.objects = []
            return
        model, lf, lt, n1, n2 = sel
        color = DOMAIN_COLOR.get(model, "#333")
        iw = self._agg.important_weights(model, cls, lf, lt)
        hit = iw.filter((iw["n1"] == n1) & (iw["n2"] == n2))
        w = self._agg.weight_values(model, lf, lt)
        value = float(w[n1, n2]) if w is not None else float("nan")
        if hit.height:
            r = hit.row(0, named=True)
            inh = r["inherited"]
            facts = (f"important weight, rank {r['rank']}, count {r['count']}"
                     + ("" if inh is None else
                        f"<br>{'inherited' if inh else 'no source correspondence'} "
                        f"(most similar source neurons #{r['n1_match']} → #{r['n2_match']})"))
        else:
            facts = "not among the class's important weights"
        self._title.object = (f"<b style='color:{color}'>{html.escape(model)}</b> weight "
                              f"<b>{html.escape(lf)} #{n1} → {html.escape(lt)} #{n2}</b>")
        a = FeatureVisImage(self._service, model, lf, n1, 72)
        b = FeatureVisImage(self._service, model, lt, n2, 72)
        rows = self._agg.top_activating(model, lt, n2, k=1, domain="target", cls=cls)
        self._map.object = placeholder_html(72, "weight feature map")
        map_row = self._map
        if rows.size:
            row = int(rows[0])
            key = (model, lf, lt, n1, n2, row)
            self._request_key = key
            doc = _session_doc()
            thumb_html = ""
            try:
                thumb_html = img_html(np.asarray(self.session.bundle.array("thumbnails")[row]), 72,
                                      f"instance row {row}")
            except Exception:
                pass

            def done(result: Any) -> None:
                def apply() -> None:
                    if self._request_key != key:
                        return
                    if isinstance(result, BaseException):
                        self._map.object = unavailable_html(
                            72, f"{type(result).__name__}: {result}")
                    else:
                        self._map.object = img_html(heatmap_rgb(result), 72,
                                                    "weight feature map (red +, blue −)")
                _call_in_session(doc, apply)
            if self._service.unavailable:
                self._map.object = unavailable_html(72, self._service.unavailable)
            else:
                self._service.request_weight_map(model, lf, lt, n1, n2, row, done)
            map_row = pn.Row(pn.pane.HTML(thumb_html, margin=2), self._map,
                             pn.pane.HTML(f"<span style='font-size:11px'>feature map on the "
                                          f"class's top instance (row {row})</span>", width=120))
        self._body.objects = [
            pn.pane.HTML(f"<div style='font-size:12px'>value {value:.4f} · {facts}</div>",
                         margin=(0, 5)),
            pn.Row(pn.Column(a.pane, pn.pane.HTML(f"<span style='font-size:11px'>{html.escape(lf)}"
                                                  f" #{n1}</span>", margin=(0, 2))),
                   pn.pane.HTML("<div style='font-size:22px;padding-top:26px'>→</div>", width=30),
                   pn.Column(b.pane, pn.pane.HTML(f"<span style='font-size:11px'>{html.escape(lt)}"
                                                  f" #{n2}</span>", margin=(0, 2)))),
            map_row,
        ]
        set_shown(self._panel, True)

    def __panel__(self):
        return self._panel
