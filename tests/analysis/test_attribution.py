"""Layer Conductance of many layers in one pass: equal to captum's LayerConductance, layer by layer."""
from __future__ import annotations

import warnings

import pytest
import torch
from captum.attr import LayerConductance
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from tlexplorer.analysis.attribution import (CompletenessReport, ConvergenceWarning,
                                             layer_conductance, path_alphas)
from tlexplorer.errors import LayerError
from tlexplorer.models import build_model, hidden_layers

DT = torch.float64
RTOL = 1e-4  # max |ours - captum| / max |captum|, per layer


class Tiny(nn.Module):
    """Conv, BatchNorm (eval, non-trivial statistics), in-place ReLU, max pooling, dropout, linear."""

    def __init__(self, classes: int = 5):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(4)
        self.relu1 = nn.ReLU(inplace=True)
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(4, 6, 3, stride=1, padding=1)
        self.relu2 = nn.ReLU(inplace=True)
        self.pool2 = nn.MaxPool2d(2)
        self.drop = nn.Dropout(0.5)
        self.fc1 = nn.Linear(6 * 2 * 2, 8)
        self.relu3 = nn.ReLU(inplace=True)
        self.fc2 = nn.Linear(8, classes)
        with torch.no_grad():
            self.bn1.running_mean.uniform_(-0.5, 0.5)
            self.bn1.running_var.uniform_(0.5, 2.0)
            self.bn1.weight.uniform_(0.5, 1.5)
            self.bn1.bias.uniform_(-0.2, 0.2)

    def forward(self, x):
        x = self.pool1(self.relu1(self.bn1(self.conv1(x))))
        x = self.pool2(self.relu2(self.conv2(x)))
        return self.fc2(self.relu3(self.fc1(self.drop(torch.flatten(x, 1)))))


TINY_LAYERS = ["conv1", "bn1", "relu1", "conv2", "pool2", "drop", "fc1"]  # relu1: in place


def tiny(seed: int = 0) -> Tiny:
    torch.manual_seed(seed)
    return Tiny().to(DT).eval()


def images(n: int, size: int = 8, channels: int = 3, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, channels, size, size, generator=torch.Generator().manual_seed(seed), dtype=DT)


def captum_ref(model, name, x, target, n_steps, method, baselines=None):
    lc = LayerConductance(model, model.get_submodule(name))
    return lc.attribute(x, baselines=baselines, target=target, n_steps=n_steps, method=method).detach()


def assert_close(ours: torch.Tensor, ref: torch.Tensor, what: str):
    assert ours.shape == ref.shape, what
    scale = ref.abs().max().clamp_min(1e-30)
    err = float((ours - ref).abs().max() / scale)
    assert err <= RTOL, f"{what}: relative error {err:.2e}"


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors: one thread avoids OpenMP spin-waits when other processes share the cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def no_hooks_left(model: nn.Module) -> bool:
    return all(not m._forward_hooks and not m._forward_pre_hooks and not m._backward_hooks
               for m in model.modules())


@pytest.mark.parametrize("method", ["riemann_trapezoid", "gausslegendre", "riemann_left",
                                    "riemann_right", "riemann_middle"])
def test_equals_captum_on_every_layer_kind(method):
    model = tiny()
    x = images(3)
    target = torch.tensor([0, 3, 4])
    ours = layer_conductance(model, TINY_LAYERS, x, target, n_steps=6, method=method, reduce=None,
                             completeness_tol=None)
    assert list(ours) == TINY_LAYERS
    for name in TINY_LAYERS:
        assert_close(ours[name], captum_ref(model, name, x, target, 6, method), f"{method} {name}")
    assert no_hooks_left(model)


def test_max_reduction_and_modules_as_layers():
    model = tiny()
    x = images(2)
    ours = layer_conductance(model, [model.conv2, model.fc1], x, 2, n_steps=5, completeness_tol=None)
    assert list(ours) == ["conv2", "fc1"]
    ref = captum_ref(model, "conv2", x, 2, 5, "riemann_trapezoid")
    assert ours["conv2"].shape == (2, 6)
    assert_close(ours["conv2"], ref.amax(dim=(2, 3)), "conv2 max")
    assert_close(ours["fc1"], captum_ref(model, "fc1", x, 2, 5, "riemann_trapezoid"), "fc1")
    summed = layer_conductance(model, ["conv2"], x, 2, n_steps=5, reduce="sum", completeness_tol=None)
    assert_close(summed["conv2"], ref.sum(dim=(2, 3)), "conv2 sum")


