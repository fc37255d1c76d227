"""Comparing the two networks (paper §5.3.2) and, beyond the paper, their layers as a whole.

* :func:`neuron_similarity`: cosine similarity of every source-model neuron with every target-model
  neuron of the same layer, over the attributions both models give the same instances.
* :func:`inherited_weights`: whether each important target weight has an important counterpart
  between the most similar source neurons.
* :func:`linear_cka`: linear centered kernel alignment of two representations of the same
  instances (Kornblith et al., 2019).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .neurons import _as_matrix, _to_numpy

__all__ = ["WeightInheritance", "inherited_weights", "linear_cka", "most_similar", "neuron_similarity"]


def neuron_similarity(a_source, a_target) -> np.ndarray:
    """Cosine similarity between every source-model and every target-model neuron of a layer.

    Parameters
    ----------
    a_source : array_like, shape (instances, source_neurons)
        Attributions (Layer Conductance) of the source model's neurons on the instances.
    a_target : array_like, shape (instances, target_neurons)
        Attributions of the target model's neurons on the same instances, in the same order.

    Returns
    -------
    S : ndarray of float32, shape (source_neurons, target_neurons)
        ``S[s, t] = <a_source[:, s], a_target[:, t]> / (|a_source[:, s]| |a_target[:, t]|)``, in
        ``[-1, 1]`` (attributions can be negative). A neuron whose attributions are all zero has
        no direction; its similarities are defined as 0.

    Notes
    -----
    Columns are normalised and multiplied in float32 (one BLAS matmul), which is what keeps a
    ``4096 x 4096`` matrix from a few hundred instances interactive. The result is clipped to
    ``[-1, 1]`` against rounding.
    """
    xs = _as_matrix(a_source, "a_source")
    xt = _as_matrix(a_target, "a_target")
    if xs.shape[0] != xt.shape[0]:
        raise ValueError(
            f"a_source and a_target must hold the same instances, got {xs.shape[0]} and "
            f"{xt.shape[0]} rows"
        )
    xs = _unit_columns(xs)
    xt = _unit_columns(xt)
    s = xs.T @ xt
    np.clip(s, -1.0, 1.0, out=s)
    return s


def _unit_columns(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    # Norms in float64: squares of float32 attributions can overflow or lose precision.
    norms = np.sqrt(np.einsum("ij,ij->j", x, x, dtype=np.float64))
    norms[norms == 0] = 1.0  # zero column stays zero -> similarity 0
    return x / norms.astype(np.float32)


def most_similar(similarity, axis: int = 0) -> np.ndarray:
    """For every column (``axis=0``) or row (``axis=1``), the index of its most similar neuron.

    Parameters
    ----------
    similarity : array_like, shape (source_neurons, target_neurons)
        As returned by :func:`neuron_similarity`.
    axis : {0, 1}, default 0
        0: for each target neuron the most similar source neuron; 1: for each source neuron the
        most similar target neuron.

    Returns
    -------
    ndarray of int64, shape (target_neurons,) for ``axis=0`` or (source_neurons,) for ``axis=1``
        Argmax along ``axis`` (ties: lower index); -1 where every similarity is exactly 0 (a neuron
        with all-zero attributions has no counterpart).
    """
    s = _to_numpy(similarity, "similarity")
    if s.ndim != 2:
        raise ValueError(f"similarity must be 2-D, got shape {s.shape}")
    if s.shape[axis] == 0:
        return np.full(s.shape[1 - axis], -1, dtype=np.int64)
    idx = np.argmax(s, axis=axis).astype(np.int64)
    idx[~np.any(s != 0, axis=axis)] = -1
    return idx


class WeightInheritance(NamedTuple):
    """Result of :func:`inherited_weights`, one entry per important target weight."""

    n1_match: np.ndarray
    """int64 (m,): most similar source neuron of ``n1`` in layer i (-1: none)."""
    n2_match: np.ndarray
    """int64 (m,): most similar source neuron of ``n2`` in layer i+1 (-1: none)."""
    inherited: np.ndarray
    """bool (m,): ``n1_match -> n2_match`` is an important source weight."""


def _pairs(weights, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(n1, n2) int64 arrays from a frame with n1/n2 columns, a pair of arrays or an (m, 2) array."""
    if hasattr(weights, "columns"):
        if "n1" not in weights.columns or "n2" not in weights.columns:
            raise ValueError(f"{name} needs columns n1 and n2, has {list(weights.columns)}")
        n1, n2 = np.asarray(weights["n1"]), np.asarray(weights["n2"])
    elif isinstance(weights, (tuple, list)):
        if len(weights) != 2:
            raise ValueError(f"{name} must be a pair (n1, n2) of index arrays")
        n1, n2 = (_to_numpy(w, name) for w in weights)
    else:
        arr = _to_numpy(weights, name)
        if arr.ndim != 2 or arr.shape[1] != 2:
            raise ValueError(f"{name} must be a pair (n1, n2) or an (m, 2) array, got shape {arr.shape}")
        n1, n2 = arr[:, 0], arr[:, 1]
    n1 = np.asarray(n1).astype(np.int64).ravel()
    n2 = np.asarray(n2).astype(np.int64).ravel()
    if n1.shape != n2.shape:
        raise ValueError(f"{name}: n1 and n2 differ in length ({n1.shape[0]} vs {n2.shape[0]})")
    return n1, n2


