"""Serve the explorer: ``serve(bundles, port=5006, ...)`` wraps ``pn.serve``.

The server serves a factory (``create_app`` bound to the configured bundles) so that every browser
session gets its own page and :class:`~tlexplorer.app.state.Session`; bundles are opened once per
process and shared read-only. Only the bundles given here can be shown (the URL picks among their
names; no path from a request is ever opened).

``panel serve tlexplorer/app/main.py --args BUNDLE [BUNDLE ...]`` is the equivalent with Panel's own
command line (``--basic-auth``, ``--cookie-secret``, ``--allow-websocket-origin``,
``--num-threads``).
"""
from __future__ import annotations

import logging
import secrets
import sys
import threading
from pathlib import Path
from typing import Any, Iterable, Mapping

import panel as pn

from tlexplorer.app.dashboard import TITLE, _normalise_sources, create_app
from tlexplorer.app.loading import load_bundle
from tlexplorer.errors import BundleError, TLXError

log = logging.getLogger(__name__)


def check_sources(bundles: Any) -> dict[str, Any]:
    """``{name: path or Bundle}`` for ``bundles``, each opened once to check it (and warm the cache).

    Bad ones stay in the mapping (the page explains them when chosen) and are reported on stderr;
    when none can be opened a ``BundleError`` says why.
    """
    sources = _normalise_sources(bundles)
    if not sources:
        raise BundleError("no analysis bundle given: pass one or more bundle directories")
    problems = []
    for name, source in sources.items():
        try:
            load_bundle(source)
        except TLXError as exc:
            problems.append(str(exc))
    if len(problems) == len(sources):
        raise BundleError(problems[0] if len(problems) == 1 else "; ".join(problems))
    for problem in problems:
        print(f"warning: {problem}", file=sys.stderr)
    # resolved paths, so that the working directory of the server does not matter
    return {n: (Path(s).expanduser().resolve() if isinstance(s, (str, Path)) else s)
            for n, s in sources.items()}


def app_factory(sources: Mapping[str, Any]):
    """A function that builds a fresh page per session for the given bundles."""
    sources = dict(sources)

    def tlexplorer_app():
        return create_app(sources)
    return tlexplorer_app


def _warm_up_in_background() -> None:
    """Compile datashader's kernels while the first user opens the page."""
    def run():
        try:
            from tlexplorer.app.views.instances import warm_up
            warm_up()
        except Exception:  # only an optimisation
            log.debug("datashader warm-up failed", exc_info=True)
    threading.Thread(target=run, name="tlexplorer-warmup", daemon=True).start()


def serve(bundles: Any, *, port: int = 5006, address: "str | None" = None,
          num_threads: "int | None" = None, basic_auth: "str | None" = None,
          cookie_secret: "str | None" = None,
          allow_websocket_origin: "str | Iterable[str] | None" = None, show: bool = False,
          dev: bool = False, threaded: bool = False, verbose: bool = True, **kwargs: Any):
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
        callback does not stall the others. Background jobs (re-projection) use their own pool.
    basic_auth : str, optional
        A password, or the path of a JSON file ``{"user": "password", ...}``; the page then asks
        for it. A ``cookie_secret`` is generated when none is given.
    cookie_secret : str, optional
        Secret that signs the login cookie (set it to keep logins across restarts).
    allow_websocket_origin : str or list of str, optional
        Hosts (``host[:port]``) allowed to open the websocket, e.g. behind a proxy.
    show : bool
        Open a browser tab.
    dev : bool
        Reload when source files change (development).
    threaded : bool
        Run the server on a background thread and return it (``server.stop()`` ends it).
    kwargs
        Passed on to ``pn.serve``.

    Returns
    -------
    The server (threaded) or, after it stops, ``pn.serve``'s result.
    """
    sources = check_sources(bundles)
    if num_threads is not None:
        pn.config.nthreads = int(num_threads)
    if basic_auth:
        kwargs["basic_auth"] = basic_auth
        kwargs["cookie_secret"] = cookie_secret or secrets.token_urlsafe(32)
    elif cookie_secret:
        kwargs["cookie_secret"] = cookie_secret
    if allow_websocket_origin:
        origins = ([allow_websocket_origin] if isinstance(allow_websocket_origin, str)
                   else list(allow_websocket_origin))
        kwargs["websocket_origin"] = origins
    if dev:
        pn.config.autoreload = True
    _warm_up_in_background()
    address = address or "localhost"
    host = address
    if verbose and port:
        print(f"tlexplorer: serving {len(sources)} bundle(s) at http://{host}:{port}/",
              flush=True)
    # warm: build one page before serving, so that imports and caches are ready for the first user
    kwargs.setdefault("warm", True)
    return pn.serve(app_factory(sources), port=port, address=address, show=show,
                    title=TITLE, threaded=threaded, verbose=verbose and not port, **kwargs)


__all__ = ["app_factory", "check_sources", "serve"]