@pytest.mark.parametrize("ibs", [1, 4, 7, 13, 100])
def test_internal_batch_size_chunks_give_the_same_result(ibs):
    model = tiny()
    x = images(3)
    target = torch.tensor([1, 2, 0])
    whole = layer_conductance(model, TINY_LAYERS, x, target, n_steps=5, reduce=None, completeness_tol=None)
    chunked = layer_conductance(model, TINY_LAYERS, x, target, n_steps=5, reduce=None,
                                internal_batch_size=ibs, completeness_tol=None)
    for name in TINY_LAYERS:
        torch.testing.assert_close(chunked[name], whole[name], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("ibs, passes", [(None, [3.0]), (12, [2.0, 1.0]), (2, [0.4, 0.4, 0.2] * 3)])
def test_callback_reports_every_pass_in_instances(ibs, passes):
    """Progress within a batch: per pass, and in fractions when one path takes several passes."""
    calls = []
    layer_conductance(tiny(), TINY_LAYERS, images(3), 1, n_steps=4, internal_batch_size=ibs,
                      completeness_tol=None, callback=calls.append)
    assert calls == pytest.approx(passes) and sum(calls) == pytest.approx(3)


def test_baselines_scalar_and_image():
    model = tiny()
    x = images(2)
    base = images(1, seed=5)[0] * 0.1
    for baseline in (0.25, base):
        ours = layer_conductance(model, ["conv1", "fc1"], x, 1, n_steps=4, baseline=baseline,
                                 reduce=None, completeness_tol=None)
        captum_base = baseline if isinstance(baseline, float) else base.unsqueeze(0)
        for name in ("conv1", "fc1"):
            assert_close(ours[name], captum_ref(model, name, x, 1, 4, "riemann_trapezoid", captum_base),
                         f"baseline {name}")


class Preprocessed(Tiny):
    """The input is scaled before conv1: conv1 no longer sees the path points themselves."""

    def forward(self, x):
        return super().forward(x * 2.0)


def rows_seen(model, module, call):
    rows = []
    # Registered before layer_conductance's hooks: sees what the module itself computed.
    handle = module.register_forward_hook(lambda m, i, o: rows.append(o.shape[0]))
    try:
        result = call()
    finally:
        handle.remove()
    return rows, result


def test_first_affine_layer_runs_on_the_endpoints_only():
    """conv1 takes the path points themselves, so it is affine in alpha: 2 rows per instance
    instead of n_steps + 1, with the same result as captum; with preprocessing it sees every point."""
    x, target = images(3), torch.tensor([0, 3, 4])
    model = tiny()
    rows, ours = rows_seen(model, model.conv1, lambda: layer_conductance(
        model, TINY_LAYERS, x, target, n_steps=8, reduce=None, completeness_tol=None))
    assert rows[-1] == 2 * 3  # the main pass; the first rows are the one-instance probe
    for name in ("conv1", "bn1", "fc1"):
        assert_close(ours[name], captum_ref(model, name, x, target, 8, "riemann_trapezoid"), name)

    torch.manual_seed(0)
    pre = Preprocessed().to(DT).eval()
    rows, ours = rows_seen(pre, pre.conv1, lambda: layer_conductance(
        pre, ["conv1", "fc1"], x, target, n_steps=8, reduce=None, completeness_tol=None))
    assert rows[-1] == 9 * 3
    for name in ("conv1", "fc1"):
        assert_close(ours[name], captum_ref(pre, name, x, target, 8, "riemann_trapezoid"), name)


def test_torchvision_alexnet_in_place_relus():
    torch.manual_seed(0)
    model = build_model("alexnet", 10).to(DT).eval()
    names = [layer.name for layer in hidden_layers(model)]
    assert len(names) == 7
    x = images(2, size=64)
    target = torch.tensor([3, 7])
    ours = layer_conductance(model, names, x, target, n_steps=3, reduce=None, completeness_tol=None)
    for name in names:
        assert_close(ours[name], captum_ref(model, name, x, target, 3, "riemann_trapezoid"), name)
    assert no_hooks_left(model)


def test_resnet18_residual_blocks_and_cuts():
    torch.manual_seed(0)
    model = build_model("resnet18", 10).to(DT)
    with torch.no_grad():  # non-trivial BatchNorm statistics
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    model.eval()
    names = [layer.name for layer in hidden_layers(model)]
    assert len(names) == 20
    x = images(2, size=32)
    target = torch.tensor([1, 8])
    ours, report = layer_conductance(model, names, x, target, n_steps=3, reduce=None,
                                     return_report=True, completeness_tol=None)
    checked = ["conv1", "layer1.0.conv1", "layer1.1.conv2", "layer2.0.downsample.0", "layer3.0.conv2",
               "layer4.1.conv2"]
    for name in checked:
        assert_close(ours[name], captum_ref(model, name, x, target, 3, "riemann_trapezoid"), name)
    # The stem is a cut; a conv inside a residual block is bypassed by its skip connection.
    assert report.cut["conv1"]
    assert not report.cut["layer1.0.conv1"]
    assert not report.cut["layer4.1.conv2"]
    assert no_hooks_left(model)


class TwoStems(nn.Module):
    """Two branches from the input (neither downstream of the other), and a dead branch."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 2, 3, padding=1)
        self.b = nn.Conv2d(3, 2, 3, padding=1)
        self.dead = nn.Conv2d(2, 2, 1)
        self.mix = nn.Conv2d(4, 3, 3)
        self.head = nn.Linear(3 * 6 * 6, 4)

    def forward(self, x):
        a = torch.relu_(self.a(x))
        b = torch.relu_(self.b(x))
        self.dead(a)  # computed, never used
        return self.head(torch.relu(self.mix(torch.cat([a, b], 1))).flatten(1))


def test_parallel_branches_and_unused_layer():
    torch.manual_seed(0)
    model = TwoStems().to(DT).eval()
    x = images(2)
    ours, report = layer_conductance(model, ["a", "b", "dead", "mix"], x, 1, n_steps=5, reduce=None,
                                     internal_batch_size=4, return_report=True, completeness_tol=None)
    for name in ("a", "b", "mix"):
        assert_close(ours[name], captum_ref(model, name, x, 1, 5, "riemann_trapezoid"), name)
    assert torch.count_nonzero(ours["dead"]) == 0
    assert report.cut == {"a": False, "b": False, "dead": False, "mix": True}


def test_completeness_report_and_warning():
    model = tiny()
    x = images(4)
    target = torch.tensor([0, 1, 2, 3])
    cond, report = layer_conductance(model, TINY_LAYERS, x, target, n_steps=300, reduce="max",
                                     return_report=True)
    assert isinstance(report, CompletenessReport)
    with torch.no_grad():
        expected_delta = (model(x) - model(torch.zeros_like(x)))[torch.arange(4), target]
    torch.testing.assert_close(report.delta, expected_delta)
    # Sums are over the full maps (before the max-reduction).
    full = layer_conductance(model, ["conv2"], x, target, n_steps=300, reduce=None)
    torch.testing.assert_close(report.sums["conv2"], full["conv2"].sum(dim=(1, 2, 3)))
    assert all(report.cut.values())
    assert report.converged and max(report.relative_gaps.values()) < 0.05
    assert "relative gap" in str(report)

    with pytest.warns(ConvergenceWarning, match="raise n_steps"):
        _, coarse = layer_conductance(model, TINY_LAYERS, x, target, n_steps=1, return_report=True)
    assert not coarse.converged
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        layer_conductance(model, TINY_LAYERS, x, target, n_steps=1, completeness_tol=None)


def test_gausslegendre_delta_uses_the_true_endpoints():
    model = tiny()
    x = images(2)
    _, report = layer_conductance(model, ["fc1"], x, 4, n_steps=4, method="gausslegendre",
                                  return_report=True, completeness_tol=None)
    with torch.no_grad():
        expected = model(x)[:, 4] - model(torch.zeros_like(x))[:, 4]
    torch.testing.assert_close(report.delta, expected)
    assert path_alphas("gausslegendre", 4)[0] > 0


def test_dataloader_streams_with_true_labels():
    model = tiny()
    x = images(7)
    y = torch.tensor([0, 1, 2, 3, 4, 0, 1])
    loader = DataLoader(TensorDataset(x, y), batch_size=3)
    streamed = layer_conductance(model, TINY_LAYERS, loader, n_steps=4, internal_batch_size=8,
                                 completeness_tol=None, progress=True)
    direct = layer_conductance(model, TINY_LAYERS, x, y, n_steps=4, completeness_tol=None)
    for name in TINY_LAYERS:
        assert streamed[name].shape[0] == 7
        torch.testing.assert_close(streamed[name], direct[name], rtol=1e-10, atol=1e-12)
    # An explicit per-instance target is sliced batch by batch.
    fixed = layer_conductance(model, ["fc1"], loader, torch.full((7,), 2), n_steps=4, completeness_tol=None)
    torch.testing.assert_close(fixed["fc1"], layer_conductance(model, ["fc1"], x, 2, n_steps=4,
                                                                completeness_tol=None)["fc1"])


def test_float32_default_and_frozen_parameters():
    torch.manual_seed(0)
    model = Tiny()
    for p in model.parameters():
        p.requires_grad_(False)
    x = images(2).float()
    # On the CPU: a GPU's TF32 convolutions would not match captum's CPU result to 1e-4.
    ours = layer_conductance(model, ["conv1", "fc1"], x, 1, n_steps=4, reduce=None, device="cpu",
                             completeness_tol=None)
    assert ours["conv1"].dtype == torch.float32
    ref = LayerConductance(model.eval(), model.conv1).attribute(x, target=1, n_steps=4,
                                                                method="riemann_trapezoid").detach()
    torch.testing.assert_close(ours["conv1"], ref, rtol=1e-4, atol=1e-5)


def test_modes_restored_and_hooks_removed_after_an_error():
    class Boom(Exception):
        pass

    class Fuse(nn.Module):
        """Raises on its ``n``-th call: an error in the middle of the attribution pass."""

        def __init__(self, n):
            super().__init__()
            self.calls, self.n = 0, n

        def forward(self, x):
            self.calls += 1
            if self.calls >= self.n:
                raise Boom("mid-pass failure")
            return x

    model = tiny()
    fuse = Fuse(3)  # the probe pass and the first chunk run, the second chunk fails
    model.fc1 = nn.Sequential(model.fc1, fuse)
    model.train()
    model.bn1.eval()  # a frozen BatchNorm inside a training model stays frozen
    with pytest.raises(Boom):
        layer_conductance(model, ["conv1", "conv2", "fc1.0"], images(2), 0, n_steps=3,
                          internal_batch_size=4, completeness_tol=None)
    assert fuse.calls == 3
    assert no_hooks_left(model)
    assert model.training and model.conv1.training and not model.bn1.training


def test_training_mode_restored_after_success():
    model = tiny().train()
    layer_conductance(model, ["conv1"], images(1), 0, n_steps=2, completeness_tol=None)
    assert all(m.training for m in model.modules())


def test_unknown_layer_name():
    with pytest.raises(LayerError, match="'conv9' is not in Tiny"):
        layer_conductance(tiny(), ["conv1", "conv9"], images(1), 0, n_steps=2)


def test_module_not_in_model():
    with pytest.raises(LayerError, match="not part of Tiny"):
        layer_conductance(tiny(), [nn.Conv2d(3, 4, 3)], images(1), 0, n_steps=2)


def test_layer_never_reached():
    model = tiny()
    model.unused = nn.Linear(3, 3)
    with pytest.raises(LayerError, match="'unused' is never reached"):
        layer_conductance(model, ["conv1", "unused"], images(1), 0, n_steps=2)
    assert no_hooks_left(model)


@pytest.mark.parametrize("target", [5, -1, torch.tensor([0, 9])])
def test_target_out_of_range(target):
    with pytest.raises(ValueError, match="out of range for a model with 5 outputs"):
        layer_conductance(tiny(), ["conv1"], images(2), target, n_steps=2)


def test_target_wrong_length_and_missing():
    with pytest.raises(ValueError, match="target has 3 entries for 2 instances"):
        layer_conductance(tiny(), ["conv1"], images(2), torch.tensor([0, 1, 2]), n_steps=2)
    with pytest.raises(ValueError, match="no target"):
        layer_conductance(tiny(), ["conv1"], images(2), None, n_steps=2)


@pytest.mark.parametrize("x, shape", [(torch.zeros(3, 8, 8, dtype=DT), r"\(3, 8, 8\)"),
                                      (torch.zeros(2, 1, 8, 8, dtype=DT), r"\(2, 1, 8, 8\)")])
def test_inputs_of_wrong_shape(x, shape):
    with pytest.raises(ValueError, match=shape) as info:
        layer_conductance(tiny(), ["conv1"], x, 0, n_steps=2)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("kwargs, match", [(dict(method="simpson"), "unknown integration method"),
                                           (dict(n_steps=0), "n_steps"),
                                           (dict(reduce="median"), "reduce"),
                                           (dict(internal_batch_size=0), "internal_batch_size")])
def test_bad_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        layer_conductance(tiny(), ["conv1"], images(1), 0, **kwargs)


def test_shared_module_called_twice_is_an_error():
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(4, 4)
            self.head = nn.Linear(4, 2)

        def forward(self, x):
            return self.head(self.lin(self.lin(x.flatten(1)[:, :4])))

    model = Twice().to(DT)
    with pytest.raises(LayerError, match="more than once"):
        layer_conductance(model, ["lin"], images(1), 0, n_steps=2)
    assert no_hooks_left(model)
