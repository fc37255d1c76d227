"""Forward-only captures: activations, embedding before the first Linear, predictions, in one pass."""
from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from tlexplorer.analysis.activations import (Capture, Predictions, capture, capture_activations,
                                             concat_captures, embedding, iter_capture, predict)
from tlexplorer.errors import LayerError
from tlexplorer.models import build_model

DT = torch.float64


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors: one thread avoids OpenMP spin-waits when other processes share the cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def small_alexnet() -> nn.Module:
    torch.manual_seed(0)
    return build_model("digits-alexnet", 4, channels=(4, 6, 8, 8, 6), hidden=(16, 12)).to(DT).eval()


def images(n, seed=1):
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed), dtype=DT)


def no_hooks_left(model):
    return all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def test_activations_are_module_outputs_max_over_space():
    model = small_alexnet()
    x = images(3)
    acts = capture_activations(model, ["features.conv1", "features.conv3", "classifier.fc6"], x)
    with torch.no_grad():
        conv1 = model.features.conv1(x)  # before the in-place ReLU: may be negative
        feats = model.features(x)
        fc6 = model.classifier.fc6(torch.flatten(feats, 1))
        h = model.features[:6](x)
        conv3 = model.features.conv3(h)
    torch.testing.assert_close(acts["features.conv1"], conv1.amax(dim=(2, 3)))
    torch.testing.assert_close(acts["features.conv3"], conv3.amax(dim=(2, 3)))
    torch.testing.assert_close(acts["classifier.fc6"], fc6)
    assert acts["features.conv1"].shape == (3, 4)
    full = capture_activations(model, "features.conv1", x, reduce=None)["features.conv1"]
    torch.testing.assert_close(full, conv1)
    assert no_hooks_left(model)


def test_predictions_and_embedding():
    model = small_alexnet()
    x = images(4)
    with torch.no_grad():
        logits = model(x)
        emb = torch.flatten(model.features(x), 1)
    pred = predict(model, x)
    assert isinstance(pred, Predictions)
    torch.testing.assert_close(pred.logits, logits)
    torch.testing.assert_close(pred.labels, logits.argmax(1))
    torch.testing.assert_close(pred.probabilities.sum(1), torch.ones(4, dtype=DT))
    torch.testing.assert_close(embedding(model, x), emb)
    assert embedding(model, x).shape == (4, 6 * 4 * 4)


def test_torchvision_alexnet_embedding_is_the_pooled_features():
    torch.manual_seed(0)
    model = build_model("alexnet", 3).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = torch.flatten(model.avgpool(model.features(x)), 1)
    torch.testing.assert_close(embedding(model, x, device="cpu"), expected)  # float32: same device


def test_one_pass_captures_everything_from_a_dataloader():
    model = small_alexnet().train()
    x = images(5)
    y = torch.tensor([0, 1, 2, 3, 0])
    loader = DataLoader(TensorDataset(x, y), batch_size=2)
    calls = []
    handle = model.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    try:
        cap = capture(model, loader, layers=["features.conv2", "classifier.fc7"], embedding=True,
                      predictions=True, progress=True)
    finally:
        handle.remove()
    assert calls == [2, 2, 1]  # one forward per batch, no extra probe pass
    assert isinstance(cap, Capture)
    torch.testing.assert_close(cap.labels, y)
    torch.testing.assert_close(cap.predictions.logits, predict(model, x).logits)
    torch.testing.assert_close(cap.embedding, embedding(model, x))
    torch.testing.assert_close(cap.activations["classifier.fc7"],
                               capture_activations(model, ["classifier.fc7"], x)["classifier.fc7"])
    assert all(m.training for m in model.modules())
    assert no_hooks_left(model)
    bare = capture(model, x, layers=["features.conv1"])
    assert bare.labels is None and bare.embedding is None and bare.predictions is None


def test_errors():
    model = small_alexnet()
    with pytest.raises(LayerError, match="'features.conv9' is not in DigitsAlexNet"):
        capture_activations(model, ["features.conv9"], images(1))
    model.spare = nn.Conv2d(3, 3, 1)
    with pytest.raises(LayerError, match="'spare' is never reached"):
        capture_activations(model, ["features.conv1", "spare"], images(1))
    assert no_hooks_left(model)
    with pytest.raises(ValueError, match=r"4-D tensor \(N, C, H, W\), got shape \(3, 32, 32\)"):
        predict(model, images(1)[0])
    with pytest.raises(ValueError, match=r"inputs of shape \(2, 1, 32, 32\) do not fit DigitsAlexNet"):
        predict(model, torch.zeros(2, 1, 32, 32, dtype=DT))
    conv_only = nn.Sequential(nn.Conv2d(3, 2, 3), nn.Flatten()).to(DT)
    with pytest.raises(LayerError, match="no nn.Linear layer"):
        embedding(conv_only, images(1))
    with pytest.raises(ValueError, match="reduce"):
        capture_activations(model, ["features.conv1"], images(1), reduce="median")


def test_streamed_batches_concatenate_to_the_one_pass_capture():
    model = small_alexnet()
    x, y = images(7), torch.tensor([0, 1, 2, 3, 0, 1, 2])
    loader = DataLoader(TensorDataset(x, y), batch_size=3)
    what = dict(layers=["features.conv2", "classifier.fc7"], embedding=True, predictions=True)
    parts = list(iter_capture(model, loader, **what))
    assert [part.size for part in parts] == [3, 3, 1]  # one Capture per batch, as computed
    whole, streamed = capture(model, loader, **what), concat_captures(parts)
    for name in what["layers"]:
        assert torch.equal(streamed.activations[name], whole.activations[name])
    assert torch.equal(streamed.embedding, whole.embedding)
    for field in ("labels", "probabilities", "logits"):
        assert torch.equal(getattr(streamed.predictions, field), getattr(whole.predictions, field))
    assert torch.equal(streamed.labels, y) and torch.equal(whole.labels, y)
    assert no_hooks_left(model)


def test_a_stream_closed_early_leaves_no_hooks_and_restores_the_mode():
    model = small_alexnet().train()
    batches = iter_capture(model, DataLoader(TensorDataset(images(6)), batch_size=2), layers=["features.conv1"])
    first = next(batches)
    assert first.size == 2 and first.labels is None
    assert torch.is_grad_enabled()  # gradients are off only inside each forward pass
    batches.close()
    assert no_hooks_left(model) and all(m.training for m in model.modules())
    with pytest.raises(ValueError, match="no instances"):
        list(iter_capture(model, [], layers=["features.conv1"]))
