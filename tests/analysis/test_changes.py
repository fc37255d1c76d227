import numpy as np
import pytest
import torch

from tlexplorer.analysis.changes import rank_shift, weight_change


def test_weight_change_linear_hand_computed():
    ws = np.array([[3.0, 4.0], [1.0, 0.0], [0.0, 0.0], [0.0, 0.0]])
    wt = np.array([[3.0, 4.0], [1.0, 1.0], [0.0, 0.0], [0.0, 2.0]])
    np.testing.assert_allclose(weight_change(ws, wt), [0.0, 1.0, 0.0, np.inf])


def test_weight_change_conv_and_bias_and_torch():
    rng = np.random.default_rng(0)
    ws = rng.standard_normal((4, 3, 2, 2))
    wt = ws + 0.1 * rng.standard_normal((4, 3, 2, 2))
    expected = [np.linalg.norm(wt[j] - ws[j]) / np.linalg.norm(ws[j]) for j in range(4)]
    np.testing.assert_allclose(weight_change(ws, wt), expected)
    np.testing.assert_allclose(weight_change(torch.from_numpy(ws), torch.from_numpy(wt)), expected)
    bs, bt = np.zeros(4), np.array([0.0, 0.0, 0.0, 1.0])
    with_bias = weight_change(ws, wt, bs, bt)
    np.testing.assert_allclose(with_bias[:3], expected[:3])
    last = np.sqrt(np.sum((wt[3] - ws[3]) ** 2) + 1.0) / np.linalg.norm(ws[3])
    assert with_bias[3] == pytest.approx(last)


def test_weight_change_rejects_heads_of_different_size():
    with pytest.raises(ValueError, match="heads of different size"):
        weight_change(np.ones((10, 5)), np.ones((3, 5)))
    with pytest.raises(ValueError, match="both"):
        weight_change(np.ones((2, 2)), np.ones((2, 2)), b_source=np.ones(2))


def test_rank_shift():
    source = np.array([10.0, 30.0, 20.0, 5.0])  # ranks 3, 1, 2, 4
    target = np.array([40.0, 10.0, 20.0, 30.0])  # ranks 1, 4, 3, 2
    shift = rank_shift(source, target)
    np.testing.assert_array_equal(shift, [2, -3, -1, 2])
    assert shift.dtype == np.int64 and shift.sum() == 0
    np.testing.assert_array_equal(rank_shift([1.0, 1.0], [1.0, 1.0]), [0, 0])  # ties: lower index
    with pytest.raises(ValueError, match="length"):
        rank_shift([1.0, 2.0], [1.0])
