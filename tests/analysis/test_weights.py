import numpy as np
import polars as pl
import pytest
import torch

import tlexplorer.analysis.weights as weights_mod
from tlexplorer.analysis.weights import (
    WeightCounter,
    default_k,
    important_weights,
    inherited_weights,
    top_k_mask,
)


def brute_force(contributions, k, absolute=False):
    """Paper B1-B3 with python loops: per instance the k largest (ties: lower flat index)."""
    c = np.asarray(contributions, dtype=np.float64)
    m, n1, n2 = c.shape
    counts = [0] * (n1 * n2)
    for inst in c:
        flat = list(np.abs(inst).ravel() if absolute else inst.ravel())
        for i in sorted(range(n1 * n2), key=lambda i: (-flat[i], i))[:k]:
            counts[i] += 1
    top = sorted((i for i in range(n1 * n2) if counts[i] > 0), key=lambda i: (-counts[i], i))[:k]
    return [(i // n2, i % n2, counts[i], r + 1) for r, i in enumerate(top)], np.reshape(counts, (n1, n2))


def rows(frame):
    return list(zip(*(frame[c].to_list() for c in ("n1", "n2", "count", "rank"))))


def test_hand_computed():
    c = np.array(
        [
            [[5.0, 1.0], [2.0, 5.0]],  # top-2: (0,0), (1,1)
            [[0.0, 3.0], [3.0, 3.0]],  # top-2 with a 3-way tie: (0,1), (1,0)
            [[9.0, 0.0], [0.0, 8.0]],  # (0,0), (1,1)
        ]
    )
    out = important_weights(c, k=2)
    assert out.schema == pl.Schema({"n1": pl.Int64, "n2": pl.Int64, "count": pl.Int64, "rank": pl.Int64})
    assert rows(out) == [(0, 0, 2, 1), (1, 1, 2, 2)]
    counter = WeightCounter(2, 2, k=2).update(c)
    np.testing.assert_array_equal(counter.counts, [[2, 1], [1, 2]])
    assert rows(counter.top(4)) == [(0, 0, 2, 1), (1, 1, 2, 2), (0, 1, 1, 3), (1, 0, 1, 4)]


@pytest.mark.parametrize("k", [1, 3, 7, 30])
@pytest.mark.parametrize("absolute", [False, True])
def test_matches_brute_force_with_ties(k, absolute):
    rng = np.random.default_rng(k)
    c = rng.integers(-2, 3, size=(17, 5, 6)).astype(np.float32)  # heavy ties
    c[3] = 1.0  # an instance of one tied value
    expected, counts = brute_force(c, k, absolute)
    counter = WeightCounter(5, 6, k=k, absolute=absolute).update(c)
    np.testing.assert_array_equal(counter.counts, counts)
    assert rows(counter.top()) == expected
    assert rows(important_weights(c, k, absolute=absolute)) == expected


def test_matches_brute_force_continuous():
    rng = np.random.default_rng(0)
    c = rng.standard_normal((9, 8, 7))
    expected, _ = brute_force(c, 10)
    assert rows(important_weights(c, 10)) == expected


def test_streaming_and_chunking_equal_one_shot(monkeypatch):
    rng = np.random.default_rng(5)
    c = rng.integers(0, 4, size=(23, 6, 4)).astype(np.float64)
    one_shot = important_weights(c, 5)
    monkeypatch.setattr(weights_mod, "_CHUNK_VALUES", 50)  # two instances per chunk
    counter = WeightCounter(6, 4, k=5)
    for start, stop in [(0, 1), (1, 8), (8, 8), (8, 23)]:
        counter.update(c[start:stop])
    assert counter.n_instances == 23
    assert rows(counter.top()) == rows(one_shot)


def test_torch_input_matches_numpy():
    rng = np.random.default_rng(6)
    c = rng.integers(0, 3, size=(11, 4, 5)).astype(np.float32)
    counter = WeightCounter(4, 5, k=6)
    counter.update(torch.from_numpy(c[:5])).update(c[5:])  # tensors and arrays can mix
    assert rows(counter.top()) == rows(important_weights(c, 6))
    mask = top_k_mask(torch.from_numpy(c), 6)
    assert isinstance(mask, torch.Tensor) and mask.shape == c.shape
    np.testing.assert_array_equal(mask.numpy(), top_k_mask(c, 6))
    assert (mask.reshape(11, -1).sum(dim=1) == 6).all()


def test_fewer_selected_weights_than_k_and_no_instances():
    c = np.zeros((1, 3, 3))
    c[0, 2, 2] = 1.0
    # one instance selects 2 weights (the 1.0 and the first 0.0); asking for 5 gives those 2,
    # equal counts ordered by flat index
    assert rows(WeightCounter(3, 3, k=2).update(c).top(5)) == [(0, 0, 1, 1), (2, 2, 1, 2)]
    empty = WeightCounter(3, 3, k=2).top()
    assert empty.height == 0 and empty.columns == ["n1", "n2", "count", "rank"]


def test_default_k():
    assert default_k(6, 16) == 1 * 2
    assert default_k(64, 128) == 7 * 13
    assert default_k(4096, 4096) == 410 * 410
    assert WeightCounter(64, 128).k == 91
    assert important_weights(np.ones((2, 10, 10))).height == 1


def test_validation():
    with pytest.raises(ValueError, match="k must be"):
        WeightCounter(2, 2, k=5)
    with pytest.raises(ValueError, match="shape"):
        WeightCounter(2, 2, k=1).update(np.zeros((3, 2, 3)))
    with pytest.raises(ValueError, match="3-D"):
        important_weights(np.zeros((3, 4)), 1)
    with pytest.raises(ValueError, match="NaN"):
        important_weights(np.full((1, 2, 2), np.nan), 1)


def test_inherited_weights_hand_built():
    # layer i: 3 source, 3 target neurons; target 0 ~ source 2, target 1 ~ source 0, target 2 dead
    s_from = np.array([[0.1, 0.9, 0.0], [0.2, 0.1, 0.0], [0.8, 0.3, 0.0]])
    # layer i+1: 2 source, 2 target neurons; target 0 ~ source 1, target 1 ~ source 0
    s_to = np.array([[0.0, 0.7], [0.6, 0.2]])
    target = pl.DataFrame({"n1": [0, 1, 1, 2], "n2": [0, 1, 0, 0]})
    source = pl.DataFrame({"n1": [2, 0], "n2": [1, 0]})
    out = inherited_weights(target, source, s_from, s_to)
    np.testing.assert_array_equal(out.n1_match, [2, 0, 0, -1])
    np.testing.assert_array_equal(out.n2_match, [1, 0, 1, 1])
    np.testing.assert_array_equal(out.inherited, [True, True, False, False])
    # the other accepted input forms
    again = inherited_weights(([0, 1, 1, 2], [0, 1, 0, 0]), np.array([[2, 1], [0, 0]]), s_from, s_to)
    np.testing.assert_array_equal(again.inherited, out.inherited)
    empty = inherited_weights(([], []), ([], []), s_from, s_to)
    assert empty.inherited.shape == (0,)


def test_inherited_weights_validation():
    s = np.eye(2)
    with pytest.raises(ValueError, match="out of range"):
        inherited_weights(([0], [5]), ([0], [0]), s, s)
    with pytest.raises(ValueError, match="columns n1 and n2"):
        inherited_weights(pl.DataFrame({"a": [0]}), ([0], [0]), s, s)


def test_update_with_k_like_the_pipeline():
    c = np.random.default_rng(8).integers(0, 3, size=(6, 3, 4)).astype(np.float32)
    counter = WeightCounter(3, 4)  # default k = 1 * 1
    counter.update(c[:2], 5).update(c[2:], 5)
    assert counter.k == 5
    assert rows(counter.top(5)) == rows(important_weights(c, 5))
    with pytest.raises(ValueError, match="already counted"):
        counter.update(c, 2)


def test_counts_added_from_elsewhere_equal_counting_everything():
    """How a Dask driver merges its workers' sparse per-chunk counts (tlexplorer.cluster)."""
    rng = np.random.default_rng(3)
    c = rng.normal(size=(30, 5, 7))
    whole = WeightCounter(5, 7, 6).update(c)
    merged = WeightCounter(5, 7, 6)
    for part in (c[:11], c[11:12], c[12:]):
        flat = WeightCounter(5, 7, 6).update(part).counts.ravel()
        idx = np.flatnonzero(flat)
        merged.add_counts(idx, flat[idx], len(part))
    assert merged.n_instances == whole.n_instances == 30
    np.testing.assert_array_equal(merged.counts, whole.counts)
    assert merged.top().equals(whole.top())
