import numpy as np
import pytest
import torch
from scipy.stats import rankdata

from tlexplorer.analysis.neurons import (
    importance_ranks,
    important_neurons,
    n_important,
    neuron_rank_scores,
    neuron_ranking,
)


def reference_scores(a):
    """Row-by-row scipy ranking, summed: the paper's A3-A4 written plainly."""
    return np.sum([rankdata(row, method="average") for row in np.asarray(a)], axis=0)


def test_hand_computed_scores():
    a = np.array([[1.0, 2.0, 3.0], [3.0, 2.0, 1.0], [5.0, 5.0, 1.0]])
    # ranks per row: [1,2,3], [3,2,1], [2.5,2.5,1]
    np.testing.assert_array_equal(neuron_rank_scores(a), [6.5, 6.5, 5.0])


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64])
def test_scores_match_scipy_with_ties(dtype):
    rng = np.random.default_rng(1)
    a = rng.integers(-3, 4, size=(40, 57)).astype(dtype)  # many ties
    a[0] = 2  # a row of one tied value
    a[1, :10] = a[1, 10:20]  # duplicated blocks
    got = neuron_rank_scores(a)
    assert got.dtype == np.float64 and got.shape == (57,)
    np.testing.assert_array_equal(got, reference_scores(a))


def test_scores_match_scipy_continuous_and_signed_zero():
    rng = np.random.default_rng(2)
    a = rng.standard_normal((25, 300)).astype(np.float32)
    np.testing.assert_array_equal(neuron_rank_scores(a), reference_scores(a))
    b = np.array([[0.0, -0.0, 1.0, -0.0]])  # -0.0 == 0.0 ties, as in scipy
    np.testing.assert_array_equal(neuron_rank_scores(b), rankdata(b[0]))


def test_scores_accept_torch_and_bounds():
    rng = np.random.default_rng(3)
    a = rng.standard_normal((10, 6))
    np.testing.assert_array_equal(neuron_rank_scores(torch.from_numpy(a)), neuron_rank_scores(a))
    s = neuron_rank_scores(a)
    assert s.sum() == pytest.approx(10 * 6 * 7 / 2)
    assert np.all((s >= 10) & (s <= 60))
    np.testing.assert_array_equal(neuron_rank_scores(np.zeros((0, 4))), np.zeros(4))


def test_scores_reject_bad_input():
    with pytest.raises(ValueError, match="2-D"):
        neuron_rank_scores(np.zeros(5))
    with pytest.raises(ValueError, match="NaN"):
        neuron_rank_scores(np.array([[1.0, np.nan]]))


def test_n_important_rounding():
    assert n_important(30, 0.1) == 3  # 0.1 * 30 == 3.0000000000000004 in floating point
    assert n_important(31, 0.1) == 4
    assert n_important(5, 0.1) == 1
    assert n_important(64, 0.1) == 7
    assert n_important(4096, 0.1) == 410
    assert n_important(10, 1.0) == 10
    assert n_important(0, 0.1) == 0
    with pytest.raises(ValueError):
        n_important(10, 0.0)
    with pytest.raises(ValueError):
        n_important(10, 1.5)


def test_important_neurons_order_and_ties():
    # neuron 3 always largest, neurons 0 and 2 tie for second, then 1, 4
    a = np.array([[3.0, 1.0, 3.0, 9.0, 0.0], [3.0, 1.0, 3.0, 9.0, 0.0]])
    np.testing.assert_array_equal(important_neurons(a, fraction=0.6), [3, 0, 2])
    np.testing.assert_array_equal(important_neurons(a), [3])
    assert important_neurons(a).dtype == np.int64


def test_importance_ranks_and_table():
    scores = np.array([5.0, 7.0, 5.0, 1.0])
    np.testing.assert_array_equal(importance_ranks(scores), [2, 1, 3, 4])
    rng = np.random.default_rng(4)
    a = rng.standard_normal((12, 20))
    table = neuron_ranking(a, fraction=0.1)
    assert table.columns == ["neuron", "score", "rank", "important"]
    assert table["important"].sum() == 2
    top = table.filter(table["important"]).sort("rank")["neuron"].to_numpy()
    np.testing.assert_array_equal(top, important_neurons(a, 0.1))
    np.testing.assert_array_equal(table["score"].to_numpy(), reference_scores(a))


def test_click_sized_aggregate_is_fast():
    """A class x layer aggregate (300 instances x 4096 neurons) must stay interactive.

    The bound is loose (shared CI cores); it catches a python loop over instances or neurons,
    which would take seconds.
    """
    import time

    from tlexplorer.analysis.similarity import neuron_similarity

    rng = np.random.default_rng(7)
    a_s = rng.standard_normal((300, 4096)).astype(np.float32)
    a_t = rng.standard_normal((300, 4096)).astype(np.float32)
    start = time.perf_counter()
    neuron_rank_scores(a_s)
    neuron_rank_scores(a_t)
    neuron_similarity(a_s, a_t)
    assert time.perf_counter() - start < 3.0
