"""Per-instance weight contributions: exact against brute-force grouped convolutions, and the
channel-wise dependence check (residual sums, concatenations, channel mixing)."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from tlexplorer.analysis.contributions import (_conv_padding, conv_contributions, conv_patch_sums,
                                               iter_weight_contributions, weight_contributions)
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


def brute_force(a: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
    """Each input channel convolved separately with each output's kernel slice, summed over space."""
    weight = conv.weight.detach()
    c_out, c_in, kh, kw = weight.shape
    padding = conv.padding
    if conv.padding_mode != "zeros":
        a = F.pad(a, _conv_padding(conv), mode=conv.padding_mode)
        padding = 0
    grouped = weight.transpose(0, 1).reshape(c_in * c_out, 1, kh, kw)  # group c: W[:, c]
    maps = F.conv2d(a, grouped, None, conv.stride, padding, conv.dilation, groups=c_in)
    return maps.sum(dim=(2, 3)).view(a.shape[0], c_in, c_out)


CONVS = [
    dict(kernel_size=3, padding=1),
    dict(kernel_size=5, stride=2, padding=2),
    dict(kernel_size=11, stride=4, padding=2),
    dict(kernel_size=(3, 5), stride=(2, 3), padding=(0, 2), dilation=(2, 1)),
    dict(kernel_size=3, padding="same", dilation=2),
    dict(kernel_size=3, padding="valid", stride=2),
    dict(kernel_size=3, padding=2, padding_mode="reflect"),
    dict(kernel_size=3, padding=1, stride=2, padding_mode="circular"),
    dict(kernel_size=3, padding=1, padding_mode="replicate", dilation=2),
]


@pytest.mark.parametrize("kwargs", CONVS, ids=lambda k: ",".join(f"{a}={b}" for a, b in k.items()))
def test_conv_contributions_equal_brute_force(kwargs):
    torch.manual_seed(0)
    conv = nn.Conv2d(5, 7, **kwargs).to(DT)
    a = torch.randn(3, 5, 17, 19, dtype=DT)
    ours = conv_contributions(a, conv)
    assert ours.shape == (3, 5, 7)
    torch.testing.assert_close(ours, brute_force(a, conv), rtol=1e-10, atol=1e-10)
    # Summed over input channels, plus the bias per position, it is the spatial sum of the output.
    out = conv(a)
    bias_part = conv.bias.detach() * out.shape[2] * out.shape[3]
    torch.testing.assert_close(ours.sum(1) + bias_part, out.detach().sum(dim=(2, 3)))
    assert conv_patch_sums(a, conv).shape[2:] == conv.kernel_size


def test_grouped_convolution_is_an_error():
    conv = nn.Conv2d(4, 4, 3, groups=2)
    with pytest.raises(LayerError, match="groups=2"):
        conv_contributions(torch.zeros(1, 4, 5, 5), conv)


