"""Model factories named ``package.module:function``, imported only when whoever runs tlexplorer allowed them.

Runs and bundles record their architecture by name. A built-in name (``digits-alexnet``,
``alexnet``, ...) is safe to build whatever file names it. A ``module:function`` name is not: building
it imports that module, which runs its code. So such a name is built only when the person starting
the process allowed it explicitly:

- on the command line: ``--allow-factory mypkg.nets:make_net`` (``train``, ``analyze``, ``serve``),
  with ``--pythonpath DIR`` when the module is not importable as installed;
- in the environment: ``TLX_ALLOW_FACTORIES=mypkg.nets:make_net,other.mod:fn`` (and
  ``TLX_PYTHONPATH``, separated by ``os.pathsep``);
- in Python: :func:`allow_factory` (``tlexplorer.allow_factory``), or ``Explorer(...,
  allow_factories=[...])``.

What a run, a bundle or a URL says is never enough: that is what keeps a hosted server from running a
bundle's code (a manifest naming ``torch.hub:load`` with a ``hubconf.py`` beside it, say).
"""
from __future__ import annotations

import importlib
import os
import re
import sys
import threading
from pathlib import Path
from typing import Callable, Iterable

from ..errors import ModelError

#: ``package.module:function`` with Python identifiers on both sides.
_FACTORY_NAME = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")
ENV_FACTORIES = "TLX_ALLOW_FACTORIES"
ENV_PYTHONPATH = "TLX_PYTHONPATH"

# Process configuration set by the operator (like ``panel.config``), not per-session state.
_ALLOWED: "dict[str, Callable]" = {}
_LOCK = threading.Lock()


def is_factory_name(name: str) -> bool:
    """Whether ``name`` names a factory (``module:function``) rather than a built-in architecture."""
    return ":" in str(name)


def _split(name: str) -> "tuple[str, str]":
    if not isinstance(name, str) or not _FACTORY_NAME.fullmatch(name):
        raise ModelError(f"invalid model factory name {name!r}: expected 'package.module:function'")
    module, _, attr = name.partition(":")
    return module, attr


def how_to_allow(name: str) -> str:
    """The one-line advice for making factory ``name`` available."""
    return (f"start tlexplorer with --allow-factory {name} (and --pythonpath DIR if its module is "
            f"not installed), set {ENV_FACTORIES}={name}, or call "
            f"tlexplorer.allow_factory({name!r}) in Python")


def add_pythonpath(folders: "Iterable[str | os.PathLike]") -> None:
    """Put ``folders`` first on ``sys.path`` (each must exist), so factories' modules import from there."""
    for folder in folders:
        path = Path(folder).expanduser().resolve()
        if not path.is_dir():
            raise ModelError(f"--pythonpath {folder}: no such folder")
        if str(path) not in sys.path:
            sys.path.insert(0, str(path))


def allow_factory(name: str, factory: "Callable | None" = None, *,
                  pythonpath: "Iterable[str | os.PathLike]" = ()) -> Callable:
    """Allow the model factory ``name`` in this process and return it.

    Parameters
    ----------
    name : str
        ``'package.module:function'``, as recorded in the run's or bundle's model spec.
    factory : callable, optional
        The function itself (a notebook's own function, say); by default ``name`` is imported now,
        so that a typo or a missing module is reported at start-up, not when a page opens.
    pythonpath : folders, optional
        Put first on ``sys.path`` before importing (see :func:`add_pythonpath`).

    Raises
    ------
    tlexplorer.errors.ModelError
        The name is malformed, cannot be imported, or is not callable (one line).
    """
    module_name, attr = _split(name)
    add_pythonpath(pythonpath)
    if factory is None:
        try:
            factory = importlib.import_module(module_name)
            for part in attr.split("."):
                factory = getattr(factory, part)
        except ImportError as exc:
            raise ModelError(f"model factory {name!r} cannot be imported ({exc}); "
                             "add its folder with --pythonpath DIR") from exc
        except AttributeError as exc:
            raise ModelError(f"model factory {name!r}: module {module_name!r} has no "
                             f"{attr!r}") from exc
    if not callable(factory):
        raise ModelError(f"model factory {name!r} is a {type(factory).__name__}, not a function")
    with _LOCK:
        _ALLOWED[name] = factory
    return factory


def allow_from_environment() -> "list[str]":
    """Allow the factories named in ``TLX_ALLOW_FACTORIES`` (after ``TLX_PYTHONPATH``); their names."""
    folders = [p for p in os.environ.get(ENV_PYTHONPATH, "").split(os.pathsep) if p]
    names = [n.strip() for n in os.environ.get(ENV_FACTORIES, "").split(",") if n.strip()]
    add_pythonpath(folders)
    for name in names:
        allow_factory(name)
    return names


def allowed_factories() -> "list[str]":
    """Names of the factories allowed in this process, sorted."""
    with _LOCK:
        return sorted(_ALLOWED)


def is_allowed(name: str) -> bool:
    with _LOCK:
        return name in _ALLOWED


def resolve_factory(name: str) -> Callable:
    """The allowed factory ``name``; a one-line ``ModelError`` saying how to allow it otherwise.

    Nothing is imported here: only what :func:`allow_factory` imported can be returned.
    """
    _split(name)
    with _LOCK:
        factory = _ALLOWED.get(name)
    if factory is None:
        raise ModelError(f"model factory {name!r} is not allowed in this process: "
                         f"{how_to_allow(name)}")
    return factory


def disallow_all() -> None:
    """Forget every allowed factory (tests)."""
    with _LOCK:
        _ALLOWED.clear()


__all__ = ["ENV_FACTORIES", "ENV_PYTHONPATH", "add_pythonpath", "allow_factory",
           "allow_from_environment", "allowed_factories", "disallow_all", "how_to_allow",
           "is_allowed", "is_factory_name", "resolve_factory"]
