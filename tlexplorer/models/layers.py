"""Hidden-layer discovery: the ordered layers of any module whose neurons we analyse."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from torch import nn

from ..errors import LayerError
from .architectures import output_layer


@dataclass(frozen=True)
class HiddenLayer:
    """One analysed layer. ``neurons`` is the channel count (conv) or feature count (linear)."""

    name: str
    kind: str  # "conv" or "linear"
    neurons: int


def _describe(name: str, module: nn.Module) -> HiddenLayer:
    if isinstance(module, nn.Conv2d):
        return HiddenLayer(name, "conv", module.out_channels)
    if isinstance(module, nn.Linear):
        return HiddenLayer(name, "linear", module.out_features)
    raise LayerError(f"layer {name!r} is a {type(module).__name__}; only Conv2d and Linear "
                     "layers have neurons to analyse")


def hidden_layers(model: nn.Module, names: "Iterable[str] | None" = None) -> list[HiddenLayer]:
    """The layers to analyse, in registration order (the forward order of standard CNNs).

    Parameters
    ----------
    model : nn.Module
    names : iterable of str, optional
        The user's own list of module names; by default every Conv2d and Linear except the
        output layer.

    Raises
    ------
    LayerError
        A name that is not a module of ``model``, or a module without neurons.
    """
    modules = dict(model.named_modules())
    if names is not None:
        layers = []
        for name in names:
            if name not in modules or name == "":
                raise LayerError(f"layer {name!r} is not in {type(model).__name__}; "
                                 f"available: {', '.join(n for n, m in modules.items() if isinstance(m, (nn.Conv2d, nn.Linear)))}")
            layers.append(_describe(name, modules[name]))
        return layers
    head_name, _ = output_layer(model)
    return [_describe(name, module) for name, module in modules.items()
            if isinstance(module, (nn.Conv2d, nn.Linear)) and name != head_name]
