"""Important weights between two consecutive layers (paper §5.3.1, Fig. 3 B1–B3).

For one class and one pair of layers the pipeline streams *contributions*: for every instance an
``(n1, n2)`` matrix whose entry ``[a, b]`` is how strongly the weight joining neuron ``a`` of layer i to
neuron ``b`` of layer i+1 is activated on that instance (``contributions.py`` computes them). Per
instance the ``k`` largest entries are set to 1 and all others to 0 (B2, after Hohman et al.'s Summit);
the 0/1 matrices are summed over the class's instances, and the ``k`` weights with the largest counts
are the important weights (B3).

Both steps break ties deterministically by the flattened index ``a * n2 + b`` (lower first), i.e.
row-major order over ``(n1, n2)``. The default ``k`` (:func:`default_k`) is the number of cells of
the important-neuron block the network relation view draws; see ``docs/analysis-choices.md``.

:func:`inherited_weights` then checks each important target weight against the important source
weights between the most similar source neurons (paper §5.3.2).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import polars as pl

from .neurons import _to_numpy, n_important
from .similarity import most_similar

__all__ = [
    "WeightCounter",
    "WeightInheritance",
    "default_k",
    "important_weights",
    "inherited_weights",
    "top_k_mask",
]

# Work on about this many contribution values at a time (float32: 64 MiB) so that a batch of large
# layers (e.g. 4096 x 4096 per instance) does not need several copies of the whole batch in memory.
_CHUNK_VALUES = 1 << 24


def _is_torch(x) -> bool:
    return type(x).__module__.split(".")[0] == "torch"


def default_k(n1: int, n2: int, fraction: float = 0.1) -> int:
    """Default number of important weights between layers of ``n1`` and ``n2`` neurons.

    Parameters
    ----------
    n1, n2 : int
        Neurons in the layer the weights leave (i) and the layer they enter (i+1).
    fraction : float, default 0.1
        The important-neuron fraction (paper: 10 %).

    Returns
    -------
    int
        ``n_important(n1, fraction) * n_important(n2, fraction)``: as many weights as the cells of
        region 1 of the weight block (important neurons of layer i x important neurons of layer
        i+1), i.e. about ``fraction**2`` (1 %) of all weights. It scales with the layer sizes the
        way the paper's neuron rule does, so small layers keep a handful of weights and
        ``4096 x 4096`` layers about 168 000.
    """
    return max(1, n_important(n1, fraction) * n_important(n2, fraction))


def _select_top_k_numpy(x: np.ndarray, k: int) -> np.ndarray:
    """Boolean mask (rows, F) of each row's k largest values, ties by lower column index."""
    rows, f = x.shape
    thr = np.partition(x, f - k, axis=1)[:, f - k : f - k + 1]  # k-th largest value of each row
    gt = x > thr
    eq = x == thr
    need = k - gt.sum(axis=1)
    n_eq = eq.sum(axis=1)
    mask = gt | eq
    # Rows with more values equal to the threshold than slots left: keep the first `need` of them.
    bad = np.flatnonzero(n_eq > need)
    if bad.size:
        sub = eq[bad]
        keep = np.cumsum(sub, axis=1, dtype=np.int64) <= need[bad, None]
        mask[bad] = gt[bad] | (sub & keep)
    return mask


def _select_top_k_torch(x, k: int):
    """Torch version of :func:`_select_top_k_numpy` (runs on the tensor's device)."""
    import torch

    f = x.shape[1]
    thr = torch.kthvalue(x, f - k + 1, dim=1, keepdim=True).values
    gt = x > thr
    eq = x == thr
    need = k - gt.sum(dim=1)
    n_eq = eq.sum(dim=1)
    mask = gt | eq
    bad = torch.nonzero(n_eq > need).flatten()
    if bad.numel():
        sub = eq[bad]
        keep = torch.cumsum(sub.to(torch.int64), dim=1) <= need[bad].unsqueeze(1)
        mask[bad] = gt[bad] | (sub & keep)
    return mask


