"""Pass sizes from free memory: never above the bound they are given."""
import itertools

import pytest
import torch

from tlexplorer.analysis.memory import (CPU_SPEED_BYTES, FREE_SHARE, free_bytes, pass_budget,
                                        points_per_pass)


def test_free_bytes_of_the_cpu_is_positive():
    assert free_bytes("cpu") > 0


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_budget_never_exceeds_the_bound_or_the_free_share(device):
    for free, bound in itertools.product([1, 10 << 20, 3 << 30, 140 << 30], [None, 1, 4096, 1 << 20, 1 << 34]):
        target, limit = pass_budget(device, bound, free=free)
        assert 1 <= target <= limit
        assert limit <= max(1, int(free * FREE_SHARE[device]))
        if bound is not None:
            assert limit <= bound
        if device == "cpu":
            assert target <= CPU_SPEED_BYTES


def test_points_per_pass_never_exceed_the_limit():
    for per_point, n_points, free, bound in itertools.product(
            [1, 1000, 3 << 20, 40 << 20, 2 << 30], [1, 2, 51, 201], [64 << 20, 8 << 30, 140 << 30],
            [None, 1 << 20, 100 << 20, 16 << 30]):
        for device in ("cpu", "cuda"):
            target, limit = pass_budget(device, bound, free=free)
            points = points_per_pass(per_point, n_points, target, limit)
            assert points >= 1
            if per_point <= limit:  # one point always goes; beyond it, the bound holds
                assert points * per_point <= limit


def test_a_whole_path_is_taken_when_it_costs_at_most_four_targets():
    assert points_per_pass(1 << 20, 51, 16 << 20, 1 << 30) == 51
    assert points_per_pass(1 << 20, 51, 16 << 20, 20 << 20) == 20  # but never past the limit


def test_a_bad_bound_is_one_error():
    with pytest.raises(ValueError, match="max_bytes"):
        pass_budget("cpu", 0)


def test_conductance_passes_respect_max_chunk_bytes(monkeypatch):
    """layer_conductance with a small bound runs more, smaller passes, and the same numbers."""
    from tlexplorer.analysis import attribution
    from tlexplorer.models import build_model, hidden_layers

    torch.manual_seed(0)
    model = build_model("digits-alexnet", 10).eval()
    names = [layer.name for layer in hidden_layers(model)]
    x = torch.rand(3, 3, 32, 32)
    y = torch.tensor([0, 1, 2])
    seen = []
    original = attribution.points_per_pass

    def spy(per_point, n_points, target, limit):
        points = original(per_point, n_points, target, limit)
        seen.append((per_point, points, limit))
        return points

    monkeypatch.setattr(attribution, "points_per_pass", spy)
    free = attribution.layer_conductance(model, names, x, y, n_steps=8, completeness_tol=None)
    bounded = attribution.layer_conductance(model, names, x, y, n_steps=8, completeness_tol=None,
                                            max_chunk_bytes=1)
    (per_point, points_free, _), (_, points_bounded, limit) = seen
    assert limit == 1 and points_bounded == 1 < points_free
    for name in names:
        torch.testing.assert_close(bounded[name], free[name], rtol=1e-4, atol=1e-6)
