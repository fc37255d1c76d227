"""t-SNE layout of all instances and fast re-projection of a subset (openTSNE)."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.model_selection import cross_val_score
from sklearn.neighbors import KNeighborsClassifier

from tlexplorer.analysis.embedding import project_subset, tsne_layout


def clustered(n=400, d=64, k=8, spread=1.0, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, d)) * spread
    labels = rng.integers(0, k, n)
    return (centres[labels] + rng.normal(size=(n, d)) * 0.5).astype(np.float32), labels


def knn_accuracy(layout, labels):
    return cross_val_score(KNeighborsClassifier(5), layout, labels, cv=3).mean()


@pytest.fixture(scope="module")
def data():
    x, y = clustered()
    return x, y, tsne_layout(x)


def test_layout_shape_determinism_and_clusters(data):
    x, y, layout = data
    assert layout.shape == (len(x), 2) and layout.dtype == np.float32
    assert np.isfinite(layout).all()
    np.testing.assert_array_equal(layout, tsne_layout(x))
    assert knn_accuracy(layout, y) >= 0.9


def test_layout_wide_embeddings_are_pca_reduced():
    x, y = clustered(n=120, d=300, k=4, seed=1)
    a = tsne_layout(x, random_state=3, n_iter=200, early_exaggeration_iter=100)
    b = tsne_layout(x, random_state=3, n_iter=200, early_exaggeration_iter=100)
    c = tsne_layout(x, random_state=4, n_iter=200, early_exaggeration_iter=100)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert knn_accuracy(a, y) >= 0.9


@pytest.mark.parametrize("n", [0, 1, 2, 3, 4, 10])
def test_tiny_inputs(n):
    x, _ = clustered(n=n, d=16, k=2) if n else (np.zeros((0, 16), np.float32), None)
    layout = tsne_layout(x)
    assert layout.shape == (n, 2) and layout.dtype == np.float32 and np.isfinite(layout).all()


def test_degenerate_and_invalid_inputs():
    np.testing.assert_array_equal(tsne_layout(np.ones((12, 5))), np.zeros((12, 2), np.float32))
    bad = np.zeros((12, 3))
    bad[4, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        tsne_layout(bad)
    with pytest.raises(ValueError, match="perplexity"):
        tsne_layout(np.random.default_rng(0).normal(size=(12, 3)), perplexity=0)


def test_progress_bar_and_stopping(capsys):
    x, _ = clustered(n=60, d=8, k=3)
    calls = []
    layout = tsne_layout(x, progress=True, n_iter=40, early_exaggeration_iter=20,
                         callback=lambda i, total: calls.append((i, total)) or i < 30)
    assert layout.shape == (60, 2)
    assert calls[-1] == (30, 60)  # stopped by returning False at iteration 30
    assert "t-SNE" in capsys.readouterr().err


def test_project_subset(data):
    x, y, layout = data
    subset = np.flatnonzero(y < 3)
    seen = []
    proj = project_subset(x, layout, subset, callback=lambda i, t: seen.append((i, t)))
    assert proj.shape == (len(subset), 2) and proj.dtype == np.float32
    assert knn_accuracy(proj, y[subset]) >= 0.9
    np.testing.assert_array_equal(proj, project_subset(x, layout, y < 3))
    its = [i for i, _ in seen]
    assert its == sorted(its) and seen[-1] == (250, 250) and seen[0][0] > 0


def test_project_subset_interrupt_and_edges(data):
    x, y, layout = data
    subset = np.flatnonzero(y == 1)
    seen = []
    early = project_subset(x, layout, subset, callback=lambda i, t: seen.append(i) or i < 20)
    assert early.shape == (len(subset), 2) and seen[-1] == 20

    def boom(i, t):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        project_subset(x, layout, subset, callback=boom)
    tiny = project_subset(x, layout, [5, 7])
    np.testing.assert_array_equal(tiny, layout[[5, 7]])
    assert project_subset(x, layout, []).shape == (0, 2)
    with pytest.raises(ValueError):
        project_subset(x, layout, [len(x)])
    with pytest.raises(ValueError):
        project_subset(x, layout[:10], [1, 2])


def test_one_dimensional_and_half_precision_inputs():
    rng = np.random.default_rng(0)
    one_d = tsne_layout(rng.normal(size=(30, 1)), n_iter=50, early_exaggeration_iter=50)
    half = tsne_layout(rng.normal(size=(30, 6)).astype(np.float16), n_iter=50,
                       early_exaggeration_iter=50)
    for layout in (one_d, half):
        assert layout.shape == (30, 2) and np.isfinite(layout).all()


def test_gradient_method_follows_points_and_threads():
    from tlexplorer.analysis.embedding import BH_MIN_THREADS, FFT_MIN_POINTS, gradient_method

    assert gradient_method(FFT_MIN_POINTS - 1, 1) == "bh"
    assert gradient_method(FFT_MIN_POINTS, 1) == "fft"
    assert gradient_method(FFT_MIN_POINTS, BH_MIN_THREADS - 1) == "fft"  # the FFT gradient is serial
    assert gradient_method(60_000, BH_MIN_THREADS) == "bh"  # Barnes-Hut spreads over the threads
