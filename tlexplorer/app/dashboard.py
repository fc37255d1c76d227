"""The dashboard: four views laid out like the paper's Fig. 1, served or inline in a notebook.

``create_app(bundle_or_path_or_list)`` builds one browser session's page (a factory: call it once
per session, never share the result); ``Explorer(bundle)`` is the notebook object.

Fig. 1 layout: statistics summary top-left, instance view bottom-left, network relation view in
the centre, feature view on the right.
"""
from __future__ import annotations

import logging
import threading
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import panel as pn
import param
from panel.io.state import set_curdoc

from tlexplorer.app.links import batched, preparing
from tlexplorer.app.loading import load_bundle
from tlexplorer.app.page_grid import COLUMNS, grid_css
from tlexplorer.app.panel_fixes import fix_stranded_writes, no_mathjax
from tlexplorer.app.state import Session
from tlexplorer.app.text import escape, message_html
from tlexplorer.app.wire import inline_small_arrays
from tlexplorer.errors import TLXError

log = logging.getLogger(__name__)

TITLE = "tlexplorer: transfer learning explorer"
EXTENSIONS = ("tabulator",)


# ---------------------------------------------------------------------- the views
#: The four views: key -> (card title, card CSS class). Fig. 1's areas A–D.
VIEWS = {
    "stats": ("A · Statistics summary", "tlx-area-stats"),
    "instances": ("B · Instances", "tlx-area-instances"),
    "network": ("C · Network relation", "tlx-area-network"),
    "features": ("D · Features", "tlx-area-features"),
}
#: Order in which a served page fills its cards. The server builds one view while the browser draws
#: the one before, so a view that is quick to build but slow to draw (the instance scatter) goes
#: early and the ones slower to build than to draw go last (Johnson's rule for a two-stage line).
BUILD_ORDER = ("stats", "instances", "network", "features")
#: The event-loop steps that put the views into their cards, each one message to the browser.
#: One view per step lets the loop serve other pages in between (a step holds it 0.1–0.3 s on
#: the demo); two views per step drew a single page no sooner in measurements (under load).
BUILD_STEPS = tuple((key,) for key in BUILD_ORDER)


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
    inline_small_arrays()  # small columns inside messages, not as buffers: see app/wire.py
    fix_stranded_writes()  # see app/panel_fixes.py
    no_mathjax()


def _panel_card(view: Any, key: str) -> pn.Column:
    """The card of view ``key``: its title over ``view``, at the card's height (CARD_HEIGHTS)."""
    title, css = VIEWS[key]
    return pn.Column(
        pn.pane.HTML(f'<div class="tlx-view-title" style="{TITLE_STYLE}">{escape(title)}</div>',
                     margin=(0, 8), height=24),
        view, sizing_mode="stretch_width", height=CARD_HEIGHTS[key],
        css_classes=["tlx-card", css], scroll=True,
        styles={"border": "1px solid #e3e3e3", "border-radius": "4px", "background": "white"},
        margin=4)


# inline: a page stylesheet does not reach into the panes' shadow DOM
TITLE_STYLE = ("font-weight:600;font-size:13px;color:#333;text-transform:uppercase;"
               "letter-spacing:.04em;padding-top:4px;white-space:nowrap")


def _note_html(text: str) -> str:
    """A wait note with a small spinner (a light busy state while the view is being built)."""
    return ('<style>@keyframes tlxspin{to{transform:rotate(360deg)}}</style>'
            '<div class="tlx-card-note" style="color:#666;font-size:13px;padding:12px 8px;'
            'display:flex;gap:8px;align-items:center;">'
            '<span style="flex:none;width:12px;height:12px;border:2px solid #ccc;'
            'border-top-color:#1f77b4;border-radius:50%;animation:tlxspin .9s linear infinite">'
            f'</span><span>{escape(text)}</span></div>')


