"""Embeddings and their 2-D projection (paper §5.2), with openTSNE.

Every instance is embedded once (:func:`tsne_layout`, run by ``tlexplorer analyze`` and stored as
``arrays/tsne.npy``); the instance view re-projects the instances of the selected classes on demand
(:func:`project_subset`), starting from their rows of the global layout so that the picture changes
little and converges fast.

Pre-processing, shared by both: the embeddings (the target model's activations right before its first
fully-connected layer) are centred and, when wider than ``pca_dims`` (50), reduced to their first 50
principal components with scikit-learn's PCA (seeded). That is the standard t-SNE pre-processing: it
keeps the neighbourhoods that matter, and makes nearest-neighbour search and the perplexity calibration
10-20x cheaper for 1,000-9,216-dimensional AlexNet embeddings. Features are *not* z-scored: they are
activations in one common unit, and z-scoring would inflate the noise of nearly dead neurons.

Algorithm choices (openTSNE 1.0):

- nearest neighbours: exact brute force (scikit-learn, BLAS) up to ``20,000`` points, where it beats
  approximate search; Annoy (bundled with openTSNE, works offline) above that. pynndescent and hnswlib
  are optional openTSNE back-ends that are not installed.
- gradients: Barnes-Hut below 10,000 points, FFT-accelerated interpolation (FIt-SNE) above - unless
  4 or more threads are given: openTSNE 1.0's FFT gradient runs on one thread whatever ``n_jobs`` says
  (only the attractive forces use the others), while Barnes-Hut spreads its repulsive forces over all
  of them. Measured on 16,797 digits embeddings (docs/performance.md, "t-SNE"): FFT 61 s on 1 thread and
  58 s on 2; Barnes-Hut 86 s on 1 and 63 s on 2, so from 4 threads on Barnes-Hut is the faster one.
  That is also why more threads made the FFT t-SNE slower, not faster, on a 16-core machine: they had
  nothing to do but synchronise.
- initialisation: PCA, rescaled to standard deviation 1e-4 (openTSNE's ``initialization.pca``).
- perplexity: at most ``(N - 1) / 3`` so that the 3·perplexity neighbours exist for tiny N.

Both functions are deterministic for a fixed ``random_state`` (and number of threads).
"""
from __future__ import annotations

from typing import Callable, Optional

import numpy as np

__all__ = ["gradient_method", "tsne_layout", "project_subset", "prepare_embeddings"]

#: Below this many points the gradient uses Barnes-Hut, from it on FFT interpolation ...
FFT_MIN_POINTS = 10_000
#: ... unless at least this many threads are given: openTSNE's FFT gradient is single-threaded,
#: Barnes-Hut's is not (see the module docstring).
BH_MIN_THREADS = 4
#: Up to this many points neighbours are searched exactly (brute force), above it with Annoy.
EXACT_KNN_MAX_POINTS = 20_000
#: Barnes-Hut accuracy of the subset re-projection (openTSNE's default 0.5 is for the global layout).
SUBSET_THETA = 0.8
#: Fewest points t-SNE is run on; fewer are laid out by PCA alone.
MIN_TSNE_POINTS = 4

ProgressCallback = Callable[[int, int], Optional[bool]]


def _default_jobs(n_jobs: "int | None", n_points: int) -> int:
    """Threads: as asked, else 1 below FFT_MIN_POINTS and the CPUs available from there on.

    Below ~10,000 points an iteration takes milliseconds, too little for threads to pay off; and on a
    busy CPU (a server's other threads, other processes) openTSNE's OpenMP threads spin and make each
    iteration tens of milliseconds, 10-300x slower than one thread (measured on 2 shared cores).
    """
    if n_jobs is not None:
        return int(n_jobs)
    if n_points < FFT_MIN_POINTS:
        return 1
    from ..config import available_cpus

    return available_cpus()


def gradient_method(n_points: int, n_jobs: int) -> str:
    """openTSNE's ``negative_gradient_method`` for ``n_points`` on ``n_jobs`` threads: ``"bh"``
    below FFT_MIN_POINTS or from BH_MIN_THREADS threads on, else ``"fft"``."""
    return "bh" if n_points < FFT_MIN_POINTS or n_jobs >= BH_MIN_THREADS else "fft"


