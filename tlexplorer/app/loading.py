"""Process-wide, read-only data shared by every session: loaded bundles and what views derive from them.

A bundle is opened once per process (keyed by its resolved path) and kept in ``pn.state.cache``;
derived read-only objects (e.g. the instance table as a pandas frame for datashader) are cached
per bundle identity. Nothing here is per-session or mutable after creation.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, TypeVar

import panel as pn

from tlexplorer.errors import BundleError

T = TypeVar("T")

_LOCK = threading.RLock()
_BUNDLES = "tlexplorer.bundles"
_DERIVED = "tlexplorer.derived"
#: Derived objects kept per process (bundle × name); the oldest go first.
MAX_DERIVED = 64


def _open_bundle(path: Path) -> Any:
    """Open with the bundle package's validating reader (a hook tests may replace)."""
    from tlexplorer.bundle import open_bundle

    return open_bundle(path)


def _store(name: str) -> "OrderedDict[Any, Any]":
    store = pn.state.cache.get(name)
    if store is None:
        store = pn.state.cache[name] = OrderedDict()
    return store


def resolve_bundle_path(path: "str | Path") -> Path:
    """The absolute path a bundle is cached under; a missing directory is a ``BundleError``."""
    resolved = Path(path).expanduser().resolve()
    if not resolved.is_dir():
        raise BundleError(f"{resolved}: no such bundle directory")
    return resolved


def load_bundle(path_or_bundle: Any) -> Any:
    """The bundle at ``path_or_bundle``, opened once per process; a Bundle object is returned as is.

    Raises
    ------
    tlexplorer.errors.BundleError
        The path is not a bundle, is corrupt, or is of a newer schema.
    """
    if not isinstance(path_or_bundle, (str, Path)):
        return path_or_bundle
    resolved = resolve_bundle_path(path_or_bundle)
    key = str(resolved)
    with _LOCK:
        bundles = _store(_BUNDLES)
        if key not in bundles:
            bundles[key] = _open_bundle(resolved)
        return bundles[key]


def loaded_bundle_by_key(key: str) -> Any:
    """The bundle of content key ``key`` among those this process has loaded, else None (a
    request can only reach bundles the server was configured with)."""
    with _LOCK:
        for bundle in _store(_BUNDLES).values():
            if getattr(bundle, "key", None) == key:
                return bundle
    return None


def bundle_identity(bundle: Any) -> str:
    """A stable identity of a bundle's content for cache keys (never ``id()``)."""
    key = getattr(bundle, "key", None)
    if key:
        return str(key)
    return str(Path(getattr(bundle, "path", "")).resolve())


def derived(bundle: Any, name: str, factory: Callable[[], T]) -> T:
    """A read-only object derived from ``bundle``, computed once per process.

    ``factory`` runs outside the lock (two sessions may compute the same thing once each at
    worst, but never block each other); the first result stored wins.
    """
    key = (bundle_identity(bundle), name)
    with _LOCK:
        store = _store(_DERIVED)
        if key in store:
            store.move_to_end(key)
            return store[key]
    value = factory()
    with _LOCK:
        store = _store(_DERIVED)
        value = store.setdefault(key, value)
        store.move_to_end(key)
        while len(store) > MAX_DERIVED:
            store.popitem(last=False)
    return value


def clear_cache() -> None:
    """Forget every loaded bundle and derived object (tests; a server never needs it)."""
    with _LOCK:
        pn.state.cache.pop(_BUNDLES, None)
        pn.state.cache.pop(_DERIVED, None)


__all__ = ["bundle_identity", "clear_cache", "derived", "load_bundle", "loaded_bundle_by_key",
           "resolve_bundle_path"]