class ViewCard:
    """One view's place on the page: its title, and a short note until the view is in it."""

    def __init__(self, key: str):
        self.key = key
        self._note = pn.pane.HTML(_note_html("Preparing this view…"), sizing_mode="stretch_width")
        self.body = pn.Column(self._note, sizing_mode="stretch_both", margin=0)
        self.panel = _panel_card(self.body, key)

    def note(self, text: str) -> None:
        """Show ``text`` (a wait or progress note) instead of the view: the shown note's text
        changes in place (replacing the card's content lays the whole page out again)."""
        self._note.object = _note_html(text)  # no change is sent when the text is the same
        if len(self.body) != 1 or self.body[0] is not self._note:
            self.body[:] = [self._note]

    def fail(self, text: str) -> None:
        """Say in one line why this view cannot be shown (the other views keep working)."""
        self.body[:] = [pn.pane.HTML(message_html(text, "danger"), sizing_mode="stretch_width",
                                     css_classes=["tlx-view-error"])]

    def show(self, view: Any) -> None:
        self.body[:] = [view]


def build_views(session: Session) -> dict[str, Any]:
    """One instance of each view for ``session``."""
    return {key: cls(session=session) for key, cls in view_classes().items()}


#: Card heights (px) and flex settings (from app/page_grid.COLUMNS): Fig. 1's arrangement where
#: the window is wide enough (stats over instances | network | features), the feature view below
#: the others on narrower screens, each card full width on a narrow one. The page scrolls; the
#: cards do not squeeze.
STATS_HEIGHT, INSTANCES_HEIGHT = 560, 830
TALL = STATS_HEIGHT + INSTANCES_HEIGHT + 8
CARD_HEIGHTS = {"stats": STATS_HEIGHT, "instances": INSTANCES_HEIGHT, "network": TALL,
                "features": TALL}
FLEX = {part: (f"{grow:g} 1 {basis}px", least) for part, (basis, grow, least) in COLUMNS.items()}


def dashboard_layout(views: Mapping[str, Any]) -> pn.FlexBox:
    """Fig. 1: stats top-left, instances bottom-left, network centre, features right; on narrower
    windows the feature view wraps below (the page scrolls rather than squeezing a view).

    The notebook's layout (one output cell); the served page places its cards with the same
    widths by CSS instead, each card a root of its own (``app/page_grid.py``).

    ``views`` maps each key of :data:`VIEWS` to a view or to a :class:`ViewCard` (already carded).
    """
    def card(key: str):
        item = views[key]
        return item.panel if isinstance(item, ViewCard) else _panel_card(item, key)

    def flex(part: str) -> dict:
        basis, min_width = FLEX[part]
        return {"styles": {"flex": basis}, "min_width": min_width}

    left = pn.Column(card("stats"), card("instances"),
                     sizing_mode="stretch_width", margin=0, **flex("left"))
    network = pn.Column(card("network"), sizing_mode="stretch_width", margin=0,
                        **flex("network"))
    features = pn.Column(card("features"), sizing_mode="stretch_width", margin=0,
                         **flex("features"))
    return pn.FlexBox(left, network, features, flex_wrap="wrap", align_items="flex-start",
                      sizing_mode="stretch_width", css_classes=["tlx-dashboard"])


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
def served_session() -> bool:
    """Whether the code runs for a browser session of a Bokeh server (not a notebook or a test)."""
    doc = pn.state.curdoc
    return doc is not None and getattr(doc, "session_context", None) is not None


