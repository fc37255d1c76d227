"""Entry point for ``panel serve tlexplorer/app/main.py --args BUNDLE [BUNDLE ...]``.

Bokeh runs this script once per browser session with ``sys.argv = ["main.py", *args]`` (the words
after ``--args``); the environment variable ``TLX_BUNDLES`` (paths separated by ``os.pathsep``)
is used when no bundle is given. Only these bundles can be shown. ``--allow-factory
MODULE:FUNCTION`` and ``--pythonpath DIR`` among the args (or ``TLX_ALLOW_FACTORIES`` /
``TLX_PYTHONPATH``) name the model factories this server may import.
"""
from __future__ import annotations

import os
import sys

import panel as pn

from tlexplorer.app.dashboard import create_app
from tlexplorer.app.text import message_html


def parse_args(argv: "list[str] | None" = None) -> "tuple[list[str], list[str], list[str]]":
    """``(bundles, factories, pythonpath)`` from ``--args`` (``sys.argv[1:]``) and the environment."""
    args = list(sys.argv[1:] if argv is None else argv)
    bundles, factories, folders = [], [], []
    it = iter(args)
    for word in it:
        if word in ("--allow-factory", "--pythonpath"):
            value = next(it, None)
            if value is None:
                raise SystemExit(f"main.py: {word} needs a value")
            (factories if word == "--allow-factory" else folders).append(value)
        else:
            bundles.append(word)
    if not bundles and os.environ.get("TLX_BUNDLES"):
        bundles = [p for p in os.environ["TLX_BUNDLES"].split(os.pathsep) if p]
    return bundles, factories, folders


def configured_bundles(argv: "list[str] | None" = None) -> list[str]:
    """Bundle paths from ``--args`` (``sys.argv[1:]``), else from ``TLX_BUNDLES``."""
    return parse_args(argv)[0]


def _allow(factories: "list[str]", folders: "list[str]") -> None:
    from tlexplorer.models.factories import (add_pythonpath, allow_factory,
                                             allow_from_environment, is_allowed)

    add_pythonpath(folders)
    allow_from_environment()
    for name in factories:
        if not is_allowed(name):  # this script runs once per session; import once per process
            allow_factory(name)


if __name__.startswith("bokeh_app") or __name__ == "__main__":
    _bundles, _factories, _folders = parse_args()
    _allow(_factories, _folders)
    if _bundles:
        create_app(_bundles).servable()
    else:
        pn.pane.HTML(message_html(
            "No analysis bundle given: run `panel serve tlexplorer/app/main.py --args BUNDLE` "
            "or `tlexplorer serve BUNDLE`.", "danger")).servable()
