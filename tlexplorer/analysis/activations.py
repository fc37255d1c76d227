"""Forward-only captures in one pass over the data: layer activations, the embedding before the first
fully-connected layer, and predictions."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterator, Sequence

import torch
from torch import Tensor, nn
from tqdm import tqdm

from ..errors import LayerError
from ._hooks import (Hooks, Inputs, LayerSpec, StopForward, eval_on_device, forward_fits,
                     iter_batches, num_instances, resolve_layers)

__all__ = ["Predictions", "Capture", "capture", "capture_activations", "concat_captures", "embedding",
           "iter_capture", "predict"]

_REDUCTIONS = ("max", "sum", "mean", None)


@dataclass(frozen=True)
class Predictions:
    """A model's outputs on N instances.

    Attributes
    ----------
    labels : Tensor (N,) int64
        Predicted class (argmax of the logits).
    probabilities : Tensor (N, C)
        Softmax of the logits.
    logits : Tensor (N, C)
    """

    labels: Tensor
    probabilities: Tensor
    logits: Tensor

    @classmethod
    def from_logits(cls, logits: Tensor) -> "Predictions":
        return cls(labels=logits.argmax(1), probabilities=torch.softmax(logits, 1), logits=logits)


@dataclass(frozen=True)
class Capture:
    """What :func:`capture` collected in one pass; fields not asked for are None.

    Attributes
    ----------
    activations : dict of str to Tensor (N, neurons)
        Per layer, its output reduced over space (conv: max per channel by default).
    embedding : Tensor (N, D) or None
        Input of the first ``nn.Linear`` module the forward pass runs, flattened.
    predictions : Predictions or None
    labels : Tensor (N,) or None
        The true labels of ``(x, y)`` batches (None for a bare tensor).
    """

    activations: dict
    embedding: "Tensor | None" = None
    predictions: "Predictions | None" = None
    labels: "Tensor | None" = None

    @property
    def size(self) -> int:
        """Instances captured (0 when nothing per instance was asked for)."""
        fields = [*self.activations.values(), self.embedding, self.labels,
                  None if self.predictions is None else self.predictions.labels]
        return next((int(t.shape[0]) for t in fields if t is not None), 0)


def _reduce(t: Tensor, reduce: "str | None") -> Tensor:
    if reduce is None or t.dim() <= 2:
        return t
    dims = tuple(range(2, t.dim()))
    return {"max": t.amax, "sum": t.sum, "mean": t.mean}[reduce](dim=dims)


def capture(model: nn.Module, inputs: Inputs, *, layers: "LayerSpec | Sequence[LayerSpec] | None" = None,
            reduce: "str | None" = "max", embedding: bool = False, predictions: bool = False,
            device=None, progress: bool = False, desc: str = "forward") -> Capture:
    """Activations of some layers, the embedding and the predictions, from one forward pass over the
    data.

    Parameters
    ----------
    model : nn.Module
        Put in eval mode for the call (each module's mode restored after).
    inputs : Tensor (N, C, H, W) or iterable of (x, y) batches
        Streamed batch by batch; results are concatenated on the CPU (:func:`iter_capture` hands
        them over batch by batch instead).
    layers : str, nn.Module or sequence of them, optional
        Whose outputs to keep. A conv layer's output is taken as the module returns it, before a
        following (possibly in-place) ReLU; the max over space commutes with ReLU, so the
        ranking of top activating instances is the same.
    reduce : {'max', 'sum', 'mean', None}
        How a conv map becomes one value per channel; None keeps (N, C, H, W).
    embedding : bool
        Keep the input of the first ``nn.Linear`` module reached, flattened to (N, D).
    predictions : bool
        Keep the logits (the model's output must be (N, classes)).
    device : str or torch.device, optional
        Default :func:`tlexplorer.config.resolve_device`.
    progress : bool
        Show a tqdm progress bar (instances).
    desc : str
        The progress bar's name.

    Returns
    -------
    Capture

    Raises
    ------
    LayerError
        A layer that is not in the model, is never reached, or runs twice per pass; no Linear layer
        reached when ``embedding=True``.
    ValueError
        Inputs that are not 4-D or do not fit the model.
    """
    parts = []
    with tqdm(total=num_instances(inputs), unit="img", desc=desc, disable=not progress) as bar:
        with contextlib.closing(iter_capture(model, inputs, layers=layers, reduce=reduce,
                                             embedding=embedding, predictions=predictions,
                                             device=device)) as batches:
            for part in batches:
                parts.append(part)
                bar.update(part.size)
    return concat_captures(parts)


def iter_capture(model: nn.Module, inputs: Inputs, *,
                 layers: "LayerSpec | Sequence[LayerSpec] | None" = None, reduce: "str | None" = "max",
                 embedding: bool = False, predictions: bool = False, device=None) -> Iterator[Capture]:
    """:func:`capture`, one :class:`Capture` per batch of ``inputs`` (on the CPU) as soon as it is
    computed, so that a caller can write the results out without holding all of them.

    The parameters and errors are :func:`capture`'s (the checks run on the first batch). While the
    iterator is not exhausted the model stays in eval mode on ``device`` with its hooks attached:
    exhaust it or ``close()`` it (``contextlib.closing``); gradients are off only inside each batch's
    forward pass. ``concat_captures(list(iter_capture(...)))`` equals ``capture(...)``.
    """
    if reduce not in _REDUCTIONS:
        raise ValueError(f"reduce must be one of {_REDUCTIONS}, got {reduce!r}")
    no_layers = layers is None or (isinstance(layers, (list, tuple)) and len(layers) == 0)
    named = [] if no_layers else resolve_layers(model, layers)
    model_name = type(model).__name__
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)] if embedding else []
    if embedding and not linears:
        raise LayerError(f"{model_name} has no nn.Linear layer: no embedding to take")
    # Without predictions the pass can stop once the embedding and every layer are captured.
    stop_early = not predictions
    state: dict = {}

    def done() -> bool:
        return stop_early and len(state) == len(named) + (1 if embedding else 0)

    def on_layer(name):
        def fn(module, inp, output):
            if not isinstance(output, Tensor):
                raise LayerError(f"layer {name!r} returns a {type(output).__name__}, not a tensor")
            if name in state:
                raise LayerError(f"layer {name!r} runs more than once per forward pass of {model_name}")
            # Reduce (or copy) now, before an in-place ReLU downstream rewrites the output.
            value = _reduce(output.detach(), reduce)
            state[name] = value.clone() if value.dim() == output.dim() else value
            if done():
                raise StopForward
        return fn

    def on_linear(module, inp):
        if "__embedding__" not in state:  # only the first Linear of the pass
            state["__embedding__"] = inp[0].detach().flatten(1).clone()
            if done():
                raise StopForward

    with eval_on_device(model, device) as (dev, dtype), Hooks() as hooks:
        for name, module in named:
            hooks.forward(module, on_layer(name))
        for module in linears:
            hooks.pre(module, on_linear)
        first = True
        for x, y, _ in iter_batches(inputs):
            x = x.to(device=dev, dtype=dtype)
            state.clear()
            out = None
            try:
                with torch.no_grad():  # not around the yield: the caller's own code keeps its mode
                    out = forward_fits(model, x) if first else model(x)
            except StopForward:
                pass
            if first:
                _check_first_pass(state, named, embedding, predictions, out, model_name)
                first = False
            yield Capture(
                activations={name: state[name].cpu() for name, _ in named},
                embedding=state["__embedding__"].cpu() if embedding else None,
                predictions=Predictions.from_logits(out.detach().cpu()) if predictions else None,
                labels=None if y is None else y.reshape(-1).cpu())
    if first:
        raise ValueError("inputs hold no instances")


def _check_first_pass(state: dict, named: list, embedding: bool, predictions: bool, out,
                      model_name: str) -> None:
    """Every asked-for layer and the embedding were reached, and the output is logits."""
    for name, _ in named:
        if name not in state:
            raise LayerError(f"layer {name!r} is never reached by the forward pass of {model_name}")
    if embedding and "__embedding__" not in state:
        raise LayerError(f"no nn.Linear layer is reached by the forward pass of {model_name}: "
                         "no embedding to take")
    if predictions and (not isinstance(out, Tensor) or out.dim() != 2):
        shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise ValueError(f"{model_name} must return logits (N, classes), got {shape}")


def concat_captures(parts: "Sequence[Capture]") -> Capture:
    """One :class:`Capture` of consecutive parts (e.g. the batches of :func:`iter_capture`): each
    field concatenated along the instances; labels only when every part has them."""
    if not parts:
        raise ValueError("no captures to concatenate")
    first = parts[0]
    with_labels = all(p.labels is not None for p in parts)
    return Capture(
        activations={name: torch.cat([p.activations[name] for p in parts]) for name in first.activations},
        embedding=None if first.embedding is None else torch.cat([p.embedding for p in parts]),
        predictions=None if first.predictions is None else Predictions.from_logits(
            torch.cat([p.predictions.logits for p in parts])),
        labels=torch.cat([p.labels for p in parts]) if with_labels else None)


def capture_activations(model: nn.Module, layers: "LayerSpec | Sequence[LayerSpec]", inputs: Inputs, *,
                        reduce: "str | None" = "max", device=None, progress: bool = False) -> dict:
    """``{layer name: Tensor (N, neurons)}``: each layer's output, conv maps reduced over space (max
    per channel by default). See :func:`capture`."""
    return capture(model, inputs, layers=layers, reduce=reduce, device=device,
                   progress=progress).activations


def predict(model: nn.Module, inputs: Inputs, *, device=None, progress: bool = False) -> Predictions:
    """The model's :class:`Predictions` (labels (N,), probabilities (N, C), logits (N, C)).
    See :func:`capture`."""
    return capture(model, inputs, predictions=True, device=device, progress=progress).predictions


def embedding(model: nn.Module, inputs: Inputs, *, device=None, progress: bool = False) -> Tensor:
    """Tensor (N, D): the activations entering the first fully-connected (``nn.Linear``) layer of the
    forward pass, flattened (the t-SNE embedding of the instance view). See :func:`capture`."""
    return capture(model, inputs, embedding=True, device=device, progress=progress).embedding
