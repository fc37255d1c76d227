"""Per-class, per-layer aggregates the network relation view and the feature view draw.

The analysis bundle holds per-instance arrays and precomputed tables; the views need small
summaries of them for one class at a time (paper §5.3 and §5.4): the important neurons of both
models, the neuron similarity matrix split into its four regions, the important weights with box-plot
and histogram summaries, the top similar neurons, the feature ranking with conductance histograms
and the discriminability projection. :class:`BundleAggregates` computes them on demand from a
loaded bundle and keeps them in bounded LRU caches keyed by identities (``bundle.key``, class,
layer, ...), so that many sessions of one server share the work.

Nothing here imports panel or draws anything; everything returns numpy arrays, polars frames and
small dataclasses. Every public method is safe to call from several threads at once: a value that is
being computed by one thread is waited for, not computed twice.

Conventions
-----------
* ``model`` is ``"source"`` or ``"target"``; a *class* is a class name of the bundle, or ``"__all__"``
  for all classes together.
* Conductance rows follow ``arrays/rows_{domain}.npy``; a class's *positions* are the indices into
  those rows whose instance has the class (:meth:`BundleAggregates.class_rows`).
* Similarity matrices are ``(source neurons, target neurons)`` as in
  :func:`tlexplorer.analysis.similarity.neuron_similarity`; the view decides which domain goes on
  the rows.
"""
from __future__ import annotations

import math
import threading
from collections import OrderedDict
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Callable, Hashable, Sequence

import numpy as np
import polars as pl

__all__ = [
    "ALL",
    "MODELS",
    "BoxStats",
    "BundleAggregates",
    "Histogram",
    "NeuronRanking",
    "SimilarityBlock",
    "WeightBlock",
    "NetworkBlockData",
    "aggregates_for",
    "box_stats",
    "histogram",
    "layer_label", "neuron_label", "short_layer_names",
]

ALL = "__all__"
MODELS = ("source", "target")
#: Bins of the similarity histograms (regions 2-4) and of the weight histogram (region 4).
SIMILARITY_BINS = 20
WEIGHT_BINS = 16
#: Bins of the mirrored conductance histograms in the feature ranking list.
FEATURE_BINS = 16


# ----------------------------------------------------------------------------- small helpers
@dataclass(frozen=True)
class Histogram:
    """Counts of values in equal-width bins.

    Attributes
    ----------
    counts : ndarray of int64, shape (bins,)
    edges : ndarray of float64, shape (bins + 1,)
    n : int
        Number of values (``counts.sum()``; values outside ``edges`` are clipped into the end bins).
    """

    counts: np.ndarray
    edges: np.ndarray
    n: int


def histogram(values: np.ndarray, lo: float, hi: float, bins: int) -> Histogram:
    """:class:`Histogram` of ``values`` over ``[lo, hi]``; values outside are clipped into the ends."""
    values = np.asarray(values, dtype=np.float64).ravel()
    values = values[np.isfinite(values)]
    if not hi > lo:
        hi = lo + 1.0
    edges = np.linspace(lo, hi, bins + 1)
    if values.size == 0:
        return Histogram(np.zeros(bins, dtype=np.int64), edges, 0)
    idx = np.clip(((values - lo) / (hi - lo) * bins).astype(np.int64), 0, bins - 1)
    counts = np.bincount(idx, minlength=bins).astype(np.int64)
    return Histogram(counts, edges, int(values.size))


@dataclass(frozen=True)
class BoxStats:
    """Box-plot statistics of several groups of values, one entry per group.

    Attributes
    ----------
    q1, median, q3, low, high : ndarray of float64, shape (groups,)
        Quartiles and Tukey whiskers (the most extreme values within 1.5 IQR of the box);
        NaN for an empty group.
    count : ndarray of int64, shape (groups,)
        Values in each group.
    share_no_source : ndarray of float64, shape (groups,)
        Share of the group's weights without a corresponding important source weight
        (NaN for an empty group and for every group of the source model).
    """

    q1: np.ndarray
    median: np.ndarray
    q3: np.ndarray
    low: np.ndarray
    high: np.ndarray
    count: np.ndarray
    share_no_source: np.ndarray


def box_stats(groups: Sequence[np.ndarray], inherited: Sequence[np.ndarray] | None = None) -> BoxStats:
    """:class:`BoxStats` of each array in ``groups``.

    Parameters
    ----------
    groups : sequence of 1-D arrays
        Values per group.
    inherited : sequence of bool arrays, optional
        Per value whether it has a source correspondence; gives ``share_no_source``.
    """
    g = len(groups)
    out = {k: np.full(g, np.nan) for k in ("q1", "median", "q3", "low", "high", "share")}
    count = np.zeros(g, dtype=np.int64)

    def quantile(v: np.ndarray, p: float) -> float:  # numpy's default 'linear' method, sorted v
        h = (v.size - 1) * p
        lo = int(h)
        hi = min(lo + 1, v.size - 1)
        return float(v[lo] + (h - lo) * (v[hi] - v[lo]))

    for i, vals in enumerate(groups):
        vals = np.sort(np.asarray(vals, dtype=np.float64).ravel())
        count[i] = vals.size
        if vals.size == 0:
            continue
        q1, med, q3 = quantile(vals, 0.25), quantile(vals, 0.5), quantile(vals, 0.75)
        iqr = q3 - q1
        inside = vals[(vals >= q1 - 1.5 * iqr) & (vals <= q3 + 1.5 * iqr)]
        out["q1"][i], out["median"][i], out["q3"][i] = q1, med, q3
        out["low"][i], out["high"][i] = inside[0], inside[-1]
        if inherited is not None:
            inh = np.asarray(inherited[i], dtype=bool)
            out["share"][i] = 1.0 - inh.mean() if inh.size else np.nan
    return BoxStats(out["q1"], out["median"], out["q3"], out["low"], out["high"], count,
                    out["share"])


