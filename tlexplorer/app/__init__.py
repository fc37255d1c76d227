"""The Panel app: per-session state, the four views, the dashboard and the server.

This is the only package that imports panel / holoviews / bokeh; importing ``tlexplorer.app`` itself
stays light, the submodules pull them in:

- :mod:`tlexplorer.app.state`: :class:`~tlexplorer.app.state.Session`, one per browser session.
- :mod:`tlexplorer.app.dashboard`: ``create_app(bundle_or_path_or_list)`` and ``Explorer(bundle)``.
- :mod:`tlexplorer.app.serve`: ``serve(bundles, port=..., ...)`` (import it from there).
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "Session": "tlexplorer.app.state",
    "Explorer": "tlexplorer.app.dashboard",
    "create_app": "tlexplorer.app.dashboard",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'tlexplorer.app' has no attribute {name!r}")
