"""Device-side functions equal their CPU references (skipped without CUDA).

``benchmarks/gpu_check.sh`` runs this module on a GPU machine: ``pytest tests/analysis/test_cuda.py -m cuda``.
"""
import numpy as np
import pytest
import torch

from tlexplorer.analysis.activations import capture
from tlexplorer.analysis.attribution import layer_conductance
from tlexplorer.analysis.contributions import weight_contributions
from tlexplorer.analysis.memory import free_bytes, pass_budget
from tlexplorer.analysis.similarity import linear_cka, linear_cka_torch
from tlexplorer.models import build_model, hidden_layers

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def _model(name, dtype=torch.float64):
    torch.manual_seed(0)
    return build_model(name, 10).eval().to(dtype)


def _inputs(n, size, dtype=torch.float64):
    gen = torch.Generator().manual_seed(1)
    return torch.randn(n, 3, size, size, generator=gen, dtype=dtype), torch.arange(n) % 10


@pytest.mark.parametrize("name, size, n", [("digits-alexnet", 32, 6), ("alexnet", 224, 2), ("resnet18", 64, 3)])
def test_conductance_on_the_gpu_equals_the_cpu_in_float64(name, size, n):
    model = _model(name)
    names = [layer.name for layer in hidden_layers(model)]
    x, y = _inputs(n, size)
    baseline = 0.1 * torch.ones_like(x[0])  # not constant zero: no max-pool ties at the baseline
    cpu = layer_conductance(model, names, x, y, n_steps=8, baseline=baseline, device="cpu", completeness_tol=None)
    gpu = layer_conductance(model, names, x, y, n_steps=8, baseline=baseline, device="cuda", completeness_tol=None)
    for layer in names:
        torch.testing.assert_close(gpu[layer], cpu[layer], rtol=1e-9, atol=1e-12)


def test_conductance_on_the_gpu_with_a_small_bound_gives_the_same_numbers():
    model = _model("resnet18")
    names = [layer.name for layer in hidden_layers(model)]
    x, y = _inputs(2, 64)
    free = layer_conductance(model, names, x, y, n_steps=8, device="cuda", completeness_tol=None)
    bounded = layer_conductance(model, names, x, y, n_steps=8, device="cuda", completeness_tol=None,
                                max_chunk_bytes=1 << 20)
    for layer in names:
        torch.testing.assert_close(bounded[layer], free[layer], rtol=1e-9, atol=1e-12)


def test_free_memory_and_budget_on_the_gpu():
    free = free_bytes("cuda")
    _, total = torch.cuda.mem_get_info()
    assert 0 < free <= total
    target, limit = pass_budget("cuda", 1 << 30)
    assert target == limit <= min(1 << 30, free)


def test_activations_on_the_gpu_equal_the_cpu():
    model = _model("digits-alexnet")
    names = [layer.name for layer in hidden_layers(model)]
    x, _ = _inputs(8, 32)
    cpu = capture(model, x, layers=names, embedding=True, predictions=True, device="cpu")
    gpu = capture(model, x, layers=names, embedding=True, predictions=True, device="cuda")
    for layer in names:
        torch.testing.assert_close(gpu.activations[layer], cpu.activations[layer], rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(gpu.embedding, cpu.embedding, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(gpu.predictions.probabilities, cpu.predictions.probabilities, rtol=1e-10, atol=1e-12)


def test_weight_contributions_on_the_gpu_equal_the_cpu():
    model = _model("digits-alexnet")
    names = [layer.name for layer in hidden_layers(model)]
    x, _ = _inputs(4, 32)
    for a, b in zip(names[:-1], names[1:]):
        cpu = weight_contributions(model, a, b, x, device="cpu")
        gpu = weight_contributions(model, a, b, x, device="cuda")
        torch.testing.assert_close(gpu, cpu, rtol=1e-9, atol=1e-12)


def test_cka_on_the_gpu_equals_numpy():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5000, 96)).astype(np.float32)
    y = (x[:, :40] @ rng.standard_normal((40, 64)) + rng.standard_normal((5000, 64))).astype(np.float32)
    assert linear_cka_torch(x, y, device="cuda") == pytest.approx(linear_cka(x, y), rel=1e-12)
    wide = rng.standard_normal((30, 500))  # the Gram-matrix branch
    assert linear_cka_torch(wide, wide[:, :200], device="cuda") == pytest.approx(linear_cka(wide, wide[:, :200]), rel=1e-12)