def top_k_mask(values, k: int, *, absolute: bool = False):
    """Mark the ``k`` largest values of every instance (paper §5.3.1 B2).

    Parameters
    ----------
    values : array_like, shape (instances, n1, n2) or (instances, features)
        numpy array or torch tensor (kept on its device).
    k : int
        Values kept per instance, ``1 <= k <= n1 * n2``.
    absolute : bool, default False
        Rank by absolute value instead of signed value.

    Returns
    -------
    mask : bool array of the input's shape and library
        True for the ``k`` largest values of each instance. Ties at the k-th value are broken by the
        lower flattened (row-major) index, so exactly ``k`` entries are True per instance.
    """
    torch_in = _is_torch(values)
    x = values if torch_in else _to_numpy(values, "values")
    if x.ndim < 2:
        raise ValueError(f"values must have an instance axis and >= 1 more, got shape {tuple(x.shape)}")
    shape = tuple(x.shape)
    flat = x.reshape(shape[0], -1)
    f = flat.shape[1]
    if not 1 <= k <= f:
        raise ValueError(f"k must be between 1 and {f} (values per instance), got {k}")
    if absolute:
        flat = flat.abs() if torch_in else np.abs(flat)
    if torch_in:
        import torch

        if torch.isnan(flat).any():
            raise ValueError("values contains NaN")
        return _select_top_k_torch(flat, k).reshape(shape)
    if flat.dtype.kind == "f" and np.isnan(flat).any():
        raise ValueError("values contains NaN")
    return _select_top_k_numpy(flat, k).reshape(shape)


def _top_counts(counts: np.ndarray, k: int) -> np.ndarray:
    """Flat indices of the k largest counts (count > 0), by count desc then index asc."""
    f = counts.shape[0]
    k = min(k, f)
    if k <= 0:
        return np.empty(0, dtype=np.int64)
    thr = np.partition(counts, f - k)[f - k]
    gt = np.flatnonzero(counts > thr)
    tied = np.flatnonzero(counts == thr)[: k - gt.shape[0]]
    idx = np.concatenate([gt, tied])
    idx = idx[counts[idx] > 0]
    order = np.lexsort((idx, -counts[idx]))
    return idx[order].astype(np.int64)