def _check_embeddings(embeddings) -> np.ndarray:
    x = np.asarray(embeddings)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2:
        raise ValueError(f"embeddings must be a 2-D array (instances, features), got shape {x.shape}")
    if x.dtype not in (np.float32, np.float64):
        x = x.astype(np.float32)
    if x.size and not np.isfinite(x).all():
        bad = int((~np.isfinite(x)).any(axis=1).sum())
        raise ValueError(f"embeddings contain NaN or infinite values in {bad} of {len(x)} rows")
    return x


def prepare_embeddings(embeddings, *, pca_dims: int = 50, random_state: int = 0) -> np.ndarray:
    """Centre embeddings and keep their first ``pca_dims`` principal components when wider.

    Parameters
    ----------
    embeddings : array_like, shape (N, D)
    pca_dims : int
        Width above which PCA reduces the data (0 or None: never).
    random_state : int

    Returns
    -------
    ndarray, shape (N, max(2, min(D, pca_dims, N))), float32 or float64
    """
    x = _check_embeddings(embeddings)
    n, d = x.shape
    if pca_dims and d > pca_dims and n > 1:
        from sklearn.decomposition import PCA

        k = min(pca_dims, n)
        return PCA(n_components=k, random_state=random_state).fit_transform(x)
    if n:
        x = x - x.mean(axis=0, keepdims=True)
    if d < 2:  # a zero column keeps distances and gives the 2-D PCA initialisation a second axis
        x = np.concatenate([x, np.zeros((n, 2 - d), dtype=x.dtype)], axis=1)
    return x


def _fallback_layout(z: np.ndarray) -> np.ndarray:
    """Layout for fewer than MIN_TSNE_POINTS points or degenerate data: the first 2 PCs (or zeros)."""
    out = np.zeros((len(z), 2), dtype=np.float32)
    if len(z) > 1 and z.std() > 0:
        _, _, vt = np.linalg.svd(z - z.mean(axis=0), full_matrices=False)
        proj = (z - z.mean(axis=0)) @ vt[:2].T
        out[:, :proj.shape[1]] = proj
    return out


def _affinities(z: np.ndarray, perplexity: float, n_jobs: int, random_state: int, verbose: bool):
    from openTSNE import affinity

    if len(z) <= EXACT_KNN_MAX_POINTS:
        method, knn_kwargs = "exact", {"algorithm": "brute"}
    else:
        method, knn_kwargs = "annoy", None
    return affinity.PerplexityBasedNN(
        z, perplexity=perplexity, method=method, knn_kwargs=knn_kwargs, n_jobs=n_jobs,
        random_state=random_state, verbose=verbose)


def _effective_perplexity(perplexity: float, n: int) -> float:
    if perplexity <= 0:
        raise ValueError(f"perplexity must be positive, got {perplexity}")
    return float(min(perplexity, (n - 1) / 3.0))


def _optimize(init: np.ndarray, affinities, *, early_iter: int, n_iter: int, n_jobs: int,
              random_state: int, callback: "ProgressCallback | None", every: int,
              verbose: bool, theta: float = 0.5) -> np.ndarray:
    """Early exaggeration (12, momentum 0.5) then the normal phase (momentum 0.8), as openTSNE's TSNE.

    ``callback(iteration, total)`` is called every ``every`` iterations and at the end; returning
    False stops the optimisation and the current positions are returned.
    """
    from openTSNE import TSNEEmbedding
    from openTSNE.tsne import OptimizationInterrupt

    n = len(init)
    total = early_iter + n_iter
    method = gradient_method(n, n_jobs)
    embedding = TSNEEmbedding(init, affinities, negative_gradient_method=method, n_jobs=n_jobs,
                              theta=theta, random_state=random_state, verbose=verbose)
    last = [0]

    def phase_callback(offset):
        def _cb(iteration, error, emb):  # openTSNE's signature; True means stop
            last[0] = offset + iteration
            return callback(offset + iteration, total) is False
        return [_cb]

    phases = [(early_iter, 12.0, 0.5, 0), (n_iter, None, 0.8, early_iter)]
    try:
        for iters, exaggeration, momentum, offset in phases:
            if iters <= 0:
                continue
            embedding.optimize(
                n_iter=iters, exaggeration=exaggeration, momentum=momentum, inplace=True,
                propagate_exception=True,
                callbacks=phase_callback(offset) if callback is not None else None,
                callbacks_every_iters=every)
    except OptimizationInterrupt as stop:
        embedding = stop.final_embedding
    else:
        if callback is not None and last[0] != total:
            callback(total, total)
    return np.asarray(embedding, dtype=np.float32).copy()


