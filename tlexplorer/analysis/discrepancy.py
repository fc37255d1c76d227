"""How far apart the two domains are in a representation (beyond the paper).

:func:`proxy_a_distance` is the proxy A-distance of Ben-David et al. (2007), the measure that inspired
the paper's domain discriminability (§5.4.1): train a linear classifier to tell source from target
instances and turn its held-out error ``eps`` into ``2 (1 - 2 eps)``. 0 means the domains cannot be
told apart (features are domain-invariant), 2 means they are perfectly separable.
"""

from __future__ import annotations

import numpy as np

from .discriminability import DEFAULT_CS, _check_domains, _cross_validate

__all__ = ["balanced_subsample", "proxy_a_distance"]


def balanced_subsample(n_source: int, n_target: int, max_per_domain: "int | None", random_state=0):
    """Rows of a balanced, seeded subsample of two domains: as many of each, at most ``max_per_domain``.

    Parameters
    ----------
    n_source, n_target : int
        Instances in each domain.
    max_per_domain : int or None
        Most instances kept per domain; None keeps every instance (no subsample).
    random_state : int

    Returns
    -------
    source_rows, target_rows : ndarray of int64, sorted
        ``min(n_source, n_target, max_per_domain)`` rows of each domain, drawn without replacement;
        every row when ``max_per_domain`` is None.
    """
    if max_per_domain is None:
        return np.arange(n_source), np.arange(n_target)
    if not isinstance(max_per_domain, (int, np.integer)) or max_per_domain < 2:
        raise ValueError(f"max_per_domain must be an int >= 2 or None, got {max_per_domain!r}")
    size = min(n_source, n_target, int(max_per_domain))
    rng = np.random.default_rng(random_state)
    pick = [np.sort(rng.choice(n, size, replace=False)) if n > size else np.arange(n)
            for n in (n_source, n_target)]
    return pick[0], pick[1]


def proxy_a_distance(source_features, target_features, *, cv: int = 5, Cs=DEFAULT_CS,
                     random_state=0, max_iter: int = 10_000,
                     max_per_domain: "int | None" = None) -> float:
    """Proxy A-distance between two domains in a feature space.

    Parameters
    ----------
    source_features : array_like, shape (n_source, features)
        A representation (activations, attributions, embeddings) of the source instances.
    target_features : array_like, shape (n_target, features)
        The same representation of the target instances.
    cv : int, default 5
        Stratified folds; reduced to the size of the smaller domain when that is smaller
        (at least 2 instances per domain are needed).
    Cs : sequence of float, default ``DEFAULT_CS``
        LinearSVC regularisation constants searched; the lowest CV error is used.
    random_state : int, default 0
    max_iter : int, default 10000
    max_per_domain : int, optional
        Estimate on a balanced subsample (:func:`balanced_subsample`, seeded by ``random_state``)
        of at most this many instances per domain instead of all of them. The classifier's cost
        grows with the instances while the estimate's error shrinks only with their square root;
        ``tlexplorer analyze`` uses 2,000 (docs/analysis-choices.md).

    Returns
    -------
    float
        ``max(0, 2 * (1 - 2 * eps))`` in ``[0, 2]``, where ``eps`` is the cross-validated
        *balanced* error (mean of the per-domain error rates) of a standardised, class-balanced
        LinearSVC domain classifier. With equal domain sizes that is the plain error; with unequal
        sizes it keeps "cannot tell the domains apart" at 0 instead of rewarding the majority
        guess. An error above 0.5 (worse than chance) is clipped to distance 0.

    Notes
    -----
    ``eps`` is the best mean held-out error over the ``Cs`` grid, which is slightly optimistic
    (the choice of ``C`` sees the folds); with a 5-value grid the bias is small next to the fold
    variance. liblinear convergence warnings are absorbed (the estimate stays usable).
    """
    xs, xt = _check_domains(source_features, target_features, name_s="source_features",
                            name_t="target_features")
    rows_s, rows_t = balanced_subsample(len(xs), len(xt), max_per_domain, random_state)
    xs, xt = xs[rows_s], xt[rows_t]
    x = np.vstack([xs, xt])
    y = np.concatenate([np.zeros(xs.shape[0], dtype=np.int64), np.ones(xt.shape[0], dtype=np.int64)])
    fit = _cross_validate(x, y, cv=cv, Cs=Cs, random_state=random_state, max_iter=max_iter,
                          class_weight="balanced", scoring="balanced_accuracy", notes=[])
    eps = 1.0 - fit.cv_score
    return float(np.clip(2.0 * (1.0 - 2.0 * eps), 0.0, 2.0))