class WeightCounter:
    """Streaming count of how often each weight is among an instance's top-k contributions.

    The pipeline feeds contributions batch by batch with :meth:`update`; :meth:`top` returns the
    important weights (paper §5.3.1 B2–B3). Equivalent to :func:`important_weights` on the
    concatenated batches.

    Parameters
    ----------
    n1, n2 : int
        Neurons of the layer the weights leave and of the layer they enter.
    k : int, optional
        Contributions kept per instance and, by default, weights returned by :meth:`top`.
        Defaults to :func:`default_k` ``(n1, n2, fraction)``.
    fraction : float, default 0.1
        Important-neuron fraction used by the default ``k``.
    absolute : bool, default False
        Rank contributions by absolute value instead of signed value.

    Attributes
    ----------
    k : int
    n_instances : int
        Instances counted so far.
    counts : ndarray of int64, shape (n1, n2)
        How many instances had each weight among their top-k contributions.
    """

    def __init__(self, n1: int, n2: int, k: int | None = None, *, fraction: float = 0.1,
                 absolute: bool = False):
        if n1 < 1 or n2 < 1:
            raise ValueError(f"n1 and n2 must be >= 1, got {n1} and {n2}")
        self.n1 = int(n1)
        self.n2 = int(n2)
        self.k = default_k(n1, n2, fraction) if k is None else int(k)
        if not 1 <= self.k <= self.n1 * self.n2:
            raise ValueError(f"k must be between 1 and n1 * n2 = {self.n1 * self.n2}, got {k}")
        self.absolute = absolute
        self.n_instances = 0
        self._counts = np.zeros(self.n1 * self.n2, dtype=np.int64)
        self._device_counts = None  # torch accumulator, used while batches arrive as tensors

    def update(self, contributions, k: int | None = None) -> "WeightCounter":
        """Count one batch of instances.

        Parameters
        ----------
        contributions : array_like, shape (instances, n1, n2)
            numpy array or torch tensor (counted on its device, e.g. the GPU).
        k : int, optional
            Contributions kept per instance. Given before anything was counted it replaces the
            counter's ``k``; afterwards it must equal it (counts of different ``k`` do not add up).

        Returns
        -------
        self
        """
        if k is not None and int(k) != self.k:
            if self.n_instances:
                raise ValueError(f"k={k} differs from the k={self.k} already counted with")
            if not 1 <= int(k) <= self.n1 * self.n2:
                raise ValueError(f"k must be between 1 and n1 * n2 = {self.n1 * self.n2}, got {k}")
            self.k = int(k)
        shape = tuple(contributions.shape)
        if len(shape) != 3 or shape[1:] != (self.n1, self.n2):
            raise ValueError(
                f"contributions must have shape (instances, {self.n1}, {self.n2}), got {shape}"
            )
        if shape[0] == 0:
            return self
        f = self.n1 * self.n2
        step = max(1, _CHUNK_VALUES // f)
        if _is_torch(contributions):
            import torch

            flat = contributions.detach().reshape(shape[0], f)
            if self._device_counts is None or self._device_counts.device != flat.device:
                self._flush()
                self._device_counts = torch.zeros(f, dtype=torch.int64, device=flat.device)
            for start in range(0, shape[0], step):
                mask = top_k_mask(flat[start : start + step], self.k, absolute=self.absolute)
                self._device_counts += mask.sum(dim=0)
        else:
            flat = _to_numpy(contributions, "contributions").reshape(shape[0], f)
            for start in range(0, shape[0], step):
                mask = top_k_mask(flat[start : start + step], self.k, absolute=self.absolute)
                self._counts += mask.sum(axis=0)
        self.n_instances += shape[0]
        return self

    def add_counts(self, flat_indices, counts, n_instances: int) -> "WeightCounter":
        """Add counts made elsewhere with the same ``k`` (e.g. by another process on other instances).

        Parameters
        ----------
        flat_indices : array_like of int, shape (m,)
            Weights ``n1 * n2_size + n2`` (row-major over ``(n1, n2)``), without repeats.
        counts : array_like of int, shape (m,)
            How many of those instances had each weight among their top ``k``.
        n_instances : int
            The instances counted.

        Returns
        -------
        self
        """
        idx = np.asarray(flat_indices, dtype=np.int64)
        self._counts[idx] += np.asarray(counts, dtype=np.int64)
        self.n_instances += int(n_instances)
        return self

    def _flush(self) -> None:
        if self._device_counts is not None:
            self._counts += self._device_counts.cpu().numpy()
            self._device_counts = None

    @property
    def counts(self) -> np.ndarray:
        self._flush()
        return self._counts.reshape(self.n1, self.n2).copy()

    def top(self, k: int | None = None) -> pl.DataFrame:
        """The important weights: the ``k`` most frequently selected weights (paper B3).

        Parameters
        ----------
        k : int, optional
            Weights returned; defaults to the counter's ``k``.

        Returns
        -------
        polars.DataFrame, sorted by ``rank``
            ``n1`` (i64), ``n2`` (i64), ``count`` (i64) and ``rank`` (i64, 1 = largest count).
            Equal counts are ranked by lower flattened index ``n1 * n2_size + n2``. Weights never
            selected (count 0) are left out, so there are fewer than ``k`` rows only when fewer
            than ``k`` weights were ever selected (e.g. no instances).
        """
        self._flush()
        k = self.k if k is None else int(k)
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        idx = _top_counts(self._counts, k)
        return pl.DataFrame(
            {
                "n1": idx // self.n2,
                "n2": idx % self.n2,
                "count": self._counts[idx],
                "rank": np.arange(1, idx.shape[0] + 1, dtype=np.int64),
            },
            schema={"n1": pl.Int64, "n2": pl.Int64, "count": pl.Int64, "rank": pl.Int64},
        )


def important_weights(contributions, k: int | None = None, *, fraction: float = 0.1,
                      absolute: bool = False) -> pl.DataFrame:
    """Important weights between two layers for one class (paper §5.3.1 B1–B3).

    Parameters
    ----------
    contributions : array_like, shape (instances, n1, n2)
        Per-instance contribution of every weight joining neuron ``n1`` of layer i to neuron ``n2``
        of layer i+1; numpy array or torch tensor.
    k : int, optional
        Contributions marked per instance and weights kept. Defaults to
        :func:`default_k` ``(n1, n2, fraction)``.
    fraction : float, default 0.1
        Important-neuron fraction used by the default ``k``.
    absolute : bool, default False
        Rank contributions by absolute value instead of signed value.

    Returns
    -------
    polars.DataFrame
        ``n1``, ``n2``, ``count``, ``rank`` as in :meth:`WeightCounter.top`.
    """
    shape = tuple(contributions.shape)
    if len(shape) != 3:
        raise ValueError(f"contributions must be 3-D (instances, n1, n2), got shape {shape}")
    counter = WeightCounter(shape[1], shape[2], k, fraction=fraction, absolute=absolute)
    return counter.update(contributions).top()


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
        :func:`~tlexplorer.analysis.similarity.neuron_similarity` of layer i.
    similarity_to : array_like, shape (source_neurons_i+1, target_neurons_i+1)
        :func:`~tlexplorer.analysis.similarity.neuron_similarity` of layer i+1.

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