class App(param.Parameterized):
    """One browser session's page: bundle selector, messages, and the four views.

    Served, the page is a frame first: the header and four cards saying they are being prepared.
    Once the browser has loaded it, the process's :class:`~tlexplorer.app.builds.BuildQueue`
    builds the session and fills the cards one by one (``progressive``); elsewhere (notebooks,
    tests) everything is built at once.
    """

    session = param.ClassSelector(class_=Session, default=None, allow_None=True,
                                  doc="The current session (replaced when the bundle changes)")
    bundle_name = param.Selector(default=None, objects=[], allow_None=True,
                                 doc="Name of the bundle shown (one of the configured ones)")

    def __init__(self, sources: Mapping[str, Any], *, query: "Mapping[str, Any] | None" = None,
                 progressive: "bool | None" = None, thumbnail_urls: bool = False, **params):
        super().__init__(**params)
        self.thumbnail_urls = thumbnail_urls
        self.sources = dict(sources)
        self.param.bundle_name.objects = list(self.sources)
        self.progressive = served_session() if progressive is None else bool(progressive)
        self.alerts = pn.Column(sizing_mode="stretch_width", margin=0,
                                css_classes=["tlx-alerts"])
        self.analysis_warnings = pn.Column(sizing_mode="stretch_width", margin=(0, 8),
                                           css_classes=["tlx-analysis-warnings-area"])
        self._messages: list[str] = []
        # each card a root of the page, placed by app/page_grid.py (a view's arrival lays out
        # its own card only)
        self.cards = {key: ViewCard(key) for key in VIEWS}
        self.status = pn.pane.HTML("", margin=(14, 10), css_classes=["tlx-status"],
                                   styles={"color": "white", "font-size": "12px"})
        self.views: dict[str, Any] = {}
        self._url: "_UrlState | None" = None
        self._url_pending = True
        self._job: Any = None
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
        if text in self._messages:
            return
        self._messages.append(text)
        self.alerts.append(pn.pane.HTML(message_html(text, kind), sizing_mode="stretch_width",
                                        css_classes=["tlx-alert", f"tlx-alert-{kind}"],
                                        margin=(4, 8)))

    def warn(self, text: str) -> None:
        """Show a warning in the page (as text: nothing in it is markup)."""
        self._alert(text, "warning")

    def error(self, text: str) -> None:
        """Show an error in the page (as text)."""
        self._alert(text, "danger")

    def _clear_messages(self) -> None:
        self._messages = []
        self.alerts.clear()

    @property
    def messages(self) -> list[str]:
        """The texts of the messages shown (tests)."""
        return list(self._messages)

    def _show_analysis_warnings(self, bundle: Any) -> None:
        """The analysis's warnings (skipped layer pairs, completeness gaps, ...) as a count that
        opens the list, so that what only manifest.json said is visible."""
        try:
            warnings = [str(w) for w in (bundle.manifest.get("warnings") or [])]
        except Exception:
            warnings = []
        if not warnings:
            self.analysis_warnings[:] = []
            return
        items = "".join(f"<li>{escape(w)}</li>" for w in warnings)
        listing = pn.pane.HTML(
            f'<ul style="margin:4px 0 4px 18px;padding:0;font-size:12px;color:#664d03;">'
            f'{items}</ul>', sizing_mode="stretch_width", visible=False,
            css_classes=["tlx-analysis-warnings-list"])
        toggle = pn.widgets.Toggle(
            name=f"⚠ {len(warnings)} warning{'s' if len(warnings) != 1 else ''} from the "
                 "analysis", button_type="warning", button_style="outline", width=260,
            css_classes=["tlx-analysis-warnings"])
        toggle.link(listing, value="visible")
        self.analysis_warnings[:] = [toggle, listing]

    def _set_status(self, text: str) -> None:
        self.status.object = escape(text)

    # bundle switching --------------------------------------------------------
    @param.depends("bundle_name", watch=True)
    def _on_bundle_name(self) -> None:
        self._clear_messages()  # earlier messages were about the other bundle
        self._open()

    def _open(self) -> None:
        if self._job is not None:
            self._job.cancel()
            self._job = None
        try:
            bundle = load_bundle(self.sources.get(self.bundle_name))
        except TLXError as exc:
            self._fail(f"Cannot open bundle {self.bundle_name!r}: {exc}")
            return
        except Exception as exc:  # never a traceback page
            log.exception("opening bundle %r failed", self.bundle_name)
            self._fail(f"Cannot open bundle {self.bundle_name!r}: {type(exc).__name__}: {exc}")
            return
        self._show_cards(True)
        if self.progressive:
            for card in self.cards.values():
                card.note("Preparing this view…")
            early = self._prepare_early(bundle)
            pn.state.onload(lambda: self._queue_build(bundle, early))
        else:
            prepared = self._prepare(bundle)
            self._attach_session(prepared)
            for key in BUILD_ORDER:
                self._attach_view(prepared, key)

    def _fail(self, text: str) -> None:
        self.session = None
        self.views = {}
        self._show_cards(False)
        self.error(text)

    def _show_cards(self, shown: bool) -> None:
        for card in self.cards.values():
            card.panel.visible = shown

    # building -------------------------------------------------------------------
    def _prepare(self, bundle: Any) -> dict:
        """The session and its views as plain Python objects (no Bokeh document is touched:
        a served page runs this in a worker thread). A view that fails is kept as its error."""
        with preparing():
            return self._prepare_objects(bundle)

    def _prepare_objects(self, bundle: Any) -> dict:
        session = Session(bundle, thumbnail_urls=self.thumbnail_urls)
        problems = apply_query(session, self._query) if self._url_pending else []
        self._url_pending = False
        views, errors = {}, {}
        for key, cls in view_classes().items():
            try:
                view = cls(session=session)
                view.__panel__()  # builds its widgets and plots now, off the event loop
                views[key] = view
            except Exception as exc:
                log.exception("building the %s view of %r failed", key, self.bundle_name)
                errors[key] = exc
        return {"session": session, "views": views, "errors": errors, "problems": problems}

    def _attach_session(self, prepared: dict) -> None:
        session = prepared["session"]
        self.views = prepared["views"]
        self.session = session
        for problem in prepared["problems"]:
            self.warn(problem)
        problem = live_computation_problem(session.bundle)
        if problem:
            self.warn(problem)
        self._show_analysis_warnings(session.bundle)
        self._set_status(session.status)
        session.param.watch(lambda e: self._set_status(e.new), "status")
        self._sync_url()

    def _attach_views(self, prepared: dict, keys: Sequence[str]) -> None:
        with batched():  # the views of one step reach the browser as one message
            for key in keys:
                self._attach_view(prepared, key)

    def _attach_view(self, prepared: dict, key: str) -> None:
        card = self.cards[key]
        if key in prepared["errors"]:
            exc = prepared["errors"][key]
            card.fail(f"This view cannot be shown: {exc}" if isinstance(exc, TLXError) else
                      f"This view cannot be shown: {type(exc).__name__}: {exc}")
        else:
            card.show(prepared["views"][key])

    def _prepare_early(self, bundle: Any) -> "Future | None":
        """Prepare the page's session and views while the browser is still loading the page
        (0.3 s of the 0.8 s it takes), when no other page is being built; None otherwise (then
        the page prepares in its turn, so that abandoned requests cost nothing under load)."""
        from tlexplorer.app.builds import build_queue

        if not build_queue().idle():
            return None
        doc, future = pn.state.curdoc, Future()

        def run() -> None:
            try:
                with set_curdoc(doc):
                    future.set_result(self._prepare(bundle))
            except BaseException as exc:  # reported by the page's build, in its turn
                future.set_exception(exc)
        threading.Thread(target=run, name="tlexplorer-early-prepare", daemon=True).start()
        return future

    def _queue_build(self, bundle: Any, early: "Future | None" = None) -> None:
        from tlexplorer.app.builds import BuildJob, build_queue

        prepared: dict = {}

        def prepare() -> None:
            if early is not None:
                prepared.update(early.result())
                return
            with set_curdoc(doc):
                prepared.update(self._prepare(bundle))

        def waiting(ahead: int) -> None:
            text = (f"The server is busy: {ahead} page{'s' if ahead != 1 else ''} ahead of this "
                    "one. It fills in by itself; no need to reload.")
            for card in self.cards.values():
                if card.key not in self.views:
                    card.note(text)

        def failed(exc: BaseException) -> None:
            text = str(exc) if isinstance(exc, TLXError) else f"{type(exc).__name__}: {exc}"
            self._fail(f"Cannot show bundle {self.bundle_name!r}: {text}")

        doc = pn.state.curdoc

        def first_step() -> None:  # the session's status and warnings go with the first view
            with batched():
                self._attach_session(prepared)
                self._attach_views(prepared, BUILD_STEPS[0])
        steps = [first_step]
        steps += [lambda keys=keys: self._attach_views(prepared, keys) for keys in BUILD_STEPS[1:]]
        self._job = BuildJob(doc, prepare, steps, on_position=waiting, on_error=failed)
        build_queue().submit(self._job)

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
                css_classes=["tlx-bundle-select"],
                # the header's white text would otherwise be the chosen name's colour too, on
                # the select's white background
                stylesheets=[":host { --neutral-foreground-rest: #222; } select { color: #222; }"]))
        return items

    def template(self) -> pn.template.FastListTemplate:
        tpl = pn.template.FastListTemplate(
            title=TITLE, header=self.header(),
            main=[self.alerts, self.analysis_warnings,
                  *(self.cards[key].panel for key in VIEWS)],
            main_layout=None, accent="#1f77b4", theme_toggle=False,
            main_max_width="100%", design=OfflineFast, font=FONT,
            # no page-wide spinner: it flickered on every click (two messages each); the views
            # show their own busy state and the status line long work
            busy_indicator=None)
        tpl.config.raw_css.append(grid_css())
        return tpl


