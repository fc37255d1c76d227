"""Important neurons of a layer from their Layer Conductance (paper §5.3.1, Fig. 3 A1–A4).

For one class and one layer the pipeline hands over a matrix ``conductance`` of shape
``(instances, neurons)`` (the paper's :math:`A_{c,i}` transposed; for a convolutional layer each entry
is already the maximum of the neuron's conductance map). Per instance the neurons are ranked in
ascending order of conductance (tied values share their average rank, ranks ``1..neurons``), and each
neuron's ranks are summed over the instances (:func:`neuron_rank_scores`). The neurons with the
largest sums are the important ones; the paper keeps the top 10 % (:func:`important_neurons`).
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl

__all__ = [
    "importance_ranks",
    "important_neurons",
    "n_important",
    "neuron_rank_scores",
    "neuron_ranking",
]


def _to_numpy(x, name: str) -> np.ndarray:
    """Return ``x`` as a numpy array; a torch tensor is detached and copied to the CPU first."""
    if type(x).__module__.split(".")[0] == "torch":
        x = x.detach().cpu().numpy()
    arr = np.asarray(x)
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    return arr


def _as_matrix(x, name: str) -> np.ndarray:
    arr = _to_numpy(x, name)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D (instances, neurons), got shape {arr.shape}")
    if arr.dtype.kind == "b":
        arr = arr.astype(np.int8)
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


def neuron_rank_scores(conductance) -> np.ndarray:
    """Sum of each neuron's per-instance ranks (paper §5.3.1 A3–A4).

    In every instance (row) the neurons are ranked in ascending order of their conductance, so the
    neuron with the largest value gets rank ``neurons``; tied values share the average of the ranks
    they span (``scipy.stats.rankdata(method="average")``). The ranks of each neuron are then summed
    over the instances.

    Parameters
    ----------
    conductance : array_like, shape (instances, neurons)
        Layer Conductance (or any attribution) of every neuron on every instance of one class.
        numpy array or torch tensor; NaN and infinite values are rejected.

    Returns
    -------
    scores : ndarray of float64, shape (neurons,)
        The rank sums :math:`r'_{c,i}`; larger means more important. Every entry lies in
        ``[instances, instances * neurons]``; with no instances all scores are 0.

    Notes
    -----
    Vectorised: one ``argsort`` per row (numpy's SIMD sort; tie order does not matter because tied
    values get their average rank), tie groups found on the sorted rows, and the per-row ranks are
    scattered and summed with one ``bincount``. No rank matrix is materialised twice.
    """
    a = _as_matrix(conductance, "conductance")
    n, m = a.shape
    if n == 0 or m == 0:
        return np.zeros(m, dtype=np.float64)
    order = np.argsort(a, axis=1)
    s = np.take_along_axis(a, order, axis=1)
    # new[i, p]: sorted position p of row i starts a new group of equal values.
    new = np.ones((n, m), dtype=bool)
    np.not_equal(s[:, 1:], s[:, :-1], out=new[:, 1:])
    if new.all():  # no ties: ranks are the sorted positions + 1
        ranks = np.broadcast_to(np.arange(1, m + 1, dtype=np.float64), (n, m))
    else:
        flat_new = new.ravel()
        starts = np.flatnonzero(flat_new)  # group starts in flattened order (row starts included)
        ends = np.empty_like(starts)
        ends[:-1] = starts[1:] - 1
        ends[-1] = n * m - 1
        row_offset = (starts // m) * m
        group_rank = (starts + ends) / 2.0 - row_offset + 1.0  # average of 1-based ranks
        group_id = np.cumsum(flat_new) - 1
        ranks = group_rank[group_id]
    return np.bincount(order.ravel(), weights=np.ravel(ranks), minlength=m).astype(np.float64)


def n_important(n_neurons: int, fraction: float = 0.1) -> int:
    """Number of important neurons in a layer: ``ceil(fraction * n_neurons)``.

    Parameters
    ----------
    n_neurons : int
        Neurons in the layer.
    fraction : float, default 0.1
        Share of the layer kept (the paper's 10 %), in ``(0, 1]``.

    Returns
    -------
    int
        ``ceil(fraction * n_neurons)``, computed so that floating-point noise does not round up
        (``0.1 * 30`` is 3, not 4), and at least 1 when the layer has a neuron.
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    if n_neurons < 0:
        raise ValueError(f"n_neurons must be >= 0, got {n_neurons}")
    if n_neurons == 0:
        return 0
    k = math.ceil(round(fraction * n_neurons, 9))
    return int(min(max(k, 1), n_neurons))


def importance_ranks(scores) -> np.ndarray:
    """Importance rank of every neuron, 1 = largest score.

    Parameters
    ----------
    scores : array_like, shape (neurons,)
        Importance scores, e.g. from :func:`neuron_rank_scores`.

    Returns
    -------
    ranks : ndarray of int64, shape (neurons,)
        A permutation of ``1..neurons``; equal scores are ordered by lower neuron index first.
    """
    s = _to_numpy(scores, "scores").astype(np.float64, copy=False)
    if s.ndim != 1:
        raise ValueError(f"scores must be 1-D (neurons,), got shape {s.shape}")
    if np.isnan(s).any():
        raise ValueError("scores contains NaN values")
    order = np.argsort(-s, kind="stable")
    ranks = np.empty(s.shape[0], dtype=np.int64)
    ranks[order] = np.arange(1, s.shape[0] + 1)
    return ranks


def important_neurons(conductance, fraction: float = 0.1) -> np.ndarray:
    """Indices of the important neurons of a layer, most important first (paper §5.3.1 A4).

    Parameters
    ----------
    conductance : array_like, shape (instances, neurons)
        As in :func:`neuron_rank_scores`.
    fraction : float, default 0.1
        Share of neurons kept: ``n_important(neurons, fraction)`` indices are returned.

    Returns
    -------
    indices : ndarray of int64, shape (ceil(fraction * neurons),)
        Neurons with the largest rank sums, in decreasing order of the sum; equal sums are broken by
        the lower neuron index.
    """
    scores = neuron_rank_scores(conductance)
    k = n_important(scores.shape[0], fraction)
    return np.argsort(-scores, kind="stable")[:k].astype(np.int64)


def neuron_ranking(conductance, fraction: float = 0.1) -> pl.DataFrame:
    """Scores, ranks and importance flags of all neurons of a layer as a table.

    Parameters
    ----------
    conductance : array_like, shape (instances, neurons)
        As in :func:`neuron_rank_scores`.
    fraction : float, default 0.1
        As in :func:`important_neurons`.

    Returns
    -------
    polars.DataFrame, one row per neuron in index order
        ``neuron`` (i64), ``score`` (f64, the rank sum), ``rank`` (i64, 1 = most important, ties by
        lower index) and ``important`` (bool, ``rank <= n_important(neurons, fraction)``): the
        per-layer part of the bundle's ``neurons`` table.
    """
    scores = neuron_rank_scores(conductance)
    ranks = importance_ranks(scores)
    k = n_important(scores.shape[0], fraction)
    return pl.DataFrame(
        {
            "neuron": np.arange(scores.shape[0], dtype=np.int64),
            "score": scores,
            "rank": ranks,
            "important": ranks <= k,
        }
    )
