"""Browser tier: a served app on a free localhost port and Debian's chromium driven by Playwright.

The server runs in a thread of the test process (``tlexplorer.app.serve.serve(threaded=True)``)
so that tests can look at the sessions it created (``served.apps``) next to what the browser
shows. Screenshots go to ``test-artifacts/`` (gitignored).
"""
from __future__ import annotations

import socket
import sys
import time
import urllib.request
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "app"))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # page_text.py

import synthetic_bundle  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


@pytest.fixture(scope="session")
def deep_text():
    """``deep_text(locator) -> str``: an element's text, shadow roots included."""
    from page_text import deep_text as read

    return read


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Served:
    """The running server: its URL and the pages (``App`` objects) it built, newest last."""

    def __init__(self, url: str, apps: list, server):
        self.url, self.apps, self.server = url, apps, server

    @staticmethod
    def run_in_session(app, fn) -> None:
        """Run ``fn`` on ``app``'s session event loop (as a browser event would)."""
        app.doc.add_next_tick_callback(fn)

    def wait_for_app(self, count: int, timeout: float = 20.0):
        end = time.monotonic() + timeout
        while len(self.apps) < count and time.monotonic() < end:
            time.sleep(0.05)
        assert len(self.apps) >= count, "the server built no page for the browser"
        return self.apps[count - 1]


def start_served(path, **serve_kwargs):
    """Serve the bundle at ``path`` (or the bundles of a list of paths) on a free port in a
    thread; returns (Served, stop)."""
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    from tlexplorer.app import dashboard, loading
    from tlexplorer.app import serve as serve_module

    paths = list(path) if isinstance(path, (list, tuple)) else [path]
    for each in paths:
        bundle = loading.load_bundle(each)
        try:
            from tlexplorer.app.views.neuron_detail import feature_vis_service
            feature_vis_service(bundle).unavailable = "synthetic bundle: no model"
        except ImportError:
            pass
    apps: list = []

    def recording_create_app(sources, **kw):
        import panel as pn

        tpl = dashboard.create_app(sources, **kw)
        tpl.tlx_app.doc = pn.state.curdoc  # to run changes on the session's event loop
        apps.append(tpl.tlx_app)
        return tpl

    mp = pytest.MonkeyPatch()
    mp.setattr(serve_module, "create_app", recording_create_app)
    port = _free_port()
    serve_kwargs = {"verbose": False, "num_threads": 2, **serve_kwargs}
    server = serve_module.serve([str(each) for each in paths], port=port, address="127.0.0.1", threaded=True,
                                allow_websocket_origin=[f"127.0.0.1:{port}"], **serve_kwargs)
    url = f"http://127.0.0.1:{port}/"
    end = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(url + "tlx-health", timeout=2):
                break
        except Exception:
            if time.monotonic() > end:
                break
            time.sleep(0.2)

    def stop():
        server.stop()
        mp.undo()
        import panel as pn
        pn.config.nthreads = None
    return Served(url, apps, server), stop


@pytest.fixture(scope="module")
def serve_bundle():
    """``serve_bundle(path) -> Served``: serve another bundle for this module's tests."""
    stops = []

    def start(path, **kwargs):
        served, stop = start_served(path, **kwargs)
        stops.append(stop)
        return served
    yield start
    for stop in stops:
        stop()


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    path = synthetic_bundle.make_synthetic_bundle(
        tmp_path_factory.mktemp("ui") / "digits", per_class=40, seed=0)
    served, stop = start_served(path)
    yield served
    stop()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture()
def page(browser):
    ARTIFACTS.mkdir(exist_ok=True)
    context = browser.new_context(viewport={"width": 1600, "height": 1200})
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    pg.js_errors = errors
    yield pg
    context.close()