def inherited_weights(target_weights, source_weights, similarity_from, similarity_to) -> WeightInheritance:
    """Which important target weights are inherited from the source model (paper §5.3.2).

    For every important target weight ``n1 -> n2`` (layer i to i+1) the most similar source
    neurons are ``n1' = argmax_s S_from[s, n1]`` and ``n2' = argmax_s S_to[s, n2]``; the weight is
    *inherited* when ``n1' -> n2'`` is among the important source weights.

    Parameters
    ----------
    target_weights, source_weights : polars.DataFrame with columns ``n1``, ``n2``, or a pair
        ``(n1, n2)`` of int arrays of equal length, or an int array of shape (m, 2)
        Important weights of the target and of the source model between the same two layers.
    similarity_from : array_like, shape (source_neurons_i, target_neurons_i)
        :func:`neuron_similarity` of layer i.
    similarity_to : array_like, shape (source_neurons_i+1, target_neurons_i+1)
        :func:`neuron_similarity` of layer i+1.

    Returns
    -------
    WeightInheritance
        ``n1_match``, ``n2_match`` (int64, -1 for a target neuron whose similarities are all 0)
        and ``inherited`` (bool; False when a match is -1), each of shape (m_target,) in the order
        of ``target_weights``.
    """
    t1, t2 = _pairs(target_weights, "target_weights")
    s1, s2 = _pairs(source_weights, "source_weights")
    s_from = _to_numpy(similarity_from, "similarity_from")
    s_to = _to_numpy(similarity_to, "similarity_to")
    for name, s, idx in (("similarity_from", s_from, t1), ("similarity_to", s_to, t2)):
        if s.ndim != 2:
            raise ValueError(f"{name} must be 2-D (source neurons, target neurons), got {s.shape}")
        if idx.size and (idx.min() < 0 or idx.max() >= s.shape[1]):
            raise ValueError(f"target neuron index out of range for {name} with {s.shape[1]} columns")
    if s1.size and (s1.min() < 0 or s1.max() >= s_from.shape[0]):
        raise ValueError(f"source_weights n1 out of range for {s_from.shape[0]} source neurons")
    if s2.size and (s2.min() < 0 or s2.max() >= s_to.shape[0]):
        raise ValueError(f"source_weights n2 out of range for {s_to.shape[0]} source neurons")
    m1 = most_similar(s_from, axis=0)[t1]
    m2 = most_similar(s_to, axis=0)[t2]
    width = s_to.shape[0]
    source_keys = s1 * width + s2
    ok = (m1 >= 0) & (m2 >= 0)
    inherited = ok & np.isin(m1 * width + m2, source_keys)
    return WeightInheritance(m1, m2, inherited)


def linear_cka(x, y) -> float:
    """Linear centered kernel alignment of two representations of the same instances.

    ``CKA(X, Y) = |Yc^T Xc|_F^2 / (|Xc^T Xc|_F |Yc^T Yc|_F)`` with column-centred ``Xc``, ``Yc``
    (Kornblith et al., 2019, eq. for linear HSIC). Invariant to orthogonal transforms and isotropic
    scaling of either representation, not to arbitrary invertible linear maps; ``CKA(X, X) = 1``.

    Parameters
    ----------
    x : array_like, shape (instances, features)
    y : array_like, shape (instances, features_y)
        Activations or attributions of two layers (or of the same layer in two models) on the same
        instances, in the same order.

    Returns
    -------
    float
        In ``[0, 1]``; NaN when either representation is constant over the instances (or there are
        fewer than 2 instances).

    Notes
    -----
    Computed in float64 through the feature-space cross products, or through the ``instances x
    instances`` Gram matrices when that is cheaper (many features, few instances); both give the
    same value.
    """
    a = _as_matrix(x, "x").astype(np.float64)
    b = _as_matrix(y, "y").astype(np.float64)
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"x and y must hold the same instances, got {a.shape[0]} and {b.shape[0]} rows")
    n = a.shape[0]
    if n < 2:
        return float("nan")
    a_norm, b_norm = np.linalg.norm(a), np.linalg.norm(b)
    a = a - a.mean(axis=0)
    b = b - b.mean(axis=0)
    # Constant representations (up to the rounding of the mean) have no centred signal.
    if np.linalg.norm(a) <= 1e-12 * a_norm or np.linalg.norm(b) <= 1e-12 * b_norm:
        return float("nan")
    p, q = a.shape[1], b.shape[1]
    if p * q + p * p + q * q <= n * (p + q):
        hsic_xy = np.sum((b.T @ a) ** 2)
        hsic_xx = np.sum((a.T @ a) ** 2)
        hsic_yy = np.sum((b.T @ b) ** 2)
    else:
        k = a @ a.T
        l = b @ b.T
        hsic_xy = np.sum(k * l)
        hsic_xx = np.sum(k * k)
        hsic_yy = np.sum(l * l)
    denom = np.sqrt(hsic_xx) * np.sqrt(hsic_yy)
    if denom == 0:
        return float("nan")
    return float(np.clip(hsic_xy / denom, 0.0, 1.0))
