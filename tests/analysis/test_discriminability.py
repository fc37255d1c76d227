import numpy as np
import pytest
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC

from tlexplorer.analysis.discriminability import (
    DEFAULT_CS,
    DomainDiscriminability,
    domain_discriminability,
    fit_scopes,
)


def synthetic(seed=0, n_source=60, n_target=80, p=6, shift=4.0, feature=2):
    rng = np.random.default_rng(seed)
    src = rng.standard_normal((n_source, p))
    tgt = rng.standard_normal((n_target, p))
    tgt[:, feature] += shift
    return src, tgt


@pytest.fixture(scope="module")
def fitted():
    src, tgt = synthetic()
    return src, tgt, domain_discriminability(src, tgt)


def test_separating_feature_dominates(fitted):
    src, tgt, d = fitted
    assert d.coef_.shape == (6,)
    assert np.argmax(np.abs(d.coef_)) == 2 and d.coef_[2] > 0  # larger on target -> positive
    assert d.cv_accuracy_ > 0.95
    assert d.C_ in DEFAULT_CS and d.n_splits_ == 10 and d.notes_ == [] and d.converged_
    x = d.projection_[:, 0]
    assert d.projection_.shape == (140, 2)
    assert np.mean(x[60:] > 0) > 0.95 and np.mean(x[:60] < 0) > 0.95  # source rows first
    table = d.ranking()
    assert table.columns == ["neuron", "coef", "rank"]
    assert table.filter(table["rank"] == 1)["neuron"].item() == 2


def test_decision_function_equals_sklearn(fitted):
    src, tgt, d = fitted
    x = np.vstack([src, tgt])
    y = np.r_[np.zeros(60), np.ones(80)]
    ref = make_pipeline(StandardScaler(), LinearSVC(C=d.C_, dual="auto", max_iter=10_000, random_state=0))
    ref.fit(x, y)
    np.testing.assert_allclose(d.decision_function(x), ref.decision_function(x), atol=1e-10)
    np.testing.assert_allclose(d.projection_[:, 0], ref.decision_function(x), atol=1e-10)
    np.testing.assert_allclose(d.coef_, ref[-1].coef_[0], atol=1e-12)


def test_projection_geometry(fitted):
    src, tgt, d = fitted
    u, g = d.components_[:, 0], d.components_[:, 1]
    np.testing.assert_array_equal(u, d.coef_)
    assert abs(g @ u) < 1e-12 * np.linalg.norm(u)
    assert np.linalg.norm(g) == pytest.approx(1.0)
    z = d.scaler_.transform(np.vstack([src, tgt]))
    np.testing.assert_allclose(d.projection_, z @ d.components_ + [d.intercept_, 0.0], atol=1e-10)
    # g is the first principal component of z with the u direction removed
    uu = u / np.linalg.norm(u)
    resid = z - np.outer(z @ uu, uu)
    top = np.linalg.svd(resid - resid.mean(0), full_matrices=False)[2][0]
    assert abs(abs(top @ g) - 1.0) < 1e-10
    # biplot axes: one common scale; the longest reaches the farthest instance
    np.testing.assert_allclose(d.axes_, d.components_ * d.axes_scale_)
    reach = np.max(np.linalg.norm(d.projection_ - d.origin_, axis=1))
    assert np.max(np.linalg.norm(d.axes_, axis=1)) == pytest.approx(reach)
    # transform with a subset of neurons (the plot's top-five mode)
    sub = d.transform(np.vstack([src, tgt]), neurons=[2])
    np.testing.assert_allclose(sub, np.outer(z[:, 2], d.components_[2]) + d.origin_, atol=1e-10)
    np.testing.assert_allclose(d.transform(np.vstack([src, tgt])), d.projection_)


def test_constant_columns_get_zero_coef():
    src, tgt = synthetic(seed=1, p=4, feature=0)
    src[:, 3] = 7.0
    tgt[:, 3] = 7.0
    d = DomainDiscriminability(cv=5).fit(src, tgt)
    assert d.coef_[3] == 0.0 and d.components_[3, 1] == 0.0
    assert np.argmax(np.abs(d.coef_)) == 0


def test_single_feature_and_indistinguishable_domains():
    rng = np.random.default_rng(3)
    d = domain_discriminability(rng.standard_normal((30, 1)), rng.standard_normal((30, 1)) + 6, cv=5)
    assert np.all(d.components_[:, 1] == 0)  # nothing left once the coef direction is removed
    assert d.cv_accuracy_ > 0.9
    noise = domain_discriminability(rng.standard_normal((50, 5)), rng.standard_normal((50, 5)), cv=5)
    assert noise.cv_accuracy_ < 0.75


def test_fold_reduction_and_errors():
    src, tgt = synthetic(n_source=4, n_target=30)
    d = domain_discriminability(src, tgt, cv=10)
    assert d.n_splits_ == 4 and "reduced to 4" in d.notes_[0]
    with pytest.raises(ValueError, match="at least 2 instances per domain"):
        domain_discriminability(src[:1], tgt)
    with pytest.raises(ValueError, match="same columns"):
        domain_discriminability(src, tgt[:, :3])
    with pytest.raises(ValueError, match="cv must be"):
        domain_discriminability(src, tgt, cv=1)
    with pytest.raises(RuntimeError, match="not fitted"):
        DomainDiscriminability().transform(src)


def test_convergence_warning_is_handled():
    # 1 liblinear iteration cannot converge; the warning must not escape (pytest: warnings=errors)
    src, tgt = synthetic(p=40, n_source=20, n_target=20, shift=0.3)
    d = domain_discriminability(src, tgt, cv=3, Cs=(10.0,), max_iter=1)
    assert not d.converged_
    assert any("did not fully converge" in note for note in d.notes_)
    assert np.all(np.isfinite(d.coef_))


def test_scopes_fitted_in_parallel_equal_the_serial_fits():
    """Per-class fits in worker processes: the same coefficients, C, accuracy, projection and notes
    as one after the other (a small, unconverging max_iter makes notes appear)."""
    pairs = [synthetic(seed=s, shift=0.5 + s, feature=s % 6, n_source=40 + 20 * s) for s in range(4)]  # sizes differ
    params = {"cv": 3, "random_state": 7, "max_iter": 3}
    serial = fit_scopes(pairs, n_jobs=1, **params)
    parallel = fit_scopes(pairs, n_jobs=2, **params)
    assert len(parallel) == 4
    for a, b in zip(serial, parallel):
        np.testing.assert_array_equal(a.coef_, b.coef_)
        np.testing.assert_array_equal(a.projection_, b.projection_)
        np.testing.assert_array_equal(a.axes_, b.axes_)
        assert (a.C_, a.cv_accuracy_, a.notes_) == (b.C_, b.cv_accuracy_, b.notes_)
    assert any(fit.notes_ for fit in serial)


def test_fit_scopes_bad_jobs_is_one_error():
    with pytest.raises(ValueError, match="n_jobs"):
        fit_scopes([synthetic()], n_jobs=0)
