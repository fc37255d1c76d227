"""Entry point for ``panel serve tlexplorer/app/main.py --args BUNDLE [BUNDLE ...]``.

Bokeh runs this script once per browser session with ``sys.argv = ["main.py", *args]`` (the words
after ``--args``); the environment variable ``TLX_BUNDLES`` (paths separated by ``os.pathsep``)
is used when no arguments are given. Only these bundles can be shown.
"""
from __future__ import annotations

import os
import sys

import panel as pn

from tlexplorer.app.dashboard import create_app


def configured_bundles(argv: "list[str] | None" = None) -> list[str]:
    """Bundle paths from ``--args`` (``sys.argv[1:]``), else from ``TLX_BUNDLES``."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args and os.environ.get("TLX_BUNDLES"):
        args = [p for p in os.environ["TLX_BUNDLES"].split(os.pathsep) if p]
    return args


if __name__.startswith("bokeh_app") or __name__ == "__main__":
    _bundles = configured_bundles()
    if _bundles:
        create_app(_bundles).servable()
    else:
        pn.pane.Alert(
            "No analysis bundle given: run `panel serve tlexplorer/app/main.py --args BUNDLE` "
            "or `tlexplorer serve BUNDLE`.", alert_type="danger").servable()
