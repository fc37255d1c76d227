"""How fine-tuning changed each neuron (beyond the paper).

* :func:`weight_change`: relative change of each neuron's incoming weights from the source model to
  the target model.
* :func:`rank_shift`: how many places a neuron moved in the importance ranking (§5.3.1) between the
  two models, as in the paper's case study (neuron 37: 5th in the target, 16th in the source).
"""

from __future__ import annotations

import numpy as np

from .neurons import _to_numpy, importance_ranks

__all__ = ["rank_shift", "weight_change"]


def _weight_array(w, name: str) -> np.ndarray:
    arr = _to_numpy(w, name).astype(np.float64)
    if arr.ndim < 1:
        raise ValueError(f"{name} must have an output-neuron axis, got a scalar")
    return arr.reshape(arr.shape[0], -1)


def weight_change(w_source, w_target, b_source=None, b_target=None) -> np.ndarray:
    """Relative change of every output neuron's incoming weights, ``|W_t - W_s| / |W_s|``.

    Parameters
    ----------
    w_source, w_target : array_like, shape (out, in) or (out, in, kh, kw) or any (out, ...)
        The layer's weight in the source and in the target model (PyTorch layout: rows are the
        output neurons / channels); numpy arrays or torch tensors. Both must have the same shape,
        so classification heads of different sizes cannot be compared: use hidden layers.
    b_source, b_target : array_like, shape (out,), optional
        Biases; when both are given they count as one more incoming weight per neuron.

    Returns
    -------
    ndarray of float64, shape (out,)
        Frobenius norm of the change of row ``j`` over the norm of the source row ``j``. 0 when the
        row did not change; ``inf`` when a zero source row became non-zero.
    """
    ws = _weight_array(w_source, "w_source")
    wt = _weight_array(w_target, "w_target")
    if tuple(np.shape(w_source)) != tuple(np.shape(w_target)):
        raise ValueError(
            f"w_source and w_target differ in shape ({tuple(np.shape(w_source))} vs "
            f"{tuple(np.shape(w_target))}); compare hidden layers, not heads of different size"
        )
    if (b_source is None) != (b_target is None):
        raise ValueError("give both b_source and b_target, or neither")
    if b_source is not None:
        bs = _to_numpy(b_source, "b_source").astype(np.float64).reshape(-1, 1)
        bt = _to_numpy(b_target, "b_target").astype(np.float64).reshape(-1, 1)
        if bs.shape[0] != ws.shape[0] or bt.shape[0] != ws.shape[0]:
            raise ValueError(f"biases must have {ws.shape[0]} entries (one per output neuron)")
        ws = np.hstack([ws, bs])
        wt = np.hstack([wt, bt])
    diff = np.linalg.norm(wt - ws, axis=1)
    base = np.linalg.norm(ws, axis=1)
    out = np.zeros_like(diff)
    nz = base > 0
    out[nz] = diff[nz] / base[nz]
    out[~nz & (diff > 0)] = np.inf
    return out


def rank_shift(scores_source, scores_target) -> np.ndarray:
    """Places each neuron moved in the importance ranking from the source to the target model.

    Parameters
    ----------
    scores_source, scores_target : array_like, shape (neurons,)
        Importance scores of the same layer's neurons in the two models, e.g.
        :func:`~tlexplorer.analysis.neurons.neuron_rank_scores` of each model's conductance on the
        same instances.

    Returns
    -------
    ndarray of int64, shape (neurons,)
        ``rank_source - rank_target`` with ranks from
        :func:`~tlexplorer.analysis.neurons.importance_ranks` (1 = most important, ties by lower
        index). Positive: the neuron is more important in the target model.
    """
    rs = importance_ranks(scores_source)
    rt = importance_ranks(scores_target)
    if rs.shape != rt.shape:
        raise ValueError(f"scores differ in length ({rs.shape[0]} vs {rt.shape[0]})")
    return rs - rt