class Net(nn.Module):
    """conv → ReLU → pool → conv → BN → ReLU → flatten → dropout → fc → ReLU → fc → head."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(4, 6, 3, stride=2, padding=1)
        self.bn = nn.BatchNorm2d(6)
        self.drop = nn.Dropout(0.5)
        self.fc1 = nn.Linear(6 * 2 * 2, 8)
        self.fc2 = nn.Linear(8, 5)
        self.head = nn.Linear(5, 3)
        with torch.no_grad():
            self.bn.running_mean.uniform_(-0.5, 0.5)
            self.bn.running_var.uniform_(0.5, 2.0)

    def inputs_of(self, x):
        a1 = self.pool(torch.relu(self.conv1(x)))
        a2 = torch.flatten(torch.relu(self.bn(self.conv2(a1))), 1)
        a3 = torch.relu(self.fc1(a2))
        return a1, a2, a3

    def forward(self, x):
        a1 = self.pool(F.relu(self.conv1(x), inplace=True))
        a2 = self.drop(torch.flatten(F.relu(self.bn(self.conv2(a1)), inplace=True), 1))
        return self.head(torch.relu(self.fc2(F.relu(self.fc1(a2), inplace=True))))


def net() -> Net:
    torch.manual_seed(0)
    return Net().to(DT).eval()


def images(n, size=8, seed=1):
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed), dtype=DT)


def test_weight_contributions_of_each_pair_kind():
    model = net()
    x = images(3)
    with torch.no_grad():
        a1, a2, a3 = model.inputs_of(x)

    conv_conv = weight_contributions(model, "conv1", "conv2", x)
    assert conv_conv.shape == (3, 4, 6) and conv_conv.dtype == DT
    torch.testing.assert_close(conv_conv, brute_force(a1, model.conv2))

    conv_lin = weight_contributions(model, "conv2", "fc1", x)
    assert conv_lin.shape == (3, 6, 8)
    w = model.fc1.weight.detach().view(8, 6, 4)
    expected = torch.stack([torch.stack([a2.view(3, 6, 4)[:, c] @ w[d, c] for d in range(8)], 1)
                            for c in range(6)], 1)
    torch.testing.assert_close(conv_lin, expected)
    # Bias excluded: the contributions add up to the pre-bias output.
    torch.testing.assert_close(conv_lin.sum(1) + model.fc1.bias.detach(), model.fc1(a2).detach())

    lin_lin = weight_contributions(model, model.fc1, model.fc2, x)
    assert lin_lin.shape == (3, 8, 5)
    torch.testing.assert_close(lin_lin, a3.unsqueeze(2) * model.fc2.weight.detach().t().unsqueeze(0))


def test_dataloader_and_modes():
    model = net().train()
    x = images(5)
    loader = DataLoader(TensorDataset(x, torch.zeros(5, dtype=torch.long)), batch_size=2)
    streamed = weight_contributions(model, "conv1", "conv2", loader, device="cpu", progress=True)
    assert model.training and all(m.training for m in model.modules())
    torch.testing.assert_close(streamed, weight_contributions(model, "conv1", "conv2", x))
    parts = list(iter_weight_contributions(model, "conv2", "fc1", loader))
    assert [p.shape for p in parts] == [(2, 6, 8), (2, 6, 8), (1, 6, 8)]
    assert all(m.training for m in model.modules())
    torch.testing.assert_close(torch.cat(parts), weight_contributions(model, "conv2", "fc1", x))


def test_resnet18_residual_sum_is_an_error_and_plain_pairs_work():
    torch.manual_seed(0)
    model = build_model("resnet18", 10).to(DT).eval()
    x = images(2, size=32)
    with pytest.raises(LayerError, match=r"'layer1.0.conv2' → 'layer1.1.conv1'.*residual") as info:
        weight_contributions(model, "layer1.0.conv2", "layer1.1.conv1", x)
    assert "\n" not in str(info.value)
    assert weight_contributions(model, "layer1.0.conv1", "layer1.0.conv2", x).shape == (2, 64, 64)
    assert weight_contributions(model, "conv1", "layer1.0.conv1", x).shape == (2, 64, 64)
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


class Mixing(nn.Module):
    """conv1 → LocalResponseNorm (mixes channels) → conv2; conv1 ‖ conv1b concatenated → conv3."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.lrn = nn.LocalResponseNorm(3, alpha=1.0, k=0.5)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.conv1b = nn.Conv2d(3, 4, 3, padding=1)
        self.conv3 = nn.Conv2d(8, 2, 3)
        self.head = nn.Linear(2 * 6 * 6, 3)

    def forward(self, x):
        y = self.conv2(self.lrn(self.conv1(x)))
        z = self.conv3(torch.cat([y, self.conv1b(x)], 1))
        return self.head(z.flatten(1))


def test_channel_mixing_concatenation_and_order_errors():
    torch.manual_seed(0)
    model = Mixing().to(DT).eval()
    x = images(2)
    with pytest.raises(LayerError, match="not a channel-wise function"):
        weight_contributions(model, "conv1", "conv2", x)
    with pytest.raises(LayerError, match="takes 8 channels"):
        weight_contributions(model, "conv2", "conv3", x)
    with pytest.raises(LayerError, match="'conv2' does not run before 'conv1'"):
        weight_contributions(model, "conv2", "conv1", x)
    with pytest.raises(LayerError, match="weight contributions need a Conv2d or Linear"):
        weight_contributions(model, "conv1", "lrn", x)
    with pytest.raises(LayerError, match="'conv7' is not in Mixing"):
        weight_contributions(model, "conv7", "conv2", x)
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def test_concatenation_with_matching_channel_count_is_an_error():
    class Cat(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(3, 2, 3, padding=1)
            self.b = nn.Conv2d(3, 2, 3, padding=1)
            self.c = nn.Conv2d(4, 3, 3)
            self.fc = nn.Linear(4 * 8 * 8, 3)

        def forward(self, x):
            y = torch.relu(self.a(x))
            y = torch.cat([y, y * 0 + self.b(x)], 1)  # 4 channels, only 2 from `a`
            return self.fc(y.flatten(1))

    torch.manual_seed(0)
    model = Cat().to(DT).eval()
    with pytest.raises(LayerError, match="does not depend on 'a' alone"):
        weight_contributions(model, "a", "fc", images(1))


def test_unreached_layer_and_bad_inputs():
    model = net()
    model.extra = nn.Linear(5, 5)
    with pytest.raises(LayerError, match="'extra' is never reached"):
        weight_contributions(model, "fc2", "extra", images(1))
    with pytest.raises(ValueError, match=r"\(1, 3, 8\)"):
        weight_contributions(model, "conv1", "conv2", torch.zeros(1, 3, 8))
    with pytest.raises(ValueError, match=r"inputs of shape \(2, 2, 8, 8\) do not fit Net"):
        weight_contributions(model, "conv1", "conv2", torch.zeros(2, 2, 8, 8, dtype=DT))
