import numpy as np
import pytest

from tlexplorer.analysis.discrepancy import proxy_a_distance


def test_separable_domains_give_two():
    rng = np.random.default_rng(0)
    src = rng.standard_normal((50, 5))
    tgt = rng.standard_normal((50, 5))
    tgt[:, 0] += 10.0
    assert proxy_a_distance(src, tgt) == pytest.approx(2.0)


def test_same_distribution_gives_about_zero():
    rng = np.random.default_rng(1)
    d = proxy_a_distance(rng.standard_normal((100, 5)), rng.standard_normal((100, 5)))
    assert 0.0 <= d < 0.5


def test_overlap_is_in_between_and_monotone():
    rng = np.random.default_rng(2)
    src = rng.standard_normal((150, 3))
    near = rng.standard_normal((150, 3)) + [1.0, 0.0, 0.0]
    far = near + [1.5, 0.0, 0.0]
    d_near, d_far = proxy_a_distance(src, near), proxy_a_distance(src, far)
    assert 0.2 < d_near < d_far < 2.0
    # 1-D threshold at 0.5 has error Phi(-0.5) ~ 0.31 -> distance ~ 0.77
    assert d_near == pytest.approx(2 * (1 - 2 * 0.3085), abs=0.3)


def test_imbalanced_majority_guess_is_not_rewarded():
    rng = np.random.default_rng(3)
    d = proxy_a_distance(rng.standard_normal((20, 4)), rng.standard_normal((180, 4)))
    assert d < 0.6  # plain accuracy would reach 0.9 by always guessing target (distance 1.6)


def test_errors():
    with pytest.raises(ValueError, match="at least 2 instances"):
        proxy_a_distance(np.ones((1, 2)), np.ones((5, 2)))
    with pytest.raises(ValueError, match="same columns"):
        proxy_a_distance(np.ones((5, 2)), np.ones((5, 3)))