def layer_label(layer_index: int, neuron: int) -> str:
    """The paper's short neuron label: ``L5#173`` for neuron 173 of the 5th layer (1-based)."""
    return f"L{layer_index + 1}#{int(neuron)}"


def neuron_label(layer: str, neuron: int) -> str:
    """A neuron's label that needs no lookup: ``features.conv5 #173``."""
    return f"{layer} #{int(neuron)}"


def short_layer_names(layers: "Sequence[str]") -> "dict[str, str]":
    """Each layer's shortest dotted suffix that no other layer shares: ``features.conv5`` ->
    ``conv5`` and ``classifier.fc6`` -> ``fc6``, but ``layer1.0.conv1`` stays whole beside
    ``layer2.0.conv1``. For labels in tight places (biplot arrows)."""
    out = {}
    for layer in layers:
        parts = str(layer).split(".")
        for k in range(1, len(parts) + 1):
            suffix = ".".join(parts[-k:])
            if parts[-k].isdigit() and k < len(parts):
                continue  # "0" says nothing: keep the name of what it is an item of
            if not any(str(o) != str(layer) and (str(o) == suffix or str(o).endswith("." + suffix))
                       for o in layers):
                break
        out[str(layer)] = suffix
    return out


class _LRU:
    """A bounded, thread-safe memo: one computation per key even under concurrent calls."""

    def __init__(self, maxsize: int):
        self.maxsize = int(maxsize)
        self._data: OrderedDict[Hashable, Any] = OrderedDict()
        self._pending: dict[Hashable, Future] = {}
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def peek(self, key: Hashable) -> Any:
        """The value kept for ``key``, or None (nothing is computed)."""
        with self._lock:
            value = self._data.get(key)
            if value is not None:
                self._data.move_to_end(key)
            return value

    def get(self, key: Hashable, compute: Callable[[], Any]) -> Any:
        with self._lock:
            if key in self._data:
                self._data.move_to_end(key)
                self.hits += 1
                return self._data[key]
            fut = self._pending.get(key)
            owner = fut is None
            if owner:
                fut = Future()
                self._pending[key] = fut
                self.misses += 1
        if not owner:
            return fut.result()
        try:
            value = compute()
        except BaseException as exc:
            with self._lock:
                self._pending.pop(key, None)
            fut.set_exception(exc)
            raise
        with self._lock:
            self._pending.pop(key, None)
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self.maxsize:
                self._data.popitem(last=False)
        fut.set_result(value)
        return value

    def clear(self) -> None:
        with self._lock:
            self._data.clear()

    def __len__(self) -> int:
        return len(self._data)


#: The bounded memo for other modules (the app's views keep their recent results in it).
BoundedMemo = _LRU


# ----------------------------------------------------------------------------- result types
@dataclass(frozen=True)
class NeuronRanking:
    """Importance of one model's neurons in one layer for one class (paper §5.3.1 A).

    Attributes
    ----------
    order : ndarray of int64, shape (neurons,)
        Neuron indices, most important first.
    rank : ndarray of int64, shape (neurons,)
        ``rank[j]``: 1 = most important.
    score : ndarray of float64, shape (neurons,)
        Rank sums (larger = more important).
    important : ndarray of int64, shape (k,)
        The important neurons (top ``neuron_fraction``), most important first.
    """

    order: np.ndarray
    rank: np.ndarray
    score: np.ndarray
    important: np.ndarray

    @property
    def others(self) -> np.ndarray:
        """The non-important neurons, most important first."""
        return self.order[len(self.important):]


@dataclass(frozen=True)
class SimilarityBlock:
    """The neuron similarity matrix of one layer for one class, split into its four regions.

    ``imp_s`` / ``imp_t`` are the important neurons of the source / target model, ``other_s`` /
    ``other_t`` the rest. Region 1 is ``imp_s x imp_t`` (every cell), the three others are
    histograms over ``[lo, 1]``.

    Attributes
    ----------
    layer : str
    imp_source, imp_target : ndarray of int64
        Important neurons, most important first.
    cells : ndarray of float32, shape (len(imp_source), len(imp_target))
        Region 1: ``S[imp_source][:, imp_target]``.
    hist_is_ot, hist_os_it, hist_os_ot : Histogram
        Similarities of important source x other target, other source x important target,
        other x other.
    lo : float
        Lower end of the histograms' range (0, or -1 when a similarity is negative).
    """

    layer: str
    imp_source: np.ndarray
    imp_target: np.ndarray
    cells: np.ndarray
    hist_is_ot: Histogram
    hist_os_it: Histogram
    hist_os_ot: Histogram
    lo: float


@dataclass(frozen=True)
class WeightBlock:
    """One model's weights between two consecutive layers for one class, in four regions.

    Rows are the neurons of ``layer_from`` (``n1``), columns those of ``layer_to`` (``n2``), each
    ordered important first (the same order as the similarity matrices).

    Attributes
    ----------
    model, layer_from, layer_to : str
    imp_from, imp_to : ndarray of int64
        Important neurons of the two layers (this model's), most important first.
    values : ndarray of float32, shape (len(imp_from), len(imp_to))
        Region 1: every weight joining two important neurons.
    count : ndarray of int64, shape like ``values``
        How often each region-1 weight was among an instance's top contributions (0 when it is not
        an important weight of the class).
    rank : ndarray of int64, shape like ``values``
        Its rank among the class's important weights, 0 when it is not one.
    inherited : ndarray of int8, shape like ``values``
        1 = important target weight with an important source counterpart (§5.3.2), 0 = important
        target weight without one, -1 = not an important weight or the source model.
    box_from : BoxStats
        Region "important ``n1`` x other ``n2``": per important ``n1`` the important weights joining
        it to non-important neurons of ``layer_to`` (thickness = count, pie = share without source).
    box_to : BoxStats
        Region "other ``n1`` x important ``n2``": per important ``n2``.
    hist_other : Histogram
        Region 4: the values of all weights joining two non-important neurons.
    n_important_other : int
        Important weights among those of region 4.
    value_range : (float, float)
        Robust range (1st-99th percentile of all the pair's weights) that brightness and box
        positions are scaled to.
    """

    model: str
    layer_from: str
    layer_to: str
    imp_from: np.ndarray
    imp_to: np.ndarray
    values: np.ndarray
    count: np.ndarray
    rank: np.ndarray
    inherited: np.ndarray
    box_from: BoxStats
    box_to: BoxStats
    hist_other: Histogram
    n_important_other: int
    value_range: tuple[float, float]


