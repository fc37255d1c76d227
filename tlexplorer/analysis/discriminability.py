"""Domain discriminability of neurons (paper §5.4.1, Algorithm 1) and its plot (§5.4.2).

The conductance of P selected neurons on the source instances and on the target instances is
stacked into ``A`` ((source + target) x P), labelled 0 (source) / 1 (target), standardised column by
column, and a linear SVM learns to tell the domains apart. Its signed coefficients are the neurons'
domain discriminability: near 0 means the neuron's feature is domain-invariant, a large magnitude
means it is domain-specific (positive: larger on target instances, negative: larger on source).

The 2-D plot projects ``A`` on ``[u, g]``: ``u`` the SVM coefficients (so the horizontal position is
the decision function and the decision boundary is the vertical line x = 0) and ``g`` the first
principal component of ``A`` once the ``u`` direction is projected out (so the vertical axis shows
the largest remaining variation, uncorrelated with the domain score's direction).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import polars as pl
from sklearn.base import BaseEstimator
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC

from .neurons import _as_matrix

__all__ = ["DEFAULT_CS", "DomainDiscriminability", "domain_discriminability", "fit_scopes"]

#: Grid of the LinearSVC regularisation constant C searched by cross-validation.
DEFAULT_CS = (0.001, 0.01, 0.1, 1.0, 10.0)


@dataclass
class _DomainClassifierFit:
    best_C: float
    cv_score: float
    n_splits: int
    notes: list = field(default_factory=list)
    converged: bool = True
    cv_results: dict | None = None


def _check_domains(source, target, *, name_s="source", name_t="target"):
    xs = _as_matrix(source, name_s).astype(np.float64)
    xt = _as_matrix(target, name_t).astype(np.float64)
    if xs.shape[1] != xt.shape[1]:
        raise ValueError(
            f"{name_s} and {name_t} must have the same columns, got {xs.shape[1]} and {xt.shape[1]}"
        )
    if xs.shape[1] == 0:
        raise ValueError("need at least one feature (column)")
    return xs, xt


def _n_splits(cv: int, n_source: int, n_target: int, notes: list) -> int:
    if cv < 2:
        raise ValueError(f"cv must be >= 2 folds, got {cv}")
    smallest = min(n_source, n_target)
    if smallest < 2:
        raise ValueError(
            f"cross-validation needs at least 2 instances per domain, got {n_source} source and "
            f"{n_target} target instances"
        )
    if cv > smallest:
        notes.append(
            f"cv={cv} folds reduced to {smallest}: the smaller domain has only {smallest} instances"
        )
        return smallest
    return cv


def _svc(C: float, max_iter: int, random_state, class_weight) -> LinearSVC:
    return LinearSVC(C=C, dual="auto", max_iter=max_iter, random_state=random_state,
                     class_weight=class_weight)


def _cross_validate(x, y, *, cv, Cs, random_state, max_iter, class_weight, scoring,
                    notes) -> _DomainClassifierFit:
    """Choose C by stratified k-fold CV of scaler + LinearSVC; return the best C and its score.

    ConvergenceWarnings of liblinear are caught here (recorded in ``notes``) rather than leaking:
    a not fully converged linear SVM still gives usable coefficients, and the caller reports it.
    """
    n_source = int((y == 0).sum())
    n_target = int((y == 1).sum())
    n_splits = _n_splits(cv, n_source, n_target, notes)
    Cs = sorted(float(c) for c in Cs)
    if not Cs or Cs[0] <= 0:
        raise ValueError(f"Cs must be a non-empty list of positive numbers, got {Cs}")
    folds = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=random_state)
    # Scaling inside the pipeline keeps each fold's held-out part out of its scaler.
    pipe = make_pipeline(StandardScaler(), _svc(1.0, max_iter, random_state, class_weight))
    # Ties in the CV score go to the first C in the grid, i.e. the smallest (most regularised).
    search = GridSearchCV(pipe, {"linearsvc__C": Cs}, cv=folds, scoring=scoring, refit=False,
                          error_score="raise")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        search.fit(x, y)
    converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
    for w in caught:  # anything else was not ours to swallow
        if not issubclass(w.category, ConvergenceWarning):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    if not converged:
        notes.append(f"LinearSVC did not fully converge in cross-validation (max_iter={max_iter})")
    return _DomainClassifierFit(
        best_C=float(search.best_params_["linearsvc__C"]),
        cv_score=float(search.best_score_),
        n_splits=n_splits,
        notes=notes,
        converged=converged,
        cv_results=search.cv_results_,
    )


class DomainDiscriminability(BaseEstimator):
    """Linear domain classifier over neurons' attributions (paper Algorithm 1) and its projection.

    Parameters
    ----------
    cv : int, default 10
        Stratified folds used to choose ``C`` (the paper's 10-fold cross-validation). Reduced, with
        a note in ``notes_``, when the smaller domain has fewer instances.
    Cs : sequence of float, default ``DEFAULT_CS``
        Grid of ``C`` values searched; ties in CV accuracy go to the smallest ``C``.
    random_state : int, default 0
        Seeds the fold shuffling and LinearSVC.
    max_iter : int, default 10000
        liblinear iterations per fit.
    class_weight : None or "balanced", default None
        Passed to LinearSVC (the paper uses plain, unweighted accuracy).

    Attributes
    ----------
    coef_ : ndarray of float64, shape (P,)
        Signed domain discriminability of each neuron: the coefficient of the LinearSVC fitted on
        all standardised data with the chosen ``C``. Positive pushes towards the target domain.
        Exactly 0 for a constant column.
    intercept_ : float
    C_ : float
        The chosen regularisation constant.
    cv_accuracy_ : float
        Mean held-out accuracy of the chosen ``C`` over the folds.
    n_splits_ : int
        Folds actually used.
    projection_ : ndarray of float64, shape (n_source + n_target, 2)
        Every instance, source rows first: x = decision function (> 0: classified as target), y =
        coordinate on the first principal component orthogonal to ``coef_``.
    components_ : ndarray of float64, shape (P, 2)
        The projection matrix ``W = [u, g]`` of the paper (``u = coef_``, ``g`` a unit vector with
        ``g @ coef_ == 0``), in standardised units: ``projection_ = A_std @ W + (intercept_, 0)``.
    axes_ : ndarray of float64, shape (P, 2)
        Biplot axis of each neuron: its row of ``components_`` (the image of a one-standard-deviation
        step in that neuron) times the common factor ``axes_scale_``, drawn from ``origin_``. One
        factor for all neurons keeps the horizontal lengths proportional to ``coef_``.
    axes_scale_ : float
        The longest axis reaches the instance farthest from ``origin_``.
    origin_ : ndarray of float64, shape (2,)
        Where the all-means instance lands, ``(intercept_, 0)``; the axes start there.
    scaler_ : StandardScaler
        Fitted on the stacked source + target matrix.
    estimator_ : LinearSVC
        The final classifier on all standardised data.
    n_source_, n_target_, n_features_in_ : int
    converged_ : bool
        False when liblinear stopped at ``max_iter`` in the search or the final fit.
    notes_ : list of str
        Adjustments made (fewer folds, non-convergence) in words for the UI.
    cv_results_ : dict
        ``GridSearchCV.cv_results_`` of the search.
    """

    def __init__(self, cv: int = 10, Cs=DEFAULT_CS, random_state=0, max_iter: int = 10_000,
                 class_weight=None):
        self.cv = cv
        self.Cs = Cs
        self.random_state = random_state
        self.max_iter = max_iter
        self.class_weight = class_weight

    def fit(self, source, target) -> "DomainDiscriminability":
        """Fit on the attributions of the selected neurons in both domains.

        Parameters
        ----------
        source : array_like, shape (n_source, P)
            Layer Conductance of the P neurons on the source instances (label 0).
        target : array_like, shape (n_target, P)
            The same neurons on the target instances (label 1).

        Returns
        -------
        self
        """
        xs, xt = _check_domains(source, target)
        x = np.vstack([xs, xt])
        y = np.concatenate([np.zeros(xs.shape[0], dtype=np.int64), np.ones(xt.shape[0], dtype=np.int64)])
        notes: list[str] = []
        search = _cross_validate(
            x, y, cv=self.cv, Cs=self.Cs, random_state=self.random_state, max_iter=self.max_iter,
            class_weight=self.class_weight, scoring="accuracy", notes=notes,
        )
        self.scaler_ = StandardScaler().fit(x)
        z = self.scaler_.transform(x)
        constant = self.scaler_.var_ == 0
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            est = _svc(search.best_C, self.max_iter, self.random_state, self.class_weight).fit(z, y)
        final_converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
        for w in caught:
            if not issubclass(w.category, ConvergenceWarning):
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        if not final_converged:
            notes.append(f"LinearSVC did not fully converge on all data (max_iter={self.max_iter})")
        # A constant column is all zeros after scaling, so liblinear already leaves its weight at 0;
        # setting it makes that exact whatever the solver.
        est.coef_[:, constant] = 0.0
        self.estimator_ = est
        self.coef_ = est.coef_[0].astype(np.float64).copy()
        self.intercept_ = float(est.intercept_[0])
        self.C_ = search.best_C
        self.cv_accuracy_ = search.cv_score
        self.n_splits_ = search.n_splits
        self.cv_results_ = search.cv_results
        self.converged_ = search.converged and final_converged
        self.notes_ = notes
        self.n_source_, self.n_target_ = xs.shape[0], xt.shape[0]
        self.n_features_in_ = x.shape[1]

        g = _orthogonal_pc(z, self.coef_)
        self.components_ = np.column_stack([self.coef_, g])
        self.origin_ = np.array([self.intercept_, 0.0])
        self.projection_ = z @ self.components_ + self.origin_
        reach = np.max(np.linalg.norm(self.projection_ - self.origin_, axis=1))
        longest = np.max(np.linalg.norm(self.components_, axis=1))
        self.axes_scale_ = float(reach / longest) if longest > 0 else 0.0
        self.axes_ = self.components_ * self.axes_scale_
        return self

    def _check_fitted(self):
        if not hasattr(self, "coef_"):
            raise RuntimeError("DomainDiscriminability is not fitted yet; call fit(source, target)")

    def decision_function(self, x) -> np.ndarray:
        """Signed distance-like score of instances, > 0 for target.

        Parameters
        ----------
        x : array_like, shape (instances, P)
            Unstandardised attributions.

        Returns
        -------
        ndarray of float64, shape (instances,)
        """
        self._check_fitted()
        z = self.scaler_.transform(_as_matrix(x, "x").astype(np.float64))
        return z @ self.coef_ + self.intercept_

    def transform(self, x, neurons=None) -> np.ndarray:
        """Project instances onto the plot's two axes.

        Parameters
        ----------
        x : array_like, shape (instances, P)
            Unstandardised attributions, columns as in ``fit``.
        neurons : array_like of int, optional
            Only these columns (positions 0..P-1) take part: the other rows of ``components_`` and
            columns of ``x`` are left out, as when the paper's plot activates only the top five
            neurons. The intercept always stays on x.

        Returns
        -------
        ndarray of float64, shape (instances, 2)
        """
        self._check_fitted()
        z = self.scaler_.transform(_as_matrix(x, "x").astype(np.float64))
        w = self.components_
        if neurons is not None:
            keep = np.zeros(w.shape[0], dtype=bool)
            keep[np.asarray(neurons, dtype=np.int64)] = True
            w = np.where(keep[:, None], w, 0.0)
        return z @ w + self.origin_

    def ranking(self) -> pl.DataFrame:
        """The neurons ranked by discriminability.

        Returns
        -------
        polars.DataFrame, one row per column of the input, in column order
            ``neuron`` (i64, column position 0..P-1), ``coef`` (f64) and ``rank`` (i64, 1 = largest
            ``|coef|``, ties by lower position).
        """
        self._check_fitted()
        order = np.argsort(-np.abs(self.coef_), kind="stable")
        rank = np.empty(order.shape[0], dtype=np.int64)
        rank[order] = np.arange(1, order.shape[0] + 1)
        return pl.DataFrame({"neuron": np.arange(self.coef_.shape[0], dtype=np.int64),
                             "coef": self.coef_, "rank": rank})


def _orthogonal_pc(z: np.ndarray, coef: np.ndarray) -> np.ndarray:
    """Unit first principal component of ``z`` (centred) with the ``coef`` direction projected out.

    Sign: the entry of largest magnitude is positive (first such entry on ties). Zero vector when
    nothing is left (P == 1, or all columns constant).
    """
    p = z.shape[1]
    zc = z - z.mean(axis=0)
    norm = np.linalg.norm(coef)
    if norm > 0:
        u = coef / norm
        zc = zc - np.outer(zc @ u, u)
    if zc.shape[0] == 0 or not np.any(zc):
        return np.zeros(p)
    _, sv, vt = np.linalg.svd(zc, full_matrices=False)
    if sv[0] <= 1e-12 * max(1.0, np.sqrt(zc.shape[0])):
        return np.zeros(p)
    g = vt[0]
    if norm > 0:  # remove the rounding residue along u so that g @ coef is 0 to machine precision
        g = g - (g @ u) * u
        g = g / np.linalg.norm(g)
    if g[np.argmax(np.abs(g))] < 0:
        g = -g
    return g


def domain_discriminability(source_conductance, target_conductance, *, cv: int = 10, Cs=DEFAULT_CS,
                            random_state=0, max_iter: int = 10_000,
                            class_weight=None) -> DomainDiscriminability:
    """Fit :class:`DomainDiscriminability` (paper Algorithm 1) and return the fitted object.

    Parameters
    ----------
    source_conductance : array_like, shape (n_source, P)
        Layer Conductance of the P selected neurons on the source instances.
    target_conductance : array_like, shape (n_target, P)
        The same neurons on the target instances.
    cv, Cs, random_state, max_iter, class_weight
        See :class:`DomainDiscriminability`.

    Returns
    -------
    DomainDiscriminability
        Fitted; see its attributes (``coef_``, ``cv_accuracy_``, ``C_``, ``projection_``,
        ``axes_``, ``intercept_``, ...).
    """
    return DomainDiscriminability(cv=cv, Cs=Cs, random_state=random_state, max_iter=max_iter,
                                  class_weight=class_weight).fit(source_conductance, target_conductance)


def fit_scopes(pairs, *, n_jobs: "int | None" = None, **params) -> list:
    """:func:`domain_discriminability` of several scopes (classes), in parallel processes.

    Parameters
    ----------
    pairs : sequence of (source_conductance, target_conductance)
        One pair of arrays per scope, as :func:`domain_discriminability` takes them.
    n_jobs : int, optional
        Worker processes; None: one per scope, at most the CPUs this process may run on. 1 fits
        the scopes one after the other in this process.
    **params
        ``cv``, ``Cs``, ``random_state``, ``max_iter``, ``class_weight``.

    Returns
    -------
    list of DomainDiscriminability
        Fitted, in the order of ``pairs``; each the same as fitting it alone (every fit is seeded).

    Notes
    -----
    Processes, not threads: liblinear releases the GIL, but the convergence check records warnings
    with ``warnings.catch_warnings``, which is process-wide, so concurrent fits in threads would mix
    their notes. joblib's loky workers are reused between calls and limit their BLAS threads to
    their share of the CPUs.
    """
    from ..config import available_cpus

    pairs = list(pairs)
    if n_jobs is None:
        n_jobs = min(len(pairs), available_cpus())
    if n_jobs < 1:
        raise ValueError(f"n_jobs must be a positive int or None, got {n_jobs!r}")
    if n_jobs == 1 or len(pairs) <= 1:
        return [domain_discriminability(source, target, **params) for source, target in pairs]
    from joblib import Parallel, delayed

    # largest first (the all-classes scope is as large as all others together), so that no worker
    # is left with it at the end while the others idle
    order = sorted(range(len(pairs)), key=lambda i: -(len(pairs[i][0]) + len(pairs[i][1])))
    fitted = Parallel(n_jobs=n_jobs)(delayed(domain_discriminability)(*pairs[i], **params) for i in order)
    result = [None] * len(pairs)
    for i, fit in zip(order, fitted):
        result[i] = fit
    return result
