"""Serve the explorer: ``serve(bundles, port=5006, ...)`` wraps ``pn.serve``.

The server serves a factory (``create_app`` bound to the configured bundles) so that every browser
session gets its own page and :class:`~tlexplorer.app.state.Session`; bundles are opened once per
process and shared read-only. Only the bundles given here can be shown (the URL picks among their
names; no path from a request is ever opened), and only the model factories allowed here are ever
imported (a bundle's manifest cannot choose code).

A page answers at once with its frame and fills its views through the process's build queue
(:mod:`tlexplorer.app.builds`); ``num_procs`` runs several server processes on one port.

``panel serve tlexplorer/app/main.py --args BUNDLE [BUNDLE ...]`` is the equivalent with Panel's own
command line (``--num-threads``, ``--allow-websocket-origin``); its login is Panel's own, so use
``tlexplorer serve`` to host with passwords.
"""
from __future__ import annotations

import errno
import logging
import os
import secrets
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterable, Mapping

import panel as pn
from tornado.web import RequestHandler

from tlexplorer._ready import HEALTH
from tlexplorer.app.dashboard import TITLE, _normalise_sources, create_app
from tlexplorer.app.loading import load_bundle
from tlexplorer.errors import BundleError, TLXError

log = logging.getLogger(__name__)

#: Answers 200 once the server runs; cheap (builds no page), for "serving at" and load balancers.
HEALTH_PATH = "/" + HEALTH


class HealthHandler(RequestHandler):
    def get(self):
        self.set_header("Content-Type", "text/plain")
        self.write("ok\n")


class ServeError(TLXError):
    """The server cannot start (port in use, bad address)."""


def check_sources(bundles: Any) -> dict[str, Any]:
    """``{name: path or Bundle}`` for ``bundles``, each opened once to check it (and warm the cache).

    Bad ones stay in the mapping (the page explains them when chosen) and are reported on stderr;
    when none can be opened a ``BundleError`` says why. A bundle whose model is a factory this
    process may not import is reported too (its live feature visualizations are off).
    """
    from tlexplorer.app.dashboard import live_computation_problem

    sources = _normalise_sources(bundles)
    if not sources:
        raise BundleError("no analysis bundle given: pass one or more bundle directories")
    problems = []
    for name, source in sources.items():
        try:
            bundle = load_bundle(source)
        except TLXError as exc:
            problems.append(str(exc))
            continue
        live = live_computation_problem(bundle)
        if live:
            print(f"warning: bundle {name!r}: {live}", file=sys.stderr)
    if len(problems) == len(sources):
        raise BundleError(problems[0] if len(problems) == 1 else "; ".join(problems))
    for problem in problems:
        print(f"warning: {problem}", file=sys.stderr)
    # resolved paths, so that the working directory of the server does not matter
    return {n: (Path(s).expanduser().resolve() if isinstance(s, (str, Path)) else s)
            for n, s in sources.items()}


def app_factory(sources: Mapping[str, Any]):
    """A function that builds a fresh page per session for the given bundles (this server also
    answers thumbnail URLs, so the pages use them)."""
    sources = dict(sources)

    def tlexplorer_app():
        return create_app(sources, thumbnail_urls=True)
    return tlexplorer_app


def warm_up(sources: Mapping[str, Any]) -> None:
    """Build one whole page outside any server: imports, datashader's compiled kernels and the
    per-bundle caches are then ready for the first user (and shared by forked processes)."""
    from bokeh.document import Document
    from panel.io.state import set_curdoc

    from tlexplorer.app.dashboard import App, _ensure_extension

    _ensure_extension()
    first = dict(list(sources.items())[:1])
    with set_curdoc(Document()):
        App(first, query={}, progressive=False)


def _warm_up_in_background(sources: Mapping[str, Any]) -> None:
    def run():
        try:
            warm_up(sources)
        except Exception:  # only an optimisation
            log.debug("warm-up failed", exc_info=True)
    threading.Thread(target=run, name="tlexplorer-warmup", daemon=True).start()


def check_port_free(address: str, port: int) -> None:
    """A one-line ``ServeError`` when ``address:port`` cannot be bound (before anything else)."""
    if not port:
        return
    try:
        infos = socket.getaddrinfo(address, port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ServeError(f"cannot listen on {address!r}: {exc.strerror}") from None
    for family, kind, proto, _name, sockaddr in infos:
        with socket.socket(family, kind, proto) as sock:
            if os.name != "nt":  # as tornado binds: a port in TIME_WAIT is free
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(sockaddr)
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    raise ServeError(f"port {port} on {address} is already in use: stop the "
                                     f"other server or choose another with --port") from None
                if exc.errno in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT):
                    continue  # e.g. no IPv6 on this machine; tornado skips it too
                raise ServeError(f"cannot listen on {address}:{port}: {exc.strerror}") from None


def announce_when_ready(url: str, *, timeout: float = 600.0, stream=None) -> threading.Thread:
    """Print "serving at URL" once ``URL`` answers (from a thread; the server may still start)."""
    from tlexplorer._ready import when_answering

    stream = stream or sys.stdout
    return when_answering(url.rstrip("/") + HEALTH_PATH,
                          lambda: print(f"tlexplorer: serving at {url}", file=stream, flush=True),
                          give_up_after=timeout)


def _end_with_parent() -> None:
    """In a forked server process: end when the parent ends (else a killed ``--num-procs`` server
    would leave its processes serving). Linux tells the child directly; elsewhere a thread
    watches for the parent to change."""
    import signal

    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        if libc.prctl(1, signal.SIGTERM) == 0:  # PR_SET_PDEATHSIG
            return
    except (OSError, AttributeError):
        pass
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os.kill(os.getpid(), signal.SIGTERM)
    threading.Thread(target=watch, name="tlexplorer-parent-watch", daemon=True).start()