class _TqdmProgress:
    """Adapts a tqdm bar to the ``callback(iteration, total)`` protocol (and chains a user callback)."""

    def __init__(self, total: int, desc: str, chained: "ProgressCallback | None"):
        from tqdm import tqdm

        self.bar = tqdm(total=total, desc=desc, unit="it", leave=False)
        self.chained = chained

    def __call__(self, iteration: int, total: int):
        self.bar.update(iteration - self.bar.n)
        if self.chained is not None:
            return self.chained(iteration, total)
        return None

    def close(self):
        self.bar.close()


def tsne_layout(embeddings, *, perplexity: float = 30.0, random_state: int = 0,
                n_jobs: "int | None" = None, progress: bool = False, n_iter: int = 500,
                early_exaggeration_iter: int = 250, pca_dims: int = 50,
                callback: "ProgressCallback | None" = None) -> np.ndarray:
    """One seeded 2-D t-SNE of all instances (openTSNE).

    Parameters
    ----------
    embeddings : array_like, shape (N, D)
        One row per instance (e.g. the target model's activations before the first FC layer).
    perplexity : float
        Capped at ``(N - 1) / 3`` for small N.
    random_state : int
        Seeds PCA, the initialisation and Annoy; the same seed and ``n_jobs`` give the same layout.
    n_jobs : int, optional
        Threads. Default: 1 below 10,000 points (faster there, and robust on a busy CPU), else the
        CPUs available to this process.
    progress : bool
        Show a tqdm bar over the optimisation iterations (stderr).
    n_iter, early_exaggeration_iter : int
        Iterations of the normal and of the early-exaggeration phase (openTSNE's defaults).
    pca_dims : int
        Embeddings wider than this are reduced to their first ``pca_dims`` principal components.
    callback : callable, optional
        ``callback(iteration, total)`` every 10 iterations; returning False stops early and returns the
        layout as it stands; an exception it raises propagates.

    Returns
    -------
    ndarray, shape (N, 2), float32
        Fewer than 4 points, or identical points, are laid out by PCA (or at the origin).

    Raises
    ------
    ValueError
        Embeddings that are not 2-D or contain NaN/inf; a non-positive perplexity.
    """
    z = prepare_embeddings(embeddings, pca_dims=pca_dims, random_state=random_state)
    n = len(z)
    perp = _effective_perplexity(perplexity, max(n, 2))
    if n < MIN_TSNE_POINTS or not z.std() > 0:
        return _fallback_layout(z)
    from openTSNE import initialization

    jobs = _default_jobs(n_jobs, n)
    bar = _TqdmProgress(early_exaggeration_iter + n_iter, "t-SNE", callback) if progress else None
    try:
        if bar is not None:
            bar.bar.set_postfix_str("nearest neighbours")
        aff = _affinities(z, perp, jobs, random_state, verbose=False)
        init = initialization.pca(z, random_state=random_state)
        if bar is not None:
            bar.bar.set_postfix_str("optimising")
        return _optimize(init, aff, early_iter=early_exaggeration_iter, n_iter=n_iter, n_jobs=jobs,
                         random_state=random_state, callback=bar if bar is not None else callback,
                         every=10, verbose=False)
    finally:
        if bar is not None:
            bar.close()


