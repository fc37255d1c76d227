import numpy as np
import pytest

from tlexplorer.analysis.discrepancy import balanced_subsample, proxy_a_distance


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


def test_balanced_subsample_is_seeded_equal_sized_and_bounded():
    s1, t1 = balanced_subsample(5000, 300, 1000, random_state=4)
    s2, t2 = balanced_subsample(5000, 300, 1000, random_state=4)
    assert len(s1) == len(t1) == 300 and np.array_equal(s1, s2) and np.array_equal(t1, t2)
    assert len(np.unique(s1)) == 300 and s1.max() < 5000 and np.array_equal(t1, np.arange(300))
    s, t = balanced_subsample(5000, 4000, 1000)
    assert len(s) == len(t) == 1000
    s, t = balanced_subsample(7, 9, None)
    assert len(s) == 7 and len(t) == 9
    with pytest.raises(ValueError, match="max_per_domain"):
        balanced_subsample(7, 9, 1)


def test_subsampled_a_distance_is_the_full_one_within_0_15_on_a_planted_shift():
    """Two Gaussians one standard deviation apart along one axis: the Bayes error of the balanced
    problem is Phi(-0.5) = 0.3085, distance 2 (1 - 2 eps) = 0.766. 1,000 instances per domain
    estimate eps with a standard error of ~0.010 (distance ~0.04); 0.15 is over 3 of them."""
    rng = np.random.default_rng(5)
    src = rng.standard_normal((6000, 10))
    tgt = rng.standard_normal((3000, 10)) + np.eye(10)[0]
    full = proxy_a_distance(src, tgt, random_state=0)
    sub = proxy_a_distance(src, tgt, random_state=0, max_per_domain=1000)
    assert full == pytest.approx(0.766, abs=0.1)
    assert sub == pytest.approx(full, abs=0.15)
    assert proxy_a_distance(src, tgt, random_state=0, max_per_domain=1000) == sub  # seeded