def _report_errors_in_the_page(exc: BaseException) -> None:
    """Panel's exception handler: a failing callback shows one line in its page, not nothing."""
    from tlexplorer.app.dashboard import app_of_current_page

    log.error("callback failed: %s", exc, exc_info=exc)
    app = app_of_current_page()
    if app is not None:
        text = str(exc) if isinstance(exc, TLXError) else f"{type(exc).__name__}: {exc}"
        app.error(f"Something failed: {text}")


def serve(bundles: Any, *, port: int = 5006, address: "str | None" = None,
          num_threads: "int | None" = None, num_procs: int = 1,
          basic_auth: "str | None" = None, cookie_secret: "str | None" = None,
          cookie_secret_file: "str | os.PathLike | None" = None,
          allow_factories: Iterable[str] = (), pythonpath: Iterable[str] = (),
          allow_websocket_origin: "str | Iterable[str] | None" = None, show: bool = False,
          dev: bool = False, threaded: bool = False, verbose: bool = True, warm: bool = True,
          **kwargs: Any):
    """Serve the explorer on ``address:port`` until interrupted.

    Parameters
    ----------
    bundles : path, Bundle, list of them, or {name: path}
        The bundles this server may show (a selector appears for several).
    port : int
        TCP port (0 picks a free one).
    address : str, optional
        Interface to listen on (default ``"localhost"``: this machine only); ``"0.0.0.0"`` to host
        (then also set ``allow_websocket_origin`` and ``basic_auth``).
    num_threads : int, optional
        Threads for session callbacks (``pn.config.nthreads``), so that one session's slow
        callback does not stall the others.
    num_procs : int
        Server processes sharing the port (Linux/macOS): pages are built in parallel. Each process
        loads the bundles and builds pages on its own.
    basic_auth : str, optional
        A password or the path of a JSON file ``{"user": "password", ...}`` (default:
        ``TLX_BASIC_AUTH``); the page then asks for a login.
    cookie_secret, cookie_secret_file : optional
        Secret that signs the login cookie, or a file holding it (default: ``TLX_COOKIE_SECRET``;
        a random one when logins are on, so logins end with the server).
    allow_factories, pythonpath : optional
        Model factories (``package.module:function``) this server may import to compute feature
        visualizations live, and folders to import them from. Nothing a bundle names is imported
        otherwise.
    allow_websocket_origin : str or list of str, optional
        Hosts (``host[:port]``) allowed to open the websocket, e.g. behind a proxy.
    show : bool
        Open a browser tab.
    dev : bool
        Reload when source files change (development).
    threaded : bool
        Run the server on a background thread and return it (``server.stop()`` ends it).
    verbose : bool
        Print "serving at URL" once the server answers.
    warm : bool
        Build one page before serving, so that the first user does not wait for imports.
    kwargs
        Passed on to ``pn.serve``.

    Raises
    ------
    ServeError
        The port is in use or the address cannot be bound (before anything is printed).
    """
    from tlexplorer.app.auth import Credentials, LabAuthProvider, resolve_cookie_secret
    from tlexplorer.models.factories import add_pythonpath, allow_factory, allow_from_environment

    add_pythonpath(pythonpath)
    allow_from_environment()
    for name in allow_factories:
        allow_factory(name)
    address = address or "localhost"
    check_port_free(address, port)
    sources = check_sources(bundles)
    credentials = Credentials.resolve(basic_auth)
    secret = resolve_cookie_secret(cookie_secret, cookie_secret_file)
    if credentials is not None:
        kwargs["auth_provider"] = LabAuthProvider(credentials)
        secret = secret or secrets.token_urlsafe(32)
    if secret:
        kwargs["cookie_secret"] = secret
    if num_threads is not None:
        pn.config.nthreads = int(num_threads)
    if allow_websocket_origin:
        origins = ([allow_websocket_origin] if isinstance(allow_websocket_origin, str)
                   else list(allow_websocket_origin))
        kwargs["websocket_origin"] = origins
    if dev:
        pn.config.autoreload = True
    pn.config.exception_handler = _report_errors_in_the_page
    if num_procs > 1:
        # each process warms itself after the fork: the parent starts no threads and runs no
        # polars/numba/torch work, whose thread pools would not survive the fork
        os.register_at_fork(after_in_child=_end_with_parent)
        os.register_at_fork(after_in_child=lambda: _warm_up_in_background(sources))
        kwargs["num_procs"] = int(num_procs)
    elif warm:
        warm_up(sources)
    from tlexplorer.app import thumbnails

    kwargs["extra_patterns"] = [*kwargs.get("extra_patterns", []), (HEALTH_PATH, HealthHandler),
                                (thumbnails.ROUTE, thumbnails.ThumbnailHandler),
                                (thumbnails.FEATURE_ROUTE, thumbnails.FeatureImageHandler)]
    url = f"http://{address}:{port}/"
    if verbose and port and not threaded:
        if num_procs > 1:  # after the fork, so that no thread of ours is copied into a child
            started: list = []
            os.register_at_fork(after_in_parent=lambda: started or started.append(
                announce_when_ready(url)))
        else:
            announce_when_ready(url)
    try:
        return pn.serve(app_factory(sources), port=port, address=address, show=show,
                        title=TITLE, threaded=threaded, verbose=False, **kwargs)
    except OSError as exc:  # lost the port between the check and the bind
        if exc.errno == errno.EADDRINUSE:
            raise ServeError(f"port {port} on {address} is already in use: stop the other server "
                             "or choose another with --port") from None
        raise


__all__ = ["HEALTH_PATH", "ServeError", "announce_when_ready", "app_factory", "check_port_free",
           "check_sources", "serve", "warm_up"]
