"""The instance view's per-class layouts (paper §5.2), laid out once per bundle, not on a click.

When the focus class changes, the instance view shows that class and the class the target model
most often predicts for it, laid out on their own by t-SNE (:func:`project_subset`, started from
the global layout). Those class pairs follow from the bundle's confusion table, so ``analyze`` lays
them all out once into the bundle's cache (``cache/class_layouts/...``); the app reads them from
there, and lays out only the class sets a user picks by hand (writing them back when it can).

A cache entry is named by a hash of the sorted class names (class names come from the dataset and
may hold any character) and of :data:`LAYOUT_VERSION`, which changes whenever the layout's
settings do, so an old entry is never taken for a new one.
"""
from __future__ import annotations

import hashlib
import json
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import polars as pl

#: Bump when :func:`lay_out`'s settings change (old cache entries are then ignored).
LAYOUT_VERSION = 1
#: Class sets with more instances than this are not laid out on their own (the global layout shows).
MAX_ROWS = 20_000
#: Fewer instances than this keep their global positions.
MIN_ROWS = 5
#: Settings of the per-class t-SNE, also in the cache key.
SETTINGS = {"random_state": 0, "n_iter": 250, "perplexity": 30.0}


def most_confused(confusion: pl.DataFrame, cls: str) -> "str | None":
    """The class that the target model (else the source model) most often predicts for ``cls``.

    ``confusion`` is the bundle's confusion table (``target_misclassified`` /
    ``source_misclassified``: lists of ``{"class", "count"}``, most frequent first).
    """
    rows = confusion.filter(confusion["class"].cast(pl.String) == str(cls))
    if rows.height == 0:
        return None
    for column in ("target_misclassified", "source_misclassified"):
        if column not in rows.columns:
            continue
        entries = rows[column][0]
        if entries is None:
            continue
        entries = entries.to_list() if hasattr(entries, "to_list") else list(entries)
        for entry in entries:
            name = str(entry["class"]) if isinstance(entry, dict) else str(entry[0])
            if name != str(cls):
                return name
    return None


def focus_classes(confusion: "pl.DataFrame | None", cls: str) -> list[str]:
    """The classes the instance view shows for focus class ``cls``: it and its most confused."""
    other = most_confused(confusion, cls) if confusion is not None else None
    return [c for c in (cls, other) if c is not None]


def default_class_sets(confusion: pl.DataFrame, classes: Iterable[str]) -> list[tuple[str, ...]]:
    """Every class set the instance view shows when a class becomes the focus, sorted, once each."""
    sets = {tuple(sorted(focus_classes(confusion, str(c)))) for c in classes}
    return sorted(sets)


def class_rows(class_names: Sequence[str] | np.ndarray, classes: Iterable[str]) -> np.ndarray:
    """Instance rows (positions in the instances table) of ``classes``, in table order."""
    names = np.asarray(class_names).astype(str)
    return np.flatnonzero(np.isin(names, [str(c) for c in classes])).astype(np.int64)


def cache_name(classes: Iterable[str]) -> str:
    """The bundle cache entry of a class set's layout (safe for any class name)."""
    key = json.dumps([LAYOUT_VERSION, SETTINGS, sorted(str(c) for c in classes)])
    return "class_layouts/" + hashlib.sha256(key.encode()).hexdigest()[:32]


def wants_own_layout(n_rows: int, n_selected: int, n_classes: int) -> bool:
    """Whether a class set is laid out on its own (not all classes, not too few or many rows)."""
    return 0 < n_selected < n_classes and MIN_ROWS <= n_rows <= MAX_ROWS


def _instance_names(bundle: Any) -> np.ndarray:
    return bundle.table("instances")["class_name"].cast(pl.String).to_numpy()


