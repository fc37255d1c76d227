"""The dashboard: four views laid out like the paper's Fig. 1, served or inline in a notebook.

``create_app(bundle_or_path_or_list)`` builds one browser session's page (a factory: call it once
per session, never share the result); ``Explorer(bundle)`` is the notebook object.

Fig. 1 layout: statistics summary top-left, instance view bottom-left, network relation view in
the centre, feature view on the right.
"""
from __future__ import annotations

import html
import logging
from pathlib import Path
from typing import Any, Iterable, Mapping

import panel as pn
import param

from tlexplorer.app.loading import load_bundle
from tlexplorer.app.state import Session
from tlexplorer.errors import TLXError

log = logging.getLogger(__name__)

TITLE = "tlexplorer: transfer learning explorer"
EXTENSIONS = ("tabulator",)


# ---------------------------------------------------------------------- the views
def view_classes() -> dict[str, Any]:
    """The four view classes, each constructed as ``View(session=session)``."""
    from tlexplorer.app.views.features import FeatureView
    from tlexplorer.app.views.instances import InstanceView
    from tlexplorer.app.views.network import NetworkView
    from tlexplorer.app.views.stats import StatsView

    return {"stats": StatsView, "instances": InstanceView, "network": NetworkView,
            "features": FeatureView}


def _ensure_extension() -> None:
    pn.extension(*EXTENSIONS, notifications=False)


def _panel_card(view: Any, title: str, css: str) -> pn.Column:
    return pn.Column(
        pn.pane.HTML(f'<div class="tlx-view-title">{html.escape(title)}</div>', margin=(0, 8),
                     height=24),
        view, sizing_mode="stretch_both", css_classes=["tlx-card", css], scroll=True,
        styles={"border": "1px solid #e3e3e3", "border-radius": "4px", "background": "white"},
        margin=4)


CSS = """
.tlx-view-title { font-weight: 600; font-size: 13px; color: #333; text-transform: uppercase;
                  letter-spacing: .04em; padding-top: 4px; }
"""


def build_views(session: Session) -> dict[str, Any]:
    """One instance of each view for ``session``."""
    return {key: cls(session=session) for key, cls in view_classes().items()}


def dashboard_layout(views: Mapping[str, Any]) -> pn.GridSpec:
    """Fig. 1: stats top-left, instances bottom-left, network centre, features right."""
    grid = pn.GridSpec(sizing_mode="stretch_width", height=1300, css_classes=["tlx-dashboard"])
    grid[0:5, 0:4] = _panel_card(views["stats"], "A · Statistics summary", "tlx-area-stats")
    grid[5:12, 0:4] = _panel_card(views["instances"], "B · Instances", "tlx-area-instances")
    grid[0:12, 4:9] = _panel_card(views["network"], "C · Network relation", "tlx-area-network")
    grid[0:12, 9:12] = _panel_card(views["features"], "D · Features", "tlx-area-features")
    return grid