def _subset_indices(subset, n: int) -> np.ndarray:
    idx = np.asarray(subset)
    if idx.dtype == bool:
        if idx.shape != (n,):
            raise ValueError(f"a boolean subset must have one entry per instance ({n}), got {idx.shape}")
        return np.flatnonzero(idx)
    idx = idx.astype(np.int64, copy=False).ravel()
    if idx.size and (idx.min() < -n or idx.max() >= n):
        raise ValueError(f"subset indices must lie in [0, {n}), got {idx.min()}..{idx.max()}")
    return np.where(idx < 0, idx + n, idx)


def project_subset(embeddings, layout, subset, *, random_state: int = 0, n_iter: int = 250,
                   perplexity: float = 30.0, n_jobs: "int | None" = None, pca_dims: int = 50,
                   callback: "ProgressCallback | None" = None, callback_every: int = 10) -> np.ndarray:
    """Re-project a subset of instances (the instance view's selected classes) with t-SNE, fast.

    The optimisation starts from the subset's rows of the global ``layout``, rescaled to standard
    deviation 1e-4 as openTSNE recommends for a given initialisation (``initialization.rescale``), so the
    picture keeps its arrangement; the subset's own neighbourhoods (PCA to 50 dimensions fitted on the
    subset, perplexity capped at ``(n - 1) / 3``) then separate its classes better than the global map.
    The first third of ``n_iter`` is early exaggeration. Starting from a good layout, 250 iterations
    reach the KL divergence of a full 750-iteration run (measured on 2,000 points), and a coarser
    Barnes-Hut (theta 0.8 instead of 0.5) makes each 1.5x cheaper at the same KL.

    The app should reduce all embeddings once with :func:`prepare_embeddings` and pass the result
    (50 columns, so no PCA is fitted per call), unless the subset's own PCA is wanted.

    Parameters
    ----------
    embeddings : array_like, shape (N, D)
    layout : array_like, shape (N, 2)
        The global layout (:func:`tsne_layout`).
    subset : array_like of int, or bool mask of shape (N,)
        Rows to project, in the order of the output.
    random_state : int
    n_iter : int
        Total iterations (early exaggeration included); see the benchmark in docs/performance.md.
    perplexity : float
    n_jobs : int, optional
        Threads (default as :func:`tsne_layout`: 1 below 10,000 points).
    pca_dims : int
    callback : callable, optional
        ``callback(iteration, total) -> bool | None``, called every ``callback_every`` iterations and at
        the end: report progress from it (it runs in the computing thread); return False to stop early
        (the positions reached are returned) or raise to abort (the exception propagates).
    callback_every : int

    Returns
    -------
    ndarray, shape (len(subset), 2), float32
        Fewer than 4 points, or identical embeddings, keep their global positions (no callback).
    """
    x = _check_embeddings(embeddings)
    lay = np.asarray(layout, dtype=np.float64)
    if lay.shape != (len(x), 2):
        raise ValueError(f"layout must have shape ({len(x)}, 2) like the embeddings, got {lay.shape}")
    if not np.isfinite(lay).all():
        raise ValueError("layout contains NaN or infinite values")
    idx = _subset_indices(subset, len(x))
    if n_iter < 0:
        raise ValueError(f"n_iter must be non-negative, got {n_iter}")
    n = len(idx)
    z = prepare_embeddings(x[idx], pca_dims=pca_dims, random_state=random_state)
    if n < MIN_TSNE_POINTS or not z.std() > 0:  # nothing to optimise: keep the global positions
        return lay[idx].astype(np.float32)
    from openTSNE import initialization

    init = lay[idx] - lay[idx].mean(axis=0)
    if not init[:, 0].std() > 0:  # all at one spot in the global layout: start from PCA instead
        init = initialization.pca(z, random_state=random_state)
    else:
        init = initialization.rescale(init, target_std=1e-4)
        # coincident points of the global layout would stay stuck together; separate them a little
        init = initialization.jitter(init, scale=0.01, random_state=random_state)
    jobs = _default_jobs(n_jobs, n)
    aff = _affinities(z, _effective_perplexity(perplexity, n), jobs, random_state, verbose=False)
    early = n_iter // 3
    return _optimize(init, aff, early_iter=early, n_iter=n_iter - early, n_jobs=jobs,
                     random_state=random_state, callback=callback, every=max(1, int(callback_every)),
                     verbose=False, theta=SUBSET_THETA)
