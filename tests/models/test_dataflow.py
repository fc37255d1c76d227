"""Consecutive layers are paired by the data flow: never parallel branches, never across a sum."""
import torch
from torch import nn

from tlexplorer.models import build_model, hidden_layers
from tlexplorer.models.dataflow import pair_relations


class Branchy(nn.Module):
    """conv a → conv b, then a sum with a skip, and a concatenation of two branches."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 4, 3, padding=1)
        self.b = nn.Conv2d(4, 4, 3, padding=1)
        self.c = nn.Conv2d(4, 4, 1)
        self.left = nn.Conv2d(4, 2, 1)
        self.right = nn.Conv2d(4, 2, 1)
        self.d = nn.Conv2d(4, 4, 1)
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        a = torch.relu(self.a(x))
        h = torch.relu(self.b(a)) + a            # residual sum
        h = self.c(h)
        h = torch.cat([self.left(h), self.right(h)], dim=1)
        h = self.d(h)
        return self.head(h.mean(dim=(2, 3)))


class Untraceable(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(3, 3)
        self.b = nn.Linear(3, 2)

    def forward(self, x):
        if x.sum() > 0:  # data-dependent control flow: torch.fx cannot trace it
            x = self.a(x)
        return self.b(x)


def test_relations_of_a_branchy_model():
    rel = {(r.frm, r.to): r for r in pair_relations(Branchy(), ["a", "b", "c", "left", "right", "d"])}
    assert rel[("a", "b")].direct
    assert not rel[("b", "c")].direct and "a sum" in rel[("b", "c")].reason
    assert rel[("c", "left")].direct
    assert not rel[("left", "right")].direct and "parallel branches" in rel[("left", "right")].reason
    assert not rel[("right", "d")].direct and "concatenation" in rel[("right", "d")].reason


def test_resnet18_pairs_inside_blocks_only():
    model = build_model("resnet18", 3)
    layers = [l.name for l in hidden_layers(model)]
    rel = pair_relations(model, layers)
    direct = [(r.frm, r.to) for r in rel if r.direct]
    assert ("layer2.0.conv1", "layer2.0.conv2") in direct
    assert all(b.endswith("conv2") or a == "conv1" for a, b in direct)
    downsample = next(r for r in rel if r.to == "layer2.0.downsample.0")
    assert not downsample.direct and "parallel branches" in downsample.reason


def test_plain_cnns_are_all_direct_and_untraceable_ones_undecided():
    for name in ("digits-alexnet", "vgg11"):
        model = build_model(name, 3)
        assert all(r.direct for r in pair_relations(model, [l.name for l in hidden_layers(model)]))
    assert pair_relations(Untraceable(), ["a", "b"]) is None