#: Panel's Fast design without its one external resource (a Google web font): the page loads
#: everything from the server it came from, also on a lab network without internet. Named "Fast"
#: because Panel finds a design's bundled files under its lower-cased class name.
OfflineFast = type("Fast", (pn.theme.Fast,), {"_resources": {**pn.theme.Fast._resources,
                                                             "font": {}}})


FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, 'Helvetica Neue', Arial, sans-serif"


def live_computation_problem(bundle: Any) -> "str | None":
    """One line for the page when the bundle's model is a factory this process may not import
    (what the operator can change), else None. Precomputed images are shown either way."""
    from tlexplorer.app.views.neuron_detail import live_model_problem, recorded_model_spec
    from tlexplorer.models.factories import is_factory_name

    spec = recorded_model_spec(bundle)
    name = spec.get("name") if isinstance(spec, Mapping) else None
    if not isinstance(name, str) or not is_factory_name(name):
        return None
    problem = live_model_problem(spec)
    return f"{problem} Precomputed images are shown." if problem else None


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


def create_app(bundles: Any, *, query: "Mapping[str, Any] | None" = None,
               thumbnail_urls: bool = False):
    """Build one session's page.

    Parameters
    ----------
    bundles : Bundle, path, list of them, or {name: path}
        What the page may show; several give a selector in the header. A served page never opens
        anything else (``?bundle=`` picks among these names only).
    query : mapping, optional
        URL arguments (``class``, ``layer``, ``bundle``); by default the page's own
        (``pn.state.session_args``).
    thumbnail_urls : bool
        The server answers ``tlx-thumbnail/...`` (``tlexplorer serve`` does): hover cards fetch
        images by URL instead of carrying them in the data.

    Returns
    -------
    panel.template.FastListTemplate
        The page; its ``tlx_app`` attribute is the :class:`App` (session, views, alerts).
    """
    _ensure_extension()
    app = App(_normalise_sources(bundles), query=query, thumbnail_urls=thumbnail_urls)
    tpl = app.template()
    tpl.tlx_app = app
    if pn.state.curdoc is not None:
        # on the document itself (gone with the session), so that Panel's process-wide
        # exception handler can tell the right page what failed
        pn.state.curdoc.tlx_app = app
    return tpl


def app_of_current_page() -> "App | None":
    """The :class:`App` of the page whose callback is running, if any."""
    return getattr(pn.state.curdoc, "tlx_app", None)


class Explorer(pn.viewable.Viewer):
    """The explorer in a notebook: ``Explorer(bundle)`` displays the four views inline.

    ``.stats``, ``.instances``, ``.network`` and ``.features`` are the views, each displayable on
    its own; ``.session`` holds the selections. ``allow_factories`` names the model factories
    (``package.module:function``) that may be imported to compute feature visualizations live for a
    bundle of your own CNN (see :func:`tlexplorer.allow_factory`); nothing else is imported.
    """

    session = param.ClassSelector(class_=Session, doc="This explorer's selections")

    def __init__(self, bundle: Any = None, *, allow_factories: "Iterable[str]" = (), **params):
        from tlexplorer.models.factories import allow_factory, is_allowed

        for name in allow_factories:
            if not is_allowed(name):
                allow_factory(name)
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


__all__ = ["App", "Explorer", "ViewCard", "app_of_current_page", "apply_query", "build_views",
           "create_app", "dashboard_layout", "view_classes"]
