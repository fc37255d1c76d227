"""Seeded stratified train / validation splits."""
from __future__ import annotations

import numpy as np

from ..errors import DataError


def stratified_split(labels: np.ndarray, val_fraction: float = 0.15,
                     seed: int = 0) -> "tuple[np.ndarray, np.ndarray]":
    """Split instance positions into train and validation, class by class.

    Each class sends ``round(n_c * val_fraction)`` of its ``n_c`` instances to validation, but always
    keeps at least one in train (so a class with one instance has none in validation).

    Parameters
    ----------
    labels : array-like of int, shape (N,)
    val_fraction : float
        In [0, 1).
    seed : int
        Same labels and seed give the same split.

    Returns
    -------
    train_idx, val_idx : ndarray of int64, shapes (N - V,) and (V,)
        Sorted positions into ``labels``; together they cover 0..N-1 once.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"labels must be 1-D, got shape {labels.shape}")
    if not 0.0 <= float(val_fraction) < 1.0:
        raise DataError(f"val_fraction must be in [0, 1), got {val_fraction}")
    rng = np.random.default_rng(seed)
    val_parts = []
    for cls in np.unique(labels):  # sorted, so the rng stream does not depend on label order
        members = np.flatnonzero(labels == cls)
        n_val = min(int(round(len(members) * val_fraction)), len(members) - 1)
        if n_val > 0:
            val_parts.append(rng.permutation(members)[:n_val])
    is_val = np.zeros(len(labels), dtype=bool)
    if val_parts:
        is_val[np.concatenate(val_parts)] = True
    return np.flatnonzero(~is_val).astype(np.int64), np.flatnonzero(is_val).astype(np.int64)
