import numpy as np
import pytest
from scipy.stats import ortho_group
from sklearn.metrics.pairwise import cosine_similarity

from tlexplorer.analysis.similarity import linear_cka, linear_cka_torch, most_similar, neuron_similarity


def test_neuron_similarity_matches_sklearn_and_zero_columns():
    rng = np.random.default_rng(0)
    a_s = rng.standard_normal((40, 7))
    a_t = rng.standard_normal((40, 5))
    a_s[:, 2] = 0.0
    a_t[:, 4] = 0.0
    s = neuron_similarity(a_s, a_t)
    assert s.shape == (7, 5) and s.dtype == np.float32
    np.testing.assert_allclose(s, cosine_similarity(a_s.T, a_t.T), atol=1e-6)  # sklearn: zero -> 0
    assert np.all(s[2] == 0) and np.all(s[:, 4] == 0)


def test_neuron_similarity_hand_built():
    a_s = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
    a_t = np.array([[2.0, 1.0, -1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    expected = np.array([[1.0, 1 / np.sqrt(2), -1.0], [0.0, 1 / np.sqrt(2), 0.0]])
    np.testing.assert_allclose(neuron_similarity(a_s, a_t), expected, atol=1e-7)
    with pytest.raises(ValueError, match="same instances"):
        neuron_similarity(np.ones((3, 2)), np.ones((4, 2)))


def test_most_similar():
    s = np.array([[0.1, 0.0, 0.5], [0.9, 0.0, 0.5], [0.2, 0.0, -0.1]])
    np.testing.assert_array_equal(most_similar(s, axis=0), [1, -1, 0])  # tie -> lower index
    np.testing.assert_array_equal(most_similar(s, axis=1), [2, 0, 0])


def hsic_cka(x, y):
    """Kornblith et al. (2019): HSIC with Gram matrices and the centring matrix H."""
    n = x.shape[0]
    h = np.eye(n) - np.ones((n, n)) / n
    k, l = x @ x.T, y @ y.T

    def hsic(a, b):
        return np.trace(a @ h @ b @ h) / (n - 1) ** 2

    return hsic(k, l) / np.sqrt(hsic(k, k) * hsic(l, l))


def test_linear_cka_matches_hsic_and_invariances():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((30, 8))
    y = x[:, :5] @ rng.standard_normal((5, 12)) + 0.5 * rng.standard_normal((30, 12))
    ref = hsic_cka(x, y)
    assert linear_cka(x, y) == pytest.approx(ref, rel=1e-10)
    assert linear_cka(x, x) == pytest.approx(1.0)
    q = ortho_group.rvs(12, random_state=2)
    assert linear_cka(x, y @ q) == pytest.approx(ref, rel=1e-10)
    assert linear_cka(3.7 * x, y) == pytest.approx(ref, rel=1e-10)
    assert linear_cka(x + 5.0, y) == pytest.approx(ref, rel=1e-10)  # centred
    # many features, few instances: the Gram-matrix branch gives the same value
    wide_x = rng.standard_normal((6, 50))
    wide_y = rng.standard_normal((6, 70))
    assert linear_cka(wide_x, wide_y) == pytest.approx(hsic_cka(wide_x, wide_y), rel=1e-10)
    assert 0.0 <= linear_cka(x, rng.standard_normal((30, 3))) <= 1.0


def test_linear_cka_degenerate():
    x = np.ones((10, 3)) * 0.1
    assert np.isnan(linear_cka(x, np.random.default_rng(0).standard_normal((10, 2))))
    assert np.isnan(linear_cka(np.ones((1, 2)), np.ones((1, 2))))
    with pytest.raises(ValueError, match="same instances"):
        linear_cka(np.ones((3, 2)), np.ones((4, 2)))


def test_linear_cka_torch_equals_the_formula_and_the_numpy_version():
    import torch

    rng = np.random.default_rng(3)
    x = rng.standard_normal((40, 7)).astype(np.float32)
    y = (x[:, :4] @ rng.standard_normal((4, 9)) + 0.3 * rng.standard_normal((40, 9))).astype(np.float32)
    ref = hsic_cka(x.astype(np.float64), y.astype(np.float64))
    assert linear_cka_torch(x, y) == pytest.approx(ref, rel=1e-12)
    assert linear_cka_torch(torch.from_numpy(x), torch.from_numpy(y)) == pytest.approx(linear_cka(x, y), rel=1e-12)
    wide_x, wide_y = rng.standard_normal((6, 50)), rng.standard_normal((6, 40))  # the Gram branch
    assert linear_cka_torch(wide_x, wide_y) == pytest.approx(hsic_cka(wide_x, wide_y), rel=1e-10)
    # a large offset: float64 centring keeps the value (in float32 it would lose most digits)
    assert linear_cka_torch(x.astype(np.float64) + 1e6, y) == pytest.approx(ref, rel=1e-8)


def test_linear_cka_torch_degenerate_and_bad_input():
    assert np.isnan(linear_cka_torch(np.ones((10, 3)), np.random.default_rng(0).standard_normal((10, 2))))
    assert np.isnan(linear_cka_torch(np.ones((1, 2)), np.ones((1, 2))))
    with pytest.raises(ValueError, match="same instances"):
        linear_cka_torch(np.ones((3, 2)), np.ones((4, 2)))
    with pytest.raises(ValueError, match="NaN or infinite"):
        linear_cka_torch(np.full((3, 2), np.nan), np.ones((3, 2)))
