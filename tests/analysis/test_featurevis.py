"""Feature visualization, top activating instances and weight feature maps on digits-alexnet."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tlexplorer.analysis.featurevis import (top_activating, visualize_neuron, visualize_neurons,
                                            weight_feature_map)
from tlexplorer.errors import LayerError
from tlexplorer.models import build_model

# The widths these tests were tuned on (digits-alexnet's defaults when written).
WIDE = {"channels": (32, 64, 96, 96, 64), "hidden": (256, 128)}

NORM = dict(image_size=32, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))


@pytest.fixture(autouse=True)
def one_thread():
    # 32x32 single-image steps are too small for 2 OpenMP threads to pay off, and on a busy shared CPU
    # spinning threads make them ~10x slower; one thread keeps this module fast and stable.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model("digits-alexnet", 10, **WIDE)


def _activation(model, layer, neuron, x):
    module = dict(model.named_modules())[layer]
    out = {}

    def hook(mod, args, output):  # returns None: a returned value would replace the output
        out["v"] = output.detach().clone()  # cloned before the in-place ReLU that follows

    handle = module.register_forward_hook(hook)
    try:
        with torch.no_grad():
            model.eval()(x)
    finally:
        handle.remove()
    value = out["v"][:, neuron]
    return value.mean(dim=(1, 2)) if value.ndim == 3 else value


def _to_input(images: np.ndarray) -> torch.Tensor:
    x = torch.as_tensor(images).permute(0, 3, 1, 2).float() / 255.0
    return (x - 0.5) / 0.5


def _no_hooks(model):
    return all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def test_shape_dtype_and_determinism(model):
    a = visualize_neuron(model, "features.conv2", 4, steps=12, **NORM)
    b = visualize_neuron(model, "features.conv2", 4, steps=12, **NORM)
    c = visualize_neuron(model, "features.conv2", 4, steps=12, seed=1, **NORM)
    assert a.shape == (32, 32, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    plain = visualize_neuron(model, "classifier.fc7", 0, steps=5, decorrelate=False, transforms=False,
                             **NORM)
    assert plain.shape == (32, 32, 3) and plain.dtype == np.uint8
    assert _no_hooks(model)


@pytest.fixture(scope="module")
def he_model():
    # PyTorch's default init shrinks the signal layer after layer, so the deep units of an untrained
    # digits-alexnet hardly respond to any input; He init keeps them alive, like a trained model's.
    torch.manual_seed(0)
    net = build_model("digits-alexnet", 10, **WIDE)
    for module in net.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
            nn.init.zeros_(module.bias)
    return net.eval()


@pytest.mark.parametrize("layer", ["features.conv1", "features.conv3", "classifier.fc6"])
def test_optimised_images_activate_their_neurons(he_model, layer):
    neurons = [0, 5, 10, 15]
    images = visualize_neurons(he_model, layer, neurons, steps=128, **NORM)
    x = _to_input(images)
    gen = torch.Generator().manual_seed(0)
    noise = torch.rand(64, 3, 32, 32, generator=gen)
    # "dataset-like" inputs: smooth random images (bilinear upsampling of 4x4 and 8x8 noise)
    smooth = torch.cat([F.interpolate(torch.rand(32, 3, s, s, generator=gen), size=32, mode="bilinear")
                        for s in (4, 8)])
    baseline_x = (torch.cat([noise, smooth]) - 0.5) / 0.5
    gains = []
    for i, neuron in enumerate(neurons):
        best = _activation(he_model, layer, neuron, x[i:i + 1]).item()
        baseline = _activation(he_model, layer, neuron, baseline_x)
        mean, top = baseline.mean().item(), baseline.max().item()
        assert best > top, (neuron, best, top)
        # pre-activations average about zero here, so ratios to the mean mean little: measure the
        # gain over the mean against the best of the 128 random images' gain
        gains.append((best - mean) / (top - mean))
    assert min(gains) >= 1.5 and float(np.median(gains)) >= 2.5, gains


def test_batch_matches_single_and_progress(model):
    seen = []
    batch = visualize_neurons(model, "features.conv2", [7, 2, 7], steps=10, batch_size=2,
                              callback=lambda done, total: seen.append((done, total)), **NORM)
    assert batch.shape == (3, 32, 32, 3) and batch.dtype == np.uint8
    np.testing.assert_array_equal(batch[0], batch[2])
    single = visualize_neuron(model, "features.conv2", 2, steps=10, **NORM)
    assert np.abs(batch[1].astype(int) - single.astype(int)).max() <= 2
    assert seen == [(2, 3), (3, 3)]
    assert visualize_neurons(model, "features.conv2", [], steps=10, **NORM).shape == (0, 32, 32, 3)


def test_model_untouched_and_hooks_removed(model):
    model.train()
    model.features.conv1.weight.requires_grad_(False)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    try:
        visualize_neuron(model, "classifier.fc6", 3, steps=3, device="cpu", **NORM)
        assert model.training and all(m.training for m in model.modules())
        assert not model.features.conv1.weight.requires_grad
        assert model.features.conv2.weight.requires_grad
        assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
        assert all(p.grad is None for p in model.parameters())
        assert _no_hooks(model)

        steps = []
        visualize_neurons(model, "features.conv1", [0, 1, 2], steps=2, batch_size=2, on_step=steps.append,
                          **NORM)
        assert steps == [2, 2, 1, 1]  # per optimisation step, the neurons it moved on

        def boom(done, total):
            raise RuntimeError("stop")

        with pytest.raises(RuntimeError, match="stop"):
            visualize_neurons(model, "features.conv1", [0], steps=2, callback=boom, **NORM)
        assert _no_hooks(model) and model.training and model.features.conv2.weight.requires_grad
    finally:
        model.features.conv1.weight.requires_grad_(True)
        model.eval()


def test_layer_errors_and_unreached_layer(model):
    with pytest.raises(LayerError, match="not in"):
        visualize_neuron(model, "features.nope", 0, steps=1, **NORM)
    with pytest.raises(LayerError, match="out of range"):
        visualize_neuron(model, "features.conv1", 32, steps=1, **NORM)

    class Unused(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)
            self.spare = nn.Conv2d(3, 4, 3)

        def forward(self, x):
            return self.conv(x)

    net = Unused()
    with pytest.raises(LayerError, match="never reaches"):
        visualize_neuron(net, "spare", 0, steps=1, image_size=8, mean=(0,), std=(1,))
    assert _no_hooks(net)


def test_top_activating():
    acts = np.array([[1.0, 5.0], [3.0, np.nan], [3.0, 2.0], [0.0, 7.0]])
    np.testing.assert_array_equal(top_activating(acts, k=2), [[1, 2], [3, 0]])
    np.testing.assert_array_equal(top_activating(acts, k=9), [[1, 2, 0, 3], [3, 0, 2, 1]])
    rows = np.array([10, 11, 12, 13])
    np.testing.assert_array_equal(top_activating(acts, k=1, rows=rows), [[11], [13]])
    assert top_activating(acts, k=0).shape == (2, 0)
    rng = np.random.default_rng(0)
    big = rng.normal(size=(500, 7))
    top = top_activating(big, k=9)
    np.testing.assert_array_equal(top, np.argsort(-big, axis=0, kind="stable")[:9].T)
    with pytest.raises(ValueError):
        top_activating(np.zeros(3))


def _x():
    return torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(3))


def test_weight_feature_map_conv_to_conv(model):
    model.eval()
    x = _x()
    fmap = weight_feature_map(model, "features.conv1", "features.conv2", 5, 9, x)
    with torch.no_grad():
        f = model.features
        entering = f.pool1(F.relu(f.conv1(x)))  # n1's map as it enters conv2
        direct = F.conv2d(entering[:, 5:6], f.conv2.weight[9:10, 5:6], padding=1)[0, 0]
        full = f.conv2(entering)[0, 9]
    assert fmap.shape == (16, 16) and fmap.dtype == np.float32
    np.testing.assert_allclose(fmap, direct.numpy(), rtol=1e-5, atol=1e-6)
    # the maps of all input channels plus the bias make up n2's pre-activation
    total = sum(weight_feature_map(model, "features.conv1", "features.conv2", n1, 9, x)
                for n1 in range(f.conv1.out_channels))
    np.testing.assert_allclose(total + f.conv2.bias[9].item(), full.numpy(), rtol=1e-4, atol=1e-4)
    assert _no_hooks(model)


def test_weight_feature_map_conv_to_linear_and_linear(model):
    model.eval()
    x = _x()
    with torch.no_grad():
        flat = torch.flatten(model.features(x), 1)
        fc6_out = model.classifier.fc6(flat)[0]
        fc7_in = F.relu(fc6_out)
        fc7_out = model.classifier.fc7(fc7_in[None])[0]
    maps = [weight_feature_map(model, "features.conv5", "classifier.fc6", n1, 3, x) for n1 in range(64)]
    assert maps[0].shape == (4, 4)
    w = model.classifier.fc6.weight.detach()
    np.testing.assert_allclose(maps[2].ravel(), (w[3, 32:48] * flat[0, 32:48]).numpy(), rtol=1e-5)
    np.testing.assert_allclose(sum(m.sum() for m in maps) + model.classifier.fc6.bias[3].item(),
                               fc6_out[3].item(), rtol=1e-4, atol=1e-4)
    one = weight_feature_map(model, "classifier.fc6", "classifier.fc7", 17, 4, x)
    assert one.shape == (1, 1)
    expected = model.classifier.fc7.weight[4, 17].item() * fc7_in[17].item()
    np.testing.assert_allclose(one[0, 0], expected, rtol=1e-5, atol=1e-7)
    assert np.isfinite(fc7_out).all()
    with pytest.raises(LayerError):
        weight_feature_map(model, "features.conv1", "features.conv2", 32, 0, x)


def test_weight_feature_map_grouped_conv():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 6, 3, groups=2))
    x = torch.randn(1, 3, 8, 8)
    with torch.no_grad():
        h = F.relu(net[0](x))
        expected = F.conv2d(h[:, 3:4], net[2].weight[4:5, 1:2])[0, 0]
    got = weight_feature_map(net, "0", "2", 3, 4, x)  # n1=3 is channel 1 of group 1, n2=4 in group 1
    np.testing.assert_allclose(got, expected.numpy(), rtol=1e-5, atol=1e-6)
    assert not weight_feature_map(net, "0", "2", 0, 4, x).any()  # group 0 input, group 1 output
