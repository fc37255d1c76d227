"""Model architectures by name: the built-in digits AlexNet and torchvision's CNNs."""
from __future__ import annotations

from collections import OrderedDict
from typing import Sequence

import torch
from torch import nn

from ..errors import ModelError

#: Input side length (pixels) each named architecture expects.
INPUT_SIZE = {"digits-alexnet": 32, "alexnet": 224, "vgg11": 224, "resnet18": 224}
MODEL_NAMES = tuple(INPUT_SIZE)


class DigitsAlexNet(nn.Module):
    """An AlexNet-shaped CNN for 32×32 RGB inputs: 5 conv layers, 2 hidden FC layers, a classifier.

    Seven hidden layers, like the AlexNet of the paper's case studies, small enough to train on a
    laptop CPU in minutes. Layer names follow AlexNet (``features.conv1`` … ``classifier.fc8``).

    Parameters
    ----------
    num_classes : int
        Outputs of ``classifier.fc8``.
    channels : sequence of 5 ints
        Output channels of conv1 … conv5.
    hidden : sequence of 2 ints
        Neurons of fc6 and fc7.
    dropout : float
        Dropout before fc6 and fc7 (inactive in eval mode).
    """

    def __init__(self, num_classes: int = 10, channels: Sequence[int] = (24, 48, 64, 64, 48),
                 hidden: Sequence[int] = (192, 96), dropout: float = 0.3):
        super().__init__()
        if len(channels) != 5 or len(hidden) != 2:
            raise ModelError(f"digits-alexnet needs 5 channel counts and 2 hidden sizes, "
                             f"got channels={tuple(channels)} hidden={tuple(hidden)}")
        c1, c2, c3, c4, c5 = channels
        self.features = nn.Sequential(OrderedDict([
            ("conv1", nn.Conv2d(3, c1, kernel_size=5, padding=2)),
            ("relu1", nn.ReLU(inplace=True)),
            ("pool1", nn.MaxPool2d(2)),                      # 32 -> 16
            ("conv2", nn.Conv2d(c1, c2, kernel_size=3, padding=1)),
            ("relu2", nn.ReLU(inplace=True)),
            ("pool2", nn.MaxPool2d(2)),                      # 16 -> 8
            ("conv3", nn.Conv2d(c2, c3, kernel_size=3, padding=1)),
            ("relu3", nn.ReLU(inplace=True)),
            ("conv4", nn.Conv2d(c3, c4, kernel_size=3, padding=1)),
            ("relu4", nn.ReLU(inplace=True)),
            ("conv5", nn.Conv2d(c4, c5, kernel_size=3, padding=1)),
            ("relu5", nn.ReLU(inplace=True)),
            ("pool5", nn.MaxPool2d(2)),                      # 8 -> 4
        ]))
        self.classifier = nn.Sequential(OrderedDict([
            ("drop6", nn.Dropout(dropout)),
            ("fc6", nn.Linear(c5 * 4 * 4, hidden[0])),
            ("relu6", nn.ReLU(inplace=True)),
            ("drop7", nn.Dropout(dropout)),
            ("fc7", nn.Linear(hidden[0], hidden[1])),
            ("relu7", nn.ReLU(inplace=True)),
            ("fc8", nn.Linear(hidden[1], num_classes)),
        ]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        return self.classifier(torch.flatten(x, 1))


def architecture_kwargs(name: str, kwargs: "dict | None" = None) -> dict:
    """``kwargs`` with the architecture's defaults filled in, JSON-ready (tuples as lists).

    Runs and bundles record these, so that they rebuild the same network even after a default
    changes (a checkpoint of the wider digits-alexnet of an earlier version then still loads).
    Only ``digits-alexnet`` has defaults of its own; other names get ``kwargs`` unchanged.
    """
    kwargs = dict(kwargs or {})
    if name != "digits-alexnet":
        return kwargs
    import inspect

    params = inspect.signature(DigitsAlexNet.__init__).parameters
    defaults = {key: p.default for key, p in params.items()
                if key not in ("self", "num_classes") and p.default is not inspect.Parameter.empty}
    merged = {**defaults, **kwargs}
    return {key: list(v) if isinstance(v, tuple) else v for key, v in merged.items()}


def build_model(name: str, num_classes: int, *, pretrained: bool = False, **kwargs) -> nn.Module:
    """A model by architecture name with a ``num_classes`` head.

    Parameters
    ----------
    name : {'digits-alexnet', 'alexnet', 'vgg11', 'resnet18'} or 'package.module:function'
        A ``module:function`` name calls ``function(num_classes=..., **kwargs)``: any CNN of the
        user's, recorded by name so a run or bundle can rebuild it. Only factories allowed in this
        process are called (:func:`tlexplorer.models.factories.allow_factory`): a name read from a
        run or bundle never imports anything by itself.
    num_classes : int
    pretrained : bool
        torchvision models only: start from ImageNet weights (downloaded by torchvision when not
        cached; never used in tests) and replace the head when ``num_classes != 1000``.
    **kwargs
        Passed to :class:`DigitsAlexNet` (``channels``, ``hidden``, ``dropout``).
    """
    if ":" in name:
        return _from_factory(name, num_classes, **kwargs)
    if name not in INPUT_SIZE:
        raise ModelError(f"unknown model {name!r}: choose one of {', '.join(MODEL_NAMES)}, "
                         "or 'package.module:function' for your own")
    if num_classes < 2:
        raise ModelError(f"num_classes must be at least 2, got {num_classes}")
    if name == "digits-alexnet":
        if pretrained:
            raise ModelError("digits-alexnet has no pretrained weights; train it with `tlexplorer train`")
        return DigitsAlexNet(num_classes=num_classes, **kwargs)

    import torchvision

    builder = getattr(torchvision.models, name)
    if not pretrained:
        return builder(weights=None, num_classes=num_classes)
    weights = torchvision.models.get_model_weights(name).DEFAULT
    model = builder(weights=weights)
    if num_classes != 1000:
        replace_head(model, num_classes)
    return model


def _from_factory(name: str, num_classes: int, **kwargs) -> nn.Module:
    from .factories import resolve_factory

    model = resolve_factory(name)(num_classes=num_classes, **kwargs)
    if not isinstance(model, nn.Module):
        raise ModelError(f"model factory {name!r} returned {type(model).__name__}, not an nn.Module")
    return model


def output_layer(model: nn.Module) -> "tuple[str, nn.Module]":
    """The last Linear (or Conv2d) module in registration order: the classifier head."""
    last = None
    for name, module in model.named_modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            last = (name, module)
    if last is None:
        raise ModelError(f"{type(model).__name__} has no Linear or Conv2d layer")
    return last


def replace_head(model: nn.Module, num_classes: int) -> nn.Module:
    """Swap the output layer for a freshly initialised one with ``num_classes`` outputs (in place)."""
    name, head = output_layer(model)
    if not isinstance(head, nn.Linear):
        raise ModelError(f"cannot replace head {name!r} of type {type(head).__name__}")
    new_head = nn.Linear(head.in_features, num_classes, bias=head.bias is not None)
    parent = model.get_submodule(name.rpartition(".")[0]) if "." in name else model
    setattr(parent, name.rpartition(".")[2], new_head)
    return model
