"""Comparing the two networks (paper §5.3.2) and, beyond the paper, their layers as a whole.

* :func:`neuron_similarity`: cosine similarity of every source-model neuron with every target-model
  neuron of the same layer, over the attributions both models give the same instances.
* :func:`most_similar`: each neuron's most similar neuron in the other model (used by
  :func:`tlexplorer.analysis.weights.inherited_weights`).
* :func:`linear_cka`: linear centered kernel alignment of two representations of the same
  instances (Kornblith et al., 2019); :func:`linear_cka_torch` computes it with torch on a device
  (the analysis's GPU), equal to it up to float64 rounding.
"""

from __future__ import annotations

import numpy as np

from .neurons import _as_matrix, _to_numpy

__all__ = ["linear_cka", "linear_cka_torch", "most_similar", "neuron_similarity"]


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


def linear_cka_torch(x, y, *, device=None) -> float:
    """:func:`linear_cka` with torch, in float64 on ``device``.

    Parameters
    ----------
    x : array_like or Tensor, shape (instances, features)
    y : array_like or Tensor, shape (instances, features_y)
        As for :func:`linear_cka`.
    device : str or torch.device, optional
        Where to compute (default: the CPU). float64 throughout: the centring subtracts means of
        thousands of activations and the Frobenius norms square sums of squares, where float32
        loses digits (a GPU's float64 matmuls of these sizes take milliseconds).

    Returns
    -------
    float
        Equal to :func:`linear_cka` up to float64 rounding; NaN in the same cases.
    """
    import torch

    def matrix(v, name):
        if isinstance(v, torch.Tensor):
            v = v.detach()
        else:
            v = torch.from_numpy(_as_matrix(v, name))
        if v.dim() != 2:
            raise ValueError(f"{name} must be 2-D (instances, neurons), got shape {tuple(v.shape)}")
        v = v.to(device=device or "cpu", dtype=torch.float64)
        if not torch.isfinite(v).all():
            raise ValueError(f"{name} contains NaN or infinite values")
        return v

    a, b = matrix(x, "x"), matrix(y, "y")
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"x and y must hold the same instances, got {a.shape[0]} and {b.shape[0]} rows")
    n = a.shape[0]
    if n < 2:
        return float("nan")
    a_norm, b_norm = torch.linalg.norm(a), torch.linalg.norm(b)
    a = a - a.mean(dim=0)
    b = b - b.mean(dim=0)
    if torch.linalg.norm(a) <= 1e-12 * a_norm or torch.linalg.norm(b) <= 1e-12 * b_norm:
        return float("nan")
    p, q = a.shape[1], b.shape[1]
    if p * q + p * p + q * q <= n * (p + q):
        hsic_xy = ((b.T @ a) ** 2).sum()
        hsic_xx = ((a.T @ a) ** 2).sum()
        hsic_yy = ((b.T @ b) ** 2).sum()
    else:
        k = a @ a.T
        l = b @ b.T
        hsic_xy = (k * l).sum()
        hsic_xx = (k * k).sum()
        hsic_yy = (l * l).sum()
    denom = torch.sqrt(hsic_xx) * torch.sqrt(hsic_yy)
    if float(denom) == 0:
        return float("nan")
    return float(torch.clamp(hsic_xy / denom, 0.0, 1.0))