# ---------------------------------------------------------------------- URL arguments
def _decode(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        value = value[-1] if value else ""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return str(value)


def session_query() -> dict[str, str]:
    """The page's URL query arguments (``pn.state.session_args``) as strings."""
    try:
        args = pn.state.session_args or {}
    except Exception:
        return {}
    return {str(k): _decode(v) for k, v in args.items()}


def apply_query(session: Session, query: Mapping[str, Any]) -> list[str]:
    """Apply ``class`` and ``layer`` (comma-separated) from the URL; messages for bad ones."""
    problems = []
    cls = query.get("class")
    if cls not in (None, ""):
        cls = str(cls)
        if cls in session.param.focus_class.objects:
            session.focus_class = cls
        else:
            problems.append(
                f"Class {cls!r} from the URL is not in this bundle (classes: "
                f"{_short_list(session.param.focus_class.objects)}); showing "
                f"{session.focus_class!r} instead.")
    layer = query.get("layer")
    if layer not in (None, ""):
        wanted = [s.strip() for s in str(layer).split(",") if s.strip()]
        known = session.layer_names
        bad = [w for w in wanted if w not in known]
        good = [w for w in wanted if w in known]
        if bad:
            problems.append(
                f"Layer {', '.join(repr(b) for b in bad)} from the URL is not in this bundle "
                f"(layers: {_short_list(known)}); showing "
                f"{'the valid ones' if good else 'all layers'}.")
        if good:
            session.layers = good
    return problems


def _short_list(items: Iterable[Any], limit: int = 12) -> str:
    items = [str(i) for i in items]
    text = ", ".join(items[:limit])
    return text + (f", … ({len(items)} in all)" if len(items) > limit else "")


class _UrlState(param.Parameterized):
    """Adapter between the URL (``?class=…``) and a session: values from the URL are untyped
    (``?class=3`` arrives as the int 3), so they are checked here before they reach the session."""

    cls = param.Parameter(default=None, doc="?class=: the focus class")
    bundle = param.Parameter(default=None, doc="?bundle=: the bundle's name (several bundles)")

    def __init__(self, app: "App", **params):
        super().__init__(**params)
        self._app = app

    @param.depends("cls", watch=True)
    def _to_session(self) -> None:
        session = self._app.session
        if session is None or self.cls is None:
            return
        value = str(self.cls)
        if value == session.focus_class:
            return
        if value in session.param.focus_class.objects:
            session.focus_class = value
        else:
            if value != str(self._app._query.get("class")):  # that one was reported on load
                self._app.warn(f"Class {value!r} from the URL is not in this bundle; showing "
                               f"{session.focus_class!r}.")
            self.cls = session.focus_class

    @param.depends("bundle", watch=True)
    def _to_app(self) -> None:
        if self.bundle is None:
            return
        value = str(self.bundle)
        if value in self._app.sources and value != self._app.bundle_name:
            self._app.bundle_name = value  # only configured names: never a path from the URL


# ---------------------------------------------------------------------- the app
class App(param.Parameterized):
    """One browser session's page: bundle selector, alerts, and the four views."""

    session = param.ClassSelector(class_=Session, default=None, allow_None=True,
                                  doc="The current session (replaced when the bundle changes)")
    bundle_name = param.Selector(default=None, objects=[], allow_None=True,
                                 doc="Name of the bundle shown (one of the configured ones)")

    def __init__(self, sources: Mapping[str, Any], *, query: "Mapping[str, Any] | None" = None,
                 **params):
        super().__init__(**params)
        self.sources = dict(sources)
        self.param.bundle_name.objects = list(self.sources)
        self.alerts = pn.Column(sizing_mode="stretch_width", margin=0,
                                css_classes=["tlx-alerts"])
        self.content = pn.Column(sizing_mode="stretch_both", margin=0)
        self.status = pn.pane.Str("", margin=(14, 10), css_classes=["tlx-status"],
                                  styles={"color": "white", "font-size": "12px",
                                          "font-family": "inherit"})
        self.views: dict[str, Any] = {}
        self._url: "_UrlState | None" = None
        self._url_pending = True
        self._query = dict(query) if query is not None else session_query()
        name = self._query.get("bundle")
        if name is not None and name not in self.sources:
            self.warn(f"Bundle {name!r} from the URL is not served here (available: "
                      f"{_short_list(self.sources)}).")
            name = None
        if not self.sources:
            self.error("No analysis bundle was given.")
            return
        with param.parameterized.discard_events(self):
            self.bundle_name = name if name is not None else next(iter(self.sources))
        self._open()

    # messages ------------------------------------------------------------
    def _alert(self, text: str, kind: str) -> None:
        for existing in self.alerts.objects:
            if getattr(existing, "object", None) == text:
                return
        self.alerts.append(pn.pane.Alert(text, alert_type=kind, sizing_mode="stretch_width",
                                         css_classes=["tlx-alert", f"tlx-alert-{kind}"]))

    def warn(self, text: str) -> None:
        """Show a warning in the page."""
        self._alert(text, "warning")

    def error(self, text: str) -> None:
        """Show an error in the page."""
        self._alert(text, "danger")

    @property
    def messages(self) -> list[str]:
        """The texts of the alerts shown (tests)."""
        return [str(a.object) for a in self.alerts.objects]

    # bundle switching --------------------------------------------------------
    @param.depends("bundle_name", watch=True)
    def _on_bundle_name(self) -> None:
        self.alerts.clear()  # earlier messages were about the other bundle
        self._open()

    def _open(self) -> None:
        source = self.sources.get(self.bundle_name)
        try:
            bundle = load_bundle(source)
            session = Session(bundle)
        except TLXError as exc:
            self._fail(f"Cannot open bundle {self.bundle_name!r}: {exc}")
            return
        except Exception as exc:  # never a traceback page
            log.exception("opening bundle %r failed", self.bundle_name)
            self._fail(f"Cannot open bundle {self.bundle_name!r}: {type(exc).__name__}: {exc}")
            return
        if self._url_pending:  # the URL's class/layer apply to the first bundle that opens
            self._url_pending = False
            for problem in apply_query(session, self._query):
                self.warn(problem)
        try:
            views = build_views(session)
            layout = dashboard_layout(views)
        except Exception as exc:
            log.exception("building the views for %r failed", self.bundle_name)
            self._fail(f"Cannot show bundle {self.bundle_name!r}: {type(exc).__name__}: {exc}")
            return
        self.views = views
        self.session = session
        self.content[:] = [layout]
        self.status.object = session.status
        session.param.watch(lambda e: setattr(self.status, "object", e.new), "status")
        self._sync_url()

    def _fail(self, text: str) -> None:
        self.session = None
        self.views = {}
        self.content[:] = []
        self.error(text)

    def _sync_url(self) -> None:
        location = pn.state.location if pn.state.curdoc is not None else None
        if location is None or self.session is None:
            return
        if self._url is None:
            self._url = _UrlState(self, cls=self.session.focus_class, bundle=self.bundle_name)
            synced = {"cls": "class"}
            if len(self.sources) > 1:
                synced["bundle"] = "bundle"
            location.sync(self._url, synced,
                          on_error=lambda values: self.warn(
                              f"Ignored URL values {values!r}."))
        else:
            self._url.param.update(cls=self.session.focus_class, bundle=self.bundle_name)
        self.session.param.watch(
            lambda e: setattr(self._url, "cls", e.new), "focus_class")

    # page ----------------------------------------------------------------------
    def header(self) -> list[Any]:
        items: list[Any] = [self.status]
        if len(self.sources) > 1:
            items.insert(0, pn.widgets.Select.from_param(
                self.param.bundle_name, name="", width=260, margin=(8, 10),
                css_classes=["tlx-bundle-select"]))
        return items

    def template(self) -> pn.template.FastListTemplate:
        tpl = pn.template.FastListTemplate(
            title=TITLE, header=self.header(), main=[self.alerts, self.content],
            main_layout=None, accent="#1f77b4", theme_toggle=False,
            raw_css=[CSS], main_max_width="100%")
        return tpl


def _normalise_sources(obj: Any) -> dict[str, Any]:
    """``{name: path or Bundle}`` from a bundle, a path, a list of them or a mapping."""
    if isinstance(obj, Mapping):
        return {str(k): v for k, v in obj.items()}
    items = list(obj) if isinstance(obj, (list, tuple)) else [obj]
    out: dict[str, Any] = {}
    for item in items:
        if isinstance(item, (str, Path)):
            base = Path(item).expanduser().name or str(item)
        else:
            base = Path(str(getattr(item, "path", "bundle"))).name or "bundle"
        name, i = base, 2
        while name in out:
            name, i = f"{base} ({i})", i + 1
        out[name] = item
    return out


def create_app(bundles: Any, *, query: "Mapping[str, Any] | None" = None):
    """Build one session's page.

    Parameters
    ----------
    bundles : Bundle, path, list of them, or {name: path}
        What the page may show; several give a selector in the header. A served page never opens
        anything else (``?bundle=`` picks among these names only).
    query : mapping, optional
        URL arguments (``class``, ``layer``, ``bundle``); by default the page's own
        (``pn.state.session_args``).

    Returns
    -------
    panel.template.FastListTemplate
        The page; its ``tlx_app`` attribute is the :class:`App` (session, views, alerts).
    """
    _ensure_extension()
    app = App(_normalise_sources(bundles), query=query)
    tpl = app.template()
    tpl.tlx_app = app
    return tpl


class Explorer(pn.viewable.Viewer):
    """The explorer in a notebook: ``Explorer(bundle)`` displays the four views inline.

    ``.stats``, ``.instances``, ``.network`` and ``.features`` are the views, each displayable on
    its own; ``.session`` holds the selections.
    """

    session = param.ClassSelector(class_=Session, doc="This explorer's selections")

    def __init__(self, bundle: Any = None, **params):
        _ensure_extension()
        if "session" not in params:
            if bundle is None:
                raise TypeError("Explorer needs a bundle (a Bundle or the path of one)")
            params["session"] = Session(load_bundle(bundle))
        super().__init__(**params)
        self._views: dict[str, Any] = {}
        self._layout = None

    def _view(self, key: str):
        if key not in self._views:
            self._views[key] = view_classes()[key](session=self.session)
        return self._views[key]

    @property
    def stats(self):
        """The statistics summary (accuracy chart, score, confusion table)."""
        return self._view("stats")

    @property
    def instances(self):
        """The instance view (class selector, details, projection scatter)."""
        return self._view("instances")

    @property
    def network(self):
        """The network relation view."""
        return self._view("network")

    @property
    def features(self):
        """The feature view."""
        return self._view("features")

    def __panel__(self):
        if self._layout is None:
            self._layout = dashboard_layout({k: self._view(k) for k in
                                             ("stats", "instances", "network", "features")})
        return self._layout


__all__ = ["App", "Explorer", "apply_query", "build_views",
           "create_app", "dashboard_layout", "view_classes"]