@dataclass(frozen=True)
class NetworkBlockData:
    """Everything the network relation view draws for one class.

    Attributes
    ----------
    cls : str
    layers : list of str
        Layers shown, in network order.
    layer_index : dict str -> int
        Position of each layer among all of the bundle's layers (for ``L5#173`` labels).
    rankings : dict (model, layer) -> NeuronRanking
    similarity : dict layer -> SimilarityBlock
    weights : dict (model, layer_from, layer_to) -> WeightBlock
        For each consecutive pair of ``layers`` and both models (absent when the bundle lacks
        the weight array).
    metrics : dict layer -> dict
        The layer's row of ``tables/layer_metrics`` (CKA, A-distances), empty when missing.
    skipped : dict (layer_from, layer_to) -> str
        Why a consecutive pair of ``layers`` has no weight block (one model or both), from
        :meth:`BundleAggregates.pair_skip_reason`.
    """

    cls: str
    layers: list
    layer_index: dict
    rankings: dict
    similarity: dict
    weights: dict
    metrics: dict = field(default_factory=dict)
    skipped: dict = field(default_factory=dict)


# ----------------------------------------------------------------------------- the aggregates
class BundleAggregates:
    """On-demand, cached summaries of one analysis bundle (shared by all sessions of a process).

    Parameters
    ----------
    bundle : Bundle
        An opened bundle (``tlexplorer.bundle.open_bundle``): ``manifest``, ``classes``, ``layers``,
        ``key``, ``array(name)``, ``table(name)``, ``has(name)``.
    maxsize : int, default 512
        Entries kept per cache (each cache holds one kind of aggregate).

    Notes
    -----
    Obtain the process-wide instance with :func:`aggregates_for`. Cache keys start with
    ``bundle.key`` so that entries of a replaced bundle never answer for the new one.
    """

    def __init__(self, bundle: Any, *, maxsize: int = 512):
        self.bundle = bundle
        self.key = str(getattr(bundle, "key", None) or getattr(bundle, "path", "bundle"))
        self._caches: dict[str, _LRU] = {}
        self._caches_lock = threading.Lock()
        self._maxsize = maxsize
        manifest = getattr(bundle, "manifest", {}) or {}
        options = manifest.get("options", {}) or {}
        self.neuron_fraction = float(options.get("neuron_fraction", 0.1) or 0.1)
        self.layer_names = [str(l["name"]) if isinstance(l, dict) else str(getattr(l, "name", l))
                            for l in (getattr(bundle, "layers", None) or manifest.get("layers", []))]
        self.layer_sizes = {}
        for l in (getattr(bundle, "layers", None) or manifest.get("layers", [])):
            if isinstance(l, dict):
                self.layer_sizes[str(l["name"])] = int(l.get("neurons", 0))
        self.classes = [str(c) for c in (getattr(bundle, "classes", None)
                                         or manifest.get("classes", []))]
        self.warnings = [str(w) for w in (manifest.get("warnings") or [])]
        self.layer_pairs = [p for p in (manifest.get("layer_pairs") or []) if isinstance(p, dict)]

    # ------------------------------------------------------------------ cache plumbing
    def _cache(self, kind: str, maxsize: int | None = None) -> _LRU:
        with self._caches_lock:
            cache = self._caches.get(kind)
            if cache is None:
                cache = self._caches[kind] = _LRU(maxsize or self._maxsize)
            return cache

    def _memo(self, kind: str, key: tuple, compute: Callable[[], Any], maxsize: int | None = None):
        return self._cache(kind, maxsize).get((self.key, *key), compute)

    def cache_info(self) -> dict:
        """Entries, hits and misses per cache (for tests and benchmarks)."""
        with self._caches_lock:
            return {k: {"size": len(c), "hits": c.hits, "misses": c.misses}
                    for k, c in self._caches.items()}

    def clear(self) -> None:
        """Drop every cached aggregate."""
        with self._caches_lock:
            for c in self._caches.values():
                c.clear()

    def _has(self, name: str) -> bool:
        has = getattr(self.bundle, "has", None)
        if has is None:
            return True
        try:
            return bool(has(name))
        except Exception:
            return False

    def _table(self, name: str) -> pl.DataFrame | None:
        def load():
            if not self._has(name):
                return None
            try:
                return self.bundle.table(name)
            except (KeyError, FileNotFoundError, OSError):
                return None
        return self._memo("table", (name,), load, maxsize=32)

    def _array(self, name: str) -> np.ndarray:
        """A bundle array, loaded once into memory (bundle arrays may be memory-mapped)."""
        return self._memo("array", (name,), lambda: np.asarray(self.bundle.array(name)),
                          maxsize=256)

    def _array_or_none(self, name: str) -> np.ndarray | None:
        if not self._has(name):
            return None
        try:
            return self._array(name)
        except (KeyError, FileNotFoundError, OSError):
            return None

    def _check_model(self, model: str) -> None:
        if model not in MODELS:
            raise ValueError(f"model must be 'source' or 'target', got {model!r}")

    # ------------------------------------------------------------------ instances
    def _instance_class_names(self) -> np.ndarray:
        def compute():
            inst = self._table("instances")
            if inst is None:
                raise KeyError("the bundle has no tables/instances")
            inst = inst.sort("row")
            return np.asarray(inst["class_name"].cast(pl.String).to_list(), dtype=object)
        return self._memo("instances", ("class_names",), compute, maxsize=4)

    def rows(self, domain: str = "target") -> np.ndarray:
        """``arrays/rows_{domain}``: instance rows whose conductance was analysed, int64 (M,)."""
        return self._array(f"rows_{domain}").astype(np.int64, copy=False)

    def class_rows(self, cls: str, domain: str = "target") -> np.ndarray:
        """Positions within ``rows_{domain}`` of the instances of class ``cls``.

        Parameters
        ----------
        cls : str
            Class name, or ``"__all__"`` for every analysed instance.
        domain : {'target', 'source'}

        Returns
        -------
        ndarray of int64, shape (M_cls,)
            Indices into ``rows_{domain}`` (and so into the rows of ``conductance/*_on_{domain}``),
            ascending.
        """
        def compute():
            rows = self.rows(domain)
            if cls == ALL:
                return np.arange(rows.shape[0], dtype=np.int64)
            names = self._instance_class_names()
            return np.flatnonzero(names[rows] == str(cls)).astype(np.int64)
        return self._memo("class_rows", (domain, str(cls)), compute)

    def conductance(self, combo: str, layer: str, cls: str = ALL) -> np.ndarray:
        """``conductance/{combo}/{layer}`` restricted to the class's instances, float32 (M_cls, n)."""
        domain = combo.split("_on_")[1]

        def compute():
            full = self._array(f"conductance/{combo}/{layer}")
            if cls == ALL:
                return np.asarray(full, dtype=np.float32)
            return np.ascontiguousarray(full[self.class_rows(cls, domain)], dtype=np.float32)
        return self._memo("conductance", (combo, layer, str(cls)), compute, maxsize=128)

    # ------------------------------------------------------------------ neurons
    def _neuron_groups(self) -> dict:
        """tables/neurons split by (model, class, layer) once: rank/score arrays by neuron."""
        def compute():
            table = self._table("neurons")
            if table is None:
                return {}
            out = {}
            table = table.with_columns(pl.col("class").cast(pl.String))
            for (model, cls, layer), part in table.group_by(["model", "class", "layer"]):
                part = part.sort("neuron")
                out[(str(model), str(cls), str(layer))] = (
                    part["neuron"].to_numpy().astype(np.int64),
                    part["rank"].to_numpy().astype(np.int64),
                    part["score"].to_numpy().astype(np.float64),
                    part["important"].to_numpy().astype(bool),
                )
            return out
        return self._memo("neuron_groups", (), compute, maxsize=2)

    def neuron_ranking(self, model: str, cls: str, layer: str) -> NeuronRanking:
        """Importance ranking of ``model``'s neurons in ``layer`` for class ``cls``.

        Read from ``tables/neurons`` (the pipeline's ranking); when the table lacks the entry,
        computed from ``conductance/{model}_on_target`` of the class's target instances with
        :func:`tlexplorer.analysis.neurons.neuron_rank_scores`.
        """
        self._check_model(model)

        def compute():
            entry = self._neuron_groups().get((model, str(cls), layer))
            if entry is not None:
                neuron, rank, score, important = entry
                n = int(neuron.max()) + 1 if neuron.size else 0
                rank_full = np.zeros(n, dtype=np.int64)
                score_full = np.zeros(n, dtype=np.float64)
                rank_full[neuron], score_full[neuron] = rank, score
                order = neuron[np.lexsort((neuron, rank))]
                imp = order[np.isin(order, neuron[important])]
                return NeuronRanking(order, rank_full, score_full, imp)
            from tlexplorer.analysis.neurons import importance_ranks, n_important, neuron_rank_scores

            cond = self.conductance(f"{model}_on_target", layer, cls)
            score = neuron_rank_scores(cond)
            rank = importance_ranks(score)
            order = np.argsort(rank, kind="stable").astype(np.int64)
            k = n_important(score.shape[0], self.neuron_fraction)
            return NeuronRanking(order, rank, score, order[:k])
        return self._memo("ranking", (model, str(cls), layer), compute)

    # ------------------------------------------------------------------ similarity
    def similarity(self, cls: str, layer: str) -> np.ndarray:
        """Cosine similarity of source-model x target-model neurons over the class's target instances.

        Returns
        -------
        ndarray of float32, shape (source neurons, target neurons)
            From ``conductance/source_on_target`` and ``conductance/target_on_target`` rows of the
            class (paper §5.3.2, :math:`S_{c,i}`).
        """
        def compute():
            from tlexplorer.analysis.similarity import neuron_similarity

            a_s = self.conductance("source_on_target", layer, cls)
            a_t = self.conductance("target_on_target", layer, cls)
            return neuron_similarity(a_s, a_t)
        return self._memo("similarity", (str(cls), layer), compute, maxsize=128)

    def similarity_block(self, cls: str, layer: str) -> SimilarityBlock:
        """The similarity matrix of ``layer`` for ``cls`` split into the four regions of Fig. 4 B."""
        def compute():
            s = self.similarity(cls, layer)
            rs = self.neuron_ranking("source", cls, layer)
            rt = self.neuron_ranking("target", cls, layer)
            imp_s, imp_t, oth_s, oth_t = rs.important, rt.important, rs.others, rt.others
            lo = -1.0 if float(s.min(initial=0.0)) < 0 else 0.0
            h = lambda a, b: histogram(s[np.ix_(a, b)], lo, 1.0, SIMILARITY_BINS)  # noqa: E731
            return SimilarityBlock(
                layer=layer, imp_source=imp_s, imp_target=imp_t,
                cells=np.ascontiguousarray(s[np.ix_(imp_s, imp_t)]),
                hist_is_ot=h(imp_s, oth_t), hist_os_it=h(oth_s, imp_t), hist_os_ot=h(oth_s, oth_t),
                lo=lo)
        return self._memo("similarity_block", (str(cls), layer), compute)

    def top_similar(self, model: str, layer: str, neuron: int, cls: str, k: int = 5) -> pl.DataFrame:
        """The ``k`` neurons of the other model most similar to ``model``'s ``neuron`` in ``layer``.

        Returns
        -------
        polars.DataFrame
            ``model`` (the other model), ``layer``, ``neuron``, ``similarity``, ``rank`` (the
            neuron's importance rank in its model for ``cls``); most similar first, ties by index.
        """
        self._check_model(model)
        s = self.similarity(cls, layer)
        vec = s[:, int(neuron)] if model == "target" else s[int(neuron), :]
        other = "source" if model == "target" else "target"
        order = np.lexsort((np.arange(vec.size), -vec))[:k]
        ranking = self.neuron_ranking(other, cls, layer)
        return pl.DataFrame({
            "model": [other] * len(order), "layer": [layer] * len(order),
            "neuron": order.astype(np.int64), "similarity": vec[order].astype(np.float64),
            "rank": ranking.rank[order].astype(np.int64),
        })

    # ------------------------------------------------------------------ weights
    def weight_values(self, model: str, layer_from: str, layer_to: str) -> np.ndarray | None:
        """``arrays/weights/{model}/{layer_from}__{layer_to}``: float32 (n1, n2), or None if absent."""
        self._check_model(model)
        return self._array_or_none(f"weights/{model}/{layer_from}__{layer_to}")

    _IW_SCHEMA = {"n1": pl.Int64, "n2": pl.Int64, "count": pl.Int64, "rank": pl.Int64,
                  "inherited": pl.Boolean, "n1_match": pl.Int64, "n2_match": pl.Int64}

    def _weight_groups(self) -> dict:
        """tables/important_weights split once by (model, class, layer_from, layer_to), by rank.

        Each entry holds numpy arrays; ``inherited`` is int8 (1, 0, or -1 for null).
        """
        def compute():
            table = self._table("important_weights")
            if table is None:
                return {}
            table = table.with_columns(pl.col("class").cast(pl.String)).sort("rank")
            out = {}
            for key, part in table.group_by(["model", "class", "layer_from", "layer_to"],
                                            maintain_order=True):
                inh = part["inherited"].cast(pl.Int8).fill_null(-1).to_numpy().astype(np.int8)
                out[tuple(str(k) for k in key)] = {
                    "n1": part["n1"].to_numpy().astype(np.int64),
                    "n2": part["n2"].to_numpy().astype(np.int64),
                    "count": part["count"].to_numpy().astype(np.int64),
                    "rank": part["rank"].to_numpy().astype(np.int64),
                    "inherited": inh,
                    "n1_match": part["n1_match"].cast(pl.Int64).fill_null(-1).to_numpy(),
                    "n2_match": part["n2_match"].cast(pl.Int64).fill_null(-1).to_numpy(),
                }
            return out
        return self._memo("weight_groups", (), compute, maxsize=2)

    def important_weights(self, model: str, cls: str, layer_from: str, layer_to: str) -> pl.DataFrame:
        """The class's important weights of ``model`` between two layers, by rank.

        Returns
        -------
        polars.DataFrame
            ``n1``, ``n2``, ``count``, ``rank``, ``inherited`` (null for the source model),
            ``n1_match``, ``n2_match`` (null where unknown); empty when the bundle has none.
        """
        self._check_model(model)
        g = self._weight_groups().get((model, str(cls), layer_from, layer_to))
        if g is None:
            return pl.DataFrame(schema=self._IW_SCHEMA)
        inh = g["inherited"]
        return pl.DataFrame({
            "n1": g["n1"], "n2": g["n2"], "count": g["count"], "rank": g["rank"],
            "inherited": pl.Series([None if v < 0 else bool(v) for v in inh], dtype=pl.Boolean),
            "n1_match": pl.Series([None if v < 0 else int(v) for v in g["n1_match"]], dtype=pl.Int64),
            "n2_match": pl.Series([None if v < 0 else int(v) for v in g["n2_match"]], dtype=pl.Int64),
        }, schema=self._IW_SCHEMA)

    def weight_block(self, model: str, cls: str, layer_from: str, layer_to: str) -> WeightBlock | None:
        """The four regions of ``model``'s weights from ``layer_from`` to ``layer_to`` (Fig. 4 C)."""
        self._check_model(model)

        def compute():
            w = self.weight_values(model, layer_from, layer_to)
            if w is None:
                return None
            w = np.asarray(w, dtype=np.float32)
            r1 = self.neuron_ranking(model, cls, layer_from)
            r2 = self.neuron_ranking(model, cls, layer_to)
            imp1, imp2 = r1.important, r2.important
            n1, n2 = w.shape
            is_imp1 = np.zeros(n1, bool)
            is_imp1[imp1[imp1 < n1]] = True
            is_imp2 = np.zeros(n2, bool)
            is_imp2[imp2[imp2 < n2]] = True
            pos1 = np.full(n1, -1, np.int64)
            pos1[imp1] = np.arange(len(imp1))
            pos2 = np.full(n2, -1, np.int64)
            pos2[imp2] = np.arange(len(imp2))

            empty = np.empty(0, np.int64)
            g = self._weight_groups().get((model, str(cls), layer_from, layer_to)) or {
                "n1": empty, "n2": empty, "count": empty, "rank": empty,
                "inherited": np.empty(0, np.int8)}
            a, b = g["n1"], g["n2"]
            ok = (a >= 0) & (a < n1) & (b >= 0) & (b < n2)
            a, b = a[ok], b[ok]
            cnt, rnk = g["count"][ok], g["rank"][ok]
            inh = (g["inherited"][ok] == 1) if model == "target" else None
            vals = w[a, b]

            values = np.ascontiguousarray(w[np.ix_(imp1, imp2)])
            count = np.zeros(values.shape, np.int64)
            rank = np.zeros(values.shape, np.int64)
            inherited = np.full(values.shape, -1, np.int8)
            in1 = is_imp1[a] & is_imp2[b]
            count[pos1[a[in1]], pos2[b[in1]]] = cnt[in1]
            rank[pos1[a[in1]], pos2[b[in1]]] = rnk[in1]
            if inh is not None:
                inherited[pos1[a[in1]], pos2[b[in1]]] = inh[in1].astype(np.int8)

            def boxes(key_pos: np.ndarray, key_idx: np.ndarray, mask: np.ndarray, k: int) -> BoxStats:
                sel = np.flatnonzero(mask)
                order = np.argsort(key_pos[key_idx[sel]], kind="stable")
                sel = sel[order]
                groups_pos = key_pos[key_idx[sel]]
                bounds = np.searchsorted(groups_pos, np.arange(k + 1))
                gv = [vals[sel[bounds[j]:bounds[j + 1]]] for j in range(k)]
                gi = None if inh is None else [inh[sel[bounds[j]:bounds[j + 1]]] for j in range(k)]
                return box_stats(gv, gi)

            box_from = boxes(pos1, a, is_imp1[a] & ~is_imp2[b], len(imp1))
            box_to = boxes(pos2, b, ~is_imp1[a] & is_imp2[b], len(imp2))
            lo, hi = (float(v) for v in np.percentile(w, [1, 99])) if w.size else (0.0, 1.0)
            if not hi > lo:
                lo, hi = float(w.min(initial=0)), float(w.max(initial=1))
                if not hi > lo:
                    hi = lo + 1.0
            other = w[np.ix_(~is_imp1, ~is_imp2)]
            hist = histogram(other, lo, hi, WEIGHT_BINS)
            return WeightBlock(
                model=model, layer_from=layer_from, layer_to=layer_to, imp_from=imp1, imp_to=imp2,
                values=values, count=count, rank=rank, inherited=inherited,
                box_from=box_from, box_to=box_to, hist_other=hist,
                n_important_other=int((~is_imp1[a] & ~is_imp2[b]).sum()), value_range=(lo, hi))
        return self._memo("weight_block", (model, str(cls), layer_from, layer_to), compute)

    # ------------------------------------------------------------------ layer metrics
    def layer_metrics(self) -> dict:
        """``tables/layer_metrics`` as ``{layer: {column: value}}`` (empty when absent)."""
        def compute():
            table = self._table("layer_metrics")
            if table is None:
                return {}
            return {str(r["layer"]): {k: v for k, v in r.items() if k != "layer"}
                    for r in table.iter_rows(named=True)}
        return self._memo("layer_metrics", (), compute, maxsize=2)

    def pair_skip_reason(self, layer_from: str, layer_to: str) -> str:
        """Why the bundle has no weights from ``layer_from`` to ``layer_to``, in one line.

        Weights exist only between layers that follow each other in the bundle's layer list and
        whose connection is a per-neuron weight matrix; the analysis records why it skipped a pair
        in the manifest's ``layer_pairs`` (from the data flow: a residual sum, parallel branches,
        ...) or, for a pair that failed when tried, in its warnings (``weights skipped: 'a' → 'b':
        ...``). Pairs neither mentions get a generic reason.

        Parameters
        ----------
        layer_from, layer_to : str
            The pair, in network order.

        Returns
        -------
        str
            The reason, without the warning's ``weights skipped: 'a' → 'b':`` prefix.
        """
        index = {name: i for i, name in enumerate(self.layer_names)}
        a, b = index.get(layer_from), index.get(layer_to)
        if a is not None and b is not None and b != a + 1:
            between = self.layer_names[min(a, b) + 1:max(a, b)]
            return (f"not consecutive layers: {len(between)} layer"
                    f"{'s' if len(between) != 1 else ''} between them "
                    f"({', '.join(between[:3])}{', …' if len(between) > 3 else ''})")
        for entry in self.layer_pairs:  # the data flow, as analyze recorded it
            if entry.get("from") == layer_from and entry.get("to") == layer_to \
                    and not entry.get("direct", True):
                return str(entry.get("reason") or "not joined by per-neuron weights")
        pair = f"{layer_from!r} → {layer_to!r}"
        for warning in self.warnings:  # bundles before layer_pairs, or a pair that failed
            if pair not in warning:
                continue
            reason = warning.split("weights skipped:", 1)[-1].strip()
            if reason.startswith(pair):
                reason = reason[len(pair):].lstrip(" :")
            return reason or warning
        return "the analysis recorded no weights for this pair"

    # ------------------------------------------------------------------ the whole view
    def network_block_data(self, cls: str, layers: Sequence[str] | None = None) -> NetworkBlockData:
        """Everything the zig-zag network relation view needs for class ``cls``.

        Parameters
        ----------
        cls : str
            Focus class (or ``"__all__"``).
        layers : sequence of str, optional
            Layers to show, in network order (default: all of the bundle's). Weight blocks are made
            for each consecutive pair of this list.
        """
        layers = list(self.layer_names if layers is None else layers)
        index = {name: i for i, name in enumerate(self.layer_names)}
        layers = sorted((l for l in layers if l in index), key=index.__getitem__)

        def compute():
            rankings = {(m, l): self.neuron_ranking(m, cls, l) for l in layers for m in MODELS}
            sims = {l: self.similarity_block(cls, l) for l in layers}
            weights = {}
            for lf, lt in zip(layers, layers[1:]):
                for m in MODELS:
                    block = self.weight_block(m, cls, lf, lt)
                    if block is not None:
                        weights[(m, lf, lt)] = block
            metrics = self.layer_metrics()
            skipped = {(lf, lt): self.pair_skip_reason(lf, lt)
                       for lf, lt in zip(layers, layers[1:])
                       if any((m, lf, lt) not in weights for m in MODELS)}
            return NetworkBlockData(
                cls=str(cls), layers=list(layers), layer_index={l: index[l] for l in layers},
                rankings=rankings, similarity=sims, weights=weights,
                metrics={l: metrics.get(l, {}) for l in layers}, skipped=skipped)
        return self._memo("network", (str(cls), tuple(layers)), compute, maxsize=64)

    # ------------------------------------------------------------------ feature view
    def discriminability_table(self, scope: str) -> pl.DataFrame:
        """The scope's rows of ``tables/discriminability`` in stored order, with ``axis_row``.

        ``axis_row`` is the row of ``arrays/discriminability/{scope}/axes`` of each neuron.
        """
        def compute():
            table = self._table("discriminability")
            if table is None:
                return pl.DataFrame(schema={"layer": pl.String, "neuron": pl.Int64,
                                            "coef": pl.Float64, "rank": pl.Int64,
                                            "axis_row": pl.Int64})
            part = table.filter(pl.col("scope").cast(pl.String) == str(scope))
            return part.select(
                pl.col("layer").cast(pl.String), pl.col("neuron").cast(pl.Int64),
                pl.col("coef").cast(pl.Float64), pl.col("rank").cast(pl.Int64),
            ).with_row_index("axis_row").with_columns(pl.col("axis_row").cast(pl.Int64))
        return self._memo("disc_table", (str(scope),), compute, maxsize=64)

    def discriminability_summary(self, scope: str) -> dict:
        """The scope's row of ``tables/discriminability_summary`` (cv_accuracy, C, counts) or {}."""
        table = self._table("discriminability_summary")
        if table is None:
            return {}
        part = table.filter(pl.col("scope").cast(pl.String) == str(scope))
        return part.row(0, named=True) if part.height else {}

    def feature_ranking(self, scope: str, order: str = "descending") -> pl.DataFrame:
        """The feature ranking list (§5.4.2): neurons by domain discriminability with histograms.

        Parameters
        ----------
        scope : str
            Class name or ``"__all__"``.
        order : {'descending', 'ascending'}
            ``descending``: most discriminative (largest ``|coef|``, rank 1) first.

        Returns
        -------
        polars.DataFrame
            ``layer``, ``layer_index`` (0-based position in the bundle), ``neuron``, ``label``
            (``features.conv5 #173``), ``coef``, ``rank``, ``axis_row``, ``hist_source``, ``hist_target``
            (list[i64] counts of the target model's conductance on the scope's source and target
            instances, over shared bins), ``bin_lo``, ``bin_hi``.
        """
        if order not in ("descending", "ascending"):
            raise ValueError(f"order must be 'descending' or 'ascending', got {order!r}")

        def compute():
            table = self.discriminability_table(scope)
            index = {name: i for i, name in enumerate(self.layer_names)}
            hs, ht, lo_l, hi_l = [], [], [], []
            cache: dict[str, tuple[np.ndarray, np.ndarray]] = {}
            for layer, neuron in zip(table["layer"].to_list(), table["neuron"].to_list()):
                if layer not in cache:
                    cache[layer] = (
                        self._conductance_or_none("target_on_source", layer, scope),
                        self._conductance_or_none("target_on_target", layer, scope))
                cs, ct = cache[layer]
                vs = cs[:, neuron] if cs is not None else np.empty(0)
                vt = ct[:, neuron] if ct is not None else np.empty(0)
                both = np.concatenate([vs, vt])
                lo = float(both.min()) if both.size else 0.0
                hi = float(both.max()) if both.size else 1.0
                hs.append(histogram(vs, lo, hi, FEATURE_BINS).counts)
                ht.append(histogram(vt, lo, hi, FEATURE_BINS).counts)
                lo_l.append(lo)
                hi_l.append(hi if hi > lo else lo + 1.0)
            li = [index.get(l, -1) for l in table["layer"].to_list()]
            return table.with_columns(
                pl.Series("layer_index", li, dtype=pl.Int64),
                pl.Series("label", [neuron_label(l, n) for l, n in
                                    zip(table["layer"].to_list(), table["neuron"].to_list())],
                          dtype=pl.String),
                pl.Series("hist_source", [h.tolist() for h in hs], dtype=pl.List(pl.Int64)),
                pl.Series("hist_target", [h.tolist() for h in ht], dtype=pl.List(pl.Int64)),
                pl.Series("bin_lo", lo_l, dtype=pl.Float64),
                pl.Series("bin_hi", hi_l, dtype=pl.Float64),
            ).select("layer", "layer_index", "neuron", "label", "coef", "rank", "axis_row",
                     "hist_source", "hist_target", "bin_lo", "bin_hi")

        frame = self._memo("feature_ranking", (str(scope),), compute, maxsize=64)
        # rank 1 = most discriminative; ties by layer position and neuron
        return frame.sort(["rank", "layer_index", "neuron"], descending=[order == "ascending",
                                                                        False, False])

    def _conductance_or_none(self, combo: str, layer: str, cls: str) -> np.ndarray | None:
        if not self._has(f"conductance/{combo}/{layer}"):
            return None
        try:
            return self.conductance(combo, layer, cls)
        except (KeyError, FileNotFoundError, OSError):
            return None

    def discriminability_projection(self, scope: str, neurons: Sequence[tuple[str, int]] | None = None
                                    ) -> dict:
        """The domain discriminability plot's data (§5.4.2) for ``scope``.

        Parameters
        ----------
        scope : str
            Class name or ``"__all__"``.
        neurons : sequence of (layer, neuron), optional
            Neurons whose biplot axes are returned (default: all of the scope's), in that order.

        Returns
        -------
        dict
            ``x``, ``y`` (float32 (M_s + M_t,)), ``domain`` (str array, ``source`` rows first),
            ``n_source``, ``n_target``, ``axes`` (float32 (P, 2)), ``axis_layer``, ``axis_neuron``,
            ``axis_label`` (``features.conv5 #173``), ``cv_accuracy`` (float or None).
        """
        from tlexplorer.bundle.schema import safe_component

        def points():
            proj = self._array(f"discriminability/{safe_component(scope)}/projection")
            proj = np.asarray(proj, dtype=np.float32)
            summary = self.discriminability_summary(scope)
            n_s = summary.get("n_source")
            if n_s is None:
                n_s = len(self.class_rows(scope, "source"))
            n_s = int(min(max(int(n_s), 0), proj.shape[0]))
            domain = np.array(["source"] * n_s + ["target"] * (proj.shape[0] - n_s), dtype=object)
            return proj, domain, n_s, summary.get("cv_accuracy")
        proj, domain, n_s, cv = self._memo("projection", (str(scope),), points, maxsize=32)
        table = self.discriminability_table(scope)
        axes_all = self._array_or_none(f"discriminability/{safe_component(scope)}/axes")
        if neurons is None:
            sel = table
        else:
            want = pl.DataFrame({"layer": [str(l) for l, _ in neurons],
                                 "neuron": [int(n) for _, n in neurons]},
                                schema={"layer": pl.String, "neuron": pl.Int64})
            sel = want.with_row_index("_o").join(table, on=["layer", "neuron"], how="inner"
                                                 ).sort("_o")
        rows = sel["axis_row"].to_numpy().astype(np.int64)
        if axes_all is None:
            axes = np.zeros((len(rows), 2), np.float32)
        else:
            ok = rows < axes_all.shape[0]
            axes = np.zeros((len(rows), 2), np.float32)
            axes[ok] = axes_all[rows[ok]]
        layers_sel = sel["layer"].to_list()
        neurons_sel = sel["neuron"].to_list()
        return {
            "x": proj[:, 0], "y": proj[:, 1], "domain": domain,
            "n_source": n_s, "n_target": int(proj.shape[0] - n_s),
            "axes": axes, "axis_layer": layers_sel, "axis_neuron": neurons_sel,
            "axis_label": [neuron_label(l, n) for l, n in zip(layers_sel, neurons_sel)],
            "cv_accuracy": None if cv is None or (isinstance(cv, float) and math.isnan(cv))
            else float(cv),
        }

    def active_projection(self, scope: str, neurons: Sequence[tuple[str, int]]
                          ) -> "np.ndarray | None":
        """The discriminability plot's points projected over ``neurons`` only (paper §5.4.2: the
        top five or the checked ones), as ``DomainDiscriminability.transform(x, neurons=...)``:
        ``z[:, active] @ components[active] + origin``. Shape (M_s + M_t, 2), source rows first;
        None when the bundle predates the arrays this needs (the view then draws all neurons')."""
        from tlexplorer.bundle.schema import safe_component

        base = f"discriminability/{safe_component(scope)}"
        names = [f"{base}/standardized", f"{base}/components", f"{base}/origin"]
        if not all(self._has(n) for n in names):
            return None
        z, comp, origin = (self._array(n) for n in names)
        table = self.discriminability_table(scope)
        index = {(l, int(n)): int(r) for l, n, r in zip(
            table["layer"].to_list(), table["neuron"].to_list(), table["axis_row"].to_list())}
        rows = sorted({index[(str(l), int(n))] for l, n in neurons if (str(l), int(n)) in index})
        z = np.asarray(z, dtype=np.float64)
        comp = np.asarray(comp, dtype=np.float64)
        return z[:, rows] @ comp[rows] + np.asarray(origin, dtype=np.float64)

    # ------------------------------------------------------------------ instances for details
    def top_activating(self, model: str, layer: str, neuron: int, k: int = 5,
                       domain: str = "target", cls: str = ALL) -> np.ndarray:
        """Instance rows (of ``tables/instances``) that activate ``neuron`` most, most first.

        From ``arrays/activations/{model}_on_{domain}/{layer}`` (max over space); restricted to the
        class's instances unless ``cls == "__all__"``.
        """
        self._check_model(model)
        name = f"activations/{model}_on_{domain}/{layer}"
        act = self._array_or_none(name)
        if act is None:
            return np.empty(0, dtype=np.int64)
        pos = self.class_rows(cls, domain)
        vals = np.asarray(act[pos, int(neuron)], dtype=np.float64)
        best = np.lexsort((pos, -vals))[:k]
        return self.rows(domain)[pos[best]]


_REGISTRY: "OrderedDict[str, BundleAggregates]" = OrderedDict()
_REGISTRY_LOCK = threading.Lock()
_REGISTRY_SIZE = 4


def aggregates_for(bundle: Any) -> BundleAggregates:
    """The process-wide :class:`BundleAggregates` of ``bundle`` (one per ``bundle.key``).

    Bundles are read-only and shared by all sessions of a server, so their aggregates are too; the
    registry keeps the few most recently used bundles.
    """
    key = getattr(bundle, "key", None) or getattr(bundle, "path", None)
    if key is None:
        raise ValueError("bundle has neither a key nor a path to identify its aggregates by")
    key = str(key)
    with _REGISTRY_LOCK:
        agg = _REGISTRY.get(key)
        if agg is None:
            agg = _REGISTRY[key] = BundleAggregates(bundle)
        elif agg.bundle is not bundle:
            # the same content opened again (maybe at another path): keep the cached aggregates,
            # read whatever is still missing through the newest handle
            agg.bundle = bundle
        _REGISTRY.move_to_end(key)
        while len(_REGISTRY) > _REGISTRY_SIZE:
            _REGISTRY.popitem(last=False)
        return agg