def lay_out(bundle: Any, rows: np.ndarray, callback: "Callable | None" = None) -> np.ndarray:
    """t-SNE of ``rows``'s embeddings, started from their places in the global layout."""
    from tlexplorer.analysis.embedding import project_subset

    # only these rows of the (memory-mapped) arrays are read: the same layout as passing all
    # rows with ``subset=rows``, without touching every instance's embedding
    rows = np.asarray(rows, dtype=np.int64)
    embeddings = np.asarray(bundle.array("embedding")[rows])
    layout = np.asarray(bundle.array("tsne")[rows])
    return np.asarray(project_subset(embeddings, layout, np.arange(len(rows)), n_jobs=1,
                                     callback=callback, **SETTINGS), dtype=np.float32)


def cached_layout(bundle: Any, classes: Iterable[str], n_rows: int) -> "np.ndarray | None":
    """A class set's stored layout, or None (absent, damaged or of another size)."""
    array = bundle.cache_array(cache_name(classes))
    if array is None or array.shape != (n_rows, 2) or not np.isfinite(array).all():
        return None
    return array.astype(np.float32, copy=False)


def store_layout(bundle: Any, classes: Iterable[str], xy: np.ndarray) -> bool:
    """Keep a class set's layout in the bundle's cache (False: read-only bundle, kept in memory)."""
    return bool(bundle.write_cache_array(cache_name(classes), np.asarray(xy, dtype=np.float32)))


def fill_default_layouts(bundle: Any, *, progress: bool = True, workers: "int | None" = None) -> int:
    """Lay out every default class set of ``bundle`` that its cache lacks; returns how many.

    Called by ``analyze`` on the finished bundle; resumable (finished sets are skipped). The sets
    are independent, so ``workers`` threads (default: one per CPU) lay out several at once; each
    runs single-threaded t-SNE, whose gradient loop releases the GIL, and gives the same result
    as alone. BLAS and OpenMP run on one thread each meanwhile (see :func:`_one_thread_each`).
    """
    from concurrent.futures import ThreadPoolExecutor, as_completed

    from threadpoolctl import threadpool_limits
    from tqdm.auto import tqdm

    from tlexplorer.config import available_cpus
    from tlexplorer.errors import BundleError

    if not (bundle.has("embedding") and bundle.has("tsne") and bundle.has("confusion")):
        return 0
    names = _instance_names(bundle)
    classes = [str(c) for c in bundle.classes]
    todo = []
    for chosen in default_class_sets(bundle.table("confusion"), classes):
        rows = class_rows(names, chosen)
        if wants_own_layout(len(rows), len(chosen), len(classes)) \
                and cached_layout(bundle, chosen, len(rows)) is None:
            todo.append((chosen, rows))
    if not todo:
        return 0
    workers = max(1, min(workers or available_cpus(), len(todo)))
    with threadpool_limits(1, user_api="blas"), \
            ThreadPoolExecutor(workers, thread_name_prefix="class-layout", initializer=_one_thread_each) as pool, \
            tqdm(total=len(todo), desc="class layouts", unit="set", disable=not progress) as bar:
        futures = {pool.submit(lay_out, bundle, rows): chosen for chosen, rows in todo}
        for future in as_completed(futures):
            if not store_layout(bundle, futures[future], future.result()):
                for other in futures:
                    other.cancel()
                raise BundleError(f"{bundle.path / 'cache'}: cannot write the class layouts "
                                  "(read-only folder or full disk)")
            bar.update(1)
    return len(todo)


def _one_thread_each() -> None:
    """A layout worker's OpenMP on one thread (a per-thread setting), as its t-SNE is.

    With BLAS also held at one thread for the whole pool (a process-wide setting, so set once
    around it): scikit-learn's exact neighbour search runs BLAS inside an OpenMP loop and limits
    BLAS to one thread around it itself, but two workers doing that at once restore each other's
    limit - a worker's OpenMP loop then met a multi-threaded OpenBLAS ("OpenBLAS Warning : Detect
    OpenMP Loop and this application may hang", hundreds of times at 60,000 instances).
    """
    from threadpoolctl import threadpool_limits

    threadpool_limits(1, user_api="openmp")


__all__ = ["LAYOUT_VERSION", "MAX_ROWS", "cache_name", "cached_layout", "class_rows",
           "default_class_sets", "fill_default_layouts", "focus_classes", "lay_out",
           "most_confused", "store_layout", "wants_own_layout"]
